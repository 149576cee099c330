"""The compiled training step (network + loss + optimizer + loss scaling), mixed precision and weight EMA.

Loss scaling as the zoo: a fixed scale (1024) divided out by ``nn.Momentum(loss_scale=...)`` with no overflow check
(``FixedLossScaleManager(drop_overflow_update=False)``); ``is_dynamic_loss_scale=1``: init 2^16, factor 2, window
2000, overflowing steps skipped. ``amp_level`` auto: O2 on Ascend/GPU (the zoo), O0 on CPU (float16 is slower there).
"""
import numpy as np

import mindspore as ms
from mindspore import nn, ops
from mindspore.common import dtype as mstype


def apply_amp(net, amp_level):
    """Casts ``net`` for ``amp_level`` (O2: float16 with BatchNorm in float32; O3: all float16)."""
    return net if amp_level == "O0" else ms.amp.auto_mixed_precision(net, amp_level)


def _unscale(scale, grad):
    return grad / ops.cast(scale, grad.dtype)


def _all_finite(grad):
    return ops.all(ops.isfinite(grad))


class DynamicLossScaleStep(nn.Cell):
    """Dynamic loss scaling on every device: MindSpore 2.10's ``TrainOneStepWithLossScaleCell`` needs GPU/Ascend
    overflow kernels; this checks the rank-averaged, unscaled gradients with ``isfinite`` (the same decision on
    every rank) and applies the zoo's ``DynamicLossScaleManager`` rule (scale not below 1)."""

    def __init__(self, net_with_loss, optimizer, init_scale=65536.0, scale_factor=2.0, scale_window=2000):
        super().__init__(auto_prefix=False)
        self.network = net_with_loss
        self.optimizer = optimizer
        self.weights = optimizer.parameters
        self.grad = ops.GradOperation(get_by_list=True, sens_param=True)
        self.scale_sense = ms.Parameter(ms.Tensor(float(init_scale), mstype.float32), name="scale_sense",
                                        requires_grad=False)
        self.good_steps = ms.Parameter(ms.Tensor(0, mstype.int32), name="loss_scale_good_steps",
                                       requires_grad=False)
        self.scale_factor = float(scale_factor)
        self.scale_window = int(scale_window)
        self.hyper_map = ops.HyperMap()
        self.reducer = None
        if ms.get_auto_parallel_context("parallel_mode") in ("data_parallel", "hybrid_parallel"):
            self.reducer = nn.DistributedGradReducer(self.weights, ms.get_auto_parallel_context("gradients_mean"),
                                                     ms.get_auto_parallel_context("device_num"))

    def construct(self, images, labels):
        loss = self.network(images, labels)
        scale = self.scale_sense
        sens = ops.ones_like(loss) * ops.cast(scale, loss.dtype)
        grads = self.grad(self.network, self.weights)(images, labels, sens)
        if self.reducer is not None:
            grads = self.reducer(grads)
        grads = self.hyper_map(ops.partial(_unscale, scale), grads)
        finite = ops.stack(self.hyper_map(_all_finite, grads)).all()
        overflow = ops.logical_not(finite)
        good = ops.select(finite, self.good_steps + 1, ops.zeros_like(self.good_steps))
        grow = ops.logical_and(finite, good >= self.scale_window)
        new_scale = ops.select(overflow, ops.maximum(scale / self.scale_factor, ops.ones_like(scale)),
                               ops.select(grow, scale * self.scale_factor, scale))
        ops.assign(self.good_steps, ops.select(grow, ops.zeros_like(good), good))
        ops.assign(self.scale_sense, new_scale)
        if finite:
            loss = ops.depend(loss, self.optimizer(grads))
        return loss, overflow, new_scale


class TrainStep(nn.Cell):
    """One optimisation step -> ``(loss, overflow, loss_scale)``; ``overflow`` is False with a fixed scale."""

    def __init__(self, network, loss_fn, optimizer, loss_scale=1024.0, dynamic=False):
        super().__init__(auto_prefix=False)
        net_with_loss = nn.WithLossCell(network, loss_fn)
        self.dynamic = dynamic
        if dynamic:
            self.step = DynamicLossScaleStep(net_with_loss, optimizer, init_scale=loss_scale)
        else:
            self.step = nn.TrainOneStepCell(net_with_loss, optimizer, sens=float(loss_scale))
            self.fixed_scale = ms.Tensor(float(loss_scale), mstype.float32)
            self.no_overflow = ms.Tensor(False, mstype.bool_)
        self.step.set_train()

    def construct(self, images, labels):
        if self.dynamic:
            return self.step(images, labels)
        return self.step(images, labels), self.no_overflow, self.fixed_scale


