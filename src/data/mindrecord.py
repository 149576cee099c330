"""MindRecord datasets (written by ``src.data.convert``): the format and its reader.

``PREFIX`` with N shards: ``PREFIX0 ..`` (``PREFIX`` when N is 1) with their ``.db`` files, ``PREFIX.class_index.json``
and ``PREFIX.meta.json``, written last (shard sizes, counts, files left out): without it, or with a shard missing or
resized, the prefix is refused. A row: the file's bytes, its int32 label and its JSON-escaped relative path (the id).
Train uses ``DistributedSampler`` seeded ``seed + epoch`` (same permutation on every rank, padded by wrapping, so
``src.data.sampler``'s contract holds with MindSpore's permutation); eval ``SubsetSampler(range(r, N, G))``.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from src.data.listing import load_class_index, read_table_file
from src.data.reader import Rows, SampleTally
from src.errors import DatasetError
from src.utils.paths import require_utf8


FORMAT = "cspdarknet53-mindrecord"
VERSION = 1
META_SUFFIX = ".meta.json"
CLASS_INDEX_SUFFIX = ".class_index.json"
SCHEMA = {"image": {"type": "bytes"}, "label": {"type": "int32"}, "path": {"type": "string"}}


@dataclass
class MindRecordInfo:
    prefix: str
    files: List[str]                      # absolute shard file paths (without the .db files)
    num_rows: int
    class_to_idx: Dict[str, int]
    class_counts: Dict[str, int] = field(default_factory=dict)
    skipped: List[Tuple[str, str]] = field(default_factory=list)


def shard_files(prefix: str, shards: int) -> List[str]:
    """FileWriter's names: ``PREFIX`` for one shard, ``PREFIX0 .. PREFIX{N-1}`` for N."""
    return [prefix] if int(shards) == 1 else [f"{prefix}{i}" for i in range(int(shards))]


def _require_utf8(path: str, what: str) -> str:
    try:
        return require_utf8(path, what)
    except ValueError as exc:
        raise DatasetError(str(exc)) from None


def read_meta(prefix: str) -> MindRecordInfo:
    """The dataset at ``prefix``; ``DatasetError`` naming what is wrong when it is missing or incomplete."""
    prefix = os.path.abspath(os.fspath(prefix))
    meta_path = prefix + META_SUFFIX
    if not os.path.isfile(meta_path):
        shards = [f for f in shard_files(prefix, 1) + [prefix + "0"] if os.path.exists(f)]
        if shards:
            raise DatasetError(f"MindRecord dataset {prefix} is incomplete: {os.path.basename(meta_path)} is "
                               "missing (a conversion was interrupted or is still running); convert it again "
                               "with tools/convert_to_mindrecord.py")
        raise DatasetError(f"MindRecord dataset not found: {prefix} (no {os.path.basename(meta_path)}; make one "
                           "with tools/convert_to_mindrecord.py --data_dir DIR --output PREFIX)")
    meta, _ = read_table_file(meta_path, "MindRecord meta file")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DatasetError(f"{meta_path} is not a {FORMAT} meta file")
    if int(meta.get("version", 0)) > VERSION:
        raise DatasetError(f"{meta_path} has format version {meta.get('version')}; this code reads up to {VERSION}")
    folder = os.path.dirname(prefix)
    files = []
    for entry in meta["shards"]:
        path = os.path.join(folder, entry["file"])
        for p, size in ((path, entry["size"]), (path + ".db", entry.get("db_size"))):
            if not os.path.isfile(p):
                raise DatasetError(f"MindRecord dataset {prefix} is incomplete: shard file {p} is missing")
            if size is not None and os.path.getsize(p) != int(size):
                raise DatasetError(f"MindRecord dataset {prefix}: shard file {p} has {os.path.getsize(p)} bytes, "
                                   f"the meta file says {size} (changed or partly copied?)")
        files.append(path)
    try:
        class_to_idx = load_class_index(prefix + CLASS_INDEX_SUFFIX)
    except DatasetError as exc:
        raise DatasetError(f"MindRecord dataset {prefix}: {exc}") from None
    return MindRecordInfo(prefix=prefix, files=files, num_rows=int(meta["num_rows"]), class_to_idx=class_to_idx,
                          class_counts={str(k): int(v) for k, v in meta.get("class_counts", {}).items()},
                          skipped=[(str(p), str(r)) for p, r in meta.get("skipped", [])])


