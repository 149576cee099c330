"""Activation cells that export everywhere.

``Mish`` is built from the ``Softplus``, ``Tanh`` and ``Mul`` primitives, as the model zoo's
``src/utils/custom_op.py`` does, rather than ``nn.Mish``: MindSpore 2.10 cannot export ``nn.Mish``
to ONNX ("Can not find key Mish in convert map") and MindSpore Lite silently drops it, while the
three-primitive form exports to MINDIR and ONNX (opset 11 Softplus/Tanh/Mul) with identical logits.
"""
from mindspore import nn, ops


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
        return nn.LeakyReLU(alpha=leaky_slope)
    raise ValueError(f"unknown activation {name!r}: expected 'mish' or 'leaky_relu'")
