"""The fused activation kernels (src/utils/fused_ops.py, kernels/activations.cc), the settings that use them,
the benchmark's FLOP counter and its row annotation (benchmarks/flops.py, benchmarks/runner.py)."""
import ctypes
import os

import numpy as np
import pytest


pytestmark = pytest.mark.skipif(not __import__("shutil").which(os.environ.get("CXX") or "g++"),
                                reason="no C++ compiler for the fused kernels")


def _mish64(x):
    x = x.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        t = np.tanh(np.logaddexp(0.0, x))
        y = x * t
        g = t + x / (1.0 + np.exp(-x)) * (1.0 - t * t)
    return y, g


def _grid():
    x = np.linspace(-100, 100, 400_001, dtype=np.float32)
    # the region where MindSpore's own nn.Mish returns NaN (from 45 on), and switch points of the kernel
    extra = np.array([44.0, 44.5, 45.0, 60.0, 88.0, 89.0, 90.0, 19.999, 20.0, 20.001, -19.999, -20.0, -20.001,
                      -59.9, -60.0, -60.1, 0.0, -0.0, 1e-8, -1e-8], np.float32)
    return np.concatenate([x, extra])


def _call(lib, name, *arrays):
    out = np.empty_like(arrays[0])
    getattr(lib, name)(*[a.ctypes.data for a in arrays], out.ctypes.data, out.size)
    return out


def test_mish_kernel_is_exact_against_float64():
    from src.utils.fused_ops import kernel_library

    _, lib = kernel_library()
    x = _grid()
    ref, gref = _mish64(x)
    for suffix in ("", "_scalar"):
        y = _call(lib, "mish_forward_f32" + suffix, x)
        assert np.all(np.isfinite(y))
        big = np.abs(ref) > 1e-30  # below, float32 flushes / denormals: absolute check
        rel = np.abs(y[big] - ref[big]) / np.abs(ref[big])
        assert rel.max() < 5e-7, (suffix, rel.max(), x[big][rel.argmax()])
        assert np.abs(y[~big] - ref[~big]).max() < 1e-30
        np.testing.assert_array_equal(y[x >= 44], x[x >= 44])  # mish(x) = x there in float32
        dy = np.random.default_rng(0).standard_normal(x.shape).astype(np.float32)
        g = _call(lib, "mish_backward_f32" + suffix, x, dy)
        # the derivative crosses 0 near x = -1.19: an absolute bound scaled by the terms' size
        assert np.all(np.abs(g - gref * dy) <= 1e-6 * (1.0 + np.abs(dy))), suffix
    np.testing.assert_array_equal(_call(lib, "mish_forward_f32", x), _call(lib, "mish_forward_f32_scalar", x))


def test_mish_kernel_special_values():
    from src.utils.fused_ops import kernel_library

    _, lib = kernel_library()
    x = np.array([np.nan, np.inf, -np.inf, 1e30, -1e30] + [0.5] * 13, np.float32)  # >= 8: the vector path too
    y = _call(lib, "mish_forward_f32", x)
    assert np.isnan(y[0]) and y[1] == np.inf and y[2] == 0 and y[3] == np.float32(1e30) and y[4] == 0
    g = _call(lib, "mish_backward_f32", x, np.ones_like(x))
    assert np.isnan(g[0]) and g[1] == 1 and g[2] == 0 and g[3] == 1 and g[4] == 0


