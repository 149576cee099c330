import numpy as np
import pytest
from mindspore import nn, Tensor

from src.utils.optimizers_init import create_optimizer, get_param_groups


class Small(nn.Cell):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, has_bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.flatten = nn.Flatten()
        self.fc = nn.Dense(4 * 8 * 8, 5, has_bias=True)

    def construct(self, x):
        return self.fc(self.flatten(self.bn(self.conv(x))))


pytestmark = pytest.mark.usefixtures("graph_mode")  # GRAPH mode as in training (tests/conftest.py)


def _names(group):
    return sorted(p.name for p in group["params"])


def test_decay_groups_conv_dense_weights_only():
    net = Small()
    groups = get_param_groups(net)
    assert len(groups) == 2
    decay, no_decay = groups
    assert "weight_decay" not in decay          # inherits the optimizer default
    assert no_decay["weight_decay"] == 0.0
    assert _names(decay) == ["conv.weight", "fc.weight"]
    assert _names(no_decay) == ["bn.beta", "bn.gamma", "fc.bias"]
    everything = {p.name for p in net.get_parameters()}
    # BN moving statistics are not trainable and belong to no group
    assert {"bn.moving_mean", "bn.moving_variance"} <= everything
    assert not {"bn.moving_mean", "bn.moving_variance"} & set(_names(decay) + _names(no_decay))


def test_create_optimizer_momentum_with_lr_array():
    net = Small()
    lr = np.linspace(0.1, 0.01, 7).astype(np.float32)
    opt = create_optimizer(net, lr, momentum=0.9, weight_decay=1e-4, loss_scale=1024)
    assert isinstance(opt, nn.Momentum)
    assert opt.loss_scale == 1024
    np.testing.assert_allclose(opt.learning_rate.learning_rate.asnumpy(), lr)
    wd = {p.name: w for p, w in zip(opt.parameters, opt.decay_flags)}
    assert wd == {"conv.weight": True, "fc.weight": True, "bn.gamma": False, "bn.beta": False, "fc.bias": False}


def test_weight_decay_is_coupled_l2_on_decay_group_only():
    # with zero gradients, one step of w -= lr * (0 + wd * w) shows which parameters decay
    net = Small()
    for p in net.trainable_params():
        p.set_data(Tensor(np.ones(p.shape, np.float32)))
    opt = create_optimizer(net, 0.5, momentum=0.0, weight_decay=0.1)
    grads = tuple(Tensor(np.zeros(p.shape, np.float32)) for p in opt.parameters)

    class Step(nn.Cell):
        def __init__(self, o):
            super().__init__()
            self.o = o

        def construct(self, g):
            return self.o(g)

    Step(opt)(grads)   # (wrapping prefixes parameter names with "o.")
    after = {p.name.split(".", 1)[1]: float(p.asnumpy().ravel()[0]) for p in net.trainable_params()}
    assert after["conv.weight"] == pytest.approx(1 - 0.5 * 0.1)
    assert after["fc.weight"] == pytest.approx(1 - 0.5 * 0.1)
    assert after["bn.gamma"] == after["bn.beta"] == after["fc.bias"] == 1.0


def test_params_list_and_empty_net():
    net = Small()
    groups = get_param_groups(net.trainable_params())
    assert _names(groups[0]) == ["conv.weight", "fc.weight"]
    with pytest.raises(ValueError):
        create_optimizer([], 0.1)
