"""Cheap up-front checks of image files (``check_image_file``), and the engine's image dumps.

Skipped: empty, missing, non-image, truncated or corrupt files (PIL cannot decode them either) and images declaring
more than ``max_image_pixels`` (never decoded). JPEG, PNG, BMP, TIFF go to the engine as they are; other formats PIL
reads (GIF, WebP) are converted to RGB. The engine runs in ``ErrorSamplesMode.SKIP``; the images it then dumps into
the working directory are moved to ``<tmp>/cspdarknet53_engine_dumps/`` with a warning.
"""
from __future__ import annotations

import atexit
import contextlib
import io
import logging
import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Sequence, Tuple

from PIL import Image

from src.utils.host import available_cpus

logger = logging.getLogger(__name__)

# check_image_file results
OK = "ok"            # the engine decodes the file itself
CONVERT = "convert"  # PIL decodes it and hands the engine RGB pixels (as BMP bytes)
SKIP = "skip"        # unusable

_TAIL_BYTES = 64


_MAGIC = ((b"\xff\xd8\xff", "jpeg"), (b"\x89PNG\r\n\x1a\n", "png"), (b"BM", "bmp"), (b"II*\x00", "tiff"),
          (b"MM\x00*", "tiff"), (b"GIF87a", "gif"), (b"GIF89a", "gif"))


def _sniff(head: bytes) -> str:
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return next((fmt for magic, fmt in _MAGIC if head.startswith(magic)), "other")


def _pil_full_decode(path: str) -> Optional[str]:
    """Decode the whole file with PIL; return None if it decodes, else the reason."""
    try:
        with Image.open(path) as im:
            im.load()
        return None
    except Exception as exc:  # PIL raises many kinds (OSError, SyntaxError, DecompressionBombError...)
        return f"{type(exc).__name__}: {exc}"


#: ``max_image_pixels``'s default: 100 MP (300 MB as RGB; camera photos have 12-50 MP)
DEFAULT_MAX_PIXELS = 100_000_000


