"""Small pieces against PyTorch: the class-weighted training loss equals torch's cross_entropy(weight=...)."""
import numpy as np
import pytest
import torch
from mindspore import Tensor

from src.loss import CrossEntropySmooth

pytestmark = pytest.mark.usefixtures("graph_mode")  # GRAPH mode as in training (tests/conftest.py)


def _data(b=8, k=5, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(b, k)).astype(np.float32) * 3, rng.integers(0, k, size=b).astype(np.int32))


def test_weighted_matches_torch_cross_entropy_weight():
    z, y = _data(b=16, k=6, seed=1)
    w = np.array([0.2, 1, 3, 0.5, 2, 1], np.float32)
    ours = CrossEntropySmooth(0.0, 6, class_weights=w)(Tensor(z), Tensor(y)).asnumpy()
    ref = torch.nn.functional.cross_entropy(torch.tensor(z), torch.tensor(y, dtype=torch.long),
                                            weight=torch.tensor(w)).item()
    np.testing.assert_allclose(ours, ref, rtol=1e-5)


