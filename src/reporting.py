"""What a training run reports: progress lines (step, loss, lr, images/s, ETA), the metrics CSV and the curves
PNG. Checkpoints are ``src.checkpoint``'s business."""
import csv
import io
import math
import os
import sys
import time

import numpy as np

from src.analysis.plots import MATPLOTLIB_HINT
from src.errors import NonFiniteLoss
from src.utils.fileio import atomic_path, write_text_atomic
from src.utils.tensorboard import step_scalars

METRICS_FIELDS = ("epoch", "train_loss", "lr", "val_top1", "val_top5", "epoch_time_s", "images_per_sec")


def _format_duration(seconds):
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h:d}:{m:02d}:{s:02d}"


class ProgressLogger:
    """Step and epoch lines with loss, lr, images/s, elapsed and ETA; a one-line bar on a terminal. The epoch line
    is the zoo's with the loss labelled the epoch's mean: ``epoch[E], iter[I], mean loss: L, mean_fps: ...``."""

    def __init__(self, log, steps_per_epoch, max_epoch, global_batch, log_interval, start_epoch=0, stream=None,
                 start_step=0):
        self.log = log
        self.steps_per_epoch = steps_per_epoch
        self.max_epoch = max_epoch
        self.global_batch = global_batch
        self.log_interval = max(int(log_interval), 1)
        self.start_epoch, self.start_step = start_epoch, int(start_step)
        self.stream = stream if stream is not None else sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.run_start = time.time()
        self.steps_done = 0  # in this process, for the ETA
        self.epoch_begin()

    def epoch_begin(self, done=0):
        """An epoch starts (or continues after ``done`` steps, in a resumed run)."""
        self.epoch_start = self.window_start = time.time()
        self.window_steps = self.epoch_steps = 0
        self.steps_done_before = int(done)

    def _eta(self):  # after at least one step
        total = (self.max_epoch - self.start_epoch) * self.steps_per_epoch - self.start_step
        return (time.time() - self.run_start) / self.steps_done * (total - self.steps_done)

    def step_end(self, epoch, step_in_epoch, loss, lr):
        """Counts a step; on the steps it logs, returns the images/s since the last logged step (else None)."""
        self.steps_done += 1
        self.window_steps += 1
        self.epoch_steps += 1
        now = time.time()
        if self.tty:
            width = 30
            done = int(width * step_in_epoch / self.steps_per_epoch)
            self.stream.write(f"\repoch {epoch}/{self.max_epoch} [{'#' * done}{'.' * (width - done)}] "
                              f"{step_in_epoch}/{self.steps_per_epoch} loss {loss:.4f} lr {lr:.6g}")
            self.stream.flush()
        if step_in_epoch % self.log_interval == 0 or step_in_epoch == self.steps_per_epoch:
            fps = self.global_batch * self.window_steps / max(now - self.window_start, 1e-9)
            if self.tty:
                self.stream.write("\n")
            self.log.info(f"epoch[{epoch}], step[{step_in_epoch}/{self.steps_per_epoch}], loss: {loss:.4f}, "
                          f"lr: {lr:.6g}, imgs/sec: {fps:.2f}, elapsed: {_format_duration(now - self.run_start)}, "
                          f"ETA: {_format_duration(self._eta())}")
            self.window_start, self.window_steps = now, 0
            return fps
        return None

    def epoch_end(self, epoch, mean_loss):
        """Logs the epoch line (the speed over the steps this process ran); returns ``(epoch_time_s,
        images_per_sec)``."""
        elapsed = time.time() - self.epoch_start
        steps = max(self.epoch_steps, 1)
        fps = self.global_batch * steps / max(elapsed, 1e-9)
        # The zoo printed iter = steps_per_epoch - 1 (the 0-based index of the epoch's last step).
        self.log.info(f"epoch[{epoch}], iter[{self.steps_per_epoch - 1}], mean loss: {mean_loss:.6f}, "
                      f"mean_fps: {fps:.2f} imgs/sec, per_step_time: {1000.0 * elapsed / steps:.2f} ms"
                      + (f" ({self.epoch_steps} steps after a resume at step {self.steps_done_before})"
                         if self.steps_done_before else ""))
        return elapsed, fps


class MetricsWriter:
    """Appends one row per epoch to ``metrics.csv``; a resumed run continues it after dropping the rows of
    ``keep_epochs_before`` and later (written by a killed run that is now redone): one row per epoch."""

    def __init__(self, path, keep_epochs_before=None):
        self.path = path
        if not os.path.exists(path):
            with open(path, "w", newline="") as f:
                csv.writer(f).writerow(METRICS_FIELDS)
        elif keep_epochs_before is not None:
            rows = self.read()
            kept = [r for r in rows if r.get("epoch", "").isdigit() and int(r["epoch"]) < keep_epochs_before]
            if len(kept) != len(rows):
                buf = io.StringIO()
                writer = csv.writer(buf)
                writer.writerow(METRICS_FIELDS)
                writer.writerows([[r.get(k, "") for k in METRICS_FIELDS] for r in kept])
                write_text_atomic(buf.getvalue(), path, newline="")

    def write(self, **row):
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow(["" if row.get(k) is None else row[k] for k in METRICS_FIELDS])

    def read(self):
        with open(self.path, newline="") as f:
            return list(csv.DictReader(f))


