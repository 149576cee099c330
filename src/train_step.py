"""The compiled training step: network + loss + optimizer + loss scaling, mixed precision, and weight EMA.

Loss scaling follows the zoo by default: a fixed scale (1024) multiplies the loss's sensitivity
and ``nn.Momentum(loss_scale=...)`` divides it out again, with no overflow check (the zoo's
``FixedLossScaleManager(drop_overflow_update=False)``). ``is_dynamic_loss_scale=1`` uses
``DynamicLossScaleUpdateCell`` (init 2^16, factor 2, window 2000, as the zoo) which skips the
update of any step whose gradients overflow and halves the scale; the step reports it.

Mixed precision (``amp_level``): ``auto`` is O2 on Ascend and GPU (the zoo's setting) and O0 on
CPU, where float16 kernels measured about 2x slower with about 3x the memory. The loss always
runs in float32 (``CrossEntropySmooth`` casts its inputs).
"""
import numpy as np

import mindspore as ms
from mindspore import nn, ops
from mindspore.common import dtype as mstype



def apply_amp(net, amp_level):
    """Casts ``net`` for ``amp_level`` (O2: float16 with BatchNorm in float32; O3: all float16)."""
    if amp_level == "O0":
        return net
    return ms.amp.auto_mixed_precision(net, amp_level)


def _unscale(scale, grad):
    return grad / ops.cast(scale, grad.dtype)


def _all_finite(grad):
    return ops.all(ops.isfinite(grad))


class DynamicLossScaleStep(nn.Cell):
    """A train step with dynamic loss scaling that works on every device.

    MindSpore 2.10's ``TrainOneStepWithLossScaleCell`` checks overflow with GPU (``FloatStatus``) or
    Ascend (``NPUGetFloatStatusV2``) kernels, neither of which exists on CPU; this step checks the
    averaged, unscaled gradients with ``isfinite`` instead. On overflow the update is skipped and the
    scale divided by ``scale_factor`` (not below 1); after ``scale_window`` good steps it is multiplied
    by it (the zoo's ``DynamicLossScaleManager(2**16, 2, 2000)`` rule). Gradients are averaged across
    ranks before the check, so every rank takes the same decision.
    """

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
    """One optimisation step; returns ``(loss, overflow, loss_scale)`` whatever the scaling mode.

    ``overflow`` is always False with a fixed scale (no check, as the zoo).
    """

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
            loss, overflow, scale = self.step(images, labels)
            return loss, overflow, scale
        loss = self.step(images, labels)
        return loss, self.no_overflow, self.fixed_scale


class WeightEMA(nn.Cell):
    """Exponential moving average of every network parameter (weights and BN statistics), in float32.

    ``decay_t = min(decay, (1 + t) / (10 + t))`` for update ``t`` (timm's and TF's warm-up of the
    decay), so that short runs still get a useful average. The EMA copies are saved in checkpoints
    as ``ema.<parameter name>`` and picked by ``use_ema`` in eval/export/predict.
    """

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
        new = shadow * decay + ops.cast(param, mstype.float32) * (1.0 - decay)
        return ops.assign(shadow, new)

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
    """The train step as sink mode runs it: optimisation step, EMA update and a record of every step.

    One call is one step, as ``TrainStep``; around it, inside the same compiled graph:

    * the EMA update (``WeightEMA``), after the optimizer's update of the same parameters (MindSpore
      orders the parameter reads after the writes: side effects keep program order);
    * the step's loss, overflow flag and loss scale written to slot ``index`` of ``sink_size``-long
      buffers, and ``index`` advanced; the host reads the buffers once per sink (``read_records``)
      instead of synchronising on the loss every step.

    Parameters of the buffers are not part of any checkpoint (``training_state_entries`` saves the
    ``TrainStep``'s and the EMA's); the wrapped cells keep their parameter names (no prefix).
    """

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
        """``(losses, overflows, scales)`` of the first ``count`` steps since :meth:`reset_records` (NumPy);
        this is the host's one synchronisation per sink."""
        return (self.loss_record.asnumpy()[:count].astype(np.float64),
                self.overflow_record.asnumpy()[:count] > 0.5, self.scale_record.asnumpy()[:count])
