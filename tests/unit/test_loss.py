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


def _np_smoothed(labels, k, eps):
    t = np.full((len(labels), k), eps / (k - 1))
    t[np.arange(len(labels)), labels] = 1 - eps
    return t


pytestmark = pytest.mark.usefixtures("graph_mode")  # GRAPH mode as in training (tests/conftest.py)


def test_int_labels_match_numpy_zoo_smoothing():
    rng = np.random.default_rng(0)
    k, eps = 10, 0.1
    z = rng.normal(size=(6, k)).astype(np.float32) * 3
    y = rng.integers(0, k, size=6).astype(np.int32)
    loss = CrossEntropySmooth(eps, k)(Tensor(z), Tensor(y))
    assert loss.dtype == ms.float32
    assert loss.shape == ()
    np.testing.assert_allclose(float(loss.asnumpy()), _np_loss(z, _np_smoothed(y, k, eps)), rtol=1e-5)


def test_smoothed_targets_are_the_zoos_not_pytorchs():
    """The targets the Cell itself builds, read off its gradient: for the batch-mean loss,
    d loss / d z = (softmax(z) - t) / B, so with z = 0, t = 1/K - B * grad. The zoo's targets are 0.9 on the
    true class and 0.1/9 elsewhere; PyTorch's label_smoothing would give 0.91 and 0.01."""
    k, eps, b = 10, 0.1, 4
    y = np.array([3, 0, 9, 3], np.int32)
    grad = ms.grad(CrossEntropySmooth(eps, k), grad_position=0)(Tensor(np.zeros((b, k), np.float32)), Tensor(y))
    t = 1.0 / k - b * grad.asnumpy().astype(np.float64)
    expected = np.full((b, k), eps / (k - 1))
    expected[np.arange(b), y] = 1 - eps
    np.testing.assert_allclose(t, expected, atol=1e-5)  # float32 gradient; zoo vs PyTorch differ by 1e-2
    np.testing.assert_allclose(t.sum(1), 1.0, atol=1e-5)


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


def test_soft_targets_used_as_given_or_smoothed():
    rng = np.random.default_rng(3)
    k, eps = 10, 0.1
    z = rng.normal(size=(4, k)).astype(np.float32)
    # mixup-style target: lam * onehot(a) + (1-lam) * onehot(b)
    a, b, lam = np.array([0, 1, 2, 3]), np.array([5, 6, 7, 3]), 0.7
    t = (lam * np.eye(k)[a] + (1 - lam) * np.eye(k)[b]).astype(np.float32)
    got = CrossEntropySmooth(eps, k)(Tensor(z), Tensor(t))
    np.testing.assert_allclose(float(got.asnumpy()), _np_loss(z, t), rtol=1e-5)
    got_s = CrossEntropySmooth(eps, k, smooth_soft_targets=True)(Tensor(z), Tensor(t))
    t_s = t * (1 - eps * k / (k - 1)) + eps / (k - 1)
    np.testing.assert_allclose(float(got_s.asnumpy()), _np_loss(z, t_s), rtol=1e-5)
    # smoothing a one-hot soft target equals the int-label path
    y = np.array([4, 0, 9, 1], np.int32)
    cell = CrossEntropySmooth(eps, k, smooth_soft_targets=True)
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
