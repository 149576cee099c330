"""Weight initialisation of the model zoo's CSPDarkNet53 (``default_recurisive_init``).

Conv and Dense weights ~ KaimingUniform(a=sqrt(5), fan_in), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in));
Dense (and conv, if any) biases ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)); BatchNorm keeps gamma=1,
beta=0, mean=0, var=1. This equals PyTorch's default Conv/Linear init.

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


def _fan_in(shape):
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive


def _uniform(rng, shape, bound):
    return rng.uniform(-bound, bound, size=shape).astype(np.float32)


def default_recursive_init(cell, seed=0):
    """Initialises every Conv2d and Dense below ``cell`` in place (zoo scheme, private RNG)."""
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
