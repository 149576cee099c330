"""Readers: ``Rows`` (one rank's shard of ``(image bytes, int32 label, sample id)``, the class index, the counts and
the epoch sampler) that the shared tail (``src.data.pipeline``) starts from. ``file_rows`` reads an ImageFolder tree,
a ``data_list`` or a list of files: each file is checked once (``src.data.verify``), unusable files are named once,
and a file whose CRC-32 changed since its check is dropped and named. ``SampleTally`` counts the ids served and the
ids out of the transforms; the difference is what the engine dropped.
"""
from __future__ import annotations

import logging
import math
import os
import threading
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from src.data.balance import ClassBalancedOrder
from src.data.checks import CONVERT, SKIP, pil_rgb_bytes
from src.data.listing import MAX_LISTED, list_dataset
from src.data.sampler import EpochShardOrder, mindspore_sampler
from src.data.verify import check_files
from src.errors import DatasetError
from src.utils.host import available_cpus

logger = logging.getLogger(__name__)


def cap_workers(requested: int, key: str) -> int:
    """``requested`` workers, at most the cores (a warning naming ``key``: MindSpore refuses more with a traceback)."""
    cores = available_cpus()
    if int(requested) > cores:
        logger.warning("%s=%d is more than the %d core(s) this process may use; using %d", key, int(requested),
                       cores, cores)
        return cores
    return int(requested)


class SampleTally:
    """Per pass (from the engine's threads): each id's count served and out of the transforms; ``notes``: why cut."""

    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.served: Counter = Counter()
            self.kept: Counter = Counter()
            self.notes: Dict[Any, str] = {}

    def serve(self, sid) -> None:
        with self.lock:
            self.served[sid] += 1

    def serve_op(self, x):
        """A map op on the id column before the transforms (readers without a Python source)."""
        self.serve(x.item())
        return x

    def keep_op(self, x):
        """A map op on the id column after the transforms."""
        with self.lock:
            self.kept[x.item()] += 1
        return x

    def dropped(self) -> List[Any]:
        """Ids served but not out of the transforms (with multiplicity)."""
        with self.lock:
            return sorted((self.served - self.kept).elements())


@dataclass
class Rows:
    """One rank's shard of ``(image, label, id)`` rows and what the tail needs to know about it."""
    dataset: Any                          # mindspore dataset: image (uint8 bytes), label (int32), id
    class_to_idx: Dict[str, int]
    num_rows: int                         # rows of this shard per epoch (train: padded to equal shards)
    total: int                            # usable rows over all shards
    class_counts: np.ndarray              # int64 [num_classes]: usable rows per label over all shards
    where: str                            # how messages name the data
    name_of: Callable[[Any], str]         # a sample id -> the file or record it is
    tally: SampleTally
    serves: bool = True                   # the reader records the served ids itself
    format: str = "folder"
    sampler: Any = None                   # train: has set_epoch(e)
    source: Any = None                    # the file source (folder reader)
    all_paths: Any = None                 # every usable file of all shards, in global sample order
    skipped: List[Tuple[str, str]] = field(default_factory=list)
    converted: List[str] = field(default_factory=list)    # files decoded through PIL


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


class _FileSource:
    """Random-access source for GeneratorDataset: (encoded image bytes, int32 label, int64 sample id)."""

    def __init__(self, table: _PathTable, labels: np.ndarray, convert: np.ndarray, crcs: np.ndarray,
                 tally: SampleTally):
        self.table, self.labels, self.convert, self.crcs, self.tally = table, labels, convert, crcs, tally
        self.read_log = None  # a list: every path read is appended (train.py dump_shard_files)

    def __len__(self):
        return len(self.table)

    def __getitem__(self, i):
        i = int(i)
        path = self.table[i]
        self.tally.serve(i)
        if self.read_log is not None:
            self.read_log.append(path)
        data = np.zeros(0, dtype=np.uint8)  # an empty sample: the engine drops it, the tally names it
        try:
            raw = np.fromfile(path, dtype=np.uint8)
            if self.crcs[i] >= 0 and zlib.crc32(raw) != self.crcs[i]:
                self.tally.notes[i] = ("its bytes changed since it was checked (same size and mtime, another "
                                       "checksum): not decoded")
            else:
                data = np.frombuffer(pil_rgb_bytes(raw), np.uint8) if self.convert[i] else raw
        except Exception as exc:  # vanished or unreadable since the check
            self.tally.notes[i] = f"cannot read it: {exc}"
        return data, np.array(self.labels[i], dtype=np.int32), np.array(i, dtype=np.int64)


