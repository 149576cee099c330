"""The export job (src/export_job.py) through export.py's main, in process: input sizes that cannot be traced
and checked (from the checkpoint, or beyond the memory available) are one error naming the keys and the
reason, before any device work. (Weights that are not
finite and stop signals, end to end: tests/e2e/test_inference_refusals_and_stops.py.)"""
import os

import pytest

import src.export_job
from src.image_classification import create_model


def _export(args, capsys):
    import export

    code = export.main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, save_trained):
    return save_trained(create_model("cspdarknet_tiny", num_classes=3), tmp_path_factory.mktemp("c") / "m.ckpt",
                        image_size="32,32")


def test_an_export_size_from_the_checkpoint_is_bounded_too(tmp_path, monkeypatch, capsys, save_trained):
    """height / width 0 take the checkpoint's training size: the config's input bound applies to it as well
    (the config checks it only when both are given)."""
    big = save_trained(create_model("cspdarknet_tiny", num_classes=3), tmp_path / "big.ckpt", image_size="4096,4096")
    monkeypatch.chdir(tmp_path)
    code, out = _export([f"--ckpt_file={big}", "--export_batch_size=64", "--file_name=net"], capsys)
    assert code == 2 and "height=4096 x width=4096 float32 is 12.0 GiB" in out and "Traceback" not in out, out
    assert sorted(os.listdir(tmp_path)) == ["big.ckpt"]


def test_export_size_beyond_the_memory_available(tmp_path, monkeypatch, capsys, ckpt):
    """The check run needs memory in proportion to the input's pixels: more than the machine has is refused
    (here the machine is said to have 3 GiB available)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(src.export_job, "_available_memory", lambda: 3 * 2 ** 30)
    code, out = _export([f"--ckpt_file={ckpt}", "--height=2048", "--width=2048", "--export_batch_size=4"], capsys)
    assert code == 2 and "needs about 8.0 GiB of memory, 3.0 GiB are available" in out, out
    assert os.listdir(tmp_path) == []


def test_input_shape_takes_the_checkpoints_size(ckpt):
    from src.checkpoint import resolve_model
    from src.config import load_config

    spec = resolve_model(load_config([]), str(ckpt))
    assert src.export_job.input_shape(load_config([]), spec, "CPU") == [1, 3, 32, 32]
    assert src.export_job.input_shape(load_config(["--height=40", "--export_batch_size=2"]), spec, "CPU") == \
        [2, 3, 40, 32]
