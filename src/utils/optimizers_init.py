"""The zoo's SGD-momentum optimizer with coupled L2 weight decay on conv and dense weights only (none on
``.bias``, ``.gamma``, ``.beta``; non-trainable BatchNorm statistics never included)."""
import numpy as np
import mindspore as ms
from mindspore import nn, Tensor


def get_param_groups(net):
    """``[{'params': decay}, {'params': no_decay, 'weight_decay': 0.0}]`` of the trainable parameters of a Cell
    or an iterable of Parameters (empty groups left out; the first inherits the optimizer's weight decay)."""
    params = net.trainable_params() if isinstance(net, nn.Cell) else [
        p for p in net if getattr(p, "requires_grad", True)]
    decay, no_decay = [], []
    for p in params:
        (no_decay if p.name.rsplit(".", 1)[-1] in ("bias", "gamma", "beta") else decay).append(p)
    return [g for g in ({"params": decay}, {"params": no_decay, "weight_decay": 0.0}) if g["params"]]


def create_optimizer(net_or_params, learning_rate, momentum=0.9, weight_decay=1e-4, loss_scale=1.0):
    """``nn.Momentum`` over :func:`get_param_groups`, as the zoo's; ``loss_scale`` must be the train step's fixed
    one (1.0 with a dynamic one): the optimizer unscales."""
    if isinstance(learning_rate, (list, tuple, np.ndarray)):
        learning_rate = Tensor(np.asarray(learning_rate, dtype=np.float32))
    elif isinstance(learning_rate, Tensor):
        learning_rate = learning_rate.astype(ms.float32)
    else:
        learning_rate = float(learning_rate)
    groups = get_param_groups(net_or_params)
    if not groups:
        raise ValueError("create_optimizer: the network has no trainable parameters")
    return nn.Momentum(params=groups, learning_rate=learning_rate, momentum=float(momentum),
                       weight_decay=float(weight_decay), loss_scale=float(loss_scale))
