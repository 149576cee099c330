"""src/export_utils.py in process: MINDIR/ONNX files reproduce the network's logits (fp16 head), the
comparison rules, output paths and the working directory's permissions, the accurate Mish. export.py itself
runs in tests/e2e/test_export.py."""
import os
import stat

import numpy as np
import mindspore as ms

from src.export_utils import compare_logits, export_network, export_path, run_mindir, run_onnx
from src.image_classification import create_model


def _x(shape, seed=0):
    return np.random.RandomState(seed).standard_normal(shape).astype(np.float32)


def test_mindir_and_onnx_reproduce_logits_in_place_of_a_bare_name(tmp_path, graph_mode, randomize, monkeypatch):
    """An fp16-head network (the harder case; the fp32 head: tests/e2e/test_export.py) exported under a bare
    name: the files land in the working directory, whose mode stays as it was, reproduce the logits, and a
    second export replaces the file."""
    assert export_path("a/b", "onnx") == os.path.abspath("a/b.onnx")
    assert export_path("a/b.mindir", "MINDIR") == os.path.abspath("a/b.mindir")
    os.chmod(tmp_path, 0o755)
    monkeypatch.chdir(tmp_path)
    net = randomize(create_model("cspdarknet_tiny", num_classes=10, fp16_head=True), seed=1, head=0.2)
    net.set_train(False)
    x = _x((2, 3, 64, 48))  # H != W: the input is NCHW with H first
    ref = net(ms.Tensor(x)).asnumpy()
    assert ref.dtype == np.float16
    outputs = {"MINDIR": run_mindir(export_network(net, x, "m", "MINDIR"), x)}
    onnx_path = export_network(net, x, "m", "ONNX")  # a bare name: the CWD is the target
    assert onnx_path == str(tmp_path / "m.onnx")
    outputs["ONNX"] = run_onnx(onnx_path, x)
    peak = float(np.abs(ref.astype(np.float32)).max())
    for fmt, out in outputs.items():
        assert out.dtype == ref.dtype and out.shape == (2, 10), fmt
        diff = float(np.abs(out.astype(np.float32) - ref.astype(np.float32)).max())
        assert diff <= float(np.spacing(np.float16(peak))), fmt
        assert compare_logits(ref, out).ok
    assert stat.S_IMODE(os.stat(tmp_path).st_mode) == 0o755  # MindSpore's ONNX export would make it 0700
    assert os.stat(onnx_path).st_mode & stat.S_IWUSR          # not MindSpore's read-only 0400
    # Replacing works. (A second ONNX export of the same Cell object in one process fails inside
    # MindSpore 2.10, "anf.cc:453 input"; export.py exports once per process.)
    again = create_model("cspdarknet_tiny", num_classes=3)
    again.set_train(False)
    export_network(again, _x((1, 3, 32, 32)), "m", "ONNX")
    assert run_onnx(onnx_path, _x((1, 3, 32, 32))).shape == (1, 3)
    assert sorted(os.listdir(tmp_path)) == ["m.mindir", "m.onnx"]  # no temporary folder left behind


def test_compare_logits_rules():
    ref = np.array([[1.0, -4.0, 2.0]], np.float32)
    assert compare_logits(ref, ref + 1e-4).ok            # 1e-4 <= 1e-4 * 4
    assert not compare_logits(ref, ref + 1e-3).ok
    assert not compare_logits(ref, ref.astype(np.float16)).ok  # dtype must match
    h = ref.astype(np.float16)
    step = np.spacing(np.float16(4.0))
    assert compare_logits(h, h + step).ok and not compare_logits(h, h + 2 * step).ok


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
