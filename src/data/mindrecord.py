"""MindRecord (MindSpore's sharded record format) for large datasets: write an ImageFolder tree, read it back.

    info = convert_to_mindrecord("/data/train", "/fast/train.mindrecord", shards=8)     # atomic
    bundle = create_mindrecord_dataset("/fast/train.mindrecord", 224, 64, mode="train", rank=r, group_size=g)

Layout of ``PREFIX`` with N shards (``mindspore.mindrecord.FileWriter``): ``PREFIX0 .. PREFIX{N-1}`` and
their ``.db`` index files (``PREFIX`` and ``PREFIX.db`` when N is 1), plus

* ``PREFIX.class_index.json``: the class -> label map (the same file a training run writes);
* ``PREFIX.meta.json``, written last: format, the shard files with their sizes, the number of rows, rows per
  class, the files left out (unusable, with the reason) and where the data came from. A reader refuses a
  prefix without it, or whose shard files are missing or have other sizes: a conversion that was killed, or
  one still running, never looks like a dataset.

Each row holds the file's encoded bytes exactly as on disk (``image``), its label (``label``, int32) and its
path relative to the data folder (``path``, JSON-escaped so that names that are not UTF-8 survive). Files the
engine cannot decode itself (GIF, WebP ...) are stored as PNG converted by PIL, as the folder pipeline does
when it reads them; files ``src.data.verify`` finds unusable (including those that crash the decoder) are left
out and listed. Conversion is atomic: the shards are written into a hidden temporary folder beside ``PREFIX``
(same file system), moved into place, and the meta file is written last.

Reading (``mindrecord_rows`` / ``create_mindrecord_dataset``) gives the same guarantees as the folder pipeline's
``EpochShardSampler``, with MindSpore's own sampler (``MindDataset`` accepts only its built-in samplers:
Distributed, Subset(Random), Random, Sequential, Pk; a Python ``Sampler`` is refused with "The sampler is not
supported yet"): train uses ``DistributedSampler(num_shards=G, shard_id=r, shuffle=True)`` whose seed is set to
``seed + epoch`` before each epoch's iterator (``bundle.sampler.set_epoch(epoch)``, as train.py already does).
Measured on MindSpore 2.10: the order of epoch e under seed s is the order of epoch 0 under seed s + e, the
permutation is the same on every rank, it is padded by wrapping around to ``ceil(N / G) * G`` and rank r takes
positions ``r, r + G, ...`` -- so shards are equal and disjoint up to the padding, and a resumed run
reproduces the uninterrupted one. (The permutation itself is MindSpore's, not ``EpochShardSampler``'s, so
the folder and MindRecord orders differ.) Eval shards are ``SubsetSampler(range(r, N, G))``: every row once.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from src.errors import DatasetError

logger = logging.getLogger(__name__)

FORMAT = "cspdarknet53-mindrecord"
VERSION = 1
META_SUFFIX = ".meta.json"
CLASS_INDEX_SUFFIX = ".class_index.json"
SCHEMA = {"image": {"type": "bytes"}, "label": {"type": "int32"}, "path": {"type": "string"}}
DATASET_FORMATS = ("folder", "mindrecord")
_BATCH_BYTES = 64 << 20  # rows handed to FileWriter.write_raw_data at a time


@dataclass
class MindRecordInfo:
    prefix: str
    files: List[str]                      # absolute shard file paths (without the .db files)
    num_rows: int
    class_to_idx: Dict[str, int]
    class_counts: Dict[str, int] = field(default_factory=dict)
    skipped: List[Tuple[str, str]] = field(default_factory=list)
    source: str = ""
    meta: Dict[str, Any] = field(default_factory=dict)


def shard_files(prefix: str, shards: int) -> List[str]:
    """FileWriter's names: ``PREFIX`` for one shard, ``PREFIX0 .. PREFIX{N-1}`` for N."""
    return [prefix] if int(shards) == 1 else [f"{prefix}{i}" for i in range(int(shards))]


