"""Sink-mode training (``dataset_sink_mode``): one compiled ``src.train_step.SinkStep`` runs step + EMA + a record
of each step's loss/overflow/scale; the host runs ``sink_size`` steps (a divisor of the epoch), then reads the
records once and books them as the loop does. Validation, checkpoints and resume happen between epochs, unchanged.

``HostFeeder`` (any device; CPU): a fresh iterator per epoch as the loop, so the numerics equal the loop's.
``DeviceFeeder`` (Ascend/GPU, ``mindspore.data_sink``; MindSpore refuses it on CPU, so CPU tests do not run it):
the pipeline is launched once and runs on through the epochs; each epoch's ORDER is the sampler's, but later
epochs' augmentation draws continue one stream, so a resumed device-sink run differs in augmentation only.
"""
from src.errors import ConfigError
from src.utils import signals
from src.utils.seeding import set_augmentation_seed


def sink_chunk_size(steps_per_epoch, requested=0):
    """``requested`` (0: a whole epoch) rounded down to a divisor of ``steps_per_epoch`` (epochs end on a sink)."""
    steps, requested = int(steps_per_epoch), int(requested or 0)
    if requested <= 0 or requested >= steps:
        return steps
    return max(d for d in range(1, requested + 1) if steps % d == 0)


class _Feeder:
    """The sink step and what feeds it (``kind``: host or device)."""

    def __init__(self, step, data, sink_size):
        self.step, self.data, self.sink_size = step, data, int(sink_size)

    def check_resume_step(self, step):
        """A device sink resumes only at the end of a sink (``ConfigError``); the host feed and the loop anywhere."""
        if self.kind == "device" and step % self.sink_size:
            raise ConfigError(f"the checkpoint stopped after step {step} of its epoch, which does not end a sink of "
                              f"{self.sink_size} steps; resume with dataset_sink_mode=0, or a sink_size that divides "
                              f"{step}")


class HostFeeder(_Feeder):
    """Feeds the sink step from a host iterator (a fresh one per epoch, as the loop path)."""

    kind, iterator = "host", None

    def begin_epoch(self, epoch, seed, rank, group_size, done=0):
        """A fresh iterator for ``epoch``; the ``done`` steps of a resumed epoch are drawn and dropped, as the loop."""
        set_augmentation_seed(seed, rank, epoch, group_size)
        self.data.set_epoch(epoch)
        self.iterator = signals.guarded(self.data.dataset.create_tuple_iterator(num_epochs=1))
        self.samples = 0
        for _ in range(done):
            batch = next(self.iterator, None)
            if batch is None or signals.requested():
                return
            self.samples += batch[0].shape[0]

    def run(self, count):
        """Runs up to ``count`` steps; returns how many ran (fewer when the epoch's data ends early)."""
        for n in range(count):
            batch = next(self.iterator, None)
            if batch is None:
                return n
            self.samples += batch[0].shape[0]
            self.step(*batch)
        return count

    def end_epoch(self, drain=True):
        """The epoch's sample count (``drain``: read the iterator to its end first; not when the run stops)."""
        for batch in (self.iterator or ()) if drain else ():
            self.samples += batch[0].shape[0]
        self.iterator = None
        return self.samples


class DeviceFeeder(_Feeder):
    """Feeds the sink step from the device queue with ``mindspore.data_sink`` (Ascend/GPU only)."""

    kind, run_fn = "device", None

    def begin_epoch(self, epoch, seed, rank, group_size, done=0):
        if self.run_fn is None:  # the pipeline starts here and runs on through the epochs (module docstring)
            import mindspore as ms

            set_augmentation_seed(seed, rank, epoch, group_size)
            self.data.set_epoch(epoch)
            if done:  # a resumed epoch: the engine replays the first `done` batches (fast recovery off)
                ms.dataset.config.set_fast_recovery(False)
                self.data.dataset.set_init_step(done)
            self.run_fn = ms.data_sink(self.step, self.data.dataset, sink_size=self.sink_size,
                                       jit_config=ms.JitConfig())

    def run(self, count):  # count == sink_size: it divides the epoch, and check_resume_step the resume position
        self.run_fn()
        return count

    def end_epoch(self, drain=True):
        return None  # the device queue runs on through the epochs: no per-epoch count on the host


def build_sink(setup_step, ema, data, device_target, sink_size=0):
    """The sink feeder of a run: from the device queue on Ascend/GPU, from a host iterator elsewhere."""
    from src.train_step import SinkStep

    size = sink_chunk_size(data.steps_per_epoch, sink_size)
    sink_step = SinkStep(setup_step, ema, size)
    sink_step.set_train(True)
    return (DeviceFeeder if device_target in ("Ascend", "GPU") else HostFeeder)(sink_step, data, size)


def train_one_epoch_sink(setup, book, seed, ctx):
    """Sink-mode twin of ``src.trainer.train_one_epoch``; a stop signal is honoured at the next sink boundary."""
    runner, steps = setup.sink, setup.steps_per_epoch
    if book.step >= steps:
        return
    runner.begin_epoch(book.epoch, seed, ctx.rank, ctx.group_size, done=book.step)
    try:
        while book.step < steps and not signals.requested():
            first, count = book.step, min(runner.sink_size, steps - book.step)
            runner.step.reset_records()
            ran = runner.run(count)
            values, overflows, scales = runner.step.read_records(ran)
            for j in range(ran):
                book.record(float(values[j]), bool(overflows[j]), float(scales[j]),
                            where=f"; sink mode: the sink of steps {first + 1}-{first + count} ran to its end")
            if ran < count:
                break
    finally:
        samples = runner.end_epoch(drain=not signals.requested())
    if samples is not None and not signals.requested():
        setup.data.account(samples, f"epoch {book.epoch + 1}")
