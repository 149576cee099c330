"""The batched train / eval pipeline: a reader (``src.data.reader.file_rows`` or
``src.data.mindrecord.mindrecord_rows``), then one shared tail: per-rank augmentation seed, ``ErrorSamplesMode.SKIP``,
transforms, sample count, one-hot + mixup/CutMix, batch. Every pass is counted (``DatasetBundle.account``).

    bundle = create_dataset("/data/train", 224, 64, mode="train", rank=r, group_size=g, mixup_alpha=0.2)
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from typing import Optional, Sequence

from src.data.checks import watch_engine_dumps
from src.data.listing import MAX_LISTED
from src.data.mindrecord import mindrecord_rows
from src.data.options import data_options
from src.data.reader import Rows, cap_workers, file_rows
from src.data.transforms import batch_transforms, eval_transforms, parse_image_size, train_transforms
from src.errors import DatasetError
from src.utils.host import available_cpus
from src.utils.seeding import set_augmentation_seed

logger = logging.getLogger(__name__)


@dataclass
class DatasetBundle(Rows):
    """The reader's ``Rows`` with ``dataset`` batched (image float32 NCHW, label int32 [B] or float32 [B, K])."""
    steps_per_epoch: int = 0           # batches per epoch in this shard
    samples_per_pass: int = 0          # samples one pass yields when nothing is dropped
    named: set = field(default_factory=set)  # dropped samples already named in a warning
    num_images = property(lambda self: self.num_rows)     # usable images in this shard (train: padded)
    total_images = property(lambda self: self.total)      # usable images over all shards

    def path_of(self, index):
        """The file of global sample ``index``, whichever rank scored it; None for MindRecord."""
        return None if self.all_paths is None else self.all_paths[int(index)]

    def set_epoch(self, epoch):
        """The next iterator yields epoch ``epoch``'s order; starts its count."""
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
        self.tally.reset()

    def account(self, samples: int, what: str = "epoch", zero_is_error: bool = True) -> int:
        """Closes a pass of ``samples`` samples: none is a ``DatasetError`` (if ``zero_is_error``), fewer or dropped
        ones one warning naming them once per run. Returns the number dropped."""
        dropped, notes = self.tally.dropped(), dict(self.tally.notes)
        self.tally.reset()
        names = []
        for sid in dropped:
            if sid not in self.named and len(names) < MAX_LISTED:
                self.named.add(sid)
                names.append(self.name_of(sid) + (f" ({notes[sid]})" if sid in notes else ""))
        detail = ""
        if dropped:
            detail = (f"; {len(dropped)} sample(s) were dropped by the data pipeline (a decoder or transform failed "
                      f"on them, or the file changed since it was checked)")
            detail += f": {'; '.join(names)}" + (" ..." if len(dropped) > len(names) else "") if names else \
                " (named in an earlier warning)"
        if samples == 0 and zero_is_error:
            raise DatasetError(f"{what}: no sample of {self.where} came out of the data pipeline (0 of "
                               f"{self.samples_per_pass}){detail}; check image_size and the data")
        if dropped or samples < self.samples_per_pass:
            logger.warning("%s: %d of %d samples of %s%s", what, samples, self.samples_per_pass, self.where, detail)
        return len(dropped)

    def record_reads(self):
        """Starts recording the path of every file read."""
        if self.source is None:
            raise DatasetError("recording the files read needs the folder reader (dataset_format=folder)")
        self.source.read_log = []

    def pop_reads(self):
        """The paths read since the last call (sorted), clearing the record."""
        out = sorted(self.source.read_log)
        self.source.read_log.clear()
        return out


