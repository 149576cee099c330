"""Weight initialisation schemes, chosen by name (config key ``init``; ``create_model(..., init=...)``).

``timm`` (the default; measured in docs/convergence.md) -- timm's ``cspnet._init_weights`` with
``zero_init_last=True``:

* Conv2d weights ~ Normal(0, sqrt(2 / fan_out)) (Kaiming-normal, mode fan_out, ReLU gain), with
  ``fan_out = out_channels * kh * kw``; conv biases (if any) 0;
* Dense weights ~ Normal(0, 0.01), biases 0;
* BatchNorm gamma 1, beta 0, moving mean 0, moving variance 1, except the last BatchNorm of every
  residual block (``DarkBlock.conv2.bn``, any cell with a ``zero_init_last`` method), whose gamma is 0:
  each block starts as the identity.

``zoo`` -- the MindSpore model zoo's CSPDarkNet53 (``default_recurisive_init``), kept exactly:

* Conv and Dense weights ~ KaimingUniform(a=sqrt(5), fan_in), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in));
* Dense (and conv, if any) biases ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)); BatchNorm keeps gamma=1,
  beta=0, mean=0, var=1. This equals PyTorch's default Conv/Linear init.

Trained from scratch on small data, the full CSPDarkNet53 with the zoo scheme stays near chance or far
below timm; with ``timm`` it matches timm (measurements: docs/convergence.md).

Deviation from the zoo: the zoo called ``mindspore.set_seed(0)`` inside the constructor, which
silently reset the global MindSpore and NumPy seeds for the rest of the program. Here the values
come from a private ``numpy.random.RandomState(seed)``: every rank that builds the same
architecture with the same seed still gets bit-identical weights (which is what keeps the
data-parallel replicas consistent without a broadcast), and no global state is touched. The draw
order follows the parameter order of the cell, so values differ from the zoo's own draws.
"""
import math

import numpy as np
from mindspore import Tensor, nn

__all__ = ["INIT_SCHEMES", "DEFAULT_INIT", "init_weights", "timm_init", "zoo_init", "default_recursive_init"]


def _fan_in(shape):
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive


def _fan_out(shape):
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[0] * receptive


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
            fan_in = _fan_in(shape)
            # KaimingUniform with a=sqrt(5): gain = sqrt(2/(1+a^2)) = sqrt(1/3),
            # bound = sqrt(3) * gain / sqrt(fan_in) = 1/sqrt(fan_in).
            bound = 1.0 / math.sqrt(fan_in)
            sub.weight.set_data(Tensor(_uniform(rng, shape, bound)))
            if getattr(sub, "bias", None) is not None and sub.has_bias:
                sub.bias.set_data(Tensor(_uniform(rng, tuple(sub.bias.shape), bound)))
    return cell


#: The zoo's function name, kept for callers of the old API.
default_recursive_init = zoo_init


def timm_init(cell, seed=0):
    """timm's cspnet scheme (see the module docstring), in place; returns ``cell``."""
    rng = np.random.RandomState(seed)
    for _, sub in cell.cells_and_names():
        if isinstance(sub, nn.Conv2d):
            shape = tuple(sub.weight.shape)
            std = math.sqrt(2.0 / _fan_out(shape))
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
