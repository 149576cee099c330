"""class_weights in src/loss.py's CrossEntropySmooth: default path unchanged, weighted soft targets (against
PyTorch: tests/reference/test_loss_parity.py)."""
import numpy as np
import pytest
from mindspore import Tensor

from src.loss import CrossEntropySmooth, create_loss


pytestmark = pytest.mark.usefixtures("graph_mode")  # GRAPH mode as in training (tests/conftest.py)


def _data(b=8, k=5, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(b, k)).astype(np.float32) * 3, rng.integers(0, k, size=b).astype(np.int32))


def test_default_is_the_unweighted_mean_bit_for_bit():
    z, y = _data()
    plain = CrossEntropySmooth(0.1, 5)(Tensor(z), Tensor(y)).asnumpy()
    explicit_none = CrossEntropySmooth(0.1, 5, class_weights=None)(Tensor(z), Tensor(y)).asnumpy()
    assert plain.tobytes() == explicit_none.tobytes()
    assert not CrossEntropySmooth(0.1, 5).weighted


def test_uniform_weights_equal_unweighted():
    z, y = _data()
    a = CrossEntropySmooth(0.1, 5)(Tensor(z), Tensor(y)).asnumpy()
    b = CrossEntropySmooth(0.1, 5, class_weights=np.full(5, 2.0))(Tensor(z), Tensor(y)).asnumpy()
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_weighted_soft_targets_use_target_weight():
    z, _ = _data(b=4, k=3, seed=2)
    t = np.array([[1, 0, 0], [0.3, 0.7, 0], [0, 0, 1], [0.5, 0, 0.5]], np.float32)
    w = np.array([1.0, 2.0, 4.0], np.float32)
    ours = CrossEntropySmooth(0.0, 3, class_weights=w)(Tensor(z), Tensor(t)).asnumpy()
    zz = z.astype(np.float64) - z.max(-1, keepdims=True)
    logp = zz - np.log(np.exp(zz).sum(-1, keepdims=True))
    per = -(t * logp).sum(-1)
    ws = t @ w
    np.testing.assert_allclose(ours, (per * ws).sum() / ws.sum(), rtol=1e-5)


def test_create_loss_passes_weights_and_checks_them():
    assert create_loss(1, 0.1, 4, class_weights=[1, 1, 2, 1]).weighted
    with pytest.raises(ValueError, match="one weight per class"):
        create_loss(1, 0.1, 4, class_weights=[1, 2])
    with pytest.raises(ValueError, match=">= 0"):
        CrossEntropySmooth(0.1, 2, class_weights=[-1, 1])
