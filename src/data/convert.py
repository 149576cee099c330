"""Write an ImageFolder tree (or a ``data_list``) as a MindRecord dataset (``src.data.mindrecord``), atomically:
every file is checked first (unusable ones left out, named, listed in the meta file), the shards are written into a
hidden temporary folder and moved into place, and the meta file comes last, so an interrupted conversion never looks
complete. The output is guarded (``check_output_file``); an earlier conversion is replaced only with ``overwrite``.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections import Counter
from typing import Dict, Optional

from src.data.checks import CONVERT, DEFAULT_MAX_PIXELS, SKIP, pil_rgb_bytes
from src.data.listing import list_dataset, save_class_index
from src.data.mindrecord import (CLASS_INDEX_SUFFIX, FORMAT, META_SUFFIX, SCHEMA, VERSION, MindRecordInfo,
                                 _require_utf8, read_meta, shard_files)
from src.data.reader import cap_workers
from src.data.verify import check_files
from src.errors import DatasetError
from src.utils.fileio import check_output_file, new_file_mode, write_json_atomic
from src.utils.paths import json_dumps

logger = logging.getLogger(__name__)

_BATCH_BYTES = 64 << 20  # rows handed to FileWriter.write_raw_data at a time
_SHARD_MAGIC = b'{"header_size":'  # bytes 8.. of a MindRecord shard file
_DB_MAGIC = b"SQLite format 3\0"


def _remove_stale_partials(folder: str, base: str) -> None:
    """Temporary folders of earlier conversions to this prefix whose process is gone."""
    prefix = f".{base}.partial-"
    for name in os.listdir(folder):
        pid = name[len(prefix):].split(".", 1)[0] if name.startswith(prefix) else ""
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
        except PermissionError:  # alive, another user's
            pass


def _written_by_us(path: str) -> bool:
    """Whether ``path`` is a file an earlier conversion wrote (by its content, not its name)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if path.endswith(META_SUFFIX):
                f.seek(0)
                return json.load(f).get("format") == FORMAT
            if path.endswith(CLASS_INDEX_SUFFIX):
                f.seek(0)
                data = json.load(f)
                return isinstance(data, dict) and all(isinstance(v, int) for v in data.values())
    except (OSError, ValueError, AttributeError):
        return False
    return head.startswith(_DB_MAGIC) if path.endswith(".db") else head[8:8 + len(_SHARD_MAGIC)] == _SHARD_MAGIC


def _check_output(prefix: str, shards: int, overwrite: bool, inputs) -> list:
    """Refuses an output that is not ours (``check_output_file``) or, without ``overwrite``, an existing one; returns
    the shards of an earlier conversion to ``prefix`` that the new one does not replace."""
    finals = shard_files(prefix, shards)
    meta = prefix + META_SUFFIX
    old = []
    if os.path.isfile(meta) and _written_by_us(meta):
        try:
            with open(meta, encoding="utf-8") as f:
                old = [os.path.join(os.path.dirname(prefix), e["file"]) for e in json.load(f)["shards"]]
        except (OSError, ValueError, KeyError, TypeError):
            old = []
    paths = finals + [p + ".db" for p in finals] + [meta, prefix + CLASS_INDEX_SUFFIX] + \
        [q for p in old if p not in finals for q in (p, p + ".db")]
    for p in paths:
        check_output_file(p, "output", inputs=inputs, ours=_written_by_us)
        if os.path.lexists(p) and not overwrite:
            raise DatasetError(f"MindRecord output {prefix} exists ({os.path.basename(p)}); pass overwrite=True "
                               "(--overwrite) to replace it")
    return [p for p in old if p not in finals]


