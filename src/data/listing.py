"""Listing a dataset (an ImageFolder tree, sorted class folders, hidden entries ignored; or a ``data_list`` of
``relative/path label`` lines) and the run's class index (``class_index.json``).
"""
from __future__ import annotations

import json
import logging
import os
from typing import Dict, List, Optional

from src.errors import DatasetError
from src.utils.fileio import write_json_atomic
from src.utils.paths import display_name, entry_is_file, read_lines

logger = logging.getLogger(__name__)

#: endings (lower case) listed as images in an ImageFolder tree (the content is checked later)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".dib", ".tif", ".tiff", ".gif",
                    ".webp", ".ppm", ".pgm", ".pbm", ".pnm")
MAX_LISTED = 10  # names listed in a one-off warning


def _entry_is_dir(entry) -> bool:
    """``DirEntry.is_dir`` that takes a symbolic link loop (ELOOP) or an unreadable entry for no folder."""
    try:
        return entry.is_dir()
    except OSError:
        logger.warning("ignoring %s: %s", display_name(entry.path), "cannot be read (a symbolic link loop?)")
        return False


def list_class_folders(root: str) -> List[str]:
    """The class folder names of an ImageFolder root, sorted (hidden entries ignored)."""
    with os.scandir(root) as it:
        return sorted(e.name for e in it if not e.name.startswith(".") and _entry_is_dir(e))


def list_image_folder(root: str, class_to_idx: Optional[Dict[str, int]]):
    """``(class_to_idx, rel_paths, labels)``; hidden entries are ignored."""
    if not os.path.exists(root):
        raise DatasetError(f"dataset folder not found: {root}")
    if not os.path.isdir(root):
        raise DatasetError(f"dataset path is not a folder: {root}")
    class_dirs = list_class_folders(root)
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
    for name in (n for n in class_dirs if n in class_to_idx):
        with os.scandir(os.path.join(root, name)) as it:
            entries = [e for e in it if not e.name.startswith(".")]
        names = sorted(e.name for e in entries
                       if os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS and entry_is_file(e))
        ignored += len(entries) - len(names)
        rel_paths += [f"{name}/{f}" for f in names]
        labels += [class_to_idx[name]] * len(names)
    if ignored:
        logger.debug("ignored %d entries without an image file name ending under %s", ignored, root)
    return class_to_idx, rel_paths, labels


def read_data_list(list_path: str, data_dir: str):
    """``relative/path label`` lines (paths may contain spaces). Bytes that are not UTF-8 are kept (surrogate
    escapes) when they name an existing file (one warning), else the line is an error."""
    if not os.path.isfile(list_path):
        raise DatasetError(f"data_list file not found: {list_path}")
    if data_dir and not os.path.isdir(data_dir):
        raise DatasetError(f"dataset folder not found: {data_dir} (the root of the paths in {list_path})")
    try:
        lines, first_bad = read_lines(list_path)
    except OSError as exc:
        raise DatasetError(f"cannot read data_list {list_path}: {exc.strerror or exc}") from None
    rel_paths: List[str] = []
    labels: List[int] = []
    for lineno, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        shown = display_name(line)
        parts = line.rsplit(None, 1)
        if len(parts) != 2:
            raise DatasetError(f"{list_path}:{lineno}: expected 'relative_path label', got {shown!r}")
        try:
            label = int(parts[1])
        except ValueError:
            raise DatasetError(f"{list_path}:{lineno}: label {display_name(parts[1])!r} is not an integer") from None
        if label < 0:
            raise DatasetError(f"{list_path}:{lineno}: negative label {label}")
        if first_bad is not None and lineno >= first_bad and display_name(parts[0]) != parts[0]:
            full = os.path.join(data_dir, parts[0]) if data_dir else parts[0]
            if not os.path.lexists(full):
                raise DatasetError(f"{list_path}:{lineno}: this line is not valid UTF-8 and the file it names "
                                   f"({display_name(full)}) does not exist: save {list_path} as UTF-8 (e.g. iconv "
                                   "-f latin1 -t utf-8), or name the files with the bytes the list holds")
        rel_paths.append(parts[0])
        labels.append(label)
    if not rel_paths:
        raise DatasetError(f"data_list file lists no images: {list_path}")
    if first_bad is not None:
        logger.warning("%s:%d is not valid UTF-8; its bytes are used as the file name's bytes (those files exist)",
                       list_path, first_bad)
    return rel_paths, labels


def list_dataset(data_dir: str, data_list: str = "", class_to_idx: Optional[Dict[str, int]] = None,
                 num_classes: Optional[int] = None):
    """``(class_to_idx, rel_paths, labels)`` of an ImageFolder tree ``data_dir``, or of a ``data_list`` rooted
    at ``data_dir`` (classes ``"0" .. str(K - 1)`` unless ``class_to_idx`` is given)."""
    if data_list:
        rel_paths, labels = read_data_list(os.fspath(data_list), data_dir)
        if class_to_idx is None:
            class_to_idx = {str(i): i for i in range(int(num_classes) if num_classes else max(labels) + 1)}
        return {str(a): int(b) for a, b in class_to_idx.items()}, rel_paths, labels
    if not data_dir:
        raise DatasetError("data_dir is empty: give an ImageFolder root (root/<class>/<image>)")
    class_to_idx, rel_paths, labels = list_image_folder(data_dir, class_to_idx)
    if not rel_paths:
        raise DatasetError(f"dataset folder has no image files: {data_dir} "
                           f"(looked for {', '.join(IMAGE_EXTENSIONS[:6])}, ... in its class folders)")
    return class_to_idx, rel_paths, labels


def read_table_file(path: str, what: str, error=DatasetError):
    """A UTF-8 text file given by the user: ``(its JSON value, [])`` when it starts with ``[`` or ``{``, else
    ``(None, [(line number, stripped line)])`` of its non-blank lines; ``error`` names ``what`` and ``path``."""
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8").lstrip("\ufeff")
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise error(f"{what} {path} is not UTF-8 (byte {exc.start}); save it as UTF-8") from None
    if text.strip().startswith(("[", "{")):
        try:
            return json.loads(text), []
        except ValueError as exc:
            raise error(f"{what} {path} is not valid JSON: {exc}") from None
    return None, [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def save_class_index(class_to_idx: Dict[str, int], path: str) -> None:
    """Write the class -> index map as JSON (atomically), ordered by index."""
    items = sorted(((str(k), int(v)) for k, v in class_to_idx.items()), key=lambda kv: kv[1])
    write_json_atomic(dict(items), path, indent=1, ensure_ascii=False)


def load_class_index(path: str) -> Dict[str, int]:
    data, _ = read_table_file(path, "class index")
    if not isinstance(data, dict) or not all(isinstance(v, int) and not isinstance(v, bool)
                                             for v in data.values()):
        raise DatasetError(f"class index {path} must be a JSON object of class name -> integer index")
    if len(set(data.values())) != len(data):
        raise DatasetError(f"class index {path} maps two classes to the same index")
    return {str(k): int(v) for k, v in data.items()}
