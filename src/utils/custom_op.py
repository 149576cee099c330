"""Activation cells that export everywhere and train as PyTorch's. ``Mish`` from ``Softplus``/``Tanh``/``Mul``,
as the zoo's (MindSpore 2.10 cannot export ``nn.Mish`` to ONNX; Lite drops it). ``LeakyReLU`` with PyTorch's
gradient at x == 0: MindSpore's splits the tie (0.505x for alpha 0.01), and with timm's zero-init gammas every
input there is 0 at the start, giving ~50x PyTorch's first gradients (docs/convergence.md).
"""
from mindspore import nn, ops


class LeakyReLU(nn.LeakyReLU):
    """``nn.LeakyReLU``'s forward with PyTorch's backward (1 where x > 0, alpha elsewhere); a subclass, so the
    fused kernel swap and activation recompute find it."""

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

