"""The fused activation kernels (src/utils/fused_ops.py, kernels/activations.cc, built with the C++ compiler):
exact against float64, special values, the MindSpore cells in GRAPH mode and float16, the network rewrite
(training losses match the unfused network; the full-size timm variant gets 67 fused LeakyReLUs) and the
kernel build cache."""
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
    fn = getattr(lib, name)
    fn.argtypes = [ctypes.c_void_p] * (len(arrays) + 1) + [ctypes.c_int64]
    fn(*[a.ctypes.data for a in arrays], out.ctypes.data, out.size)
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


def test_kernel_build_is_cached_and_reports_errors(tmp_path, monkeypatch):
    from src.utils import fused_ops

    path = fused_ops.build_kernel(cache_dir=str(tmp_path))
    assert os.path.isfile(path) and fused_ops.build_kernel(cache_dir=str(tmp_path)) == path
    assert ctypes.CDLL(path).mish_get_threads() >= 1
    with pytest.raises(fused_ops.KernelBuildError, match="compiler"):
        fused_ops.build_kernel(cxx="no-such-compiler-xyz", cache_dir=str(tmp_path))