def _require_utf8(path: str, what: str) -> str:
    from src.utils.paths import require_utf8
    try:
        return require_utf8(path, what)
    except ValueError as exc:
        raise DatasetError(str(exc)) from None


def _escape(rel: str) -> str:
    from src.utils.paths import json_dumps
    return json_dumps(rel)


def _unescape(text: str) -> str:
    return json.loads(text)


# ---------------------------------------------------------------------------------------------------
# reading the meta file
# ---------------------------------------------------------------------------------------------------
def is_mindrecord_prefix(prefix: str) -> bool:
    return bool(prefix) and os.path.isfile(os.fspath(prefix) + META_SUFFIX)


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
    try:
        with open(meta_path, "r", encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read {meta_path}: {exc}") from None
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
    ci_path = prefix + CLASS_INDEX_SUFFIX
    try:
        with open(ci_path, "r", encoding="utf-8") as f:
            class_to_idx = {str(k): int(v) for k, v in json.load(f).items()}
    except (OSError, ValueError, AttributeError) as exc:
        raise DatasetError(f"MindRecord dataset {prefix}: cannot read its class index {ci_path}: {exc}") from None
    return MindRecordInfo(prefix=prefix, files=files, num_rows=int(meta["num_rows"]), class_to_idx=class_to_idx,
                          class_counts={str(k): int(v) for k, v in meta.get("class_counts", {}).items()},
                          skipped=[(str(p), str(r)) for p, r in meta.get("skipped", [])],
                          source=str(meta.get("source", "")), meta=meta)


# ---------------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------------
def _list(data_dir: str, data_list: str, class_to_idx):
    from src.data.listing import list_image_folder, read_data_list

    if data_list:
        rel, labels = read_data_list(data_list, data_dir)
        if class_to_idx is None:
            class_to_idx = {str(i): i for i in range(max(labels) + 1)}
    else:
        class_to_idx, rel, labels = list_image_folder(data_dir, class_to_idx)
        if not rel:
            raise DatasetError(f"dataset folder has no image files: {data_dir}")
    return class_to_idx, rel, labels


def _png_bytes(path: str) -> bytes:
    import io
    from PIL import Image
    with Image.open(path) as im:
        if im.mode == "P" and "transparency" in im.info:
            im = im.convert("RGBA")
        rgb = im.convert("RGB")
    buf = io.BytesIO()
    rgb.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _remove_stale_partials(folder: str, base: str) -> None:
    """Temporary folders of earlier conversions to this prefix whose process is gone."""
    prefix = f".{base}.partial-"
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if not name.startswith(prefix):
            continue
        pid = name[len(prefix):].split(".", 1)[0]
        alive = False
        if pid.isdigit():
            try:
                os.kill(int(pid), 0)
                alive = True
            except ProcessLookupError:
                alive = False
            except PermissionError:
                alive = True
        if not alive:
            shutil.rmtree(os.path.join(folder, name), ignore_errors=True)


def _is_shard_name(name: str, base: str) -> bool:
    """``base<digits>`` or ``base<digits>.db`` (the shards of a multi-shard conversion)."""
    if not name.startswith(base):
        return False
    rest = name[len(base):]
    if rest.endswith(".db"):
        rest = rest[:-3]
    return rest.isdigit()


def convert_to_mindrecord(data_dir: str, output: str, shards: int = 1, *, data_list: str = "",
                          class_to_idx: Optional[Dict[str, int]] = None, verify: bool = True,
                          workers: int = 0, manifest: Optional[str] = "", overwrite: bool = False,
                          progress: bool = True, log: Optional[logging.Logger] = None,
                          description: str = "") -> MindRecordInfo:
    """Write ``data_dir`` (an ImageFolder tree, or the root of ``data_list``) as a MindRecord dataset at
    ``output`` with ``shards`` files; see the module doc. ``verify``: decode every file first with
    ``src.data.verify`` (``workers`` processes, ``manifest``: "" = the default beside the data, None = none)
    and leave out unusable ones; without it only the cheap check runs. Returns what ``read_meta`` returns."""
    from mindspore.mindrecord import FileWriter

    log = log or logger
    shards = int(shards)
    if not 1 <= shards <= 1000:
        raise DatasetError(f"shards must be in 1..1000 (MindRecord's limit), got {shards}")
    data_dir = os.fspath(data_dir)
    prefix = os.path.abspath(os.fspath(output))
    _require_utf8(prefix, "MindRecord output")
    folder, base = os.path.split(prefix)
    os.makedirs(folder, exist_ok=True)
    final_files = shard_files(prefix, shards)
    existing = [p for p in final_files + [prefix + META_SUFFIX, prefix + CLASS_INDEX_SUFFIX] if os.path.exists(p)]
    if existing and not overwrite:
        raise DatasetError(f"MindRecord output {prefix} exists ({os.path.basename(existing[0])}); pass "
                           "overwrite=True (--overwrite) to replace it")
    _remove_stale_partials(folder, base)

    # ---- list and check
    class_to_idx, rel_paths, labels = _list(data_dir, data_list, class_to_idx)
    abs_paths = [os.path.join(data_dir, p) if data_dir else p for p in rel_paths]
    from src.data.verify import CONVERT, SKIP, default_manifest_path, report_unusable, verify_images
    if verify:
        man = None if manifest is None else (manifest or (default_manifest_path(data_dir) if data_dir else None))
        results = verify_images(abs_paths, workers=workers, manifest=man, root=data_dir or None,
                                progress=progress)
    else:
        results = verify_images(abs_paths, decoder="cheap")
    report_unusable(results, log, data_list or data_dir)
    keep = [i for i, r in enumerate(results) if r.status != SKIP]
    if not keep:
        raise DatasetError(f"no usable image in {data_list or data_dir}: all {len(abs_paths)} files are unusable")
    skipped = [(rel_paths[i], results[i].reason) for i, r in enumerate(results) if r.status == SKIP]
    largest = max(os.path.getsize(abs_paths[i]) for i in keep)

    # ---- write into a temporary folder beside the output, then move into place
    tmp_dir = tempfile.mkdtemp(prefix=f".{base}.partial-{os.getpid()}.", dir=folder)
    t0 = time.perf_counter()
    bar = None
    try:
        tmp_prefix = os.path.join(tmp_dir, base)
        writer = FileWriter(tmp_prefix, shard_num=shards, overwrite=True)
        page = 32 << 20
        while page < 2 * largest + (1 << 20) and page < (256 << 20):
            page *= 2
        if page != 32 << 20:
            writer.set_page_size(page)
        idx_to_name = {v: k for k, v in class_to_idx.items()}
        desc = description or f"{FORMAT} v{VERSION}: {len(class_to_idx)} classes from {data_dir or data_list}"
        writer.add_schema(SCHEMA, desc[:200])
        writer.add_index(["label"])
        if progress:
            try:
                import sys
                from tqdm import tqdm
                bar = tqdm(total=len(keep), desc="writing MindRecord", unit="img", file=sys.stderr,
                           dynamic_ncols=True)
            except ImportError:
                bar = None
        counts: Dict[str, int] = {}
        rows, batch_bytes, written = [], 0, 0
        last_log = time.monotonic()
        for i in keep:
            path = abs_paths[i]
            try:
                data = _png_bytes(path) if results[i].status == CONVERT else open(path, "rb").read()
            except OSError as exc:  # vanished or unreadable since the check
                skipped.append((rel_paths[i], f"cannot read: {exc}"))
                log.warning("unusable image %s: cannot read: %s", path, exc)
                continue
            rows.append({"image": data, "label": int(labels[i]), "path": _escape(rel_paths[i])})
            name = idx_to_name.get(int(labels[i]), str(labels[i]))
            counts[name] = counts.get(name, 0) + 1
            batch_bytes += len(data)
            if batch_bytes >= _BATCH_BYTES or len(rows) >= 4096:
                writer.write_raw_data(rows)
                written += len(rows)
                if bar is not None:
                    bar.update(len(rows))
                elif progress and time.monotonic() - last_log > 10:
                    log.info("written %d/%d images", written, len(keep))
                    last_log = time.monotonic()
                rows, batch_bytes = [], 0
        if rows:
            writer.write_raw_data(rows)
            written += len(rows)
            if bar is not None:
                bar.update(len(rows))
        if written == 0:
            raise DatasetError(f"no usable image in {data_list or data_dir} could be read")
        writer.commit()
        tmp_files = shard_files(tmp_prefix, shards)
        for p in tmp_files:  # FileWriter creates its files 0600; give them the user's umask like any file
            for q in (p, p + ".db"):
                mask = os.umask(0)
                os.umask(mask)
                os.chmod(q, 0o666 & ~mask)
        # ---- publish: no meta -> incomplete; move the shards; class index; meta last
        for stale in (prefix + META_SUFFIX,):
            if os.path.exists(stale):
                os.remove(stale)
        old = [f for f in os.listdir(folder) if _is_shard_name(f, base)]
        for p, q in zip(tmp_files, final_files):
            os.replace(p, q)
            os.replace(p + ".db", q + ".db")
        keep_names = {os.path.basename(q) for q in final_files}
        for name in old:  # shards of an older, larger conversion to this prefix
            stem = name[:-3] if name.endswith(".db") else name
            if stem not in keep_names:
                os.remove(os.path.join(folder, name))
        from src.data.listing import save_class_index
        from src.utils.fileio import write_json_atomic
        save_class_index(class_to_idx, prefix + CLASS_INDEX_SUFFIX)
        import mindspore
        meta = {"format": FORMAT, "version": VERSION, "num_rows": written, "num_classes": len(class_to_idx),
                "class_counts": counts, "schema": SCHEMA,
                "shards": [{"file": os.path.basename(q), "size": os.path.getsize(q),
                            "db_size": os.path.getsize(q + ".db")} for q in final_files],
                "source": os.path.abspath(data_list or data_dir), "data_list": bool(data_list),
                "skipped": skipped, "verified": bool(verify), "mindspore": mindspore.__version__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "seconds": round(time.perf_counter() - t0, 3)}
        write_json_atomic(meta, prefix + META_SUFFIX, indent=1, ensure_ascii=False)
    finally:
        if bar is not None:
            bar.close()
        shutil.rmtree(tmp_dir, ignore_errors=True)
    log.info("wrote %d images (%d classes) to %s in %d shard(s) in %.1f s; %d file(s) left out", written,
             len(class_to_idx), prefix, shards, time.perf_counter() - t0, len(skipped))
    return read_meta(prefix)


# ---------------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------------
class MindRecordEpochSampler:
    """The train sampler of a MindRecord dataset: a ``mindspore.dataset.DistributedSampler`` whose seed is
    ``seed + epoch``; ``set_epoch(e)`` before each epoch's iterator (as for ``EpochShardSampler``)."""

    def __init__(self, rank: int, group_size: int, shuffle: bool, seed: int):
        import mindspore.dataset as ds
        self.rank, self.group_size, self.shuffle = int(rank), int(group_size), bool(shuffle)
        self.base_seed = int(seed)
        self.epoch = 0
        self.sampler = ds.DistributedSampler(num_shards=self.group_size, shard_id=self.rank, shuffle=self.shuffle)
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.sampler.seed = (self.base_seed + self.epoch) % (2 ** 32)


@dataclass
class MindRecordRows:
    dataset: Any              # MindDataset with columns image (uint8 bytes), label (int32)
    info: MindRecordInfo
    num_rows: int             # rows of this shard per epoch
    sampler: Optional[MindRecordEpochSampler]


def mindrecord_rows(prefix: str, mode: str = "train", rank: int = 0, group_size: int = 1, seed: int = 0,
                    shuffle: Optional[bool] = None, num_parallel_workers: Optional[int] = None,
                    columns: Sequence[str] = ("image", "label")) -> MindRecordRows:
    """The (image bytes, label) rows of one rank's shard; see the module doc for the order guarantees."""
    import mindspore.dataset as ds

    info = read_meta(prefix)
    for f in info.files:
        _require_utf8(f, "MindRecord shard file")
    n, rank, group_size = info.num_rows, int(rank), int(group_size)
    if group_size <= 0 or not 0 <= rank < group_size:
        raise DatasetError(f"rank {rank} is not in [0, group_size={group_size})")
    train = str(mode).lower() == "train"
    shuffle = train if shuffle is None else bool(shuffle)
    sampler = None
    kwargs: Dict[str, Any] = {}
    if train:
        if shuffle or group_size > 1:
            sampler = MindRecordEpochSampler(rank, group_size, shuffle, seed)
            kwargs["sampler"] = sampler.sampler
        else:
            kwargs["shuffle"] = False
        shard_n = math.ceil(n / group_size)
    else:
        if group_size > 1:
            kwargs["sampler"] = ds.SubsetSampler(list(range(rank, n, group_size)))
            shard_n = len(range(rank, n, group_size))
            if shard_n == 0:
                raise DatasetError(f"eval shard {rank} of {group_size} is empty: {prefix} has only {n} rows")
        else:
            kwargs["shuffle"] = False
            shard_n = n
    if num_parallel_workers:
        kwargs["num_parallel_workers"] = int(num_parallel_workers)
    dataset = ds.MindDataset(info.files, columns_list=list(columns), **kwargs)
    return MindRecordRows(dataset=dataset, info=info, num_rows=shard_n, sampler=sampler)


def read_rows(prefix: str) -> List[Tuple[str, bytes, int]]:
    """Every row as (relative path, bytes, label), in the stored order (for checks and tests)."""
    rows = mindrecord_rows(prefix, mode="eval", columns=("image", "label", "path"))
    out = []
    for r in rows.dataset.create_dict_iterator(output_numpy=True, num_epochs=1):
        out.append((_unescape(str(r["path"])), r["image"].tobytes(), int(r["label"])))
    return out


def create_mindrecord_dataset(prefix, image_size, per_batch_size, *, mode="train", rank=0, group_size=1,
                              num_parallel_workers=0, shuffle=None, drop_remainder=None, eval_resize="squash",
                              crop_pct=0.875, color_jitter=0.4, auto_augment="none", re_prob=0.0, mixup_alpha=0.0,
                              cutmix_alpha=0.0, mixup_prob=1.0, num_classes=None, seed=0, class_to_idx=None,
                              crop_scale_min=0.08, data_list="", sampler="epoch_shard", **ignored):
    """``src.data.pipeline.create_dataset`` for a MindRecord prefix (``dataset_format: mindrecord``): the same
    transforms, batching, mixing, seeds and ``DatasetBundle``; ``bundle.set_epoch(e)`` as for folders. The
    file checks (``verify_files`` ...) are ignored: the conversion checked every file. ``class_to_idx`` (e.g.
    the trained index as ``compare_class_index`` gives it) relabels the stored classes by name; a stored
    class missing from it is a ``DatasetError``. ``sampler="class_balanced"`` needs the folder reader
    (``MindDataset`` takes no Python sampler)."""
    import mindspore as ms
    import mindspore.dataset as ds
    import mindspore.dataset.transforms as T

    from src.data.checks import watch_engine_dumps
    from src.data.pipeline import DatasetBundle, check_options, default_num_workers
    from src.data.transforms import eval_transforms, mix_op, parse_image_size, train_transforms
    from src.utils.seeding import set_augmentation_seed

    mode = str(mode).lower()
    auto_augment = str(auto_augment or "none").lower()
    check_options(mode, per_batch_size, rank, group_size, eval_resize, crop_pct, color_jitter, auto_augment,
                  re_prob, mixup_alpha, cutmix_alpha, mixup_prob)
    if data_list:
        raise DatasetError(f"data_list ({data_list}) does not apply to a MindRecord dataset: convert the list with "
                           "tools/convert_to_mindrecord.py --data_list instead")
    if mode == "train" and str(sampler) == "class_balanced":
        raise DatasetError("sampler=class_balanced needs dataset_format=folder (MindRecord's reader takes only "
                           "MindSpore's built-in samplers); use class_weights=balanced instead")
    image_hw = parse_image_size(image_size)
    per_batch_size, rank, group_size = int(per_batch_size), int(rank), int(group_size)
    train = mode == "train"
    drop_remainder = train if drop_remainder is None else bool(drop_remainder)
    workers = int(num_parallel_workers or 0) or default_num_workers(group_size)
    base_seed = int(seed or 0)
    rows = mindrecord_rows(prefix, mode, rank, group_size, base_seed, shuffle, min(workers, 8))
    info = rows.info
    remap = None
    out_index = dict(info.class_to_idx)
    if class_to_idx is not None:
        given = {str(k): int(v) for k, v in class_to_idx.items()}
        if given != info.class_to_idx:
            # the stored labels are those of the stored class names; relabel by name (e.g. the trained index
            # from src.data.class_check.compare_class_index), every stored class must be in the given map
            absent = [c for c in info.class_to_idx if c not in given]
            if absent:
                raise DatasetError(f"MindRecord dataset {info.prefix}: {len(absent)} stored class(es) are not in "
                                   f"the given class index: {', '.join(absent[:10])}")
            remap = np.zeros(max(info.class_to_idx.values()) + 1, np.int32)
            for name, idx in info.class_to_idx.items():
                remap[idx] = given[name]
            out_index = {name: given[name] for name in info.class_to_idx}
    n_classes = int(num_classes) if num_classes else (max(out_index.values()) + 1)
    if out_index and max(out_index.values()) >= n_classes:
        raise DatasetError(f"{info.prefix} has {len(info.class_to_idx)} classes but num_classes={num_classes}")
    steps = rows.num_rows // per_batch_size if drop_remainder else math.ceil(rows.num_rows / per_batch_size)
    if steps == 0:
        raise DatasetError(f"{info.prefix}: {rows.num_rows} image(s) in this shard, fewer than per_batch_size="
                           f"{per_batch_size}; lower per_batch_size or keep the last partial batch")
    counts = np.zeros(n_classes, np.int64)
    for name, c in info.class_counts.items():
        if name in out_index:
            counts[out_index[name]] += int(c)
    set_augmentation_seed(base_seed, rank)
    ds.config.set_error_samples_mode(ds.config.ErrorSamplesMode.SKIP)
    watch_engine_dumps()
    dataset = rows.dataset
    if remap is not None:
        table = remap
        dataset = dataset.map(operations=lambda y: table[y].astype(np.int32), input_columns="label")
    ops = (train_transforms(image_hw, color_jitter, auto_augment, re_prob, crop_scale_min) if train
           else eval_transforms(image_hw, eval_resize, crop_pct))
    dataset = dataset.map(operations=ops, input_columns="image", num_parallel_workers=workers)
    mixing = train and (float(mixup_alpha) > 0 or float(cutmix_alpha) > 0)
    if mixing:
        dataset = dataset.map(operations=T.OneHot(n_classes), input_columns="label")
    dataset = dataset.batch(per_batch_size, drop_remainder=drop_remainder, num_parallel_workers=min(workers, 4))
    if mixing:
        dataset = dataset.map(operations=mix_op(float(mixup_alpha), float(cutmix_alpha), float(mixup_prob)),
                              input_columns=["image", "label"])
        dataset = dataset.map(operations=T.TypeCast(ms.float32), input_columns="label")
    return DatasetBundle(dataset=dataset, class_to_idx=out_index, num_images=rows.num_rows,
                         steps_per_epoch=steps, skipped=list(info.skipped), converted=[],
                         total_images=info.num_rows, mode=mode, sampler=rows.sampler, source=None,
                         class_counts=counts, format="mindrecord")
