"""What a training run reports: progress lines (step, loss, lr, images/s, ETA), the metrics CSV and the
curves PNG. Checkpoints are ``src.checkpoint``'s business."""
import csv
import math
import os
import sys
import time

from src.errors import NonFiniteLoss
from src.utils.tensorboard import step_scalars

METRICS_FIELDS = ("epoch", "train_loss", "lr", "val_top1", "val_top5", "epoch_time_s", "images_per_sec")


def _format_duration(seconds):
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h:d}:{m:02d}:{s:02d}"


class ProgressLogger:
    """Step and epoch lines with loss, lr, images/s, elapsed and ETA; a one-line bar on a terminal.

    The epoch-end line keeps the zoo's format so existing log parsers work:
    ``epoch[E], iter[I], loss: L, mean_fps: F imgs/sec, per_step_time: T ms``.
    """

    def __init__(self, log, steps_per_epoch, max_epoch, global_batch, log_interval, start_epoch=0, stream=None):
        self.log = log
        self.steps_per_epoch = steps_per_epoch
        self.max_epoch = max_epoch
        self.global_batch = global_batch
        self.log_interval = max(int(log_interval), 1)
        self.start_epoch = start_epoch
        self.stream = stream if stream is not None else sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.run_start = time.time()
        self.steps_done = 0  # in this process, for the ETA
        self.epoch_start = self.window_start = time.time()
        self.window_steps = 0

    def epoch_begin(self):
        self.epoch_start = self.window_start = time.time()
        self.window_steps = 0

    def _eta(self):
        total = (self.max_epoch - self.start_epoch) * self.steps_per_epoch
        if self.steps_done == 0:
            return float("nan")
        per_step = (time.time() - self.run_start) / self.steps_done
        return per_step * (total - self.steps_done)

    def step_end(self, epoch, step_in_epoch, loss, lr):
        """Counts a step; on the steps it logs, returns the images/s since the last logged step (else None)."""
        self.steps_done += 1
        self.window_steps += 1
        now = time.time()
        if self.tty:
            width = 30
            done = int(width * step_in_epoch / self.steps_per_epoch)
            self.stream.write(f"\repoch {epoch}/{self.max_epoch} [{'#' * done}{'.' * (width - done)}] "
                              f"{step_in_epoch}/{self.steps_per_epoch} loss {loss:.4f} lr {lr:.6g}")
            self.stream.flush()
        if step_in_epoch % self.log_interval == 0 or step_in_epoch == self.steps_per_epoch:
            fps = self.global_batch * self.window_steps / max(now - self.window_start, 1e-9)
            eta = self._eta()
            if self.tty:
                self.stream.write("\n")
            self.log.info(f"epoch[{epoch}], step[{step_in_epoch}/{self.steps_per_epoch}], loss: {loss:.4f}, "
                          f"lr: {lr:.6g}, imgs/sec: {fps:.2f}, elapsed: {_format_duration(now - self.run_start)}, "
                          f"ETA: {'?' if math.isnan(eta) else _format_duration(eta)}")
            self.window_start, self.window_steps = now, 0
            return fps
        return None

    def epoch_end(self, epoch, loss):
        """Logs the zoo's epoch line; returns ``(epoch_time_s, images_per_sec)``."""
        elapsed = time.time() - self.epoch_start
        fps = self.global_batch * self.steps_per_epoch / max(elapsed, 1e-9)
        per_step_ms = 1000.0 * elapsed / self.steps_per_epoch
        # The zoo printed iter = steps_per_epoch - 1 (the 0-based index of the epoch's last step).
        self.log.info(f"epoch[{epoch}], iter[{self.steps_per_epoch - 1}], loss: {loss:.6f}, "
                      f"mean_fps: {fps:.2f} imgs/sec, per_step_time: {per_step_ms:.2f} ms")
        return elapsed, fps


class MetricsWriter:
    """Appends one row per epoch to ``metrics.csv``; a resumed run continues the same file.

    ``keep_epochs_before``: the first epoch this run will write; rows of that epoch and later (written by a
    run that was killed and is now redone) are dropped first, so the file holds one row per epoch after
    any number of resumes.
    """

    def __init__(self, path, keep_epochs_before=None):
        self.path = path
        if not os.path.exists(path):
            with open(path, "w", newline="") as f:
                csv.writer(f).writerow(METRICS_FIELDS)
        elif keep_epochs_before is not None:
            rows = self.read()
            kept = [r for r in rows if r.get("epoch", "").isdigit() and int(r["epoch"]) < keep_epochs_before]
            if len(kept) != len(rows):
                tmp = path + ".tmp"
                with open(tmp, "w", newline="") as f:
                    writer = csv.writer(f)
                    writer.writerow(METRICS_FIELDS)
                    writer.writerows([[r.get(k, "") for k in METRICS_FIELDS] for r in kept])
                os.replace(tmp, path)

    def write(self, **row):
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow(["" if row.get(k) is None else row[k] for k in METRICS_FIELDS])

    def read(self):
        with open(self.path, newline="") as f:
            return list(csv.DictReader(f))


def plot_curves(metrics_csv, png_path):
    """Loss and accuracy curves as a PNG when matplotlib is installed; returns the path or None."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = MetricsWriter(metrics_csv).read()
    if not rows:
        return None
    epochs = [int(r["epoch"]) for r in rows]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [float(r["train_loss"]) for r in rows], marker="o")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("train loss")
    val = [(int(r["epoch"]), float(r["val_top1"]), float(r["val_top5"])) for r in rows if r["val_top1"]]
    if val:
        ax_acc.plot([v[0] for v in val], [v[1] for v in val], marker="o", label="top-1")
        ax_acc.plot([v[0] for v in val], [v[2] for v in val], marker="o", label="top-5")
        ax_acc.legend()
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("validation accuracy (%)")
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
    return png_path


def _scalar(value):
    """A number, or a one-element Tensor read from the device."""
    return float(value.asnumpy()) if hasattr(value, "asnumpy") else float(value)


def record_step(setup, epoch, i, loss_value, overflow, scale, losses, progress, log, last_saved=None, tb=None,
                where=""):
    """What happens after step ``i`` (1-based) of epoch ``epoch`` (0-based), in the loop and in sink mode
    (``src.sink``, which reads a sink's records back first): an overflow is logged (the update was
    skipped), a non-finite loss raises ``NonFiniteLoss`` naming the last good checkpoint, any other loss
    joins ``losses``; then the progress line and the TensorBoard scalars. ``scale``: the loss scale, a number
    or the step's Tensor (read from the device only when logged). ``where``: said in the error."""
    global_step = epoch * setup.steps_per_epoch + i - 1
    lr = float(setup.lr[global_step])
    if overflow:
        log.warning("epoch %d step %d: gradient overflow, update skipped; loss scale now %g", epoch + 1, i,
                    _scalar(scale))
    elif not math.isfinite(loss_value):
        raise NonFiniteLoss(f"loss became {loss_value} at epoch {epoch + 1}, step {i} (lr {lr:.6g}{where}); "
                            f"stopping. The last good checkpoint is {last_saved or 'none (none was saved yet)'}. "
                            "Lower lr, or set is_dynamic_loss_scale=1 when training in float16.")
    else:
        losses.append(loss_value)
    fps = progress.step_end(epoch + 1, i, loss_value, lr)
    if tb is not None:
        tb.add_scalars(global_step + 1, step_scalars(loss=loss_value, lr=lr, loss_scale=_scalar(scale),
                                                     images_per_sec=fps))
