"""export.py end to end: MINDIR/ONNX files reproduce the network's logits, fp16 head, a trained-like Mish network
checked against the accurate-tanh reference. (timm-variant ONNX parity with timm's PyTorch model:
tests/reference/test_export_parity.py; the in-process parts: tests/unit/test_export_utils.py; the command line's user errors: tests/unit/test_entry_errors.py.)"""
import re

import numpy as np
import pytest
import mindspore as ms

from src.export_utils import run_mindir, run_onnx
from src.image_classification import create_model


def _run(run_script, args, cwd, timeout=600):
    proc = run_script("export.py", args, cwd=cwd, timeout=timeout)
    return proc.returncode, proc.output


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory, randomize, save_trained):
    net = randomize(create_model("cspdarknet_tiny", num_classes=10), seed=3, head=0.2)
    return str(save_trained(net, tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"))


def _x(shape, seed=0):
    return np.random.RandomState(seed).standard_normal(shape).astype(np.float32)


def _diffs(output):
    return [float(v) for v in re.findall(r"max abs diff ([0-9.e+-]+)", output)]


def test_cli_mindir_default_and_onnx_fp16(tmp_path, tiny_ckpt, run_script):
    code, out = _run(run_script, [f"--ckpt_file={tiny_ckpt}", "--height=64", "--width=48",
                                  "--export_batch_size=2", "--file_name=models/tiny"], tmp_path)
    assert code == 0, out
    assert "input [2, 3, 64, 48]" in out and "verify: OK" in out
    assert "cspdarknet_tiny with 10 classes" in out   # arch and num_classes from the checkpoint's metadata
    assert _diffs(out) == [0.0]                        # MINDIR reload is exact
    path = tmp_path / "models" / "tiny.mindir"
    x = _x((2, 3, 64, 48), seed=5)
    net = create_model("cspdarknet_tiny", num_classes=10)
    from src.checkpoint import load_weights
    load_weights(net, tiny_ckpt)
    net.set_train(False)
    ref = net(ms.Tensor(x)).asnumpy()
    got = run_mindir(path, x)
    assert np.abs(got - ref).max() < 1e-4 * np.abs(ref).max()

    pytest.importorskip("onnxruntime")
    code, out = _run(run_script, [f"--ckpt_file={tiny_ckpt}", "--height=64", "--width=64", "--file_format=ONNX",
                                  "--fp16_head=1", "--file_name=tiny16"], tmp_path)
    assert code == 0, out
    assert "verify (onnxruntime)" in out and "verify: OK" in out and "float16" in out
    assert run_onnx(tmp_path / "tiny16.onnx", _x((1, 3, 64, 64))).dtype == np.float16


def _calibrated_tiny(calibrate, seed=3, size=64):
    """Trained-like weights (tests/conftest.py calibrate) on a random calibration batch: the activations are
    normalised and the Mish inputs reach the range where MindSpore's Tanh is approximate."""
    return calibrate(create_model("cspdarknet_tiny", num_classes=10, seed=seed), seed, _x((4, 3, size, size), seed=9))


def test_cli_onnx_of_trained_like_mish_network(tmp_path, calibrate, run_script, save_trained):
    """With normalised activations the ONNX file is checked against the accurate-tanh network and passes."""
    pytest.importorskip("onnxruntime")
    net = _calibrated_tiny(calibrate)
    ckpt = tmp_path / "calibrated.ckpt"
    save_trained(net, ckpt)
    code, out = _run(run_script, [f"--pretrained={ckpt}", "--file_format=ONNX", "--height=64", "--width=64",
                                  "--file_name=calibrated"], tmp_path)
    assert code == 0, out
    assert "against the network with an accurate-tanh Mish" in out and "verify: OK" in out
    accurate, cell = _diffs(out)
    print(f"calibrated tiny ONNX: {accurate:.2e} vs accurate-tanh reference, {cell:.2e} vs the MindSpore Cell")
    assert accurate <= cell


# ------------------------------------------------------------------------------------------------
# timm variant: the exported ONNX gives timm's PyTorch logits
# ------------------------------------------------------------------------------------------------

