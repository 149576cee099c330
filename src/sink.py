"""Sink-mode training: many steps per host call, one host synchronisation per sink.

The Python loop of ``src.trainer.train_one_epoch`` synchronises on the loss after every step (and runs
the EMA update as a second graph call). In sink mode (``dataset_sink_mode``; ``auto``: on for Ascend and
GPU, off on CPU) one compiled ``src.train_step.SinkStep`` runs step + EMA update + a record of the
step's loss, overflow flag and loss scale; the host runs ``sink_size`` steps, then reads the records once
and does what the loop does per step (non-finite check, overflow warnings, progress lines: per sink,
with every step's loss), so validation, checkpoints, ``metrics.csv`` and resume are unchanged (they happen
between epochs, and an epoch is a whole number of sinks: ``sink_size`` is rounded down to a divisor of the
steps per epoch).

Who feeds the steps:

* ``DeviceFeeder`` (Ascend, GPU): ``mindspore.data_sink`` -- the dataset goes to the device queue and
  one host call runs ``sink_size`` steps on the device. MindSpore 2.10 refuses ``data_sink`` on CPU
  ("Data sinking supports ascend or gpu device target") and ``Model.train(dataset_sink_mode=True)``
  silently falls back to the host loop there, so this path is not exercised by the CPU tests.
  The data pipeline is launched once for the run (at the first epoch of this process, with that
  epoch's sampler position and augmentation seed) and runs on through the epochs: every epoch's image
  ORDER is the one of ``src.data.sampler`` for that epoch, as in the loop, but the random augmentation
  draws of epochs after the first continue one stream: a resumed sink run restarts that stream at its
  resume epoch, so its augmentations (not its data order, weights or schedule) differ from the
  uninterrupted run's.
* ``HostFeeder`` (any device; what ``dataset_sink_mode=1`` uses on CPU): a fresh iterator per epoch
  exactly as the loop (same order, same augmentation seed per epoch), ``sink_size`` calls of the
  compiled ``SinkStep`` without reading anything back in between. Same numerics as the loop path
  (tests/e2e/test_train_resume.py), one synchronisation per sink.
"""
from src.config import resolve_sink_mode  # noqa: F401  (re-exported: the one resolver of the "auto" sink mode)
from src.errors import ConfigError
from src.utils import signals
from src.utils.seeding import set_augmentation_seed

__all__ = ["resolve_sink_mode", "sink_chunk_size", "SinkRunner", "build_sink", "train_one_epoch_sink"]


def sink_chunk_size(steps_per_epoch, requested=0):
    """Steps per sink: ``requested`` (0 = a whole epoch) rounded down to a divisor of ``steps_per_epoch``
    (a device sink has a fixed size, and an epoch must end on a sink boundary)."""
    steps = int(steps_per_epoch)
    requested = int(requested or 0)
    if requested <= 0 or requested >= steps:
        return steps
    return max(d for d in range(1, requested + 1) if steps % d == 0)


class HostFeeder:
    """Feeds the sink step from a host iterator (a fresh one per epoch, as the loop path)."""

    kind = "host"

    def __init__(self, sink_step, data):
        self.sink_step, self.data, self.iterator = sink_step, data, None

    def begin_epoch(self, epoch, seed, rank, group_size, done=0):
        """A fresh iterator for ``epoch``; the ``done`` steps of a resumed epoch are replayed (their batches
        drawn and dropped, as the loop does) unless a stop signal comes first."""
        set_augmentation_seed(seed, rank, epoch, group_size)
        self.data.set_epoch(epoch)
        self.iterator = signals.guarded(self.data.dataset.create_tuple_iterator(num_epochs=1))
        self.samples = 0
        for _ in range(done):
            batch = next(self.iterator, None)
            if batch is None or signals.requested():
                return
            self.samples += batch[0].shape[0]  # the pass delivered it (before the stop): it counts

    def run(self, count):
        """Runs up to ``count`` steps; returns how many ran (fewer when the epoch's data ends early)."""
        for n in range(count):
            batch = next(self.iterator, None)
            if batch is None:
                return n
            self.samples += batch[0].shape[0]
            self.sink_step(*batch)
        return count

    def end_epoch(self, drain=True):
        """The epoch's sample count (``drain``: the iterator read to its end first, so that the count is complete;
        not when the run stops)."""
        for batch in (self.iterator or ()) if drain else ():
            self.samples += batch[0].shape[0]
        self.iterator = None
        return self.samples


