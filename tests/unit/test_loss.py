import numpy as np
import pytest
import mindspore as ms
from mindspore import nn, Tensor

from src.loss import CrossEntropySmooth, create_loss


def _np_log_softmax(z):
    z = z.astype(np.float64)
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _np_loss(z, target):
    return float(np.mean(-(target * _np_log_softmax(z)).sum(-1)))


def _np_smoothed(labels, k, eps, style="pytorch"):
    """Smoothed one-hot rows: pytorch (1-eps+eps/K, eps/K) or the zoo's (1-eps, eps/(K-1))."""
    off = eps / (k - 1) if style == "zoo" else eps / k
    t = np.full((len(labels), k), off)
    t[np.arange(len(labels)), labels] = 1 - eps + (0 if style == "zoo" else off)
    return t


pytestmark = pytest.mark.usefixtures("graph_mode")  # GRAPH mode as in training (tests/conftest.py)


@pytest.mark.parametrize("style", ["pytorch", "zoo"])
def test_int_labels_match_numpy_smoothing(style):
    rng = np.random.default_rng(0)
    k, eps = 10, 0.1
    z = rng.normal(size=(6, k)).astype(np.float32) * 3
    y = rng.integers(0, k, size=6).astype(np.int32)
    loss = CrossEntropySmooth(eps, k, style=style)(Tensor(z), Tensor(y))
    assert loss.dtype == ms.float32
    assert loss.shape == ()
    np.testing.assert_allclose(float(loss.asnumpy()), _np_loss(z, _np_smoothed(y, k, eps, style)), rtol=1e-5)


def _targets_from_gradient(cell, y, k):
    """The targets a Cell builds, read off its gradient: for the batch-mean loss,
    d loss / d z = (softmax(z) - t) / B, so with z = 0, t = 1/K - B * grad."""
    b = len(y)
    grad = ms.grad(cell, grad_position=0)(Tensor(np.zeros((b, k), np.float32)), Tensor(np.asarray(y, np.int32)))
    return 1.0 / k - b * grad.asnumpy().astype(np.float64)


@pytest.mark.parametrize("style,on,off", [("pytorch", 1 - 0.1 + 0.1 / 10, 0.1 / 10), ("zoo", 1 - 0.1, 0.1 / 9)])
def test_smoothed_targets_follow_the_chosen_convention(style, on, off):
    """pytorch: 0.91 on the true class and 0.01 elsewhere (torch's label_smoothing=0.1, K=10); zoo: 0.9 and
    0.1/9. The two differ by 1e-2 here, far above the float32 gradient's error."""
    k, y = 10, [3, 0, 9, 3]
    t = _targets_from_gradient(CrossEntropySmooth(0.1, k, style=style), y, k)
    expected = np.full((len(y), k), off)
    expected[np.arange(len(y)), y] = on
    np.testing.assert_allclose(t, expected, atol=1e-5)
    np.testing.assert_allclose(t.sum(1), 1.0, atol=1e-5)


def test_default_convention_is_pytorchs_and_matches_torch_loss_value():
    """The default loss equals torch.nn.CrossEntropyLoss(label_smoothing=eps) on the same logits, written
    out in NumPy (mean over the batch of -sum_c t_c log_softmax(z)_c with t = (1-eps)*onehot + eps/K)."""
    rng = np.random.default_rng(3)
    k, eps = 7, 0.2
    z = rng.normal(size=(5, k)).astype(np.float32) * 2
    y = rng.integers(0, k, size=5).astype(np.int32)
    t = np.full((5, k), eps / k)
    t[np.arange(5), y] += 1 - eps
    loss = create_loss(1, eps, k)(Tensor(z), Tensor(y))
    np.testing.assert_allclose(float(loss.asnumpy()), _np_loss(z, t), rtol=1e-5)


def test_unknown_smoothing_style_is_refused():
    with pytest.raises(ValueError, match="pytorch, zoo"):
        CrossEntropySmooth(0.1, 10, style="timm")


