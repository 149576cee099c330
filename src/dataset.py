"""ImageNet-style data pipeline on the mindspore.dataset C++ engine.

``create_dataset`` lists an ImageFolder tree (``root/<class>/<image>``) or a ``data_list`` text file,
checks every file cheaply up front (bad files are skipped and reported once), and builds a batched
pipeline: a random-access file source that yields the encoded bytes, then the engine's own decode and
transforms (``RandomCropDecodeResize`` ... for train, ``Decode``/``Resize``/``CenterCrop`` ... for eval).

Bad-data policy (see ``check_image_file``):

* skipped and reported (file name and reason, once, via ``logging`` and ``DatasetBundle.skipped``):
  empty files, files that are not images, truncated or corrupt files that PIL cannot decode either,
  files listed in a ``data_list`` that do not exist;
* used as they are, because the engine's ``Decode`` turns them into correct RGB itself (checked
  against PIL for each kind): JPEG (RGB, grayscale, CMYK, progressive), PNG (RGB, RGBA, LA, grayscale,
  palette, 1-bit, 16-bit), BMP, TIFF;
* converted to RGB by PIL when read, because the engine cannot decode them: GIF (first frame), WebP,
  and any other format PIL can read (PPM, ICO, ...). Alpha is dropped, as the engine does for PNG;
* last guard: the engine runs in ``ErrorSamplesMode.SKIP``, so a file that passes the checks but still
  fails inside the engine is dropped instead of ending the run. The engine then dumps the bad image as
  ``./abnormal_image.jpg`` (or ``./unsupported_image.<ext>``) into the working directory; those dumps
  are moved out of it into ``<tmp>/cspdarknet53_engine_dumps/`` with a warning (``collect_engine_dumps``,
  also run at exit).

A missing or empty root, a ``data_list`` that names nothing usable, or no usable image left raises
``DatasetError`` (a ``ValueError``) naming the path. A class folder without usable images keeps its
class index (indices stay those of the sorted folder names) and is reported with a warning.
"""
from __future__ import annotations

import atexit
import io
import json
import logging
import math
import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

logger = logging.getLogger(__name__)

IMAGENET_MEAN = [0.485 * 255, 0.456 * 255, 0.406 * 255]
IMAGENET_STD = [0.229 * 255, 0.224 * 255, 0.225 * 255]

#: File name endings (lower case) taken as images when an ImageFolder tree is listed; other files are
#: ignored (counted in a debug message). A file with an image ending but other content is checked and
#: skipped if it is not an image.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".dib", ".tif", ".tiff", ".gif",
                    ".webp", ".ppm", ".pgm", ".pbm", ".pnm")

EVAL_RESIZE_MODES = ("squash", "shorter")
AUTO_AUGMENT_MODES = ("none", "randaugment", "autoaugment")

# check_image_file results
OK = "ok"            # the engine decodes the file itself
CONVERT = "convert"  # PIL decodes it and hands the engine RGB pixels (as BMP bytes)
SKIP = "skip"        # unusable

_TAIL_BYTES = 64
_MAX_LISTED = 10  # file names listed in the one-off warning; all are in DatasetBundle.skipped


class DatasetError(ValueError):
    """A problem with the user's data or data options; the message names the path or value."""


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
    sampler: Any = None                # train: the epoch sampler (``sampler.set_epoch(e)`` when resuming)
    source: Any = None                 # the file source; ``source.read_log = []`` records each path it reads


# ---------------------------------------------------------------------------------------------------
# file checks
# ---------------------------------------------------------------------------------------------------
def _sniff(head: bytes) -> str:
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if head[:2] == b"BM":
        return "bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return "other"


def _pil_full_decode(path: str) -> Optional[str]:
    """Decode the whole file with PIL; return None if it decodes, else the reason."""
    from PIL import Image
    try:
        with Image.open(path) as im:
            im.load()
        return None
    except Exception as exc:  # PIL raises many kinds (OSError, SyntaxError, DecompressionBombError...)
        return f"{type(exc).__name__}: {exc}"


