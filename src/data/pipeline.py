"""The batched train / eval pipeline: ``create_dataset`` (and ``create_dataset_from_config``, which also
reads MindRecord datasets through ``src.data.mindrecord``).

It lists an ImageFolder tree or a ``data_list`` (``src.data.listing``), decodes every file once in full in
isolated worker processes (``src.data.verify``: a file that crashes or hangs MindSpore's decoder kills only
a worker; results are cached in a manifest keyed by path, size and mtime, so later runs and other ranks only
stat the files; each unusable file is named once in the log), and builds a batched pipeline: a
random-access file source that yields the encoded bytes, then the engine's own decode and transforms
(``src.data.transforms``), sharded by rank (``src.data.sampler`` for train, or the class-balanced sampler of
``src.data.balance``).

A missing or empty root, a ``data_list`` that names nothing usable, or no usable image left raises
``DatasetError`` naming the path. A class folder without usable images keeps its class index (indices
stay those of the sorted folder names) and is reported with a warning.
"""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from src.data.checks import CONVERT, SKIP, pil_rgb_bytes, scan_files, watch_engine_dumps
from src.errors import DatasetError
from src.data.listing import IMAGE_EXTENSIONS, MAX_LISTED, list_image_folder, read_data_list
from src.data.sampler import epoch_shard_sampler
from src.data.transforms import (AUTO_AUGMENT_MODES, EVAL_RESIZE_MODES, eval_transforms, mix_op,
                                 parse_image_size, train_transforms)
from src.utils.host import available_cpus
from src.utils.seeding import set_augmentation_seed

logger = logging.getLogger(__name__)


SAMPLERS = ("epoch_shard", "class_balanced")
DATASET_FORMATS = ("folder", "mindrecord")
#: ``verify_manifest`` values: "" = the default place (``src.data.verify.default_manifest_path``), "none" = no
#: manifest (every file is decoded again in every run), anything else = that file
NO_MANIFEST = "none"


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

    def path_of(self, index):
        """The file of global sample ``index`` (an eval shard of rank r holds samples r, r + G, r + 2G, ...;
        ``src.analysis.metrics.EvalAccumulator``'s sample indices), whichever rank scored it; None for a
        MindRecord dataset (no files)."""
        table = self.all_paths if self.all_paths is not None else getattr(self.source, "table", None)
        return None if table is None else table[int(index)]

    def set_epoch(self, epoch):
        """Makes the next iterator yield epoch ``epoch``'s order (a fresh iterator does not advance the
        sampler by itself; a resumed run starts at its first unfinished epoch)."""
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)

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


def check_options(mode, per_batch_size, rank, group_size, eval_resize, crop_pct, color_jitter,
                   auto_augment, re_prob, mixup_alpha, cutmix_alpha, mixup_prob):
    if mode not in ("train", "eval"):
        raise DatasetError(f"mode must be 'train' or 'eval', got {mode!r}")
    if int(per_batch_size) <= 0:
        raise DatasetError(f"per_batch_size must be positive, got {per_batch_size!r}")
    if int(group_size) <= 0 or not 0 <= int(rank) < int(group_size):
        raise DatasetError(f"rank {rank!r} is not in [0, group_size={group_size!r})")
    if eval_resize not in EVAL_RESIZE_MODES:
        raise DatasetError(f"eval_resize must be one of {EVAL_RESIZE_MODES}, got {eval_resize!r}")
    if not 0.0 < float(crop_pct) <= 1.0:
        raise DatasetError(f"crop_pct must be in (0, 1], got {crop_pct!r}")
    if float(color_jitter) < 0:
        raise DatasetError(f"color_jitter must be >= 0, got {color_jitter!r}")
    if str(auto_augment).lower() not in AUTO_AUGMENT_MODES:
        raise DatasetError(f"auto_augment must be one of {AUTO_AUGMENT_MODES}, got {auto_augment!r}")
    for name, v in (("re_prob", re_prob), ("mixup_prob", mixup_prob)):
        if not 0.0 <= float(v) <= 1.0:
            raise DatasetError(f"{name} must be in [0, 1], got {v!r}")
    for name, v in (("mixup_alpha", mixup_alpha), ("cutmix_alpha", cutmix_alpha)):
        if float(v) < 0:
            raise DatasetError(f"{name} must be >= 0, got {v!r}")


_check_options = check_options  # the old name


class _PathTable:
    """Compact storage of many relative paths (one bytes blob + offsets, ~30 bytes a path)."""

    def __init__(self, root: str, rel_paths: Sequence[str]):
        self.root = root
        enc = [p.encode("utf-8", "surrogateescape") for p in rel_paths]
        self._offsets = np.zeros(len(enc) + 1, dtype=np.int64)
        np.cumsum([len(e) for e in enc], out=self._offsets[1:])
        self._blob = b"".join(enc)

    def __len__(self):
        return len(self._offsets) - 1

    def __getitem__(self, i: int) -> str:
        rel = self._blob[self._offsets[i]:self._offsets[i + 1]].decode("utf-8", "surrogateescape")
        return os.path.join(self.root, rel) if self.root else rel


