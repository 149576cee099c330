"""The batched train / eval pipeline: one reader, then one shared tail.

    bundle = create_dataset("/data/train", 224, 64, mode="train", rank=r, group_size=g, mixup_alpha=0.2)
    bundle = create_dataset("", 224, 16, mode="eval", files=["a.jpg", "b.png"], num_classes=1000)   # predict
    bundle = create_dataset_from_config(cfg.data, "train", seed=..., num_classes=..., **preprocess)

Readers give rows (``src.data.reader.Rows``): an ImageFolder tree, a ``data_list``, or a plain list of files
(``src.data.reader.file_rows``: every file checked once, the unusable ones named once and skipped), or a
MindRecord prefix (``dataset_format: mindrecord``, ``src.data.mindrecord.mindrecord_rows``). The tail
(``_batched``) is the same for all: the engine's random-op seed per rank, ``ErrorSamplesMode.SKIP``, the train
or eval transforms (``src.data.transforms``), the sample count, one-hot labels and mixup/CutMix, batching.
Options come checked from ``src.data.options`` (the config's data section): nothing here checks them again.

Every pass is counted (``DatasetBundle.account``, called by the trainer at the end of each epoch and by
``src.evaluation.evaluate``): a pass that yields no sample is a ``DatasetError``; fewer samples than expected,
or samples that the engine dropped (their bytes failed in a decoder or a transform; a file rewritten since it
was checked), is one warning with the count and the files or records, each named once per run.

A missing or empty root, a ``data_list`` that names nothing usable, or no usable image left raises
``DatasetError`` naming the path. A class folder without usable images keeps its class index (indices
stay those of the sorted folder names) and is reported with a warning.
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from src.data.checks import watch_engine_dumps
from src.data.listing import MAX_LISTED
from src.data.options import data_options
from src.data.reader import NO_MANIFEST, Rows, SampleTally, cap_workers, file_rows
from src.data.transforms import batch_transforms, eval_transforms, parse_image_size, train_transforms
from src.errors import DatasetError
from src.utils.host import available_cpus
from src.utils.seeding import set_augmentation_seed

logger = logging.getLogger(__name__)

__all__ = ["DatasetBundle", "create_dataset", "create_dataset_from_config", "default_num_workers", "NO_MANIFEST"]


@dataclass
class DatasetBundle:
    """What ``create_dataset`` returns."""
    dataset: Any                       # batched mindspore dataset: image float32 NCHW, label int32 [B] or float32 [B, K]
    class_to_idx: Dict[str, int]       # class name -> label index
    num_images: int                    # usable images in this shard (train: padded to equal shards)
    steps_per_epoch: int               # batches per epoch in this shard
    skipped: List[Tuple[str, str]] = field(default_factory=list)    # (path, reason) of unusable files
    converted: List[str] = field(default_factory=list)              # files decoded through PIL
    total_images: int = 0              # usable images over all shards
    mode: str = "train"
    sampler: Any = None                # train: the epoch sampler
    source: Any = None                 # the file source (None for a MindRecord dataset)
    class_counts: Any = None           # np.int64 [num_classes]: usable images per label over all shards
    format: str = "folder"             # folder | mindrecord
    all_paths: Any = None              # every usable file of all shards, in global sample order
    rows: Optional[Rows] = None        # what the reader gave (its tally counts every pass)
    samples_per_pass: int = 0          # samples one pass yields when nothing is dropped
    named: set = field(default_factory=set)  # dropped samples already named in a warning

    def path_of(self, index):
        """The file of global sample ``index`` (an eval shard of rank r holds samples r, r + G, r + 2G, ...;
        ``src.analysis.metrics.EvalAccumulator``'s sample indices), whichever rank scored it; None for a
        MindRecord dataset (no files)."""
        return None if self.all_paths is None else self.all_paths[int(index)]

    def set_epoch(self, epoch):
        """Makes the next iterator yield epoch ``epoch``'s order (a fresh iterator does not advance the
        sampler by itself; a resumed run starts at its first unfinished epoch) and starts its count."""
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
        if self.rows is not None:
            self.rows.tally.reset()

    def account(self, samples: int, what: str = "epoch", zero_is_error: bool = True) -> int:
        """Closes the count of one pass (an epoch, an evaluation) that gave the caller ``samples`` samples:
        zero is a ``DatasetError`` (unless ``zero_is_error`` is False: a rank whose peers sum the counts);
        fewer than ``samples_per_pass``, or samples the engine dropped, is one warning naming the count and
        the files or records. Returns the number of samples dropped in this pass."""
        tally = self.rows.tally if self.rows is not None else SampleTally()
        dropped = tally.dropped()
        notes = dict(tally.notes)
        tally.reset()
        names = []
        for sid in dropped:
            if sid not in self.named and len(names) < MAX_LISTED:
                self.named.add(sid)
                names.append(self.rows.name_of(sid) + (f" ({notes[sid]})" if sid in notes else ""))
        where = self.rows.where if self.rows is not None else "the data"
        detail = ""
        if dropped:
            detail = (f"; {len(dropped)} sample(s) were dropped by the data pipeline (a decoder or transform failed "
                      f"on them, or the file changed since it was checked)")
            detail += f": {'; '.join(names)}" + (" ..." if len(dropped) > len(names) else "") if names else \
                " (named in an earlier warning)"
        if samples == 0 and zero_is_error:
            raise DatasetError(f"{what}: no sample of {where} came out of the data pipeline (0 of "
                               f"{self.samples_per_pass}){detail or ''}; check image_size and the data")
        if dropped or samples < self.samples_per_pass:
            logger.warning("%s: %d of %d samples of %s%s", what, samples, self.samples_per_pass, where, detail)
        return len(dropped)

    @property
    def can_record_reads(self):
        """Whether ``record_reads`` works (the folder reader; a MindRecord dataset has no file source)."""
        return self.source is not None

    def file_of(self, index):
        """The file of sample ``index`` of this shard (the folder reader), else None."""
        return self.source.table[int(index)] if self.source is not None else None

    def record_reads(self, on=True):
        """Starts (or stops) recording the path of every file the source reads (data-parallel checks)."""
        if self.source is None:
            raise DatasetError("recording the files read needs the folder reader (dataset_format=folder)")
        self.source.read_log = [] if on else None

    def pop_reads(self):
        """The paths read since the last call (sorted), clearing the record."""
        log = self.source.read_log or []
        out = sorted(log)
        log.clear()
        return out


def default_num_workers(group_size: int = 1) -> int:
    """Cores this process may use, shared among the devices of one host (at most 8 per host), capped
    at 16 (more threads per pipeline stop paying off and cost memory on 192-core hosts)."""
    local = max(1, min(int(group_size or 1), 8))
    return max(1, min(16, available_cpus() // local))


def create_dataset(data_dir, image_size, per_batch_size=None, *, mode="train", files: Optional[Sequence[str]] = None,
                   rank=0, group_size=1, seed=0, num_classes=None, class_to_idx=None, eval_resize="squash",
                   crop_pct=0.875, shuffle=None, drop_remainder=None, where=None, options=None,
                   **keys) -> DatasetBundle:
    """Build the batched train or eval pipeline of ``data_dir`` (an ImageFolder root, the root of
    ``data_list``, or a MindRecord prefix with ``dataset_format="mindrecord"``) or of ``files`` (no labels).

    Data options: ``options`` (the config's data section; default: the defaults) with ``keys`` set, e.g.
    ``mixup_alpha=0.2, verify_manifest="none"`` (``src.data.options.data_options``: a bad value is a
    ``ConfigError`` naming the key); ``per_batch_size`` overrides the option. The preprocessing (``image_size``,
    ``eval_resize``, ``crop_pct``) comes resolved (``src.archs.resolve_preprocess``).

    Sharding: train shards are equal (``ceil(N / group_size)`` images each; the epoch sampler reshuffles the
    whole list every epoch from ``(seed, epoch)``, identically on every rank, pads it by wrapping around and
    deals it out, so the shards of one epoch are disjoint up to the padding); eval shards are disjoint and
    cover every image exactly once (sizes may differ by one). Seeds: the order uses ``seed``; the engine's
    random ops get ``src.utils.seeding.set_augmentation_seed(seed, rank)`` so that ranks draw different crops
    and flips (a trainer sets it again before each epoch's iterator).
    File check (``verify_files``, on by default): see ``src.data.reader``; ``verify_files=False`` only looks at
    each file's first and last bytes and declared size (``src.data.checks``): a file whose header and end
    marker are intact but whose content is corrupt can then crash the process inside the decoder.
    ``where``: how messages name the data (default: ``data_dir``, or ``data_list`` and its root).
    """
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
        from src.data.mindrecord import mindrecord_rows
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
    # One seed for the order (the same on every rank, so the shards stay disjoint); the engine's random
    # ops get a per-rank seed (otherwise every rank draws the same crops/flips/jitter position by position).
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
    return DatasetBundle(dataset=dataset, class_to_idx=dict(rows.class_to_idx), num_images=rows.num_rows,
                         steps_per_epoch=steps, skipped=rows.skipped, converted=rows.converted,
                         total_images=rows.total, mode=mode, sampler=rows.sampler, source=rows.source,
                         class_counts=rows.class_counts, format=rows.format, all_paths=rows.all_paths, rows=rows,
                         samples_per_pass=steps * per_batch_size if drop_remainder else rows.num_rows)


def create_dataset_from_config(data, mode, *, seed, num_classes, image_size, eval_resize, crop_pct, rank=0,
                               group_size=1, data_dir=None, class_to_idx=None, **overrides) -> DatasetBundle:
    """``create_dataset`` with the config's data section ``data`` (``src.config.DataConfig``) as its options
    (``overrides``: call arguments or changed options). The preprocessing (``image_size``, ``eval_resize``,
    ``crop_pct``) comes resolved from the caller (``src.archs.resolve_preprocess``); ``data_dir`` defaults to
    ``data.data_dir``."""
    return create_dataset(data.data_dir if data_dir is None else data_dir, image_size, mode=mode, seed=seed,
                          num_classes=num_classes, eval_resize=eval_resize, crop_pct=crop_pct, rank=rank,
                          group_size=group_size, class_to_idx=class_to_idx, options=data, **overrides)
