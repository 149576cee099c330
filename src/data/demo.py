"""The embedded demo data: ``data/fashion_mnist/slice.npz`` (Fashion-MNIST, MIT, (c) 2017 Zalando SE; made by
``tools/make_fashion_mnist_slice.py``), written once as ImageFolder JPEG trees in the user cache (built in a temporary
folder and renamed into place; a marker with the slice's SHA-256 decides reuse).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
import numpy as np

from src.errors import ConfigError, DatasetError
from src.utils.fileio import file_sha256

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SLICE_PATH = os.path.join(ROOT, "data", "fashion_mnist", "slice.npz")

#: Label order of Fashion-MNIST (index = label).
CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
#: Folder names: sorted order = label order, human-readable.
CLASS_FOLDERS = ["00_tshirt_top", "01_trouser", "02_pullover", "03_dress", "04_coat",
                 "05_sandal", "06_shirt", "07_sneaker", "08_bag", "09_ankle_boot"]

_MARKER = ".complete.json"
_FORMAT = 1


@dataclass
class DemoPaths:
    train: str
    val: str
    num_classes = len(CLASS_NAMES)
    class_names = CLASS_NAMES


def default_cache_dir() -> str:
    return os.environ.get("CSPDARKNET53_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "cspdarknet53")


def write_image_folder(out_dir: str, images: np.ndarray, labels: np.ndarray, quality: int = 95) -> int:
    """Write uint8 [N, H, W] grayscale images as out_dir/<class folder>/<index>.jpg; return N."""
    from PIL import Image
    for name in CLASS_FOLDERS:
        os.makedirs(os.path.join(out_dir, name), exist_ok=True)
    for i, (img, lab) in enumerate(zip(images, labels)):
        Image.fromarray(np.ascontiguousarray(img), mode="L").save(
            os.path.join(out_dir, CLASS_FOLDERS[int(lab)], f"{i:05d}.jpg"), quality=quality)
    return len(images)


def _marker_ok(folder: str, digest: str) -> bool:
    try:
        with open(os.path.join(folder, _MARKER), "r", encoding="utf-8") as f:
            m = json.load(f)
        return m.get("slice_sha256") == digest and m.get("format") == _FORMAT
    except (OSError, ValueError):
        return False


def _paths(folder: str) -> DemoPaths:
    return DemoPaths(os.path.join(folder, "train"), os.path.join(folder, "val"))


def load_slice(slice_path: str = SLICE_PATH):
    """Return (x_train, y_train, x_val, y_val) from the committed slice."""
    if not os.path.isfile(slice_path):
        raise DatasetError(f"demo data slice not found: {slice_path} "
                           "(regenerate it with: python tools/make_fashion_mnist_slice.py)")
    try:
        with np.load(slice_path, allow_pickle=False) as z:
            return z["x_train"], z["y_train"], z["x_val"], z["y_val"]
    except (OSError, ValueError, KeyError) as exc:
        raise DatasetError(f"cannot read demo data slice {slice_path}: {exc}") from None


def ensure_demo_dataset(cache_dir: str = None, slice_path: str = SLICE_PATH) -> DemoPaths:
    """Materialize the slice as train/ and val/ ImageFolder trees in the cache (once) and return them."""
    cache_dir = os.path.abspath(os.path.expanduser(cache_dir or default_cache_dir()))
    if not os.path.isfile(slice_path):
        load_slice(slice_path)  # raises DatasetError naming the path
    digest = file_sha256(slice_path)
    final = os.path.join(cache_dir, f"fashion_mnist_{digest[:16]}")
    if _marker_ok(final, digest):
        return _paths(final)
    try:
        os.makedirs(cache_dir, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".fashion_mnist.tmp-", dir=cache_dir)
    except OSError as exc:
        raise DatasetError(f"cannot create the demo data cache folder {cache_dir}: {exc} "
                           "(set CSPDARKNET53_CACHE to a writable folder)") from None
    try:
        xt, yt, xv, yv = load_slice(slice_path)
        write_image_folder(os.path.join(tmp, "train"), xt, yt)
        write_image_folder(os.path.join(tmp, "val"), xv, yv)
        with open(os.path.join(tmp, _MARKER), "w", encoding="utf-8") as f:
            json.dump({"slice_sha256": digest, "format": _FORMAT, "train": int(len(xt)), "val": int(len(xv)),
                       "classes": CLASS_FOLDERS}, f, indent=1)
        os.chmod(tmp, 0o755)
        for _ in range(5):
            try:
                os.rename(tmp, final)  # atomic; fails if `final` exists (another process won, or stale)
                return _paths(final)
            except OSError:
                if _marker_ok(final, digest):
                    return _paths(final)  # built concurrently by another process
                stale = tempfile.mkdtemp(prefix=".fashion_mnist.stale-", dir=cache_dir)
                with contextlib.suppress(OSError):  # another process may have moved it first
                    os.rename(final, os.path.join(stale, "old"))  # move the incomplete tree aside
                shutil.rmtree(stale, ignore_errors=True)
        raise DatasetError(f"cannot move the demo data into place at {final}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def with_demo_data(cfg, split="train"):
    """``(cfg, note)`` on the embedded slice (train: validated on its val slice) with the demo profile's defaults."""
    demo = ensure_demo_dataset()
    if cfg.is_explicit("num_classes") and cfg.model.num_classes != demo.num_classes:
        raise ConfigError(f"no data_dir given, so the embedded demo data ({demo.num_classes} classes) is used, "
                          f"but --num_classes={cfg.model.num_classes}; pass --data_dir")
    cfg, changed = cfg.with_profile("demo")
    paths = {"data_dir": demo.train if split == "train" else demo.val}
    if split == "train" and not cfg.is_explicit("val_data_dir"):
        paths["val_data_dir"] = demo.val
    cfg = cfg.replace(**paths)
    note = (f"no data_dir given: {'training on' if split == 'train' else 'evaluating'} the embedded Fashion-MNIST "
            f"slice ({paths['data_dir']}) with the demo profile: " + ", ".join(f"{k}={v}" for k, v in changed.items()))
    return cfg, note
