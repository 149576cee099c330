"""Where checkpoints live: a training run's checkpoint folders, their names, retention and lookups.

A training run folder holds ``ckpt_<rank>/`` folders with the zoo's names
``<rank>-<epoch>_<step_in_epoch>.ckpt`` and ``best.ckpt``, beside the run's ``config.yaml`` and
``class_index.json``. Saves are atomic (``src.checkpoint.formats.save_checkpoint_atomic``), so a run
killed at any moment leaves only complete checkpoints plus, at worst, temporary files that the next
start of the run removes and that no lookup here ever returns.
"""
import os
import re

from src.checkpoint.formats import CheckpointError, read_state_dict, remove_partial_files, save_checkpoint_atomic
from src.checkpoint.training_state import is_weights_only, weights_only

__all__ = ["CKPT_PATTERN", "CHECKPOINT_EXTENSIONS", "training_checkpoints", "find_resume_checkpoint",
           "run_folder_of", "checkpoint_files", "CheckpointManager"]

CKPT_PATTERN = re.compile(r"^(\d+)-(\d+)_(\d+)\.ckpt$")
BEST_NAME = "best.ckpt"
# What eval's folder mode scores; the loader reads these and timm's .pth/.pt/.bin too.
CHECKPOINT_EXTENSIONS = (".ckpt", ".safetensors")


def training_checkpoints(folder):
    """``[(epoch, step, path)]`` of the zoo-named checkpoints in ``folder``, oldest first."""
    found = []
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            m = CKPT_PATTERN.match(name)
            if m:
                found.append((int(m.group(2)), int(m.group(3)), os.path.join(folder, name)))
    return sorted(found)


def find_resume_checkpoint(path):
    """A checkpoint file is used as is; a run folder (or its ``ckpt_<rank>`` folder) gives its newest.

    Raises ``CheckpointError`` naming the path when there is nothing to resume from.
    """
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
    """``<run>/ckpt_<rank>/x.ckpt`` -> ``<run>`` (where training saved class_index.json and config.yaml);
    None when the checkpoint is not inside a run folder."""
    parent = os.path.dirname(os.path.abspath(checkpoint))
    if os.path.basename(parent).startswith("ckpt_"):
        return os.path.dirname(parent)
    return None


def checkpoint_files(path, extensions=CHECKPOINT_EXTENSIONS):
    """``path`` itself if it is a file; the sorted checkpoint files in it if it is a folder (for a training
    run folder with no checkpoint files of its own, those of its ``ckpt_0/``). Hidden files (among them
    the temporary files of unfinished saves) are never listed.

    Raises ``CheckpointError`` naming the path when it does not exist or a folder holds none.
    """
    path = os.fspath(path)
    if not path:
        raise CheckpointError("no checkpoint given")
    if os.path.isdir(path):
        def scan(folder):
            return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                          if f.lower().endswith(tuple(extensions)) and not f.startswith(".")
                          and os.path.isfile(os.path.join(folder, f)))

        files = scan(path)
        if not files and os.path.isdir(os.path.join(path, "ckpt_0")):
            files = scan(os.path.join(path, "ckpt_0"))  # a training run folder: rank 0's checkpoints
        if not files:
            raise CheckpointError(f"checkpoint folder {path!r} holds no {' or '.join(extensions)} files")
        return files
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint file {path!r} does not exist")
    return [path]


class CheckpointManager:
    """Saves a run's ``<rank>-<epoch>_<step>.ckpt`` and ``best.ckpt`` atomically, and keeps its folder small.

    * the newest checkpoint holds the full training state (resumable);
    * of the older epoch checkpoints, the newest ``keep_max - 1`` are kept, **weights-only** with
      ``older_weights_only`` (the optimizer state dropped: half the size; for eval, export, predict,
      ``pretrained=``), the rest removed; ``keep_max`` = 1 keeps the newest alone;
    * a checkpoint saved in the middle of an epoch (a stop signal) is removed once a newer one exists;
    * ``best.ckpt`` is weights-only.

    ``optimizer_names``: the train step's parameters that are not the network's (what weights-only drops).
    ``newest``: the full checkpoint the run resumed from, if any (slimmed like the others once superseded).
    Creating it removes the temporary files that killed saves left in the folder (``removed_partials``).
    """

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
