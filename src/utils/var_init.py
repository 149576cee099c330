"""Weight initialisation schemes, by name (config key ``init``).

``timm`` (default): timm's ``cspnet._init_weights`` with ``zero_init_last``: conv weights ~ N(0, 2 / fan_out),
dense weights ~ N(0, 0.01^2), biases 0, BatchNorm to identity, each residual block's last BN gamma 0.
``zoo``: the zoo's ``default_recurisive_init``: conv and dense weights and biases ~ U(+-1/sqrt(fan_in))
(KaimingUniform a=sqrt(5)), BatchNorm as built; it stays near chance from scratch (docs/convergence.md).
Deviation from the zoo (which called ``mindspore.set_seed(0)``): draws come from a private
``numpy.random.RandomState(seed)`` in parameter order, so every rank gets the same weights and no global
state is touched.
"""
import math

import numpy as np
from mindspore import Tensor, nn


def _set(param, value):
    param.set_data(Tensor(np.asarray(value, dtype=np.float32)))


def _init_cell(sub, scheme, rng):
    shape = tuple(sub.weight.shape) if isinstance(sub, (nn.Conv2d, nn.Dense)) else None
    has_bias = shape is not None and getattr(sub, "bias", None) is not None and sub.has_bias
    if shape and scheme == "zoo":
        bound = 1.0 / math.sqrt(int(np.prod(shape[1:])))  # fan_in
        _set(sub.weight, rng.uniform(-bound, bound, size=shape))
        if has_bias:
            _set(sub.bias, rng.uniform(-bound, bound, size=tuple(sub.bias.shape)))
    elif shape:
        std = math.sqrt(2.0 / (shape[0] * int(np.prod(shape[2:])))) if isinstance(sub, nn.Conv2d) else 0.01
        _set(sub.weight, rng.normal(0.0, std, size=shape))
        if has_bias:
            _set(sub.bias, np.zeros(tuple(sub.bias.shape)))
    elif scheme == "timm" and isinstance(sub, (nn.BatchNorm2d, nn.BatchNorm1d)):
        n = sub.gamma.shape[0]
        for param, value in ((sub.gamma, 1), (sub.beta, 0), (sub.moving_mean, 0), (sub.moving_variance, 1)):
            _set(param, np.full(n, value))


INIT_SCHEMES = ("timm", "zoo")
DEFAULT_INIT = "timm"


def init_weights(cell, scheme=DEFAULT_INIT, seed=0):
    """Initialises ``cell`` in place with the scheme named ``scheme``; returns ``cell``."""
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"init={scheme!r}: expected one of {', '.join(INIT_SCHEMES)}")
    rng = np.random.RandomState(seed)
    for _, sub in cell.cells_and_names():
        _init_cell(sub, scheme, rng)
    if scheme == "timm":
        for _, sub in cell.cells_and_names():
            if hasattr(sub, "zero_init_last"):
                sub.zero_init_last()
    return cell
