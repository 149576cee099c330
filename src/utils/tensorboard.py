"""TensorBoard scalars of a training run through tensorboardX (no TensorFlow, no PyTorch), and a reader.
One folder per run, ``<tensorboard_dir>/<run folder name>/``; every scalar is logged against the global step, so a
resumed run's ``purge_step`` hides what the interrupted run logged from there on. ``import torch`` is blocked while
tensorboardX loads (its writer would load PyTorch just to recognise torch tensors). ``read_scalars`` reads event
files back (CRC checks, the purge rule) for tests and tools/plot_tensorboard.py without TensorBoard installed.
"""
import contextlib
import glob
import os
import struct
import sys

TENSORBOARDX_PIN = "tensorboardX==2.6.5"

#: step_scalars() keyword -> tag
STEP_TAGS = {"loss": "train/loss", "lr": "train/lr", "images_per_sec": "train/img_per_s",
             "loss_scale": "train/loss_scale"}
#: metrics.csv column (src.reporting.METRICS_FIELDS) -> tag
EPOCH_TAGS = {"epoch": "epoch/epoch", "train_loss": "epoch/train_loss", "lr": "epoch/lr", "val_top1": "val/top1",
              "val_top5": "val/top5", "epoch_time_s": "epoch/time_s", "images_per_sec": "epoch/img_per_s"}
_writers_opened = 0


class TensorBoardUnavailable(ImportError):
    """tensorboard_dir is set but tensorboardX cannot be imported."""


@contextlib.contextmanager
def _without_torch():
    """Makes ``import torch`` fail while tensorboardX loads (unless torch is already imported)."""
    if "torch" in sys.modules:
        yield
        return
    sys.modules["torch"] = None
    try:
        yield
    finally:
        if sys.modules.get("torch", 0) is None:
            del sys.modules["torch"]


def _tensorboardx():
    try:
        with _without_torch():
            import tensorboardX
            import tensorboardX.proto.event_pb2  # noqa: F401  (read_scalars's, loaded without torch too)
    except ImportError as err:
        raise TensorBoardUnavailable(
            f"tensorboard_dir is set but tensorboardX is not installed ({err}); pip install {TENSORBOARDX_PIN} "
            "(it needs neither TensorFlow nor PyTorch), or leave tensorboard_dir empty") from None
    return tensorboardX


def _number(value):
    """A float for TensorBoard, or None for a missing value ("" or None in metrics.csv)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    value = value.asnumpy() if hasattr(value, "asnumpy") else value  # a MindSpore tensor
    value = value.item() if hasattr(value, "item") else value
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"not a number: {value!r}") from None


def step_scalars(loss=None, lr=None, images_per_sec=None, loss_scale=None):
    """The per-step scalars as ``{tag: value}`` (None values left out)."""
    values = {"loss": loss, "lr": lr, "images_per_sec": images_per_sec, "loss_scale": loss_scale}
    return {STEP_TAGS[k]: v for k, v in values.items() if _number(v) is not None}


def epoch_scalars(row):
    """A metrics.csv row as ``{tag: value}``; empty cells (no validation that epoch) and unknown columns are
    left out."""
    return {tag: row[key] for key, tag in EPOCH_TAGS.items() if key in row and _number(row[key]) is not None}


class TensorBoardLogger(contextlib.AbstractContextManager):
    """A tensorboardX ``SummaryWriter`` on ``<tensorboard_dir>/<run_name>/`` that logs plain scalars."""

    def __init__(self, tensorboard_dir, run_name, purge_step=None, flush_secs=30, max_queue=100):
        tbx = _tensorboardx()
        self.log_dir = os.path.abspath(os.path.join(os.fspath(tensorboard_dir), str(run_name)))
        os.makedirs(self.log_dir, exist_ok=True)
        # event files are named by the second and opened "wb": the suffix keeps a quick resume's apart
        global _writers_opened
        _writers_opened += 1
        suffix = f".{os.getpid()}.{_writers_opened:04d}"
        with _without_torch():
            self._writer = tbx.SummaryWriter(logdir=self.log_dir, purge_step=purge_step, flush_secs=int(flush_secs),
                                             max_queue=int(max_queue), filename_suffix=suffix)
        self.closed = False

    def add_scalars(self, step, scalars):
        """Logs every ``{tag: value}`` at global step ``step``; None / "" values are skipped. Returns the count."""
        if self.closed:
            raise RuntimeError(f"TensorBoard logger for {self.log_dir} is closed")
        numbers = {str(tag): _number(value) for tag, value in scalars.items()}
        numbers = {tag: number for tag, number in numbers.items() if number is not None}
        for tag, number in numbers.items():
            self._writer.add_scalar(tag, number, global_step=int(step))
        return len(numbers)

    def flush(self):
        if not self.closed:
            self._writer.flush()

    def close(self):
        if not self.closed:
            self._writer.close()
            self.closed = True

    def __exit__(self, *exc):
        self.close()


def create_tensorboard_logger(tensorboard_dir, run_dir, rank=0, purge_step=None, **kwargs):
    """None when ``tensorboard_dir`` is empty or ``rank != 0`` (nothing imported); else a ``TensorBoardLogger``
    named after the run folder ``run_dir``."""
    if not tensorboard_dir or int(rank) != 0:
        return None
    name = os.path.basename(os.path.normpath(os.fspath(run_dir)))
    return TensorBoardLogger(tensorboard_dir, run_name=name, purge_step=purge_step, **kwargs)


def event_files(path):
    """The event files of ``path`` (a file, or a folder searched recursively), sorted."""
    path = os.fspath(path)
    if os.path.isfile(path):
        return [path]
    return sorted(glob.glob(os.path.join(path, "**", "events.out.tfevents.*"), recursive=True))


def _records(path):
    """The payloads of a TFRecord file: u64 length, u32 masked CRC-32C of it, data, u32 masked CRC of the data."""
    from tensorboardX.record_writer import masked_crc32c  # loaded by _tensorboardx() without torch
    with open(path, "rb") as f:
        while True:
            header = f.read(12)
            if not header:
                return
            if len(header) < 12:
                raise ValueError(f"{path}: truncated record header")
            length, length_crc = struct.unpack("<QI", header)
            if masked_crc32c(header[:8]) != length_crc:
                raise ValueError(f"{path}: bad length CRC")
            data = f.read(length)
            footer = f.read(4)
            if len(data) < length or len(footer) < 4:
                raise ValueError(f"{path}: truncated record")
            if masked_crc32c(data) != struct.unpack("<I", footer)[0]:
                raise ValueError(f"{path}: bad data CRC")
            yield data


def read_scalars(path):
    """``{tag: [(step, value), ...]}`` from the event files of ``path``, in file then write order, with
    TensorBoard's purge rule applied (a session START at step s drops earlier values with step >= s)."""
    _tensorboardx()
    from tensorboardX.proto.event_pb2 import Event, SessionLog
    out = {}
    for name in event_files(path):
        for data in _records(name):
            event = Event()
            event.ParseFromString(data)
            if event.HasField("session_log") and event.session_log.status == SessionLog.START:
                for tag in out:
                    out[tag] = [(s, v) for s, v in out[tag] if s < event.step]
            if not event.HasField("summary"):
                continue
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    number = value.simple_value
                elif value.HasField("tensor") and value.tensor.float_val:
                    number = value.tensor.float_val[0]
                else:
                    continue
                out.setdefault(value.tag, []).append((int(event.step), float(number)))
    return out

