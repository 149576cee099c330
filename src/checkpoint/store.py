"""Where checkpoints live: a run's ``ckpt_<rank>/`` with the zoo's ``<rank>-<epoch>_<step_in_epoch>.ckpt`` and
``best.ckpt``, retention, weights-only copies and lookups. Saves are atomic; a killed run's temporary files are
removed at the next start and never returned by a lookup."""
import os
import re

from src.checkpoint.formats import CheckpointError, read_state_dict, remove_partial_files, save_checkpoint_atomic

CKPT_PATTERN = re.compile(r"^(\d+)-(\d+)_(\d+)\.ckpt$")
BEST_NAME = "best.ckpt"
# What eval's folder mode scores; the loader reads these and timm's .pth/.pt/.bin too.
CHECKPOINT_EXTENSIONS = (".ckpt", ".safetensors")
#: entries only a resume needs, besides the optimizer's own parameters (the data position)
_RESUME_ONLY = ("step_in_epoch", "epoch_step_losses")


def weights_only(entries, optimizer_names):
    """A training checkpoint's ``entries`` (``{"name", "data"}`` dicts, or an arrays dict) without the
    optimizer's state (``optimizer_names``) and the data position: ``best.ckpt``, a run's older epochs."""
    drop = set(optimizer_names) | set(_RESUME_ONLY)
    if isinstance(entries, dict):
        return {k: v for k, v in entries.items() if k not in drop}
    return [e for e in entries if e["name"] not in drop]


def is_weights_only(arrays):
    """Whether a checkpoint's arrays lack the optimizer state (no ``global_step``)."""
    return "global_step" not in arrays


def training_checkpoints(folder):
    """``[(epoch, step, path)]`` of the zoo-named checkpoints in ``folder``, oldest first."""
    matches = map(CKPT_PATTERN.match, os.listdir(folder) if os.path.isdir(folder) else [])
    return sorted((int(m.group(2)), int(m.group(3)), os.path.join(folder, m.group(0))) for m in matches if m)


def find_resume_checkpoint(path):
    """A checkpoint file as is, a run folder's (or ``ckpt_<rank>``'s) newest, else a ``CheckpointError``."""
    if os.path.isfile(path):
        return path
    if not os.path.isdir(path):
        raise CheckpointError(f"resume={path!r}: no such checkpoint file or run folder")
    folders = [path] + [os.path.join(path, d) for d in sorted(os.listdir(path)) if d.startswith("ckpt_")]
    found = sorted(c for folder in folders for c in training_checkpoints(folder))
    if not found:
        raise CheckpointError(f"resume={path!r}: the folder holds no <rank>-<epoch>_<step>.ckpt checkpoints")
    return found[-1][2]


def run_folder_of(checkpoint):
    """``<run>/ckpt_<rank>/x.ckpt`` -> ``<run>``; None when the checkpoint is not inside a run folder."""
    parent = os.path.dirname(os.path.abspath(checkpoint))
    if os.path.basename(parent).startswith("ckpt_"):
        return os.path.dirname(parent)
    return None


def checkpoint_files(path):
    """``[path]`` for a file; else the folder's sorted checkpoint files (a run folder: its ``ckpt_0/``'s), never
    hidden ones (unfinished saves); ``CheckpointError`` naming the path when there are none."""
    path = os.fspath(path)
    if not path:
        raise CheckpointError("no checkpoint given")
    if os.path.isdir(path):
        for folder in (path, os.path.join(path, "ckpt_0")):  # a training run folder: rank 0's checkpoints
            names = os.listdir(folder) if os.path.isdir(folder) else []
            files = sorted(os.path.join(folder, f) for f in names if f.lower().endswith(CHECKPOINT_EXTENSIONS)
                           and not f.startswith(".") and os.path.isfile(os.path.join(folder, f)))
            if files:
                return files
        raise CheckpointError(f"checkpoint folder {path!r} holds no {' or '.join(CHECKPOINT_EXTENSIONS)} files")
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint file {path!r} does not exist")
    return [path]


class CheckpointManager:
    """Saves a run's checkpoints atomically and keeps its folder small: the newest holds the full training
    state; of the older epoch checkpoints the newest ``keep_max - 1`` stay (weights-only with
    ``older_weights_only``), mid-epoch ones (a stop signal) go once a newer one exists; ``best.ckpt`` is
    weights-only. ``newest``: the checkpoint resumed from. Removes killed saves' files (``removed_partials``)."""

    def __init__(self, folder, rank, keep_max, steps_per_epoch, optimizer_names, newest=None, older_weights_only=True):
        self.folder = os.path.abspath(folder)
        self.rank = rank
        self.keep_max = max(int(keep_max), 1)
        self.steps_per_epoch = int(steps_per_epoch)
        self.optimizer_names = list(optimizer_names)
        self.full = os.path.abspath(newest) if newest else None
        self.older_weights_only = bool(older_weights_only)
        os.makedirs(folder, exist_ok=True)
        self.removed_partials = remove_partial_files(folder)

    def save(self, entries, epoch, step_in_epoch, metadata):
        """Saves the full training state as ``<rank>-<epoch>_<step_in_epoch>.ckpt`` (``epoch`` 1-based: the
        epoch the step belongs to), then applies the retention rules above; returns the path."""
        path = os.path.abspath(os.path.join(self.folder, f"{self.rank}-{epoch}_{step_in_epoch}.ckpt"))
        save_checkpoint_atomic(entries, path, metadata=metadata)
        # Retention after the new file is complete: a crash never leaves fewer good files.
        older = [(e, s, p) for e, s, p in training_checkpoints(self.folder) if (e, s) < (epoch, step_in_epoch)]
        complete = [p for _, s, p in older if s == self.steps_per_epoch]
        kept = complete[max(len(complete) - (self.keep_max - 1), 0):] if self.keep_max > 1 else []
        for _, _, old in older:
            if old not in kept:
                os.remove(old)
        if self.older_weights_only and self.full in kept:
            self._slim(self.full)
        self.full = path
        return path

    def _slim(self, path):
        """Rewrites ``path`` weights-only (atomically)."""
        import mindspore as ms

        arrays, meta = read_state_dict(path)
        if not is_weights_only(arrays):
            kept = weights_only(arrays, self.optimizer_names)
            save_checkpoint_atomic([{"name": k, "data": ms.Tensor(v)} for k, v in kept.items()], path, metadata=meta)

    def save_best(self, entries, metadata):
        return save_checkpoint_atomic(weights_only(entries, self.optimizer_names), os.path.join(self.folder, BEST_NAME),
                                      metadata=metadata)