def check_image_file(path: str) -> Tuple[str, str]:
    """Classify one file: ``(OK|CONVERT|SKIP, reason)``.

    Cheap for the common case: one open, the first 32 and last 64 bytes (on a cold page cache the
    kernel's readahead brings the file in, which the first epoch then finds cached). A JPEG must end with its
    end-of-image marker (FFD9) and a PNG with its IEND chunk; when the marker is missing (a truncated
    file, or harmless trailing bytes) the file is decoded in full by PIL to decide. Formats the engine
    cannot decode (GIF, WebP, others PIL knows) are decoded in full by PIL here, once.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            if size == 0:
                return SKIP, "empty file"
            head = os.pread(fd, 32, 0)
            tail = os.pread(fd, _TAIL_BYTES, max(0, size - _TAIL_BYTES))
        finally:
            os.close(fd)
    except FileNotFoundError:
        return SKIP, "missing file"
    except OSError as exc:
        return SKIP, f"cannot read: {exc}"
    fmt = _sniff(head)
    if fmt == "jpeg":
        if b"\xff\xd9" in tail:
            return OK, "jpeg"
        err = _pil_full_decode(path)
        return (OK, "jpeg with trailing bytes") if err is None else (SKIP, f"truncated or corrupt JPEG ({err})")
    if fmt == "png":
        if b"IEND" in tail:
            return OK, "png"
        err = _pil_full_decode(path)
        return (OK, "png with trailing bytes") if err is None else (SKIP, f"truncated or corrupt PNG ({err})")
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


def _pil_rgb_bytes(path: str) -> np.ndarray:
    """PIL decode -> RGB -> uncompressed BMP bytes (the engine decodes BMP natively)."""
    from PIL import Image
    with Image.open(path) as im:
        if im.mode == "P" and "transparency" in im.info:
            im = im.convert("RGBA")
        rgb = im.convert("RGB")
    buf = io.BytesIO()
    rgb.save(buf, format="BMP")
    return np.frombuffer(buf.getvalue(), dtype=np.uint8)


def scan_files(paths: Sequence[str], workers: int = 0) -> List[Tuple[str, str]]:
    """``check_image_file`` over many files with a thread pool (the work is mostly I/O)."""
    n = len(paths)
    if n == 0:
        return []
    if workers <= 0:
        workers = min(32, 4 * _available_cpus())
    chunk = 512
    if n <= chunk or workers == 1:
        return [check_image_file(p) for p in paths]
    chunks = [paths[i:i + chunk] for i in range(0, n, chunk)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        parts = pool.map(lambda ps: [check_image_file(p) for p in ps], chunks)
        out: List[Tuple[str, str]] = []
        for part in parts:
            out.extend(part)
    return out


# ---------------------------------------------------------------------------------------------------
# listing
# ---------------------------------------------------------------------------------------------------
def _list_folder(root: str, class_to_idx: Optional[Dict[str, int]]):
    """Return (class_to_idx, rel_paths, labels, per_class_counts). Hidden entries are ignored."""
    if not os.path.exists(root):
        raise DatasetError(f"dataset folder not found: {root}")
    if not os.path.isdir(root):
        raise DatasetError(f"dataset path is not a folder: {root}")
    with os.scandir(root) as it:
        class_dirs = sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))
    if not class_dirs:
        raise DatasetError(f"dataset folder has no class sub-folders: {root} "
                           "(expected root/<class>/<image> files)")
    if class_to_idx is None:
        class_to_idx = {name: i for i, name in enumerate(class_dirs)}
    else:
        class_to_idx = {str(k): int(v) for k, v in class_to_idx.items()}
        extra = [c for c in class_dirs if c not in class_to_idx]
        if extra:
            logger.warning("%d folder(s) under %s are not in the given class index and are ignored: %s",
                           len(extra), root, ", ".join(extra[:_MAX_LISTED]))
    rel_paths: List[str] = []
    labels: List[int] = []
    ignored = 0
    for name in class_dirs:
        if name not in class_to_idx:
            continue
        label = class_to_idx[name]
        names = []
        with os.scandir(os.path.join(root, name)) as it:
            for e in it:
                if e.name.startswith("."):
                    continue
                if os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS and e.is_file():
                    names.append(e.name)
                else:
                    ignored += 1
        for fname in sorted(names):
            rel_paths.append(name + "/" + fname)
            labels.append(label)
    if ignored:
        logger.debug("ignored %d entries without an image file name ending under %s", ignored, root)
    return class_to_idx, rel_paths, labels


def _read_data_list(list_path: str, data_dir: str):
    """Lines ``relative/path label`` (the label is the last field; paths may contain spaces)."""
    if not os.path.isfile(list_path):
        raise DatasetError(f"data_list file not found: {list_path}")
    rel_paths: List[str] = []
    labels: List[int] = []
    with open(list_path, "r", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.rsplit(None, 1)
            if len(parts) != 2:
                raise DatasetError(f"{list_path}:{lineno}: expected 'relative_path label', got {line!r}")
            try:
                label = int(parts[1])
            except ValueError:
                raise DatasetError(f"{list_path}:{lineno}: label {parts[1]!r} is not an integer") from None
            if label < 0:
                raise DatasetError(f"{list_path}:{lineno}: negative label {label}")
            rel_paths.append(parts[0])
            labels.append(label)
    if not rel_paths:
        raise DatasetError(f"data_list file lists no images: {list_path}")
    if data_dir and not os.path.isdir(data_dir):
        raise DatasetError(f"dataset folder not found: {data_dir} (the root of the paths in {list_path})")
    return rel_paths, labels


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
            data = _pil_rgb_bytes(path) if self.convert[i] else _read_bytes(path)
        except Exception as exc:  # vanished or changed since the scan: the engine skips the sample
            logger.warning("cannot read %s (%s); the sample is skipped", path, exc)
            data = np.zeros(0, dtype=np.uint8)
        return data, np.array(self.labels[i], dtype=np.int32)


# ---------------------------------------------------------------------------------------------------
# engine dumps (./abnormal_image.jpg, ./unsupported_image.<ext>)
# ---------------------------------------------------------------------------------------------------
_DUMP_PREFIXES = ("abnormal_image.", "unsupported_image.")
_dump_lock = threading.Lock()
_dump_watch: Dict[str, Dict[str, float]] = {}  # cwd -> {dump file name: mtime when watching began}
_atexit_registered = False


def _dump_files(folder: str) -> Dict[str, float]:
    found = {}
    try:
        with os.scandir(folder) as it:
            for e in it:
                if e.name.startswith(_DUMP_PREFIXES) and e.is_file():
                    found[e.name] = e.stat().st_mtime
    except OSError:
        pass
    return found


def _watch_engine_dumps() -> None:
    global _atexit_registered
    cwd = os.getcwd()
    with _dump_lock:
        if cwd not in _dump_watch:
            _dump_watch[cwd] = _dump_files(cwd)
        if not _atexit_registered:
            atexit.register(collect_engine_dumps)
            _atexit_registered = True


def engine_dump_dir() -> str:
    return os.path.join(tempfile.gettempdir(), "cspdarknet53_engine_dumps")


def collect_engine_dumps() -> List[str]:
    """Move image dumps the engine wrote into a watched working directory since the pipeline was built
    (it writes them when it meets a file it cannot decode) to ``engine_dump_dir()``. Returns new paths."""
    moved = []
    with _dump_lock:
        for cwd, before in _dump_watch.items():
            for name, mtime in _dump_files(cwd).items():
                if name in before and before[name] >= mtime:
                    continue  # was there before we started and unchanged: not ours
                dest_dir = engine_dump_dir()
                os.makedirs(dest_dir, exist_ok=True)
                dest = os.path.join(dest_dir, f"{time.strftime('%Y%m%d-%H%M%S')}_{os.getpid()}_{name}")
                try:
                    shutil.move(os.path.join(cwd, name), dest)
                except OSError:
                    continue
                moved.append(dest)
    if moved:
        logger.warning("the data engine met %d undecodable sample(s) that passed the up-front check and "
                       "skipped them; its image dump(s) were moved out of the working directory to %s",
                       len(moved), engine_dump_dir())
    return moved


# ---------------------------------------------------------------------------------------------------
# options
# ---------------------------------------------------------------------------------------------------
def _available_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_num_workers(group_size: int = 1) -> int:
    """Cores this process may use, shared among the devices of one host (at most 8 per host), capped
    at 16 (more threads per pipeline stop paying off and cost memory on 192-core hosts)."""
    local = max(1, min(int(group_size or 1), 8))
    return max(1, min(16, _available_cpus() // local))


def parse_image_size(image_size) -> Tuple[int, int]:
    """int, [H, W], (H, W) or "H,W" -> (H, W)."""
    try:
        if isinstance(image_size, str):
            parts = [int(p) for p in image_size.replace("x", ",").split(",") if p.strip()]
        elif isinstance(image_size, (int, np.integer)):
            parts = [int(image_size)]
        else:
            parts = [int(p) for p in image_size]
    except (TypeError, ValueError):
        raise DatasetError(f"image_size must be an int, [H, W] or 'H,W', got {image_size!r}") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) <= 0:
        raise DatasetError(f"image_size must be one or two positive ints, got {image_size!r}")
    return parts[0], parts[1]


def eval_resize_size(image_size, eval_resize: str = "squash", crop_pct: float = 0.875):
    """The size given to ``vision.Resize`` in eval: squash -> (round(H/crop_pct), round(W/crop_pct))
    (zoo: 224 -> 256x256, 32 -> 37x37); shorter -> floor(S/crop_pct) for the shorter side of a square
    size, (floor(H/crop_pct), floor(W/crop_pct)) for a non-square one (timm's rule)."""
    h, w = parse_image_size(image_size)
    if eval_resize == "squash":
        return (int(round(h / crop_pct)), int(round(w / crop_pct)))
    if eval_resize == "shorter":
        if h == w:
            return int(math.floor(h / crop_pct))
        return (int(math.floor(h / crop_pct)), int(math.floor(w / crop_pct)))
    raise DatasetError(f"eval_resize must be one of {EVAL_RESIZE_MODES}, got {eval_resize!r}")


def _check_options(mode, per_batch_size, rank, group_size, eval_resize, crop_pct, color_jitter,
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


# ---------------------------------------------------------------------------------------------------
# transforms
# ---------------------------------------------------------------------------------------------------
def train_transforms(image_size, color_jitter=0.4, auto_augment="none", re_prob=0.0, crop_scale_min=0.08):
    """Zoo recipe: RandomCropDecodeResize(scale 0.08-1, ratio 0.75-1.333), flip 0.5, colour jitter,
    Normalize on 0-255, HWC2CHW. auto_augment replaces colour jitter (as in timm); random erasing
    acts on the normalized CHW image (erased pixels = 0 = the mean colour)."""
    import mindspore.dataset.vision as V
    h, w = parse_image_size(image_size)
    if not 0.0 < float(crop_scale_min) <= 1.0:
        raise DatasetError(f"crop_scale_min must be in (0, 1], got {crop_scale_min!r}")
    ops = [V.RandomCropDecodeResize((h, w), scale=(float(crop_scale_min), 1.0), ratio=(0.75, 1.333)),
           V.RandomHorizontalFlip(prob=0.5)]
    aa = str(auto_augment).lower()
    fill = tuple(int(round(m)) for m in IMAGENET_MEAN)
    if aa == "randaugment":
        ops.append(V.RandAugment(num_ops=2, magnitude=9, interpolation=V.Inter.BILINEAR, fill_value=fill))
    elif aa == "autoaugment":
        ops.append(V.AutoAugment(policy=V.AutoAugmentPolicy.IMAGENET, interpolation=V.Inter.BILINEAR,
                                 fill_value=fill))
    elif color_jitter and float(color_jitter) > 0:
        cj = float(color_jitter)
        ops.append(V.RandomColorAdjust(brightness=cj, contrast=cj, saturation=cj))
    ops += [V.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD), V.HWC2CHW()]
    if re_prob and float(re_prob) > 0:
        ops.append(V.RandomErasing(prob=float(re_prob)))
    return ops


def eval_transforms(image_size, eval_resize="squash", crop_pct=0.875):
    """Decode, Resize (see ``eval_resize_size``, bilinear), CenterCrop(image_size), Normalize, HWC2CHW."""
    import mindspore.dataset.vision as V
    h, w = parse_image_size(image_size)
    return [V.Decode(), V.Resize(eval_resize_size((h, w), eval_resize, crop_pct), V.Inter.LINEAR),
            V.CenterCrop((h, w)), V.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD), V.HWC2CHW()]


