"""The compiled train step's weight EMA and loss scaling (src/train_step.py), in GRAPH mode as in training.

* ``WeightEMA``: the update rule against a NumPy reference (weights and BatchNorm statistics, float32),
  ``swap`` twice is the identity (bit for bit), the EMA state survives a training checkpoint round trip.
* ``DynamicLossScaleStep``: a non-finite gradient (injected into one parameter's gradient by a custom
  bprop, the forward pass staying finite; or a non-finite input) skips the step -- trainable weights,
  optimizer moments and global step unchanged bit for bit -- halves the scale (never below 1) and resets
  the good-step count; the next good step updates and counts; the scale grows after ``scale_window``
  good steps; the loss scale is divided out again (the update equals an unscaled step).
* ``TrainStep`` with a fixed scale: ``sens`` and ``nn.Momentum(loss_scale)`` cancel.

A four-parameter-group toy network (conv, BN, dense) instead of cspdarknet_tiny: the step and the EMA
are network-agnostic, and its graphs compile in about a second.
"""
import logging

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn, ops

from src.checkpoint import restore_training_state, save_checkpoint_atomic, training_state_entries
from src.loss import create_loss
from src.train_step import DynamicLossScaleStep, TrainStep, WeightEMA
from src.utils.optimizers_init import create_optimizer

NUM_CLASSES = 3
LR = 0.1


pytestmark = pytest.mark.usefixtures("graph_mode")  # GRAPH mode as in training (tests/conftest.py)


class GradPoison(nn.Cell):
    """Identity forward; backward adds ``poison`` (0 or inf) to the gradient of what passes through."""

    def construct(self, x, poison):
        return x

    def bprop(self, x, poison, out, dout):
        return dout + poison, ops.zeros_like(poison)