def file_rows(data_dir: str, opts, *, mode: str, rank: int, group_size: int, seed: int, shuffle: bool,
              files: Optional[Sequence[str]] = None, class_to_idx=None, num_classes=None,
              where: Optional[str] = None, workers: int = 1) -> Rows:
    """The rows of an ImageFolder tree, a ``data_list`` rooted at ``data_dir``, or ``files`` (labels 0)."""
    import mindspore.dataset as ds

    train = mode == "train"
    if files is not None:
        rel_paths, labels = [os.fspath(p) for p in files], [0] * len(files)
        where = where or f"{len(rel_paths)} given file(s)"
        class_to_idx, data_dir = dict(class_to_idx or {}), ""
        if not rel_paths:
            raise DatasetError(f"{where}: no file given")
    else:
        class_to_idx, rel_paths, labels = list_dataset(data_dir, opts.data_list, class_to_idx, num_classes)
        where = where or (f"{opts.data_list} (root {data_dir or '.'})" if opts.data_list else data_dir)
    n_classes = int(num_classes) if num_classes else (max(class_to_idx.values()) + 1 if class_to_idx else 1)
    bad_label = next((lb for lb in labels if lb >= n_classes), None)
    if bad_label is not None:
        raise DatasetError(f"label {bad_label} in {where} is out of range for num_classes={n_classes}")
    if num_classes and class_to_idx and max(class_to_idx.values()) >= int(num_classes):
        raise DatasetError(f"{where} has {len(class_to_idx)} classes but num_classes={num_classes}")

    abs_paths = [os.path.join(data_dir, p) if data_dir else p for p in rel_paths]
    results = check_files(abs_paths, data_dir, where, verify=opts.verify_files, manifest=opts.verify_manifest,
                          group_size=group_size, max_pixels=opts.max_image_pixels)
    skipped = [(r.path, r.reason) for r in results if r.status == SKIP]
    keep = [i for i, r in enumerate(results) if r.status != SKIP]
    converted = [abs_paths[i] for i in keep if results[i].status == CONVERT]
    if converted:
        logger.info("%d file(s) under %s are decoded through PIL (formats the engine cannot read), e.g. %s",
                    len(converted), where, converted[0])
    if not keep:
        raise DatasetError(f"no usable image left in {where}: all {len(abs_paths)} files were skipped")
    if files is None and not opts.data_list:
        used = {labels[i] for i in keep}
        empty = [c for c, i in sorted(class_to_idx.items(), key=lambda kv: kv[1]) if i not in used]
        if empty:
            logger.warning("%d class folder(s) under %s have no usable image (their class index is kept): %s",
                           len(empty), data_dir, ", ".join(empty[:MAX_LISTED]))

    total = len(keep)
    all_paths = _PathTable(data_dir, [rel_paths[i] for i in keep])
    class_counts = np.bincount([labels[i] for i in keep], minlength=max(n_classes, 1)).astype(np.int64)
    if not train and group_size > 1:  # eval: every image exactly once over all ranks
        keep = keep[rank::group_size]
        if not keep:
            raise DatasetError(f"eval shard {rank} of {group_size} is empty: {where} has only {total} images")
    lab_keep = np.asarray([labels[i] for i in keep], dtype=np.int32)
    tally = SampleTally()
    source = _FileSource(all_paths if len(keep) == total else _PathTable(data_dir, [rel_paths[i] for i in keep]),
                         lab_keep, np.asarray([results[i].status == CONVERT for i in keep], dtype=bool),
                         np.asarray([-1 if results[i].crc is None else results[i].crc for i in keep], np.int64), tally)
    sampler, shuffle_arg = None, None
    if train and opts.sampler == "class_balanced":
        sampler = mindspore_sampler(ClassBalancedOrder, lab_keep, rank, group_size, seed=seed)
    elif train and (shuffle or group_size > 1):
        sampler = mindspore_sampler(EpochShardOrder, len(source), rank, group_size, shuffle=shuffle, seed=seed)
    else:
        shuffle_arg = shuffle
    dataset = ds.GeneratorDataset(source, column_names=["image", "label", "id"], shuffle=shuffle_arg,
                                  sampler=sampler, num_parallel_workers=min(workers, 8), python_multiprocessing=False)
    return Rows(dataset=dataset, class_to_idx=dict(class_to_idx), num_rows=math.ceil(total / group_size) if train
                else len(keep), total=total, class_counts=class_counts, where=where,
                name_of=lambda i: source.table[int(i)], tally=tally, sampler=sampler, source=source,
                all_paths=all_paths, skipped=skipped, converted=converted)
