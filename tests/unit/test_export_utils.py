"""src/export_utils.py in process: MINDIR/ONNX files reproduce the network's logits (fp32 and fp16 head), the
comparison rules, output paths and the working directory's permissions, the accurate Mish. export.py itself
runs in tests/e2e/test_export.py."""
import os
import stat

import numpy as np
import pytest
import mindspore as ms

from src.export_utils import compare_logits, export_network, export_path, run_mindir, run_onnx
from src.image_classification import create_model


def _x(shape, seed=0):
    return np.random.RandomState(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("fp16_head", [False, True], ids=["fp32_head", "fp16_head"])
def test_mindir_and_onnx_reproduce_logits(tmp_path, graph_mode, randomize, fp16_head):
    net = randomize(create_model("cspdarknet_tiny", num_classes=10, fp16_head=fp16_head), seed=1, head=0.2)
    net.set_train(False)
    x = _x((2, 3, 64, 48))  # H != W: the input is NCHW with H first
    ref = net(ms.Tensor(x)).asnumpy()
    assert ref.dtype == (np.float16 if fp16_head else np.float32)
    outputs = {"MINDIR": run_mindir(export_network(net, x, tmp_path / "m", "MINDIR"), x)}
    pytest.importorskip("onnxruntime")
    outputs["ONNX"] = run_onnx(export_network(net, x, tmp_path / "m", "ONNX"), x)
    peak = float(np.abs(ref.astype(np.float32)).max())
    for fmt, out in outputs.items():
        assert out.dtype == ref.dtype, fmt
        assert out.shape == (2, 10)
        diff = float(np.abs(out.astype(np.float32) - ref.astype(np.float32)).max())
        if fp16_head:
            assert diff <= float(np.spacing(np.float16(peak))), fmt
        else:
            assert diff < 1e-4 * peak, fmt
        assert compare_logits(ref, out).ok
    assert sorted(os.listdir(tmp_path)) == ["m.mindir", "m.onnx"]  # no temporary folder left behind


def test_compare_logits_rules():
    ref = np.array([[1.0, -4.0, 2.0]], np.float32)
    assert compare_logits(ref, ref + 1e-4).ok            # 1e-4 <= 1e-4 * 4
    assert not compare_logits(ref, ref + 1e-3).ok
    assert not compare_logits(ref, ref.astype(np.float16)).ok  # dtype must match
    h = ref.astype(np.float16)
    step = np.spacing(np.float16(4.0))
    assert compare_logits(h, h + step).ok and not compare_logits(h, h + 2 * step).ok


def test_export_path_and_onnx_keeps_directory_mode(tmp_path, graph_mode, monkeypatch):
    assert export_path("a/b", "onnx") == os.path.abspath("a/b.onnx")
    assert export_path("a/b.mindir", "MINDIR") == os.path.abspath("a/b.mindir")
    os.chmod(tmp_path, 0o755)
    monkeypatch.chdir(tmp_path)
    net = create_model("cspdarknet_tiny", num_classes=3)
    net.set_train(False)
    pytest.importorskip("onnxruntime")
    path = export_network(net, _x((1, 3, 32, 32)), "bare_name", "ONNX")  # a bare name: the CWD is the target
    assert path == str(tmp_path / "bare_name.onnx")
    assert stat.S_IMODE(os.stat(tmp_path).st_mode) == 0o755  # MindSpore's ONNX export would make it 0700
    assert os.stat(path).st_mode & stat.S_IWUSR               # not MindSpore's read-only 0400
    # Replacing works. (A second ONNX export of the same Cell object in one process fails inside
    # MindSpore 2.10, "anf.cc:453 input"; export.py exports once per process.)
    again = create_model("cspdarknet_tiny", num_classes=3)
    again.set_train(False)
    export_network(again, _x((1, 3, 32, 32)), "bare_name", "ONNX")
    assert sorted(os.listdir(tmp_path)) == ["bare_name.onnx"]


def test_accurate_mish_fixes_mindspore_tanh():
    """MindSpore's CPU Tanh is off by up to 1e-4 for inputs in [4, 9]; AccurateMish is float32-accurate there."""
    from mindspore import ops
    from src.export_utils import AccurateMish, use_accurate_mish
    from src.utils.custom_op import Mish
    x = np.linspace(-12, 12, 4801).astype(np.float32)
    exact = x.astype(np.float64) * np.tanh(np.logaddexp(0.0, x.astype(np.float64)))
    ours = AccurateMish()(ms.Tensor(x)).asnumpy()
    assert np.abs(ours - exact).max() < 5e-6
    tanh_err = np.abs(ops.tanh(ms.Tensor(x)).asnumpy() - np.tanh(x.astype(np.float64))).max()
    print(f"MindSpore CPU Tanh max abs error on [-12, 12]: {tanh_err:.2e}")
    net = create_model("cspdarknet_tiny", num_classes=3)
    mish_cells = sum(isinstance(c, Mish) for _, c in net.cells_and_names())
    assert use_accurate_mish(net) == mish_cells > 0
    assert not any(isinstance(c, Mish) for _, c in net.cells_and_names())
    assert use_accurate_mish(create_model("cspdarknet53_timm", num_classes=3)) == 0  # LeakyReLU