def _mix_op(mixup_alpha, cutmix_alpha, mixup_prob):
    import mindspore.dataset.transforms as T
    import mindspore.dataset.vision as V
    ops = []
    if mixup_alpha > 0:
        ops.append(V.MixUpBatch(alpha=float(mixup_alpha)))
    if cutmix_alpha > 0:
        ops.append(V.CutMixBatch(V.ImageBatchFormat.NCHW, alpha=float(cutmix_alpha), prob=1.0))
    op = ops[0] if len(ops) == 1 else T.RandomChoice(ops)  # both on: one of the two per batch (timm)
    if mixup_prob < 1.0:
        op = T.RandomApply([op], prob=float(mixup_prob))
    return op


# ---------------------------------------------------------------------------------------------------
# class index
# ---------------------------------------------------------------------------------------------------
def save_class_index(class_to_idx: Dict[str, int], path: str) -> None:
    """Write the class -> index map as JSON (atomically), ordered by index."""
    from src.utils.fileio import write_json_atomic

    items = sorted(((str(k), int(v)) for k, v in class_to_idx.items()), key=lambda kv: kv[1])
    write_json_atomic(dict(items), path, indent=1, ensure_ascii=False)


def load_class_index(path: str) -> Dict[str, int]:
    try:
        with open(path, "r", encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise DatasetError(f"class index file not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read class index {path}: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(v, int) and not isinstance(v, bool)
                                             for v in data.values()):
        raise DatasetError(f"class index {path} must be a JSON object of class name -> integer index")
    if len(set(data.values())) != len(data):
        raise DatasetError(f"class index {path} maps two classes to the same index")
    return {str(k): int(v) for k, v in data.items()}


# ---------------------------------------------------------------------------------------------------
# sampler
# ---------------------------------------------------------------------------------------------------
class _EpochShardOrder:
    """Equal shards of a (re)shuffled order, like the engine's DistributedSampler but seeded on its own:
    epoch e uses the permutation drawn from (seed, e), the same on every rank; the order is padded by
    wrapping around to ceil(n / group_size) * group_size and rank r takes positions r, r + G, ...
    ``set_epoch(e)`` sets the next epoch's number (for a resumed run)."""

    def _setup(self, n, rank, group_size, shuffle, seed):
        self.n, self.rank, self.group_size = int(n), int(rank), int(group_size)
        self.shuffle, self.seed, self.epoch = bool(shuffle), int(seed), 0
        self.per_shard = math.ceil(self.n / self.group_size)

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def indices(self, epoch):
        if self.shuffle:
            order = np.random.default_rng([self.seed % (2 ** 32), int(epoch)]).permutation(self.n)
        else:
            order = np.arange(self.n)
        total = self.per_shard * self.group_size
        if total > self.n:
            order = np.resize(order, total)  # wrap around
        return order[self.rank:total:self.group_size]

    def __iter__(self):
        idx = self.indices(self.epoch)
        self.epoch += 1
        return iter(idx.tolist())

    def __len__(self):
        return self.per_shard


_sampler_cls = None
_seed_state = None  # (seed we set in mindspore.dataset.config, the base seed it came from)


def epoch_shard_sampler(n, rank=0, group_size=1, shuffle=True, seed=0):
    """A ``mindspore.dataset.Sampler`` with ``_EpochShardOrder``'s behaviour (built lazily, so importing
    this module does not import mindspore)."""
    global _sampler_cls
    if _sampler_cls is None:
        import mindspore.dataset as ds

        class EpochShardSampler(_EpochShardOrder, ds.Sampler):
            def __init__(self, n, rank, group_size, shuffle, seed):
                self._setup(n, rank, group_size, shuffle, seed)
                ds.Sampler.__init__(self)

        _sampler_cls = EpochShardSampler
    return _sampler_cls(n, rank, group_size, shuffle, seed)


# ---------------------------------------------------------------------------------------------------
# create_dataset
# ---------------------------------------------------------------------------------------------------
def _report_skipped(where: str, skipped, total: int) -> None:
    if not skipped:
        return
    listed = "; ".join(f"{p} ({r})" for p, r in skipped[:_MAX_LISTED])
    more = f"; ... and {len(skipped) - _MAX_LISTED} more" if len(skipped) > _MAX_LISTED else ""
    logger.warning("skipped %d of %d image files under %s that cannot be read: %s%s",
                   len(skipped), total, where, listed, more)


def create_dataset(data_dir, image_size, per_batch_size, *, mode="train", rank=0, group_size=1,
                   data_list="", num_parallel_workers=0, shuffle=None, drop_remainder=None,
                   eval_resize="squash", crop_pct=0.875, color_jitter=0.4, auto_augment="none",
                   re_prob=0.0, mixup_alpha=0.0, cutmix_alpha=0.0, mixup_prob=1.0, num_classes=None,
                   seed=None, class_to_idx=None, verify_files=True, crop_scale_min=0.08) -> DatasetBundle:
    """Build the batched train or eval pipeline; see the module docstring for the bad-data policy.

    Sharding: train shards are equal (``ceil(N / group_size)`` images each; ``EpochShardSampler`` reshuffles
    the whole list every epoch from ``(seed, epoch)``, identically on every rank, pads it by wrapping around
    and deals it out, so the shards of one epoch are disjoint up to the padding); eval shards are disjoint and
    cover every image exactly once (sizes may differ by one). Seeds: the order uses ``seed`` (or, if None,
    ``mindspore.dataset.config.get_seed()``, which ``mindspore.set_seed`` sets); the engine's random ops get
    ``mindspore.dataset.config.set_seed(seed + rank)`` so that ranks draw different crops and flips.
    ``verify_files=False`` skips the up-front check (the engine's SKIP mode remains the only guard).
    """
    import mindspore as ms
    import mindspore.dataset as ds
    import mindspore.dataset.transforms as T

    mode = str(mode).lower()
    auto_augment = str(auto_augment or "none").lower()
    _check_options(mode, per_batch_size, rank, group_size, eval_resize, crop_pct, color_jitter,
                   auto_augment, re_prob, mixup_alpha, cutmix_alpha, mixup_prob)
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
    if data_list:
        rel_paths, labels = _read_data_list(os.fspath(data_list), data_dir)
        where = f"{data_list} (root {data_dir or '.'})"
        if class_to_idx is None:
            k = int(num_classes) if num_classes else max(labels) + 1
            class_to_idx = {str(i): i for i in range(k)}
        else:
            class_to_idx = {str(a): int(b) for a, b in class_to_idx.items()}
    else:
        if not data_dir:
            raise DatasetError("data_dir is empty: give an ImageFolder root (root/<class>/<image>)")
        class_to_idx, rel_paths, labels = _list_folder(data_dir, class_to_idx)
        where = data_dir
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
    if verify_files:
        t0 = time.perf_counter()
        results = scan_files(abs_paths)
        logger.info("checked %d files under %s in %.1f s", len(abs_paths), where, time.perf_counter() - t0)
    else:
        results = [(OK, "")] * len(abs_paths)
    skipped = [(p, r) for p, (s, r) in zip(abs_paths, results) if s == SKIP]
    keep = [i for i, (s, _) in enumerate(results) if s != SKIP]
    converted = [abs_paths[i] for i in keep if results[i][0] == CONVERT]
    _report_skipped(where, skipped, len(abs_paths))
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
                           len(empty), data_dir, ", ".join(empty[:_MAX_LISTED]))

    rel_keep = [rel_paths[i] for i in keep]
    lab_keep = np.asarray([labels[i] for i in keep], dtype=np.int32)
    conv_keep = np.asarray([results[i][0] == CONVERT for i in keep], dtype=bool)
    total = len(keep)

    # ---- shard
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
    # One seed for the order (the same on every rank, so the shards stay disjoint), and seed + rank for
    # the engine's random ops (otherwise every rank draws the same crops/flips/jitter position by position).
    global _seed_state
    if seed is not None:
        base_seed = int(seed)
    else:
        current = int(ds.config.get_seed())
        # a seed we set ourselves (base + rank) earlier in this process stands for its base
        base_seed = _seed_state[1] if _seed_state and _seed_state[0] == current else current
    op_seed = (base_seed + rank) % (2 ** 32)
    ds.config.set_seed(op_seed)
    _seed_state = (op_seed, base_seed)
    ds.config.set_error_samples_mode(ds.config.ErrorSamplesMode.SKIP)
    _watch_engine_dumps()
    source = _FileSource(_PathTable(data_dir, rel_keep), lab_keep, conv_keep)
    sampler = None
    if train and (shuffle or group_size > 1):
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
        dataset = dataset.map(operations=_mix_op(float(mixup_alpha), float(cutmix_alpha), float(mixup_prob)),
                              input_columns=["image", "label"])
        dataset = dataset.map(operations=T.TypeCast(ms.float32), input_columns="label")
    return DatasetBundle(dataset=dataset, class_to_idx=dict(class_to_idx), num_images=shard_n,
                         steps_per_epoch=steps, skipped=skipped, converted=converted, total_images=total,
                         mode=mode, sampler=sampler, source=source)