class WeightEMA(nn.Cell):
    """Float32 moving average of every parameter (BN statistics too) with ``decay_t = min(decay, (1 + t) / (10 + t))``
    (timm's/TF's warm-up); saved as ``ema.<name>`` in checkpoints, used by ``use_ema`` in eval/export/predict."""

    def __init__(self, network, decay=0.9999):
        super().__init__(auto_prefix=False)
        params = list(network.get_parameters())
        self.params = ms.ParameterTuple(params)
        self.shadow = ms.ParameterTuple([
            ms.Parameter(ms.Tensor(p.asnumpy(), mstype.float32), name="ema." + p.name, requires_grad=False)
            for p in params])
        self.decay = float(decay)
        self.updates = ms.Parameter(ms.Tensor(0.0, mstype.float32), name="ema_updates", requires_grad=False)
        self.hyper_map = ops.HyperMap()

    def _update(self, decay, shadow, param):
        return ops.assign(shadow, shadow * decay + ops.cast(param, mstype.float32) * (1.0 - decay))

    def construct(self):
        t = self.updates + 1.0
        ops.assign(self.updates, t)
        decay = ops.minimum(ms.Tensor(self.decay, mstype.float32), t / (t + 9.0))
        return self.hyper_map(ops.partial(self._update, decay), self.shadow, self.params)

    def checkpoint_entries(self):
        return [{"name": p.name, "data": p} for p in self.shadow] + [{"name": "ema_updates", "data": self.updates}]

    def reset_from_network(self):
        """Restarts the average from the network's current values."""
        for shadow, param in zip(self.shadow, self.params):
            shadow.set_data(ms.Tensor(param.asnumpy().astype("float32"), mstype.float32))
        self.updates.set_data(ms.Tensor(0.0, mstype.float32))

    def swap(self):
        """Exchanges network and EMA values (in place); call twice to undo. Used to validate EMA weights."""
        for shadow, param in zip(self.shadow, self.params):
            live = param.asnumpy().copy()
            param.set_data(ms.Tensor(shadow.asnumpy().astype(live.dtype), param.dtype))
            shadow.set_data(ms.Tensor(live.astype("float32"), mstype.float32))


class SinkStep(nn.Cell):
    """One ``TrainStep`` + the EMA update (after the optimizer's: side effects keep program order) + the step's
    loss, overflow and scale written to slot ``index`` of ``sink_size``-long buffers, which the host reads once
    per sink (``read_records``). The buffers are in no checkpoint; wrapped cells keep their parameter names."""

    def __init__(self, step, ema, sink_size):
        super().__init__(auto_prefix=False)
        self.step = step
        self.ema = ema
        self.use_ema = ema is not None
        self.sink_size = int(sink_size)
        zeros = ms.Tensor(np.zeros(self.sink_size, np.float32))
        self.loss_record = ms.Parameter(zeros.copy(), name="sink_loss_record", requires_grad=False)
        self.overflow_record = ms.Parameter(zeros.copy(), name="sink_overflow_record", requires_grad=False)
        self.scale_record = ms.Parameter(zeros.copy(), name="sink_scale_record", requires_grad=False)
        self.index = ms.Parameter(ms.Tensor(0, mstype.int32), name="sink_index", requires_grad=False)
        self.slots = ms.Tensor(np.arange(self.sink_size, dtype=np.int32))

    def _record(self, buffer, mask, value):
        return ops.assign(buffer, buffer * (1.0 - mask) + mask * ops.cast(value, mstype.float32))

    def construct(self, images, labels):
        loss, overflow, scale = self.step(images, labels)
        if self.use_ema:
            loss = ops.depend(loss, self.ema())
        index = self.index
        mask = ops.cast(ops.equal(self.slots, index), mstype.float32)
        loss = ops.depend(loss, self._record(self.loss_record, mask, loss))
        loss = ops.depend(loss, self._record(self.overflow_record, mask, overflow))
        loss = ops.depend(loss, self._record(self.scale_record, mask, scale))
        loss = ops.depend(loss, ops.assign(self.index, index + 1))
        return loss, overflow, scale

    def reset_records(self):
        """Starts a new sink: the next step writes slot 0."""
        self.index.set_data(ms.Tensor(0, mstype.int32))

    def read_records(self, count):
        """``(losses, overflows, scales)`` of the first ``count`` steps of the sink (NumPy: one synchronisation)."""
        return (self.loss_record.asnumpy()[:count].astype(np.float64),
                self.overflow_record.asnumpy()[:count] > 0.5, self.scale_record.asnumpy()[:count])