def test_fused_mish_cell_against_float64_and_finite_differences(graph_mode):
    import mindspore as ms
    from mindspore import nn

    from src.utils.custom_op import Mish
    from src.utils.fused_ops import FusedMish

    x = np.linspace(-100, 100, 20_001, dtype=np.float32)
    fused, prim3 = FusedMish(), Mish()
    y = fused(ms.Tensor(x)).asnumpy()
    ref, gref = _mish64(x)
    assert np.all(np.isfinite(y)) and np.max(np.abs(y - ref) / np.maximum(np.abs(ref), 1e-30)) < 5e-7
    # MindSpore's own nn.Mish is NaN from 45 on; the three-primitive form is finite but its Tanh saturates
    assert np.isnan(nn.Mish()(ms.Tensor(np.array([45.0], np.float32))).asnumpy()[0])
    y3 = prim3(ms.Tensor(x)).asnumpy()
    assert np.max(np.abs(y - ref)) < 1e-5 < np.max(np.abs(y3 - ref))
    g = ms.grad(fused)(ms.Tensor(x)).asnumpy()
    assert np.max(np.abs(g - gref)) < 1e-6
    # central differences of the kernel itself (float32 outputs, h = 1e-2, away from the switch points)
    xs = np.linspace(-8, 8, 161, dtype=np.float32)
    h = np.float32(1e-2)
    fd = (fused(ms.Tensor(xs + h)).asnumpy().astype(np.float64) -
          fused(ms.Tensor(xs - h)).asnumpy().astype(np.float64)) / (2 * float(h))
    np.testing.assert_allclose(ms.grad(fused)(ms.Tensor(xs)).asnumpy(), fd, atol=2e-4)


def test_fused_leaky_relu_matches_the_networks_leaky_relu(graph_mode):
    import mindspore as ms
    from mindspore import nn

    from src.utils.custom_op import LeakyReLU
    from src.utils.fused_ops import FusedLeakyReLU

    x = np.random.default_rng(0).standard_normal(100_003).astype(np.float32) * 5
    x[:4] = [0.0, -0.0, 1.5, -1.5]
    ours, fused, mindspore_own = LeakyReLU(0.01), FusedLeakyReLU(0.01), nn.LeakyReLU(alpha=0.01)
    y = ours(ms.Tensor(x)).asnumpy()
    np.testing.assert_array_equal(fused(ms.Tensor(x)).asnumpy(), y)
    np.testing.assert_array_equal(mindspore_own(ms.Tensor(x)).asnumpy(), y)  # the same forward, bit for bit
    g, gf, gm = (ms.grad(c)(ms.Tensor(x)).asnumpy() for c in (ours, fused, mindspore_own))
    np.testing.assert_array_equal(gf, g)
    np.testing.assert_array_equal(g, np.where(x > 0, 1.0, 0.01).astype(np.float32))  # PyTorch's rule, ties: a
    # MindSpore's Maximum(a*x, x) splits a tie (x == 0) 0.505, the bug src/utils/custom_op.LeakyReLU avoids
    np.testing.assert_array_equal(gm[2:], g[2:])
    assert gm[0] == pytest.approx(0.505) and gm[1] == pytest.approx(0.505)
    assert isinstance(ours, nn.LeakyReLU)  # found by the fused-kernel swap and the activation recompute
    with pytest.raises(ValueError):
        FusedLeakyReLU(1.5)
    with pytest.raises(ValueError):
        LeakyReLU(-0.1)


def test_fused_cells_take_float16_as_amp_hands_it(graph_mode):
    """AMP O2/O3 feeds the activations float16; the float32 kernels get a cast there and back (an O3 run
    once ended with "Return value from CPU AOT kernel ... is 1")."""
    import mindspore as ms

    from src.utils.custom_op import Mish
    from src.utils.fused_ops import FusedLeakyReLU, FusedMish

    x = (np.random.default_rng(1).standard_normal(4099) * 4).astype(np.float16)
    for fused, ref in ((FusedMish(), Mish()), (FusedLeakyReLU(0.01), None)):
        out = fused(ms.Tensor(x))
        assert out.dtype == ms.float16
        want = (ref(ms.Tensor(x.astype(np.float32))).asnumpy() if ref is not None else
                np.where(x > 0, x, np.float16(0.01) * x).astype(np.float32))
        np.testing.assert_allclose(out.asnumpy().astype(np.float32), want, rtol=2e-3, atol=2e-3)
        grad = ms.grad(fused)(ms.Tensor(x))
        assert grad.dtype == ms.float16 and np.isfinite(grad.asnumpy()).all()


