"""eval.py, predict.py and export.py as a user (or a scheduler) runs them, as real processes: weights that are
not finite, an image size in a checkpoint that no image can be scored at, stop signals. Each ends with exit status 2 (143 / 130 for SIGTERM / SIGINT),
one ``error:`` line and no result file that looks complete; a scored eval writes standard JSON into an
``eval_<timestamp>`` folder whose record lists eval's settings. (In process: tests/unit/test_eval_job.py,
test_predict_job.py, test_export_job.py, test_checkpoint_metadata.py.)"""

import json
import signal

import numpy as np
import pytest
import mindspore as ms

from src.image_classification import create_model


@pytest.fixture(scope="module")
def data(make_tiny_data):
    """3 classes of 40 images: enough batches of 2 that an eval is still scoring when a signal comes."""
    return make_tiny_data(3, 40, 36)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory, randomize, save_trained):
    folder = tmp_path_factory.mktemp("ckpts")
    good = randomize(create_model("cspdarknet_tiny", num_classes=3, seed=0), 1, shift=0.3, head=0.5)
    broken = randomize(create_model("cspdarknet_tiny", num_classes=3, seed=0), 1, shift=0.3, head=0.5)
    gamma = next(p for n, p in broken.parameters_dict().items() if n.endswith("bn.gamma"))
    gamma.set_data(ms.Tensor(np.full(gamma.shape, np.nan, np.float32)))
    return {"good": save_trained(good, folder / "good.ckpt", image_size="32,32"),
            "nan": save_trained(broken, folder / "nan.ckpt", image_size="32,32"),
            "huge": save_trained(good, folder / "huge.ckpt", image_size="40000,40000")}


def _error_line(proc, status=2):
    out = proc.stdout + proc.stderr
    assert proc.returncode == status, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    errors = [line for line in out.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, out[-3000:]
    return errors[0]


def _eval_args(data, ckpt, tmp_path, *extra):
    return [f"--ckpt_file={ckpt}", f"--data_dir={data}", "--per_batch_size=2", "--num_parallel_workers=2",
            f"--log_path={tmp_path / 'logs'}", f"--result_file={tmp_path / 'r.json'}", *extra]


def _refused_job_args(script, data, ckpt, tmp_path):
    """The command line of eval.py, predict.py or export.py on ``ckpt``, writing under ``tmp_path``."""
    return {"eval.py": _eval_args(data, ckpt, tmp_path),
            "predict.py": [f"--ckpt_file={ckpt}", f"--image_path={data / 'class0'}",
                           f"--result_file={tmp_path / 'r.json'}"],
            "export.py": [f"--ckpt_file={ckpt}", f"--file_name={tmp_path / 'net'}"]}[script]


def _assert_nothing_written(tmp_path):
    assert not list(tmp_path.rglob("eval_result.json")) and not (tmp_path / "r.json").exists()
    assert not (tmp_path / "net.mindir").exists()


def test_a_scored_eval_writes_standard_json_into_an_eval_folder(tmp_path, data, ckpts, run_script):
    proc = run_script("eval.py", _eval_args(data, ckpts["good"], tmp_path, "--no_plots=1"), cwd=tmp_path)
    assert proc.returncode == 0, proc.output[-3000:]
    (run,) = (tmp_path / "logs").iterdir()
    assert run.name.startswith("eval_")  # not a training run's <timestamp> folder

    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")
    for path in (run / "eval_result.json", tmp_path / "r.json"):
        with open(path, encoding="utf-8") as f:
            result = json.load(f, parse_constant=refuse)
        assert result["images"] == 120 and result["class_check"]["kind"] == "identical"
    settings = (run / "config.yaml").read_text(encoding="utf-8")
    assert "ckpt_file:" in settings and "arch: cspdarknet_tiny" in settings and "image_size: 32,32" in settings
    assert not any(key in settings for key in ("max_epoch:", "warmup_epochs:", "mixup_alpha:", "ckpt_path:"))


@pytest.mark.parametrize("script", ["eval.py", "predict.py", "export.py"])
def test_weights_that_are_not_finite_are_refused(tmp_path, data, ckpts, run_script, script):
    """Before: eval scored an all-NaN checkpoint 33% top-1 / 100% top-5 with exit 0, predict printed nan."""
    args = _refused_job_args(script, data, ckpts["nan"], tmp_path)
    line = _error_line(run_script(script, args, cwd=tmp_path))
    assert "hold NaN or infinite values" in line and str(ckpts["nan"]) in line
    _assert_nothing_written(tmp_path)


@pytest.mark.parametrize("script", ["eval.py", "predict.py", "export.py"])
def test_an_absurd_image_size_recorded_in_a_checkpoint_is_refused(tmp_path, data, ckpts, run_script, script):
    """Before: eval printed ``tot=0, acc=0.00%`` and exited 0 (the decoder dropped every image)."""
    args = _refused_job_args(script, data, ckpts["huge"], tmp_path)
    proc = run_script(script, args, cwd=tmp_path)
    assert "image_size='40000,40000'" in _error_line(proc) and "tot=0" not in proc.output
    _assert_nothing_written(tmp_path)


def _one_stop_line(status, out, sig):
    """Exit 143 for SIGTERM, 130 for SIGINT, one error line. While MindSpore runs a compiled graph its own SIGINT
    handler is installed (``DefaultIntHandler`` in ccsrc/utils/signal_util.cc), which turns Ctrl-C into a
    SIGTERM of the process: a SIGINT that lands there ends the job as a SIGTERM does (143)."""
    expected = {signal.SIGTERM: {143}, signal.SIGINT: {130, 143}}[sig]
    assert status in expected, out[-3000:]
    errors = [line for line in out.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in out, out[-3000:]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_eval_stopped_while_scoring_leaves_no_result(tmp_path, data, ckpts, run_script, sig):
    """After the first batch, with 2 data workers: MindSpore's data engine has replaced the process's SIGTERM
    handler by then (without the project's re-install, eval exited 0 with nothing written)."""
    status, out = run_script.signal_when("eval.py", _eval_args(data, ckpts["good"], tmp_path), tmp_path,
                                         "scoring started", sig)
    _one_stop_line(status, out, sig)
    assert "top1_correct" not in out
    assert not list(tmp_path.rglob("eval_result.json")) and not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_predict_stopped_leaves_no_result(tmp_path, data, ckpts, run_script, sig):
    """While the files are checked, before any result is printed or written."""
    args = [f"--ckpt_file={ckpts['good']}", f"--image_path={data}", f"--result_file={tmp_path / 'r.json'}"]
    status, out = run_script.signal_when("predict.py", args, tmp_path, "model: cspdarknet_tiny", sig)
    _one_stop_line(status, out, sig)
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_export_stopped_leaves_no_file(tmp_path, ckpts, run_script, sig):
    """The signal lands while the written file is checked (it is moved into place only after that)."""
    out_dir = tmp_path / "exported"
    args = [f"--ckpt_file={ckpts['good']}", f"--file_name={out_dir / 'net'}", "--height=64", "--width=64"]
    status, out = run_script.signal_when("export.py", args, tmp_path, "checking the MINDIR file", sig)
    _one_stop_line(status, out, sig)
    assert not out_dir.exists() or list(out_dir.iterdir()) == []  # neither the file nor its temporary folder
