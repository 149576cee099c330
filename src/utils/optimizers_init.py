"""Optimizer set-up: weight-decay groups and the zoo's SGD-momentum optimizer.

Weight decay (coupled L2, as in the zoo) applies to conv and dense weights only. Parameters whose
name ends in ``.bias``, ``.gamma`` or ``.beta`` (biases, BatchNorm affine parameters) get
``weight_decay = 0.0``. Non-trainable parameters (BN moving statistics) are never included.
"""
import numpy as np
import mindspore as ms
from mindspore import nn, Tensor

__all__ = ["NO_DECAY_SUFFIXES", "get_param_groups", "create_optimizer"]

NO_DECAY_SUFFIXES = ("bias", "gamma", "beta")


def _is_no_decay(name):
    return name.rsplit(".", 1)[-1] in NO_DECAY_SUFFIXES


def _trainable(net_or_params):
    if isinstance(net_or_params, nn.Cell):
        return list(net_or_params.trainable_params())
    params = list(net_or_params)
    return [p for p in params if getattr(p, "requires_grad", True)]


def get_param_groups(net):
    """Split trainable parameters into ``[{'params': decay}, {'params': no_decay, 'weight_decay': 0.0}]``.

    The decay group carries no ``weight_decay`` key, so it inherits the optimizer's default.
    Empty groups are left out. ``net`` is a Cell or an iterable of Parameters.
    """
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
    """``nn.Momentum`` over :func:`get_param_groups` (zoo: momentum 0.9, wd 1e-4, Nesterov off).

    ``learning_rate``: a per-step array (as from ``src.lr_generator.get_lr``; indexed by the global
    step), a Tensor, or a float. ``net_or_params``: a Cell, an iterable of Parameters, or a list of
    group dicts (used as given). ``loss_scale`` must equal the fixed loss scale of the train step so
    gradients are unscaled inside the optimizer (1.0 with a dynamic loss-scale cell).
    """
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