def test_fused_act_rewrite_training_losses_match(graph_mode):
    import mindspore as ms
    from mindspore import nn

    from src.image_classification import create_model
    from src.loss import CrossEntropySmooth
    from src.utils.custom_op import Mish
    from src.utils.fused_ops import FusedLeakyReLU, FusedMish
    from src.utils.optimizers_init import create_optimizer
    from src.utils.perf import prepare_network

    # 64 px, batch 4: at 32 px / batch 2 the last stage is 1x1 and its batch-2 BatchNorm maps every
    # channel to +-1, which turns 1e-4 differences (MindSpore's Tanh) into 0.2 in the logits
    rng = np.random.default_rng(0)
    x = ms.Tensor(rng.standard_normal((4, 3, 64, 64), dtype=np.float32))
    y = ms.Tensor(rng.integers(0, 10, 4).astype(np.int32))
    losses = {}
    for fused in (False, True):
        net = prepare_network(create_model("cspdarknet_tiny", num_classes=10), train=True, fused_act=fused,
                              recompute_act=True)
        kinds = {type(c) for _, c in net.cells_and_names()}
        assert (FusedMish in kinds) == fused and (Mish in kinds) == (not fused)
        opt = create_optimizer(net, 0.01, momentum=0.9, weight_decay=1e-4)
        cell = nn.TrainOneStepCell(nn.WithLossCell(net, CrossEntropySmooth(smooth_factor=0.1, num_classes=10)), opt)
        cell.set_train()
        losses[fused] = [float(cell(x, y).asnumpy()) for _ in range(3)]
    np.testing.assert_allclose(losses[True][0], losses[False][0], rtol=1e-5)
    np.testing.assert_allclose(losses[True], losses[False], rtol=1e-3)

    from src.image_classification import create_model as cm
    timm_net = prepare_network(cm("cspdarknet53_timm", num_classes=10), train=False, fused_act=True)
    leaky = [c for _, c in timm_net.cells_and_names() if isinstance(c, FusedLeakyReLU)]
    assert len(leaky) == 67 and all(c.alpha_value == pytest.approx(0.01) for c in leaky)
    # fused_act="mish" (the inference choice) leaves LeakyReLU to MindSpore and still fuses Mish
    mish_only = prepare_network(cm("cspdarknet53_timm", num_classes=10), train=False, fused_act="mish")
    assert not any(isinstance(c, FusedLeakyReLU) for _, c in mish_only.cells_and_names())
    tiny = prepare_network(create_model("cspdarknet_tiny", num_classes=10), train=False, fused_act="mish")
    assert any(isinstance(c, FusedMish) for _, c in tiny.cells_and_names())
    with pytest.raises(ValueError, match="fused_act"):
        prepare_network(create_model("cspdarknet_tiny", num_classes=10), train=False, fused_act="leaky")


def test_recommended_settings_fuse_activations_but_export_does_not(monkeypatch):
    from src.utils import perf

    # the process settings are not the point here, and MindSpore refuses to set the thread count twice
    monkeypatch.setattr(perf, "apply_cpu_performance_settings", lambda **kwargs: dict(kwargs))

    assert perf.recommended_settings("train")["fused_act"] is True
    assert perf.recommended_settings("infer")["fused_act"] == "mish"
    _, rewrites = perf.apply_recommended_settings("CPU", "infer", network=False)  # what export.py asks for
    assert rewrites == {}
    assert perf.apply_recommended_settings("GPU", "train") == ({}, {})
    assert perf._fused_act_kind(True) == "all" and perf._fused_act_kind("mish") == "mish"
    assert perf._fused_act_kind(False) is None
    with pytest.raises(ValueError):
        perf._fused_act_kind("fast")


def test_kernel_build_is_cached_and_reports_errors(tmp_path, monkeypatch):
    from src.utils import fused_ops

    path = fused_ops.build_kernel(cache_dir=str(tmp_path))
    assert os.path.isfile(path) and fused_ops.build_kernel(cache_dir=str(tmp_path)) == path
    assert ctypes.CDLL(path).mish_get_threads() >= 1
    with pytest.raises(fused_ops.KernelBuildError, match="compiler"):
        fused_ops.build_kernel(cxx="no-such-compiler-xyz", cache_dir=str(tmp_path))