def create_dataset_from_config(cfg, mode, rank=0, group_size=1, data_dir=None, **overrides) -> DatasetBundle:
    """``create_dataset`` with the options read from a config object (attributes of the same names;
    ``image_size`` may be the config's "H,W" string). ``data_dir`` defaults to ``cfg.data_dir``."""
    def get(name, default):
        v = getattr(cfg, name, default)
        return default if v is None else v

    kwargs = dict(
        mode=mode, rank=rank, group_size=group_size,
        data_list=get("data_list", ""), num_parallel_workers=get("num_parallel_workers", 0),
        eval_resize=get("eval_resize", "squash"), crop_pct=get("crop_pct", 0.875),
        color_jitter=get("color_jitter", 0.4), auto_augment=get("auto_augment", "none"),
        crop_scale_min=get("crop_scale_min", 0.08),
        re_prob=get("re_prob", 0.0), mixup_alpha=get("mixup_alpha", 0.0), cutmix_alpha=get("cutmix_alpha", 0.0),
        mixup_prob=get("mixup_prob", 1.0), num_classes=get("num_classes", None) or None,
        seed=getattr(cfg, "seed", None), verify_files=get("verify_files", True),
    )
    kwargs.update(overrides)
    return create_dataset(data_dir if data_dir is not None else get("data_dir", ""),
                          get("image_size", "224,224"), get("per_batch_size", 64), **kwargs)
