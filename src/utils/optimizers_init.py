"""The zoo's SGD-momentum optimizer with coupled L2 weight decay on conv and dense weights only (no decay for
``.bias``, ``.gamma``, ``.beta``; non-trainable BatchNorm statistics never included)."""
import numpy as np
import mindspore as ms
from mindspore import nn, Tensor

NO_DECAY_SUFFIXES = ("bias", "gamma", "beta")


def _is_no_decay(name):
    return name.rsplit(".", 1)[-1] in NO_DECAY_SUFFIXES


def _trainable(net_or_params):
    if isinstance(net_or_params, nn.Cell):
        return list(net_or_params.trainable_params())
    params = list(net_or_params)
    return [p for p in params if getattr(p, "requires_grad", True)]


def get_param_groups(net):
    """``[{'params': decay}, {'params': no_decay, 'weight_decay': 0.0}]`` of the trainable parameters of a Cell
    or an iterable of Parameters (empty groups left out; the first inherits the optimizer's weight decay)."""
    decay, no_decay = [], []
    for param in _trainable(net):
        (no_decay if _is_no_decay(param.name) else decay).append(param)
    groups = []
    if decay:
        groups.append({"params": decay})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def create_optimizer(net_or_params, learning_rate, momentum=0.9, weight_decay=1e-4, loss_scale=1.0,
                     nesterov=False):
    """``nn.Momentum`` over :func:`get_param_groups` (or given group dicts), as the zoo's.

    ``learning_rate``: a per-step array (``src.lr_generator.get_lr``), a Tensor or a float. ``loss_scale``
    must equal the train step's fixed loss scale (1.0 with a dynamic one): the optimizer unscales."""
    if isinstance(learning_rate, (list, tuple, np.ndarray)):
        learning_rate = Tensor(np.asarray(learning_rate, dtype=np.float32))
    elif isinstance(learning_rate, Tensor):
        learning_rate = learning_rate.astype(ms.float32) if learning_rate.dtype != ms.float32 else learning_rate
    else:
        learning_rate = float(learning_rate)
    if isinstance(net_or_params, (list, tuple)) and net_or_params and isinstance(net_or_params[0], dict):
        groups = list(net_or_params)
    else:
        groups = get_param_groups(net_or_params)
    if not groups:
        raise ValueError("create_optimizer: the network has no trainable parameters")
    return nn.Momentum(params=groups, learning_rate=learning_rate, momentum=float(momentum),
                       weight_decay=float(weight_decay), loss_scale=float(loss_scale),
                       use_nesterov=bool(nesterov))