def default_num_workers(group_size: int = 1) -> int:
    """The cores shared among the host's devices (at most 8), capped at 16 (more stop paying off)."""
    local = max(1, min(int(group_size or 1), 8))
    return max(1, min(16, available_cpus() // local))


def create_dataset(data_dir, image_size, per_batch_size=None, *, mode="train", files: Optional[Sequence[str]] = None,
                   rank=0, group_size=1, seed=0, num_classes=None, class_to_idx=None, eval_resize="squash",
                   crop_pct=0.875, shuffle=None, drop_remainder=None, where=None, options=None,
                   **keys) -> DatasetBundle:
    """The pipeline of ``data_dir`` (an ImageFolder root, a ``data_list`` root or a MindRecord prefix) or ``files``.
    ``options`` (the data config section) with ``keys`` set are checked by ``data_options``; the preprocessing comes
    resolved. Train shards are equal, eval shards disjoint and complete; ``where``: how messages name the data."""
    import mindspore.dataset as ds

    if per_batch_size is not None:
        keys["per_batch_size"] = per_batch_size
    opts = data_options(options, **keys)
    mode = str(mode).lower()
    if mode not in ("train", "eval"):
        raise DatasetError(f"mode must be 'train' or 'eval', got {mode!r}")
    rank, group_size = int(rank), int(group_size)
    if group_size <= 0 or not 0 <= rank < group_size:
        raise DatasetError(f"rank {rank!r} is not in [0, group_size={group_size!r})")
    image_hw = parse_image_size(image_size)
    train = mode == "train"
    shuffle = train if shuffle is None else bool(shuffle)
    drop_remainder = train if drop_remainder is None else bool(drop_remainder)
    workers = cap_workers(opts.num_parallel_workers, "num_parallel_workers") or default_num_workers(group_size)
    data_dir = os.fspath(data_dir) if data_dir else ""
    common = dict(mode=mode, rank=rank, group_size=group_size, seed=int(seed), shuffle=shuffle,
                  class_to_idx=class_to_idx, num_classes=num_classes)
    if files is None and opts.dataset_format == "mindrecord":
        rows = mindrecord_rows(data_dir, workers=min(workers, 8), **common)
    else:
        rows = file_rows(data_dir, opts, files=files, where=where, workers=workers, **common)

    # ---- the shared tail
    n_classes = int(num_classes) if num_classes else max(list(rows.class_to_idx.values()) + [0]) + 1
    per_batch_size = opts.per_batch_size
    steps = rows.num_rows // per_batch_size if drop_remainder else math.ceil(rows.num_rows / per_batch_size)
    if steps == 0:
        raise DatasetError(f"{rows.where}: {rows.num_rows} usable image(s) in this shard, fewer than per_batch_size="
                           f"{per_batch_size}; lower per_batch_size or keep the last partial batch")
    # the order's seed is the same on every rank; the random ops' is per rank (else ranks draw the same crops)
    set_augmentation_seed(int(seed), rank)
    ds.config.set_error_samples_mode(ds.config.ErrorSamplesMode.SKIP)
    watch_engine_dumps()
    dataset = rows.dataset
    if not rows.serves:
        dataset = dataset.map(operations=rows.tally.serve_op, input_columns="id")
    ops = train_transforms(image_hw, opts) if train else eval_transforms(image_hw, eval_resize, crop_pct)
    dataset = dataset.map(operations=ops, input_columns="image", num_parallel_workers=workers)
    dataset = dataset.map(operations=rows.tally.keep_op, input_columns="id")
    dataset = dataset.project(["image", "label"])
    label_ops, batch_ops = batch_transforms(opts, n_classes) if train else ([], [])
    for op in label_ops:
        dataset = dataset.map(operations=op, input_columns="label")
    dataset = dataset.batch(per_batch_size, drop_remainder=drop_remainder, num_parallel_workers=min(workers, 4))
    for op, columns in batch_ops:
        dataset = dataset.map(operations=op, input_columns=columns)
    return DatasetBundle(**{**vars(rows), "dataset": dataset}, steps_per_epoch=steps,
                         samples_per_pass=steps * per_batch_size if drop_remainder else rows.num_rows)


def create_dataset_from_config(data, mode, *, seed, num_classes, image_size, eval_resize, crop_pct, data_dir=None,
                               **overrides) -> DatasetBundle:
    """``create_dataset`` with the config's data section as options; ``data_dir`` defaults to ``data.data_dir``."""
    return create_dataset(data.data_dir if data_dir is None else data_dir, image_size, mode=mode, seed=seed,
                          num_classes=num_classes, eval_resize=eval_resize, crop_pct=crop_pct, options=data,
                          **overrides)