class _EpochSeeded:
    """A train ``DistributedSampler`` whose seed is ``seed + epoch`` (``set_epoch(e)`` before each epoch)."""

    def __init__(self, rank: int, group_size: int, shuffle: bool, seed: int):
        import mindspore.dataset as ds
        self.base_seed = int(seed)
        self.sampler = ds.DistributedSampler(num_shards=int(group_size), shard_id=int(rank), shuffle=bool(shuffle))
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.seed = (self.base_seed + int(epoch)) % (2 ** 32)


def _dataset(info: MindRecordInfo, mode: str, rank: int, group_size: int, seed: int, shuffle: Optional[bool],
             workers: Optional[int]):
    """``(MindDataset of one rank's shard, rows per epoch, sampler)``."""
    import mindspore.dataset as ds

    for f in info.files:
        _require_utf8(f, "MindRecord shard file")
    n = info.num_rows
    train = str(mode).lower() == "train"
    shuffle = train if shuffle is None else bool(shuffle)
    sampler = None
    kwargs: Dict[str, Any] = {"num_parallel_workers": int(workers)} if workers else {}
    if train and (shuffle or group_size > 1):
        sampler = _EpochSeeded(rank, group_size, shuffle, seed)
        kwargs["sampler"] = sampler.sampler
    elif not train and group_size > 1:
        kwargs["sampler"] = ds.SubsetSampler(list(range(rank, n, group_size)))
    else:
        kwargs["shuffle"] = False
    shard_n = math.ceil(n / group_size) if train else len(range(rank, n, group_size))
    if shard_n == 0:
        raise DatasetError(f"eval shard {rank} of {group_size} is empty: {info.prefix} has only {n} rows")
    return ds.MindDataset(info.files, columns_list=["image", "label", "path"], **kwargs), shard_n, sampler


def mindrecord_rows(prefix: str, *, mode: str = "train", rank: int = 0, group_size: int = 1, seed: int = 0,
                    shuffle: Optional[bool] = None, workers: Optional[int] = None, class_to_idx=None,
                    num_classes=None) -> Rows:
    """One rank's ``Rows`` of ``prefix``; ``class_to_idx`` relabels the stored classes by name (each must be in it)."""
    info = read_meta(prefix)
    dataset, shard_n, sampler = _dataset(info, mode, rank, group_size, seed, shuffle, workers)
    out_index = dict(info.class_to_idx)
    given = None if class_to_idx is None else {str(k): int(v) for k, v in class_to_idx.items()}
    if given is not None and given != info.class_to_idx:
        absent = [c for c in info.class_to_idx if c not in given]
        if absent:
            raise DatasetError(f"MindRecord dataset {info.prefix}: {len(absent)} stored class(es) are not in "
                               f"the given class index: {', '.join(absent[:10])}")
        table = np.zeros(max(info.class_to_idx.values()) + 1, np.int32)
        for name, idx in info.class_to_idx.items():
            table[idx] = given[name]
        out_index = {name: given[name] for name in info.class_to_idx}
        dataset = dataset.map(operations=lambda y: table[y].astype(np.int32), input_columns="label")
    n_classes = int(num_classes) if num_classes else (max(out_index.values()) + 1)
    if out_index and max(out_index.values()) >= n_classes:
        raise DatasetError(f"{info.prefix} has {len(info.class_to_idx)} classes but num_classes={num_classes}")
    counts = np.zeros(n_classes, np.int64)
    for name, c in info.class_counts.items():
        if name in out_index:
            counts[out_index[name]] += int(c)
    dataset = dataset.rename(input_columns=["path"], output_columns=["id"])
    return Rows(dataset=dataset, class_to_idx=out_index, num_rows=shard_n, total=info.num_rows,
                class_counts=counts, where=info.prefix, format="mindrecord", sampler=sampler,
                skipped=list(info.skipped), tally=SampleTally(), serves=False,
                name_of=lambda rel: f"{info.prefix}: record {json.loads(str(rel))}")