def convert_to_mindrecord(data_dir: str, output: str, shards: int = 1, *, data_list: str = "",
                          class_to_idx: Optional[Dict[str, int]] = None, verify: bool = True,
                          workers: int = 0, manifest: Optional[str] = "", overwrite: bool = False,
                          progress: bool = True, log: Optional[logging.Logger] = None,
                          max_pixels: int = DEFAULT_MAX_PIXELS) -> MindRecordInfo:
    """Writes ``data_dir`` (or ``data_list`` rooted there) at ``output`` in ``shards`` files; returns ``read_meta``'s.
    ``verify`` off: the cheap check only; ``manifest``: a ``verify_manifest`` setting."""
    from mindspore.mindrecord import FileWriter

    log = log or logger
    shards = int(shards)
    if not 1 <= shards <= 1000:
        raise DatasetError(f"shards must be in 1..1000 (MindRecord's limit), got {shards}")
    data_dir = os.fspath(data_dir)
    prefix = os.path.abspath(os.fspath(output))
    _require_utf8(prefix, "MindRecord output")
    folder, base = os.path.split(prefix)

    where = data_list or data_dir
    class_to_idx, rel_paths, labels = list_dataset(data_dir, data_list, class_to_idx)
    abs_paths = [os.path.join(data_dir, p) if data_dir else p for p in rel_paths]
    if shards > len(abs_paths):
        raise DatasetError(f"shards={shards} is more than the {len(abs_paths)} image file(s) in {where}: every "
                           "shard needs at least one image")
    old_shards = _check_output(prefix, shards, overwrite, [data_list, data_dir])
    os.makedirs(folder, exist_ok=True)
    _remove_stale_partials(folder, base)
    results = check_files(abs_paths, data_dir, where, verify=verify, manifest=manifest, log=log,
                          workers=cap_workers(workers, "workers"), max_pixels=max_pixels, progress=progress)
    keep = [i for i, r in enumerate(results) if r.status != SKIP]
    if not keep:
        raise DatasetError(f"no usable image in {where}: all {len(abs_paths)} files are unusable")
    if shards > len(keep):
        raise DatasetError(f"shards={shards} is more than the {len(keep)} usable image(s) in {where}: every shard "
                           "needs at least one image")
    skipped = [(rel_paths[i], results[i].reason) for i, r in enumerate(results) if r.status == SKIP]
    largest = max(os.path.getsize(abs_paths[i]) for i in keep)

    tmp_dir = tempfile.mkdtemp(prefix=f".{base}.partial-{os.getpid()}.", dir=folder)
    t0 = time.perf_counter()
    try:
        tmp_prefix = os.path.join(tmp_dir, base)
        writer = FileWriter(tmp_prefix, shard_num=shards, overwrite=True)
        page = 32 << 20
        while page < 2 * largest + (1 << 20) and page < (256 << 20):
            page *= 2
        if page != 32 << 20:
            writer.set_page_size(page)
        desc = f"{FORMAT} v{VERSION}: {len(class_to_idx)} classes from {where}"
        writer.add_schema(SCHEMA, desc[:200])
        writer.add_index(["label"])
        idx_to_name, counts = {v: k for k, v in class_to_idx.items()}, Counter()
        rows, batch_bytes, written = [], 0, 0
        last_log = time.monotonic()
        for i in keep:
            path = abs_paths[i]
            try:
                data = pil_rgb_bytes(path, "PNG", compress_level=1) if results[i].status == CONVERT else \
                    open(path, "rb").read()
            except OSError as exc:  # vanished or unreadable since the check
                skipped.append((rel_paths[i], f"cannot read: {exc}"))
                log.warning("unusable image %s: cannot read: %s", path, exc)
                continue
            rows.append({"image": data, "label": int(labels[i]), "path": json_dumps(rel_paths[i])})
            counts[idx_to_name.get(int(labels[i]), str(labels[i]))] += 1
            batch_bytes += len(data)
            if batch_bytes >= _BATCH_BYTES or len(rows) >= 4096:
                writer.write_raw_data(rows)
                written += len(rows)
                rows, batch_bytes = [], 0
                if progress and time.monotonic() - last_log > 30:
                    log.info("written %d/%d images", written, len(keep))
                    last_log = time.monotonic()
        if rows:
            writer.write_raw_data(rows)
            written += len(rows)
        if written == 0:
            raise DatasetError(f"no usable image in {where} could be read")
        writer.commit()
        # publish: no meta (incomplete), the shards (FileWriter makes them 0600: give them the umask's mode),
        # the class index, the meta last
        if os.path.exists(prefix + META_SUFFIX):
            os.remove(prefix + META_SUFFIX)
        final_files = shard_files(prefix, shards)
        for p, q in zip(shard_files(tmp_prefix, shards), final_files):
            for ext in ("", ".db"):
                os.chmod(p + ext, new_file_mode())
                os.replace(p + ext, q + ext)
        for p in old_shards:  # shards of an older, larger conversion to this prefix
            for q in (p, p + ".db"):
                if os.path.isfile(q):
                    os.remove(q)
        save_class_index(class_to_idx, prefix + CLASS_INDEX_SUFFIX)
        import mindspore
        meta = {"format": FORMAT, "version": VERSION, "num_rows": written, "num_classes": len(class_to_idx),
                "class_counts": dict(counts), "schema": SCHEMA,
                "shards": [{"file": os.path.basename(q), "size": os.path.getsize(q),
                            "db_size": os.path.getsize(q + ".db")} for q in final_files],
                "source": os.path.abspath(where), "data_list": bool(data_list),
                "skipped": skipped, "verified": bool(verify), "mindspore": mindspore.__version__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "seconds": round(time.perf_counter() - t0, 3)}
        write_json_atomic(meta, prefix + META_SUFFIX, indent=1, ensure_ascii=False)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    log.info("wrote %d images (%d classes) to %s in %d shard(s) in %.1f s; %d file(s) left out", written,
             len(class_to_idx), prefix, shards, time.perf_counter() - t0, len(skipped))
    return read_meta(prefix)