def _read_bytes(path: str) -> np.ndarray:
    """The file's bytes as a writable uint8 array, read straight into it (one copy less than np.fromfile)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        buf = np.empty(size, dtype=np.uint8)
        if os.readv(fd, [buf]) != size:  # short read (file changed?): fall back to a plain read
            return np.fromfile(path, dtype=np.uint8)
        return buf
    finally:
        os.close(fd)


class _FileSource:
    """Random-access source for GeneratorDataset: (encoded image bytes, int32 label)."""

    def __init__(self, table: _PathTable, labels: np.ndarray, convert: np.ndarray):
        self.table = table
        self.labels = labels
        self.convert = convert
        self.read_log = None  # a list: every path read is appended (train.py dump_shard_files)

    def __len__(self):
        return len(self.table)

    def __getitem__(self, i):
        i = int(i)
        path = self.table[i]
        if self.read_log is not None:
            self.read_log.append(path)
        try:
            data = pil_rgb_bytes(path) if self.convert[i] else _read_bytes(path)
        except Exception as exc:  # vanished or changed since the scan: the engine skips the sample
            logger.warning("cannot read %s (%s); the sample is skipped", path, exc)
            data = np.zeros(0, dtype=np.uint8)
        return data, np.array(self.labels[i], dtype=np.int32)


def create_dataset(data_dir, image_size, per_batch_size, *, mode="train", rank=0, group_size=1,
                   data_list="", num_parallel_workers=0, shuffle=None, drop_remainder=None,
                   eval_resize="squash", crop_pct=0.875, color_jitter=0.4, auto_augment="none",
                   re_prob=0.0, mixup_alpha=0.0, cutmix_alpha=0.0, mixup_prob=1.0, num_classes=None,
                   seed=0, class_to_idx=None, verify_files=True, crop_scale_min=0.08, verify_manifest="",
                   sampler="epoch_shard", verify_workers=0, where=None, files=None) -> DatasetBundle:
    """Build the batched train or eval pipeline; see the module docstring for the bad-data policy.

    Sharding: train shards are equal (``ceil(N / group_size)`` images each; ``EpochShardSampler`` reshuffles
    the whole list every epoch from ``(seed, epoch)``, identically on every rank, pads it by wrapping around
    and deals it out, so the shards of one epoch are disjoint up to the padding); eval shards are disjoint and
    cover every image exactly once (sizes may differ by one). Seeds: the order uses ``seed``; the engine's random ops get
    ``src.utils.seeding.set_augmentation_seed(seed, rank)`` so that ranks draw different crops and flips (a
    trainer sets it again before each epoch's iterator).
    File check (``verify_files``, on by default): every file is decoded once by ``src.data.verify`` in
    worker processes (``verify_workers``; 0 = the cores), results cached in ``verify_manifest`` ("" = beside
    the data, or in the user cache when the data folder is read-only; "none" = no cache). Unusable files are
    skipped, each named once in a warning. ``verify_files=False`` only looks at each file's first and last
    bytes (``src.data.checks``): a file whose header and end marker are intact but whose content is corrupt
    can then crash the process inside the decoder.
    ``sampler`` (train): ``epoch_shard`` (the default above) or ``class_balanced`` (``src.data.balance``:
    each class an equal share of every epoch, same (seed, epoch) and rank-shard contract).
    ``where``: how messages name the data (default: ``data_dir``, or ``data_list`` and its root).
    ``files``: a list of image paths instead of ``data_dir`` / ``data_list`` (predict: every label 0), in order.
    """
    import mindspore as ms
    import mindspore.dataset as ds
    import mindspore.dataset.transforms as T

    mode = str(mode).lower()
    auto_augment = str(auto_augment or "none").lower()
    check_options(mode, per_batch_size, rank, group_size, eval_resize, crop_pct, color_jitter,
                  auto_augment, re_prob, mixup_alpha, cutmix_alpha, mixup_prob)
    sampler_kind = str(sampler or "epoch_shard")
    if sampler_kind not in SAMPLERS:
        raise DatasetError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    image_hw = parse_image_size(image_size)
    per_batch_size, rank, group_size = int(per_batch_size), int(rank), int(group_size)
    train = mode == "train"
    shuffle = train if shuffle is None else bool(shuffle)
    drop_remainder = train if drop_remainder is None else bool(drop_remainder)
    workers = int(num_parallel_workers or 0)
    if workers <= 0:
        workers = default_num_workers(group_size)
    data_dir = os.fspath(data_dir) if data_dir else ""

    # ---- list
    if files is not None:
        rel_paths, labels = [os.fspath(f) for f in files], [0] * len(files)
        data_dir, class_to_idx, where = "", {"0": 0}, where or f"{len(files)} image file(s)"
    elif data_list:
        rel_paths, labels = read_data_list(os.fspath(data_list), data_dir)
        where = where or f"{data_list} (root {data_dir or '.'})"
        if class_to_idx is None:
            k = int(num_classes) if num_classes else max(labels) + 1
            class_to_idx = {str(i): i for i in range(k)}
        else:
            class_to_idx = {str(a): int(b) for a, b in class_to_idx.items()}
    else:
        if not data_dir:
            raise DatasetError("data_dir is empty: give an ImageFolder root (root/<class>/<image>)")
        class_to_idx, rel_paths, labels = list_image_folder(data_dir, class_to_idx)
        where = where or data_dir
        if not rel_paths:
            raise DatasetError(f"dataset folder has no image files: {data_dir} "
                               f"(looked for {', '.join(IMAGE_EXTENSIONS[:6])}, ... in its class folders)")
    n_classes = int(num_classes) if num_classes else (max(class_to_idx.values()) + 1 if class_to_idx else 0)
    bad_label = next((lb for lb in labels if lb >= n_classes), None)
    if bad_label is not None:
        raise DatasetError(f"label {bad_label} in {where} is out of range for num_classes={n_classes}")
    if num_classes and class_to_idx and max(class_to_idx.values()) >= int(num_classes):
        raise DatasetError(f"{where} has {len(class_to_idx)} classes but num_classes={num_classes}")

    # ---- check files
    abs_paths = [os.path.join(data_dir, p) if data_dir else p for p in rel_paths]
    results = _check_files(abs_paths, data_dir, verify_files, verify_manifest, verify_workers, rank, group_size)
    skipped = [(p, r) for p, (s, r) in zip(abs_paths, results) if s == SKIP]
    keep = [i for i, (s, _) in enumerate(results) if s != SKIP]
    converted = [abs_paths[i] for i in keep if results[i][0] == CONVERT]
    from src.data.verify import VerifyResult, report_unusable
    report_unusable([VerifyResult(p, s, r) for p, (s, r) in zip(abs_paths, results)], logger, where)
    if converted:
        logger.info("%d file(s) under %s are decoded through PIL (formats the engine cannot read), e.g. %s",
                    len(converted), where, converted[0])
    if not keep:
        raise DatasetError(f"no usable image left in {where}: all {len(abs_paths)} files were skipped")
    if not data_list:
        used = {labels[i] for i in keep}
        empty = [c for c, i in sorted(class_to_idx.items(), key=lambda kv: kv[1]) if i not in used]
        if empty:
            logger.warning("%d class folder(s) under %s have no usable image (their class index is kept): %s",
                           len(empty), data_dir, ", ".join(empty[:MAX_LISTED]))

    rel_keep = [rel_paths[i] for i in keep]
    lab_keep = np.asarray([labels[i] for i in keep], dtype=np.int32)
    class_counts = np.bincount(lab_keep, minlength=max(n_classes, 1)).astype(np.int64)
    conv_keep = np.asarray([results[i][0] == CONVERT for i in keep], dtype=bool)
    total = len(keep)

    # ---- shard
    all_paths = _PathTable(data_dir, rel_keep) if not train and group_size > 1 else None
    if train or group_size == 1:
        shard_n = math.ceil(total / group_size)
    else:  # eval: every image exactly once over all ranks
        sel = np.arange(rank, total, group_size)
        rel_keep = [rel_keep[i] for i in sel]
        lab_keep, conv_keep = lab_keep[sel], conv_keep[sel]
        shard_n = len(sel)
        if shard_n == 0:
            raise DatasetError(f"eval shard {rank} of {group_size} is empty: {where} has only {total} images")
    steps = shard_n // per_batch_size if drop_remainder else math.ceil(shard_n / per_batch_size)
    if steps == 0:
        raise DatasetError(f"{where}: {shard_n} usable image(s) in this shard, fewer than per_batch_size="
                           f"{per_batch_size}; lower per_batch_size or keep the last partial batch")

    # ---- engine
    # One seed for the order (the same on every rank, so the shards stay disjoint); the engine's random
    # ops get a per-rank seed (otherwise every rank draws the same crops/flips/jitter position by position).
    base_seed = int(seed)
    set_augmentation_seed(base_seed, rank)
    ds.config.set_error_samples_mode(ds.config.ErrorSamplesMode.SKIP)
    watch_engine_dumps()
    source = _FileSource(_PathTable(data_dir, rel_keep), lab_keep, conv_keep)
    sampler = None
    if train and sampler_kind == "class_balanced":
        from src.data.balance import class_balanced_sampler
        sampler = class_balanced_sampler(lab_keep, rank, group_size, seed=base_seed)
        shuffle_arg = None
    elif train and (shuffle or group_size > 1):
        sampler = epoch_shard_sampler(len(source), rank, group_size, shuffle=shuffle, seed=base_seed)
        shuffle_arg = None
    else:
        shuffle_arg = shuffle
    dataset = ds.GeneratorDataset(source, column_names=["image", "label"], shuffle=shuffle_arg, sampler=sampler,
                                  num_parallel_workers=min(workers, 8), python_multiprocessing=False)
    if train:
        ops = train_transforms(image_hw, color_jitter, auto_augment, re_prob, crop_scale_min)
    else:
        ops = eval_transforms(image_hw, eval_resize, crop_pct)
    dataset = dataset.map(operations=ops, input_columns="image", num_parallel_workers=workers)
    mixing = train and (float(mixup_alpha) > 0 or float(cutmix_alpha) > 0)
    if mixing:
        dataset = dataset.map(operations=T.OneHot(n_classes), input_columns="label")
    dataset = dataset.batch(per_batch_size, drop_remainder=drop_remainder,
                            num_parallel_workers=min(workers, 4))
    if mixing:
        dataset = dataset.map(operations=mix_op(float(mixup_alpha), float(cutmix_alpha), float(mixup_prob)),
                              input_columns=["image", "label"])
        dataset = dataset.map(operations=T.TypeCast(ms.float32), input_columns="label")
    return DatasetBundle(dataset=dataset, class_to_idx=dict(class_to_idx), num_images=shard_n,
                         steps_per_epoch=steps, skipped=skipped, converted=converted, total_images=total,
                         mode=mode, sampler=sampler, source=source, class_counts=class_counts,
                         all_paths=all_paths if all_paths is not None else source.table)


def _check_files(abs_paths, data_dir, verify_files, verify_manifest, verify_workers, rank, group_size):
    """``[(status, reason)]`` for every file: the full decode check (``src.data.verify``) or the cheap one."""
    from src.data.verify import default_manifest_path, verify_images

    t0 = time.perf_counter()
    if not verify_files:
        results = scan_files(abs_paths)
        logger.info("checked %d files (first and last bytes only: verify_files is off) in %.1f s", len(abs_paths),
                    time.perf_counter() - t0)
        return results
    manifest = str(verify_manifest or "")
    if manifest.lower() == NO_MANIFEST:
        manifest = None
    elif not manifest:
        manifest = default_manifest_path(data_dir) if data_dir else None
    stats = {}
    results = verify_images(abs_paths, workers=int(verify_workers or 0), manifest=manifest,
                            root=data_dir or None, rank=rank, group_size=group_size, progress=None, stats=stats)
    logger.info("verified %d files in %.1f s (%d decoded now, %d known from %s)", len(abs_paths),
                time.perf_counter() - t0, stats.get("checked", 0), stats.get("cached", 0),
                manifest or "no manifest")
    return [(r.status, r.reason) for r in results]


def create_dataset_from_config(data, mode, *, seed, num_classes, image_size, eval_resize, crop_pct, rank=0,
                               group_size=1, data_dir=None, class_to_idx=None, **overrides) -> DatasetBundle:
    """``create_dataset`` with the options of the config's data section ``data`` (``src.config.
    DataConfig``); with ``dataset_format: mindrecord``, ``src.data.mindrecord.create_mindrecord_dataset`` with
    the same arguments (``data_dir`` is then the MindRecord prefix). The preprocessing (``image_size``, ``eval_resize``, ``crop_pct``) comes resolved from
    the caller (``src.archs.resolve_preprocess``); ``data_dir`` defaults to ``data.data_dir``."""
    kwargs = dict(mode=mode, rank=rank, group_size=group_size, data_list=data.data_list,
                  verify_files=data.verify_files, verify_manifest=data.verify_manifest, sampler=data.sampler,
                  num_parallel_workers=data.num_parallel_workers, eval_resize=eval_resize, crop_pct=crop_pct,
                  color_jitter=data.color_jitter, auto_augment=data.auto_augment,
                  crop_scale_min=data.crop_scale_min, re_prob=data.re_prob, mixup_alpha=data.mixup_alpha,
                  cutmix_alpha=data.cutmix_alpha, mixup_prob=data.mixup_prob, num_classes=num_classes,
                  seed=seed, class_to_idx=class_to_idx)
    kwargs.update(overrides)
    root = data.data_dir if data_dir is None else data_dir
    if data.dataset_format == "mindrecord":
        from src.data.mindrecord import create_mindrecord_dataset
        return create_mindrecord_dataset(root, image_size, data.per_batch_size, **kwargs)
    return create_dataset(root, image_size, data.per_batch_size, **kwargs)