class DeviceFeeder:
    """Feeds the sink step from the device queue with ``mindspore.data_sink`` (Ascend/GPU only)."""

    kind = "device"

    def __init__(self, sink_step, data, sink_size):
        self.sink_step, self.data, self.sink_size, self.run_fn = sink_step, data, int(sink_size), None

    def begin_epoch(self, epoch, seed, rank, group_size, done=0):
        if self.run_fn is None:  # the pipeline starts here and runs on through the epochs (module docstring)
            import mindspore as ms

            set_augmentation_seed(seed, rank, epoch, group_size)
            self.data.set_epoch(epoch)
            if done:  # a resumed epoch: the engine replays the first `done` batches (fast recovery off)
                ms.dataset.config.set_fast_recovery(False)
                self.data.dataset.set_init_step(done)
            self.run_fn = ms.data_sink(self.sink_step, self.data.dataset, sink_size=self.sink_size,
                                       jit_config=ms.JitConfig())

    def run(self, count):
        if count != self.sink_size:
            raise ValueError(f"a device sink runs {self.sink_size} steps, asked for {count}")
        self.run_fn()
        return count

    def end_epoch(self, drain=True):
        return None  # the device queue runs on through the epochs: no per-epoch count on the host


class SinkRunner:
    """The sink step and its feeder."""

    def __init__(self, sink_step, feeder, sink_size):
        self.step, self.feeder, self.sink_size = sink_step, feeder, int(sink_size)

    @property
    def kind(self):
        return self.feeder.kind

    def check_resume_step(self, step):
        """A device sink runs whole sinks: a run stopped after ``step`` steps of an epoch resumes on it only when
        ``step`` ends a sink (``ConfigError`` otherwise; the host feed and the loop resume anywhere)."""
        if self.kind == "device" and step % self.sink_size:
            raise ConfigError(f"the checkpoint stopped after step {step} of its epoch, which does not end a sink of "
                              f"{self.sink_size} steps; resume with dataset_sink_mode=0, or a sink_size that divides "
                              f"{step}")


def build_sink(setup_step, ema, data, device_target, sink_size=0, feeder=None):
    """The ``SinkRunner`` of a run: ``feeder`` "device" (default on Ascend/GPU) or "host" (default on CPU)."""
    from src.train_step import SinkStep

    size = sink_chunk_size(data.steps_per_epoch, sink_size)
    sink_step = SinkStep(setup_step, ema, size)
    sink_step.set_train(True)
    feeder = feeder or ("device" if device_target in ("Ascend", "GPU") else "host")
    if feeder == "device":
        feed = DeviceFeeder(sink_step, data, size)
    elif feeder == "host":
        feed = HostFeeder(sink_step, data)
    else:
        raise ValueError(f"feeder={feeder!r}: expected device or host")
    return SinkRunner(sink_step, feed, size)


def train_one_epoch_sink(setup, book, seed, ctx):
    """Sink-mode twin of ``src.trainer.train_one_epoch``: the steps of epoch ``book.epoch`` after the
    ``book.step`` already done, in sinks, the ``StepBook`` fed from each sink's records; a stop signal is
    honoured at the next sink boundary. A finished epoch's sample count is checked (``DatasetBundle.account``)."""
    runner, steps = setup.sink, setup.steps_per_epoch
    if book.step >= steps:
        return
    runner.feeder.begin_epoch(book.epoch, seed, ctx.rank, ctx.group_size, done=book.step)
    samples = None
    try:
        while book.step < steps and not signals.requested():
            first, count = book.step, min(runner.sink_size, steps - book.step)
            runner.step.reset_records()
            ran = runner.feeder.run(count)
            values, overflows, scales = runner.step.read_records(ran)
            for j in range(ran):
                book.record(float(values[j]), bool(overflows[j]), float(scales[j]),
                            where=f"; sink mode: the sink of steps {first + 1}-{first + count} ran to its end")
            if ran < count:
                break
    finally:
        samples = runner.feeder.end_epoch(drain=not signals.requested())
    if samples is not None and not signals.requested():
        setup.data.account(samples, f"epoch {book.epoch + 1}")  # none: DatasetError; fewer or dropped: a warning