def test_int64_labels_and_no_smoothing():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(4, 5)).astype(np.float32)
    y = np.array([0, 4, 2, 2], np.int64)
    loss = create_loss(0, 0.1, 5)(Tensor(z), Tensor(y))   # label_smooth=0 forces eps=0
    ref = float(np.mean(-_np_log_softmax(z)[np.arange(4), y]))
    np.testing.assert_allclose(float(loss.asnumpy()), ref, rtol=1e-5)


def test_column_labels_b1_are_class_indices():
    rng = np.random.default_rng(5)
    z = rng.normal(size=(4, 6)).astype(np.float32)
    y = np.array([5, 0, 3, 3], np.int32)
    cell = CrossEntropySmooth(0.2, 6)
    np.testing.assert_allclose(cell(Tensor(z), Tensor(y[:, None])).asnumpy(),
                               _np_loss(z, _np_smoothed(y, 6, 0.2)), rtol=1e-5)


def test_fp16_logits_give_fp32_loss():
    rng = np.random.default_rng(2)
    z = (rng.normal(size=(3, 10)) * 4).astype(np.float16)
    y = np.array([1, 2, 9], np.int32)
    loss = CrossEntropySmooth(0.1, 10)(Tensor(z), Tensor(y))
    assert loss.dtype == ms.float32
    np.testing.assert_allclose(float(loss.asnumpy()),
                               _np_loss(z.astype(np.float32), _np_smoothed(y, 10, 0.1)), rtol=1e-5)


@pytest.mark.parametrize("style", ["pytorch", "zoo"])
def test_soft_targets_used_as_given_or_smoothed(style):
    rng = np.random.default_rng(3)
    k, eps = 10, 0.1
    z = rng.normal(size=(4, k)).astype(np.float32)
    # mixup-style target: lam * onehot(a) + (1-lam) * onehot(b)
    a, b, lam = np.array([0, 1, 2, 3]), np.array([5, 6, 7, 3]), 0.7
    t = (lam * np.eye(k)[a] + (1 - lam) * np.eye(k)[b]).astype(np.float32)
    got = CrossEntropySmooth(eps, k)(Tensor(z), Tensor(t))
    np.testing.assert_allclose(float(got.asnumpy()), _np_loss(z, t), rtol=1e-5)
    got_s = CrossEntropySmooth(eps, k, smooth_soft_targets=True, style=style)(Tensor(z), Tensor(t))
    t_s = (t * (1 - eps * k / (k - 1)) + eps / (k - 1)) if style == "zoo" else (t * (1 - eps) + eps / k)
    np.testing.assert_allclose(float(got_s.asnumpy()), _np_loss(z, t_s), rtol=1e-5)
    # smoothing a one-hot soft target equals the int-label path
    y = np.array([4, 0, 9, 1], np.int32)
    cell = CrossEntropySmooth(eps, k, smooth_soft_targets=True, style=style)
    np.testing.assert_allclose(cell(Tensor(z), Tensor(np.eye(k, dtype=np.float32)[y])).asnumpy(),
                               cell(Tensor(z), Tensor(y)).asnumpy(), rtol=1e-6)


def test_runs_inside_graph_train_step():
    net = nn.Dense(8, 4)
    step = nn.TrainOneStepCell(nn.WithLossCell(net, CrossEntropySmooth(0.1, 4)),
                               nn.Momentum(net.trainable_params(), 0.1, 0.9))
    x = Tensor(np.random.default_rng(4).normal(size=(16, 8)).astype(np.float32))
    y = Tensor(np.arange(16, dtype=np.int32) % 4)
    losses = [float(step(x, y).asnumpy()) for _ in range(5)]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]


def test_bad_arguments():
    with pytest.raises(ValueError):
        CrossEntropySmooth(1.0, 10)
    with pytest.raises(ValueError):
        CrossEntropySmooth(0.1, 0)