class ToyNet(nn.Cell):
    """conv -> BN -> ReLU -> global mean -> dense; ``poison`` reaches only the dense weight's gradient."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, has_bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Dense(4, NUM_CLASSES)
        self.hook = GradPoison()
        self.poison = ms.Parameter(ms.Tensor(0.0, ms.float32), name="poison", requires_grad=False)

    def construct(self, x):
        h = ops.relu(self.bn(self.conv(x))).mean(axis=(2, 3))
        w = self.hook(self.fc.weight, self.poison)
        return ops.matmul(h, w.T) + self.fc.bias


def _net(seed=0):
    ms.set_seed(seed)
    return ToyNet()


def _batch(seed=0, n=4):
    rng = np.random.RandomState(seed)
    return rng.randn(n, 3, 8, 8).astype(np.float32), (np.arange(n) % NUM_CLASSES).astype(np.int32)


def _optimizer(net, loss_scale=1.0):
    return create_optimizer(net, np.full(64, LR, np.float32), momentum=0.9, weight_decay=1e-4,
                            loss_scale=loss_scale)


def _dynamic_step(net, init_scale=2.0 ** 16, scale_window=2000):
    net_with_loss = nn.WithLossCell(net, create_loss(False, 0.1, NUM_CLASSES))
    step = DynamicLossScaleStep(net_with_loss, _optimizer(net), init_scale=init_scale, scale_window=scale_window)
    step.set_train()
    return step


def _state(cell):
    return {p.name: p.asnumpy().copy() for p in cell.get_parameters()}


def _run(step, seed=0, inf_input=False):
    x, y = _batch(seed)
    if inf_input:
        x[0, 0, 0, 0] = np.inf
    loss, overflow, scale = step(ms.Tensor(x), ms.Tensor(y))
    return float(loss.asnumpy()), bool(overflow.asnumpy()), float(scale.asnumpy())


def _skipped_names(state):
    """What a skipped step must leave untouched: trainable weights, optimizer moments, global step."""
    return sorted(n for n in state if n.startswith("moments.") or n == "global_step" or
                  n in {"conv.weight", "bn.gamma", "bn.beta", "fc.weight", "fc.bias"})


# ---------------------------------------------------------------------------------------------- EMA

def _np_ema_decay(t, decay):
    """decay_t for 0-based update t: min(decay, (1 + t) / (10 + t))."""
    return min(decay, (1.0 + t) / (10.0 + t))


def test_ema_update_matches_numpy_reference_for_weights_and_bn_statistics():
    decay = 0.4  # reached at t = 5: both the warm-up and the constant regime are covered
    net = _net()
    step = TrainStep(net, create_loss(False, 0.1, NUM_CLASSES), _optimizer(net, 1024.0), loss_scale=1024.0)
    ema = WeightEMA(net, decay)
    names = [p.name for p in net.get_parameters()]
    assert {"bn.moving_mean", "bn.moving_variance", "conv.weight", "fc.weight"} <= set(names)
    shadow = {p.name: p.asnumpy().astype(np.float32) for p in net.get_parameters()}
    for t in range(8):
        step(*(ms.Tensor(a) for a in _batch(t)))  # moves the weights and (forward) the BN statistics
        ema()
        d = np.float32(_np_ema_decay(t, decay))
        for p in net.get_parameters():
            shadow[p.name] = shadow[p.name] * d + p.asnumpy().astype(np.float32) * (np.float32(1) - d)
    assert float(ema.updates.asnumpy()) == 8.0
    got = {p.name[len("ema."):]: p for p in ema.shadow}
    assert sorted(got) == sorted(names)
    for name in names:
        assert got[name].dtype == ms.float32, name
        np.testing.assert_allclose(got[name].asnumpy(), shadow[name], rtol=1e-6, atol=1e-7, err_msg=name)
    # the average lags the weights: it is not a copy of them
    assert not np.allclose(got["fc.weight"].asnumpy(), net.fc.weight.asnumpy(), rtol=1e-3, atol=1e-5)
    assert not np.allclose(got["bn.moving_mean"].asnumpy(), net.bn.moving_mean.asnumpy(), rtol=1e-3, atol=1e-6)


def test_ema_swap_exchanges_and_twice_restores_exactly():
    net = _net()
    step = TrainStep(net, create_loss(False, 0.1, NUM_CLASSES), _optimizer(net, 1024.0), loss_scale=1024.0)
    ema = WeightEMA(net, 0.9)
    for t in range(3):
        step(*(ms.Tensor(a) for a in _batch(t)))
        ema()
    live = {p.name: p.asnumpy().copy() for p in net.get_parameters()}
    avg = {p.name[len("ema."):]: p.asnumpy().copy() for p in ema.shadow}
    assert any(not np.array_equal(live[n], avg[n]) for n in live)
    ema.swap()
    for p in net.get_parameters():
        np.testing.assert_array_equal(p.asnumpy(), avg[p.name], err_msg=p.name)
    for p in ema.shadow:
        np.testing.assert_array_equal(p.asnumpy(), live[p.name[len("ema."):]], err_msg=p.name)
    ema.swap()
    for p in net.get_parameters():
        np.testing.assert_array_equal(p.asnumpy(), live[p.name], err_msg=p.name)
        assert p.dtype == ms.float32
    for p in ema.shadow:
        np.testing.assert_array_equal(p.asnumpy(), avg[p.name[len("ema."):]], err_msg=p.name)


def test_ema_state_survives_a_training_checkpoint_round_trip(tmp_path):
    net = _net(0)
    step = TrainStep(net, create_loss(False, 0.1, NUM_CLASSES), _optimizer(net, 1024.0), loss_scale=1024.0)
    ema = WeightEMA(net, 0.9)
    for t in range(3):
        step(*(ms.Tensor(a) for a in _batch(t)))
        ema()
    path = save_checkpoint_atomic(training_state_entries(step, ema, epoch=1, best_top1=42.0), tmp_path / "t.ckpt")

    net2 = _net(1)  # other initial weights: everything must come from the file
    step2 = TrainStep(net2, create_loss(False, 0.1, NUM_CLASSES), _optimizer(net2, 1024.0), loss_scale=1024.0)
    ema2 = WeightEMA(net2, 0.9)
    meta = restore_training_state(str(path), step2, ema2, "toy", logging.getLogger("train_step_guard_test"))
    assert meta["epoch"] == 1 and meta["best_top1"] == 42.0
    assert float(ema2.updates.asnumpy()) == 3.0
    for a, b in zip(ema.checkpoint_entries(), ema2.checkpoint_entries()):
        assert a["name"] == b["name"]
        np.testing.assert_array_equal(a["data"].asnumpy(), b["data"].asnumpy(), err_msg=a["name"])
    # the next update of both uses the same decay (restored update count) and gives the same average
    ema()
    ema2()
    for a, b in zip(ema.shadow, ema2.shadow):
        np.testing.assert_array_equal(a.asnumpy(), b.asnumpy(), err_msg=a.name)


def test_checkpoint_without_ema_restarts_the_average_from_the_restored_weights(tmp_path, caplog):
    net = _net(0)
    step = TrainStep(net, create_loss(False, 0.1, NUM_CLASSES), _optimizer(net, 1024.0), loss_scale=1024.0)
    step(*(ms.Tensor(a) for a in _batch(0)))
    path = save_checkpoint_atomic(training_state_entries(step, None, epoch=1, best_top1=-1.0), tmp_path / "t.ckpt")
    net2 = _net(1)
    step2 = TrainStep(net2, create_loss(False, 0.1, NUM_CLASSES), _optimizer(net2, 1024.0), loss_scale=1024.0)
    ema2 = WeightEMA(net2, 0.9)
    with caplog.at_level(logging.WARNING, logger="train_step_guard_test"):
        restore_training_state(str(path), step2, ema2, "toy", logging.getLogger("train_step_guard_test"))
    assert "has no EMA weights" in caplog.text
    assert float(ema2.updates.asnumpy()) == 0.0
    for p in ema2.shadow:
        np.testing.assert_array_equal(p.asnumpy(), net.parameters_dict()[p.name[len("ema."):]].asnumpy(),
                                      err_msg=p.name)


# ------------------------------------------------------------------------------- dynamic loss scale

@pytest.mark.parametrize("how", ["poisoned_gradient", "inf_input"])
def test_overflow_skips_the_update_halves_the_scale_and_resets_good_steps(how):
    net = _net()
    step = _dynamic_step(net, init_scale=2.0 ** 16)
    assert _run(step, 0)[1:] == (False, 2.0 ** 16)  # a good step first: good_steps = 1
    assert int(step.good_steps.asnumpy()) == 1
    before = _state(step)
    if how == "poisoned_gradient":
        net.poison.set_data(ms.Tensor(np.inf, ms.float32))  # only fc.weight's gradient becomes inf
    _, overflow, scale = _run(step, 1, inf_input=how == "inf_input")
    after = _state(step)
    assert overflow is True
    assert scale == 2.0 ** 15 and float(step.scale_sense.asnumpy()) == 2.0 ** 15
    assert int(step.good_steps.asnumpy()) == 0
    for name in _skipped_names(before):
        np.testing.assert_array_equal(after[name], before[name], err_msg=f"{name} changed on a skipped step")
    # then a normal step updates everything and counts
    net.poison.set_data(ms.Tensor(0.0, ms.float32))
    _, overflow, scale = _run(step, 2)
    final = _state(step)
    assert overflow is False and scale == 2.0 ** 15
    assert int(step.good_steps.asnumpy()) == 1
    assert int(final["global_step"].reshape(-1)[0]) == int(before["global_step"].reshape(-1)[0]) + 1
    for name in _skipped_names(before):
        if name != "global_step":
            assert not np.array_equal(final[name], after[name]), f"{name} not updated by a good step"
        assert np.isfinite(final[name]).all(), name


def test_scale_never_drops_below_one():
    net = _net()
    step = _dynamic_step(net, init_scale=1.5)
    net.poison.set_data(ms.Tensor(np.inf, ms.float32))
    assert _run(step, 0)[1:] == (True, 1.0)
    assert _run(step, 1)[1:] == (True, 1.0)
    assert float(step.scale_sense.asnumpy()) == 1.0


def test_scale_grows_after_scale_window_good_steps():
    net = _net()
    step = _dynamic_step(net, init_scale=8.0, scale_window=3)
    got = [_run(step, i)[1:] + (int(step.good_steps.asnumpy()),) for i in range(7)]
    # (overflow, scale, good_steps): doubled on the 3rd good step, the count restarting
    assert got == [(False, 8.0, 1), (False, 8.0, 2), (False, 16.0, 0), (False, 16.0, 1), (False, 16.0, 2),
                   (False, 32.0, 0), (False, 32.0, 1)], got
    net.poison.set_data(ms.Tensor(np.inf, ms.float32))
    assert _run(step, 7)[1:] == (True, 16.0) and int(step.good_steps.asnumpy()) == 0


def _one_step_weights(make_step):
    net = _net()
    step = make_step(net)
    step(*(ms.Tensor(a) for a in _batch(0)))
    step(*(ms.Tensor(a) for a in _batch(1)))
    return {p.name: p.asnumpy() for p in net.trainable_params()}


def test_loss_scales_are_divided_out_again():
    """Two steps with a fixed scale 1024 (sens + Momentum(loss_scale)) and with a dynamic scale 2^16 (the
    gradients unscaled before the update) move the weights as an unscaled step does."""
    loss = create_loss(False, 0.1, NUM_CLASSES)
    reference = _one_step_weights(lambda net: TrainStep(net, loss, _optimizer(net, 1.0), loss_scale=1.0))
    fixed = _one_step_weights(lambda net: TrainStep(net, loss, _optimizer(net, 1024.0), loss_scale=1024.0))
    dynamic = _one_step_weights(lambda net: TrainStep(net, loss, _optimizer(net, 1.0), loss_scale=2.0 ** 16,
                                                      dynamic=True))
    start = {p.name: p.asnumpy() for p in _net().trainable_params()}
    for name, value in reference.items():
        assert not np.allclose(value, start[name]), name
        np.testing.assert_allclose(fixed[name], value, rtol=1e-5, atol=1e-7, err_msg=f"fixed {name}")
        np.testing.assert_allclose(dynamic[name], value, rtol=1e-5, atol=1e-7, err_msg=f"dynamic {name}")


def test_fixed_scale_step_reports_no_overflow_and_its_scale():
    net = _net()
    step = TrainStep(net, create_loss(False, 0.1, NUM_CLASSES), _optimizer(net, 1024.0), loss_scale=1024.0)
    loss, overflow, scale = step(*(ms.Tensor(a) for a in _batch(0)))
    assert np.isfinite(float(loss.asnumpy())) and not bool(overflow.asnumpy()) and float(scale.asnumpy()) == 1024.0
