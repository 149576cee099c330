"""Listing a dataset: an ImageFolder tree (``root/<class>/<image>``) or a ``data_list`` text file of
``relative/path label`` lines; and the class index a run saves (``class_index.json``).

Class indices follow the sorted folder names; hidden entries are ignored.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Dict, List, Optional

from src.data.errors import DatasetError

logger = logging.getLogger(__name__)

#: File name endings (lower case) taken as images when an ImageFolder tree is listed; other files are
#: ignored (counted in a debug message). A file with an image ending but other content is checked and
#: skipped if it is not an image.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".dib", ".tif", ".tiff", ".gif",
                    ".webp", ".ppm", ".pgm", ".pbm", ".pnm")
MAX_LISTED = 10  # names listed in a one-off warning


def list_image_folder(root: str, class_to_idx: Optional[Dict[str, int]]):
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
                           len(extra), root, ", ".join(extra[:MAX_LISTED]))
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


def read_data_list(list_path: str, data_dir: str):
    """Lines ``relative/path label`` (the label is the last field; paths may contain spaces)."""
    if not os.path.isfile(list_path):
        raise DatasetError(f"data_list file not found: {list_path}")
    rel_paths: List[str] = []
    labels: List[int] = []
    # surrogateescape: a path that is not UTF-8 is kept as the bytes it names (the file table keeps them too)
    with open(list_path, "r", encoding="utf-8", errors="surrogateescape") as f:
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
