"""Weight initialisation schemes, chosen by name (config key ``init``; ``create_model(..., init=...)``).

``timm`` (default): timm's ``cspnet._init_weights`` with ``zero_init_last=True``: conv weights ~
Normal(0, sqrt(2 / fan_out)), dense weights ~ Normal(0, 0.01), biases 0, BatchNorm gamma 1 / beta 0 / mean 0 /
var 1, except the last BatchNorm of every residual block (any cell with ``zero_init_last``), gamma 0.
``zoo``: the model zoo's ``default_recurisive_init``: conv and dense weights and biases ~
U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (KaimingUniform a=sqrt(5), PyTorch's default), BatchNorm as built.
From scratch on small data the zoo scheme stays near chance (docs/convergence.md).

Deviation from the zoo: it called ``mindspore.set_seed(0)`` in the constructor, resetting the global seeds.
Here values come from a private ``numpy.random.RandomState(seed)`` in parameter order: every rank gets the
same weights (data-parallel replicas agree without a broadcast) and no global state is touched; the values
differ from the zoo's own draws.
"""
import math

import numpy as np
from mindspore import Tensor, nn


def _fans(shape):
    """``(fan_in, fan_out)`` of a conv or dense weight."""
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def _uniform(rng, shape, bound):
    return rng.uniform(-bound, bound, size=shape).astype(np.float32)


def _set(param, value):
    param.set_data(Tensor(np.asarray(value, dtype=np.float32)))


def zoo_init(cell, seed=0):
    """The zoo scheme (see the module docstring), in place; returns ``cell``."""
    rng = np.random.RandomState(seed)
    for _, sub in cell.cells_and_names():
        if isinstance(sub, (nn.Conv2d, nn.Dense)):
            shape = tuple(sub.weight.shape)
            fan_in = _fans(shape)[0]
            # KaimingUniform with a=sqrt(5): gain = sqrt(2/(1+a^2)) = sqrt(1/3),
            # bound = sqrt(3) * gain / sqrt(fan_in) = 1/sqrt(fan_in).
            bound = 1.0 / math.sqrt(fan_in)
            sub.weight.set_data(Tensor(_uniform(rng, shape, bound)))
            if getattr(sub, "bias", None) is not None and sub.has_bias:
                sub.bias.set_data(Tensor(_uniform(rng, tuple(sub.bias.shape), bound)))
    return cell


def timm_init(cell, seed=0):
    """timm's cspnet scheme (see the module docstring), in place; returns ``cell``."""
    rng = np.random.RandomState(seed)
    for _, sub in cell.cells_and_names():
        if isinstance(sub, nn.Conv2d):
            shape = tuple(sub.weight.shape)
            std = math.sqrt(2.0 / _fans(shape)[1])
            _set(sub.weight, rng.normal(0.0, std, size=shape))
            if getattr(sub, "bias", None) is not None and sub.has_bias:
                _set(sub.bias, np.zeros(tuple(sub.bias.shape)))
        elif isinstance(sub, nn.Dense):
            shape = tuple(sub.weight.shape)
            _set(sub.weight, rng.normal(0.0, 0.01, size=shape))
            if getattr(sub, "bias", None) is not None and sub.has_bias:
                _set(sub.bias, np.zeros(tuple(sub.bias.shape)))
        elif isinstance(sub, (nn.BatchNorm2d, nn.BatchNorm1d)):
            n = sub.gamma.shape[0]
            _set(sub.gamma, np.ones(n))
            _set(sub.beta, np.zeros(n))
            _set(sub.moving_mean, np.zeros(n))
            _set(sub.moving_variance, np.ones(n))
    for _, sub in cell.cells_and_names():
        if hasattr(sub, "zero_init_last"):
            sub.zero_init_last()
    return cell


_SCHEMES = {"timm": timm_init, "zoo": zoo_init}
INIT_SCHEMES = tuple(_SCHEMES)
DEFAULT_INIT = "timm"


def init_weights(cell, scheme=DEFAULT_INIT, seed=0):
    """Initialises ``cell`` in place with the scheme named ``scheme`` ("timm" or "zoo"); returns ``cell``."""
    try:
        fn = _SCHEMES[scheme]
    except KeyError:
        raise ValueError(f"init={scheme!r}: expected one of {', '.join(INIT_SCHEMES)}") from None
    return fn(cell, seed=seed)
