"""export.py and src/export_utils.py: MINDIR/ONNX files reproduce the network's logits, fp16 head, AIR refusal,
timm-variant ONNX parity with timm's PyTorch model, and the working directory's permissions."""
import os
import re
import stat
import subprocess
import sys

import numpy as np
import pytest
import mindspore as ms

from src.checkpoint import network_metadata, save_checkpoint_atomic
from src.export_utils import compare_logits, export_network, export_path, run_mindir, run_onnx
from src.image_classification import create_model

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _run(script, args, cwd, timeout=600):
    env = dict(os.environ, GLOG_v="3")
    proc = subprocess.run([sys.executable, os.path.join(REPO, script)] + list(args), cwd=str(cwd), env=env,
                          capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr


def _randomize(net, seed=0):
    """Non-trivial weights and BN statistics so that the logits carry signal (and a wrong op shows)."""
    rng = np.random.RandomState(seed)
    for name, p in net.parameters_dict().items():
        shape = p.shape
        if name.endswith(("moving_mean", "beta")):
            p.set_data(ms.Tensor(rng.uniform(-0.2, 0.2, shape).astype(np.float32)))
        elif name.endswith("moving_variance"):
            p.set_data(ms.Tensor(rng.uniform(0.5, 1.5, shape).astype(np.float32)))
        elif name.endswith("gamma"):
            p.set_data(ms.Tensor(rng.uniform(0.4, 0.8, shape).astype(np.float32)))
        elif name.endswith("head.fc.weight"):
            p.set_data(ms.Tensor(rng.uniform(-0.2, 0.2, shape).astype(np.float32)))
    return net


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    net = _randomize(create_model("cspdarknet_tiny", num_classes=10), seed=3)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    save_checkpoint_atomic(net, path, metadata=network_metadata(net))
    return str(path)


@pytest.fixture
def graph_mode():
    previous = ms.get_context("mode")
    ms.set_context(mode=ms.GRAPH_MODE)
    yield
    ms.set_context(mode=previous)


def _x(shape, seed=0):
    return np.random.RandomState(seed).standard_normal(shape).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# In process: export_network + reload
# ------------------------------------------------------------------------------------------------

def test_mindir_and_onnx_reproduce_logits(tmp_path, graph_mode, fp16_head=False):
    net = _randomize(create_model("cspdarknet_tiny", num_classes=10, fp16_head=fp16_head), seed=1)
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


# ------------------------------------------------------------------------------------------------
# The command line
# ------------------------------------------------------------------------------------------------

def _diffs(output):
    return [float(v) for v in re.findall(r"max abs diff ([0-9.e+-]+)", output)]


def test_cli_mindir_default_and_onnx_fp16(tmp_path, tiny_ckpt):
    code, out = _run("export.py", [f"--ckpt_file={tiny_ckpt}", "--height=64", "--width=48",
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
    code, out = _run("export.py", [f"--ckpt_file={tiny_ckpt}", "--height=64", "--width=64", "--file_format=ONNX",
                                   "--fp16_head=1", "--file_name=tiny16"], tmp_path)
    assert code == 0, out
    assert "verify (onnxruntime)" in out and "verify: OK" in out and "float16" in out
    assert run_onnx(tmp_path / "tiny16.onnx", _x((1, 3, 64, 64))).dtype == np.float16


def _main(args, capsys):
    import export
    code = export.main(args)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _calibrated_tiny(seed=3, size=64):
    """Trained-like weights: He-normal convs, random BN affine, BN statistics measured on a calibration batch,
    so the activations are normalised and the Mish inputs reach the range where MindSpore's Tanh is approximate."""
    from mindspore import nn
    net = create_model("cspdarknet_tiny", num_classes=10, seed=seed)
    rng = np.random.default_rng(seed)
    for name, p in net.parameters_and_names():
        shape = tuple(p.shape)
        if name.endswith("gamma"):
            value = rng.uniform(0.5, 1.5, shape)
        elif name.endswith(("beta", "bias")):
            value = rng.normal(0.0, 0.2, shape)
        elif name.endswith("moving_mean"):
            value = np.zeros(shape)
        elif name.endswith("moving_variance"):
            value = np.ones(shape)
        else:
            value = rng.normal(0.0, np.sqrt(2.0 / int(np.prod(shape[1:]))), shape)
        p.set_data(ms.Tensor(value.astype(np.float32)))
    net.set_train(False)

    def measure(cell, inputs):
        a = inputs[0].asnumpy().astype(np.float64)
        cell.moving_mean.set_data(ms.Tensor(a.mean(axis=(0, 2, 3)).astype(np.float32)))
        cell.moving_variance.set_data(ms.Tensor(a.var(axis=(0, 2, 3)).astype(np.float32)))
    hooks = [c.register_forward_pre_hook(measure) for _, c in net.cells_and_names() if isinstance(c, nn.BatchNorm2d)]
    net(ms.Tensor(_x((4, 3, size, size), seed=9)))  # PyNative (conftest): hooks run
    for h in hooks:
        h.remove()
    return net


def test_cli_onnx_of_trained_like_mish_network(tmp_path):
    """With normalised activations the ONNX file is checked against the accurate-tanh network and passes."""
    pytest.importorskip("onnxruntime")
    net = _calibrated_tiny()
    ckpt = tmp_path / "calibrated.ckpt"
    save_checkpoint_atomic(net, ckpt, metadata=network_metadata(net))
    code, out = _run("export.py", [f"--ckpt_file={ckpt}", "--file_format=ONNX", "--height=64", "--width=64",
                                   "--file_name=calibrated"], tmp_path)
    assert code == 0, out
    assert "against the network with an accurate-tanh Mish" in out and "verify: OK" in out
    accurate, cell = _diffs(out)
    print(f"calibrated tiny ONNX: {accurate:.2e} vs accurate-tanh reference, {cell:.2e} vs the MindSpore Cell")
    assert accurate <= cell


def test_cli_air_off_ascend_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out = _main(["--ckpt_file=does_not_matter.ckpt", "--file_format=AIR", "--device_target=CPU"], capsys)
    assert code == 2, out
    assert "AIR needs an Ascend device" in out and "MINDIR or ONNX" in out
    assert "Traceback" not in out
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("args,message", [
    ([], "no checkpoint given: pass --ckpt_file"),
    (["--ckpt_file=missing/model.ckpt"], "missing/model.ckpt"),
])
def test_cli_checkpoint_errors(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    code, out = _main(args, capsys)
    assert code == 2, out
    assert message in out and "Traceback" not in out


# ------------------------------------------------------------------------------------------------
# timm variant: the exported ONNX gives timm's PyTorch logits
# ------------------------------------------------------------------------------------------------

def test_timm_variant_onnx_matches_timm(tmp_path):
    pytest.importorskip("onnxruntime")
    torch = pytest.importorskip("torch", reason="reference test needs torch (requirements-test.txt)")
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = timm.create_model("cspdarknet53", pretrained=False)
    rng = np.random.RandomState(7)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                c = module.num_features
                module.weight.copy_(torch.from_numpy(rng.uniform(0.4, 0.8, c).astype(np.float32)))
                module.bias.copy_(torch.from_numpy(rng.uniform(-0.2, 0.2, c).astype(np.float32)))
                module.running_mean.copy_(torch.from_numpy(rng.uniform(-0.2, 0.2, c).astype(np.float32)))
                module.running_var.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, c).astype(np.float32)))
    model.eval()
    ckpt = tmp_path / "cspdarknet53_timm.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(ckpt))

    # No --arch: the timm key layout selects cspdarknet53_timm.
    code, out = _run("export.py", [f"--ckpt_file={ckpt}", "--file_format=ONNX", "--height=64", "--width=64",
                                   "--file_name=timm64"], tmp_path)
    assert code == 0, out
    assert "cspdarknet53_timm with 1000 classes" in out and "verify: OK" in out
    x = _x((2, 3, 64, 64), seed=11)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    got = run_onnx(tmp_path / "timm64.onnx", np.ascontiguousarray(x[:1]))  # exported with batch 1
    got2 = run_onnx(tmp_path / "timm64.onnx", np.ascontiguousarray(x[1:]))
    got = np.concatenate([got, got2])
    rel = float(np.abs(got - ref).max() / np.abs(ref).max())
    print(f"timm-variant ONNX vs timm: max abs diff {np.abs(got - ref).max():.3e}, relative {rel:.3e}")
    assert rel < 1e-4
    assert (got.argmax(1) == ref.argmax(1)).all()