# ---- benchmarks/flops.py and the row annotation --------------------------------------------------

def test_flops_match_torch_flop_counter():
    torch = pytest.importorskip("torch")
    timm = pytest.importorskip("timm")
    from torch.utils.flop_counter import FlopCounterMode

    from benchmarks.flops import forward_flops

    for arch, kwargs, size in (("cspdarknet53", {"act_layer": "mish"}, 224), ("cspdarknet53_timm", {}, 256)):
        model = timm.create_model("cspdarknet53", num_classes=1000, **kwargs).eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, 3, size, size))
        assert forward_flops(arch, size) == counter.get_total_flops(), arch
    assert round(forward_flops("cspdarknet53", 224) / 1e9, 3) == 10.005


def test_annotate_pairs_and_flags():
    from benchmarks import runner

    base = dict(status="ok", img_size=224, num_classes=1000, precision="fp32", threads=2, compile_s=1.0,
                peak_rss_mb=1000.0)
    rows = [dict(base, framework="mindspore", arch="cspdarknet53_timm", model="cspdarknet53_timm", mode="infer",
                 batch_size=1, ms_per_step=100.0, cpu_ms_per_step=150.0, cpu_s_per_image=0.15, images_per_s=10.0,
                 load_avg_start=1.0, load_avg_end=1.5),
            dict(base, framework="torch", arch="cspdarknet53", pair_arch="cspdarknet53_timm", flops_arch="cspdarknet53_timm",
                 model="timm cspdarknet53", mode="infer", batch_size=1, ms_per_step=200.0, cpu_ms_per_step=400.0,
                 cpu_s_per_image=0.4, images_per_s=5.0, load_avg_start=2.6, load_avg_end=1.0)]
    # a quiet machine: the benchmark's own 2 threads put the load average at ~2; other processes used ~0 cores
    quiet = dict(rows[0], load_avg_start=2.05, load_avg_end=2.02, other_cores=0.03)
    busy = dict(rows[0], load_avg_start=1.2, load_avg_end=1.9, other_cores=0.6)  # a job started meanwhile
    runner.annotate([quiet, busy])
    assert not quiet["loaded"] and busy["loaded"]
    runner.annotate(rows, {"status": "ok", "gflops": 200.0, "gflops_per_cpu_s": 100.0})
    assert rows[0]["gflop_per_step"] == pytest.approx(10.01, abs=0.01)
    assert rows[0]["flop_limit_frac"] == pytest.approx(0.5, abs=0.01)        # 100 GFLOP/s of 200
    assert rows[0]["flop_limit_frac_cpu"] == pytest.approx(0.667, abs=0.01)   # 66.7 GFLOP per CPU-s of 100
    assert not rows[0]["loaded"] and rows[1]["loaded"]
    (q,) = runner.ratio_rows(rows)
    assert q["arch"] == "cspdarknet53_timm" and q["speed_ratio"] == pytest.approx(2.0) and q["loaded"]
    assert q["cpu_ratio"] == pytest.approx(0.4 / 0.15)
    table = runner.ratio_table([q])
    assert "| infer | 1 | 224x224 | cspdarknet53_timm |" in table and "yes (!)" in table
    assert "(!)" in runner.markdown_table(rows)


def test_default_specs_compare_each_arch_with_its_twin():
    import benchmark

    args = benchmark.build_parser().parse_args(["--compare", "timm", "--infer_batch_sizes", "1",
                                                "--train_batch_sizes", ""])
    specs = benchmark.make_specs(args)
    pairs = [(s["framework"], s.get("pair_arch", s["arch"]), s.get("timm_model"), dict(s.get("timm_kwargs") or []))
             for s in specs]
    assert pairs == [("mindspore", "cspdarknet53", None, {}),
                     ("torch", "cspdarknet53", "cspdarknet53", {"act_layer": "mish"}),
                     ("mindspore", "cspdarknet53_timm", None, {}),
                     ("torch", "cspdarknet53_timm", "cspdarknet53", {})]
    quick = benchmark.build_parser().parse_args(["--quick"])
    assert benchmark.arch_list(quick) == ["cspdarknet53"]
