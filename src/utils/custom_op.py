"""Activation cells that export everywhere and train as PyTorch's.

``Mish`` is built from the ``Softplus``, ``Tanh`` and ``Mul`` primitives, as the model zoo's
``src/utils/custom_op.py`` does, rather than ``nn.Mish``: MindSpore 2.10 cannot export ``nn.Mish``
to ONNX ("Can not find key Mish in convert map") and MindSpore Lite silently drops it, while the
three-primitive form exports to MINDIR and ONNX (opset 11 Softplus/Tanh/Mul) with identical logits.

``LeakyReLU`` is ``nn.LeakyReLU`` (same forward, bit for bit) with PyTorch's gradient at x == 0: the slope
``alpha``. MindSpore 2.10 builds ``nn.LeakyReLU`` as ``Maximum(alpha * x, x)``, whose CPU backward splits a tie
between the two inputs, (1 + alpha) / 2 = 0.505 x the incoming gradient at x == 0 for alpha 0.01, against
PyTorch's 0.01. That is no corner case here: with timm's initialisation (each residual block's last BatchNorm
gamma 0, the default ``init=timm``) every element of those blocks' activation input is exactly 0 at the
start, so the zero-init gammas got ~50x PyTorch's gradient on the first step (docs/convergence.md). The
fused CPU kernel (``src/utils/fused_ops.FusedLeakyReLU``) already had PyTorch's convention; this cell gives
it to every device (GPU, Ascend, CPU without the fused kernels).
"""
from mindspore import nn, ops


class LeakyReLU(nn.LeakyReLU):
    """LeakyReLU(x) = max(alpha x, x) (0 <= alpha <= 1), MindSpore's own forward graph (so inference speed and
    export are those of ``nn.LeakyReLU``), with a backward of gradient 1 where x > 0 and alpha elsewhere
    (PyTorch's convention, x == 0 included). A subclass, so code that looks for ``nn.LeakyReLU`` (the fused
    kernel swap, activation recompute) finds it."""

    def __init__(self, alpha=0.01):
        alpha = float(alpha)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"LeakyReLU: alpha={alpha} outside [0, 1]")
        super().__init__(alpha=alpha)
        self.select = ops.Select()
        self.greater = ops.Greater()

    def construct(self, x):
        return ops.leaky_relu(x, self.alpha)

    def bprop(self, x, out, dout):
        return (self.select(self.greater(x, ops.zeros_like(x)), dout, dout * self.alpha),)


class Mish(nn.Cell):
    """Mish(x) = x * tanh(softplus(x)) (Misra, 2019), from exportable primitives."""

    def __init__(self):
        super().__init__()
        self.softplus = ops.Softplus()
        self.tanh = ops.Tanh()
        self.mul = ops.Mul()

    def construct(self, x):
        return self.mul(x, self.tanh(self.softplus(x)))


def create_activation(name, leaky_slope=0.01):
    """Returns a new activation cell: ``mish`` or ``leaky_relu``.

    MindSpore's ``nn.LeakyReLU`` default slope is 0.2; timm's weights need PyTorch's 0.01, so the
    slope is always passed explicitly.
    """
    if name == "mish":
        return Mish()
    if name == "leaky_relu":
        return LeakyReLU(alpha=leaky_slope)
    raise ValueError(f"unknown activation {name!r}: expected 'mish' or 'leaky_relu'")