def plot_curves(metrics_csv, png_path, log):
    """Draws train loss and validation accuracy per epoch into ``png_path`` (atomically); returns it, or None (no
    rows, or no matplotlib: one log line says how to get it)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        log.info("curves.png is not drawn: matplotlib is not installed (%s); %s to get it", err, MATPLOTLIB_HINT)
        return None
    rows = MetricsWriter(metrics_csv).read()
    if not rows:
        return None
    epochs = [int(r["epoch"]) for r in rows]
    fig = Figure(figsize=(10, 4))
    FigureCanvasAgg(fig)
    ax_loss, ax_acc = fig.subplots(1, 2)
    ax_loss.plot(epochs, [float(r["train_loss"]) for r in rows], marker="o")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("train loss (epoch mean)")
    val = [(int(r["epoch"]), float(r["val_top1"]), float(r["val_top5"])) for r in rows if r["val_top1"]]
    if val:
        ax_acc.plot([v[0] for v in val], [v[1] for v in val], marker="o", label="top-1")
        ax_acc.plot([v[0] for v in val], [v[2] for v in val], marker="o", label="top-5")
        ax_acc.legend()
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("validation accuracy (%)")
    fig.tight_layout()
    with atomic_path(png_path, ".png") as tmp:
        fig.savefig(tmp, format="png")
    return png_path


def _scalar(value):
    """A number, or a one-element Tensor read from the device."""
    return float(value.asnumpy()) if hasattr(value, "asnumpy") else float(value)


class StepBook:
    """The bookkeeping after each training step, for the loop (``src.trainer``) and sink mode (``src.sink``): an
    overflow is logged, a non-finite loss raises ``NonFiniteLoss`` naming the last good checkpoint (``last_saved``),
    the loss is kept for the epoch's mean; then the progress line and TensorBoard. ``epoch`` (0-based), ``step``
    (its steps done) and ``step_losses`` (NaN where the update was skipped) say where the run stands: a mid-epoch
    checkpoint keeps the last two so a resumed epoch reports the uninterrupted mean."""

    def __init__(self, lr, steps_per_epoch, progress, log, tb=None, last_saved=None):
        self.lr, self.steps_per_epoch, self.progress, self.log, self.tb = lr, int(steps_per_epoch), progress, log, tb
        self.last_saved = last_saved
        self.epoch, self.step, self.step_losses = 0, 0, []

    def begin_epoch(self, epoch, step=0, step_losses=()):
        """Epoch ``epoch`` starts, or continues after ``step`` steps done (with their ``step_losses``)."""
        self.epoch, self.step, self.step_losses = int(epoch), int(step), [float(v) for v in step_losses]
        self.progress.epoch_begin(self.step)

    @property
    def global_step(self):
        """Steps done in the run (the index of the next step's learning rate)."""
        return self.epoch * self.steps_per_epoch + self.step

    def record(self, loss_value, overflow, scale, where=""):
        """Step ``step + 1`` ran: ``loss_value``, ``overflow``, ``scale`` (a number or the step's Tensor, read only
        when logged); ``where`` goes into the non-finite-loss error."""
        i, lr = self.step + 1, float(self.lr[self.global_step])
        if overflow:
            self.log.warning("epoch %d step %d: gradient overflow, update skipped; loss scale now %g", self.epoch + 1,
                             i, _scalar(scale))
        elif not math.isfinite(loss_value):
            raise NonFiniteLoss(f"loss became {loss_value} at epoch {self.epoch + 1}, step {i} (lr {lr:.6g}{where}); "
                                f"stopping. The last good checkpoint is "
                                f"{self.last_saved or 'none (none was saved yet)'}. Lower lr, or set "
                                "is_dynamic_loss_scale=1 when training in float16.")
        self.step_losses.append(float("nan") if overflow else loss_value)
        self.step = i
        fps = self.progress.step_end(self.epoch + 1, i, loss_value, lr)
        if self.tb is not None:
            self.tb.add_scalars(self.global_step, step_scalars(loss=loss_value, lr=lr, loss_scale=_scalar(scale),
                                                               images_per_sec=fps))

    def mean_loss(self):
        """The epoch's mean loss over the steps that updated the weights (NaN when none did)."""
        kept = [v for v in self.step_losses if not math.isnan(v)]
        return float(np.mean(kept)) if kept else float("nan")