def _jpeg_size(fd: int, size: int) -> Optional[Tuple[int, int]]:
    """(width, height) from a JPEG's frame header (SOFn), walking the marker segments; None if not found."""
    pos = 2
    while pos + 4 <= size:
        head = os.pread(fd, 9, pos)
        if len(head) < 4 or head[0] != 0xFF:
            return None
        marker = head[1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            pos += 2
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and len(head) == 9:
            return int.from_bytes(head[7:9], "big"), int.from_bytes(head[5:7], "big")
        if marker == 0xDA:  # scan data before any frame header
            return None
        pos += 2 + int.from_bytes(head[2:4], "big")
    return None


def _dimensions(path: str, fd: int, size: int, fmt: str, head: bytes) -> Optional[Tuple[int, int]]:
    """(width, height) the file declares, read from its header (no decoding); None when unknown."""
    if fmt == "png" and len(head) >= 24:
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if fmt == "jpeg":
        return _jpeg_size(fd, size)
    if fmt == "bmp" and len(head) >= 26:
        return abs(int.from_bytes(head[18:22], "little", signed=True)), \
            abs(int.from_bytes(head[22:26], "little", signed=True))
    if fmt == "gif" and len(head) >= 10:
        return int.from_bytes(head[6:8], "little"), int.from_bytes(head[8:10], "little")
    try:
        with Image.open(path) as im:  # reads the header only
            return im.size
    except Image.DecompressionBombError:  # above PIL's own limit (2 x 89 MP): larger than any limit we use
        return (1 << 20, 1 << 20)
    except Exception:
        return None


def check_image_file(path: str, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> Tuple[str, str]:
    """``(OK|CONVERT|SKIP, reason)`` from the first 32 and last 64 bytes and the declared size; PIL decodes in full
    only a JPEG or PNG without its end marker and the formats the engine cannot decode."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            if size == 0:
                return SKIP, "empty file"
            head = os.pread(fd, 32, 0)
            tail = os.pread(fd, _TAIL_BYTES, max(0, size - _TAIL_BYTES))
            fmt = _sniff(head)
            dims = _dimensions(path, fd, size, fmt, head) if max_pixels else None
        finally:
            os.close(fd)
    except FileNotFoundError:
        return SKIP, "missing file"
    except OSError as exc:
        return SKIP, f"cannot read: {exc}"
    if dims and dims[0] * dims[1] > int(max_pixels):
        return SKIP, (f"{dims[0]}x{dims[1]} = {dims[0] * dims[1]:,} pixels, above max_image_pixels={int(max_pixels):,} "
                      "(not decoded)")
    if fmt in ("jpeg", "png"):  # a JPEG ends with its end-of-image marker, a PNG with its IEND chunk
        if (b"\xff\xd9" if fmt == "jpeg" else b"IEND") in tail:
            return OK, fmt
        err = _pil_full_decode(path)  # truncated, or harmless trailing bytes
        return (OK, f"{fmt} with trailing bytes") if err is None else \
            (SKIP, f"truncated or corrupt {fmt.upper()} ({err})")
    if fmt == "bmp":
        declared = int.from_bytes(head[2:6], "little")
        if declared and declared > size:
            err = _pil_full_decode(path)
            if err is not None:
                return SKIP, f"truncated BMP ({err})"
        return OK, "bmp"
    if fmt == "tiff":
        return OK, "tiff"
    err = _pil_full_decode(path)
    if err is None:
        return CONVERT, fmt
    if fmt == "other":
        return SKIP, f"not an image ({err})"
    return SKIP, f"corrupt {fmt.upper()} ({err})"


def pil_rgb_bytes(data, fmt: str = "BMP", **save_args) -> bytes:
    """An image (path or bytes) decoded by PIL -> RGB (alpha dropped) -> ``fmt`` bytes the engine decodes."""
    src = data if isinstance(data, (str, os.PathLike)) else io.BytesIO(bytes(data))
    with Image.open(src) as im:
        if im.mode == "P" and "transparency" in im.info:
            im = im.convert("RGBA")
        rgb = im.convert("RGB")
    buf = io.BytesIO()
    rgb.save(buf, format=fmt, **save_args)
    return buf.getvalue()


def scan_files(paths: Sequence[str], max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> List[Tuple[str, str]]:
    """``check_image_file`` over many files in a thread pool (the work is mostly I/O), 512 files a task."""
    chunks = [paths[i:i + 512] for i in range(0, len(paths), 512)]
    with ThreadPoolExecutor(max_workers=min(32, 4 * available_cpus())) as pool:
        parts = pool.map(lambda ps: [check_image_file(p, max_pixels) for p in ps], chunks)
        return [result for part in parts for result in part]


# engine dumps (./abnormal_image.jpg, ./unsupported_image.<ext>)
_DUMP_PREFIXES = ("abnormal_image.", "unsupported_image.")
_dump_lock = threading.Lock()
_dump_watch: Dict[str, Dict[str, float]] = {}  # cwd -> {dump file name: mtime when watching began}


def _dump_files(folder: str) -> Dict[str, float]:
    found = {}
    with contextlib.suppress(OSError), os.scandir(folder) as it:
        for e in it:
            if e.name.startswith(_DUMP_PREFIXES) and e.is_file():
                found[e.name] = e.stat().st_mtime
    return found


def watch_engine_dumps() -> None:
    """Remembers the dumps already in the working directory; the new ones are moved at exit."""
    cwd = os.getcwd()
    with _dump_lock:
        if not _dump_watch:
            atexit.register(collect_engine_dumps)
        if cwd not in _dump_watch:
            _dump_watch[cwd] = _dump_files(cwd)


def collect_engine_dumps() -> List[str]:
    """Moves the engine's new dumps in watched folders to ``<tmp>/cspdarknet53_engine_dumps``; their new paths."""
    moved, dest_dir = [], os.path.join(tempfile.gettempdir(), "cspdarknet53_engine_dumps")
    with _dump_lock:
        for cwd, before in _dump_watch.items():
            for name, mtime in _dump_files(cwd).items():
                if name in before and before[name] >= mtime:
                    continue  # was there before we started and unchanged: not ours
                os.makedirs(dest_dir, exist_ok=True)
                dest = os.path.join(dest_dir, f"{time.strftime('%Y%m%d-%H%M%S')}_{os.getpid()}_{name}")
                with contextlib.suppress(OSError):
                    shutil.move(os.path.join(cwd, name), dest)
                    moved.append(dest)
    if moved:
        logger.warning("the data engine met %d undecodable sample(s) that passed the up-front check and "
                       "skipped them; its image dump(s) were moved out of the working directory to %s",
                       len(moved), dest_dir)
    return moved
