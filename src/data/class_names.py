"""Class names for predictions (``load_class_names``): the shipped ImageNet-1k table for 1000 classes or
``class_<i>``; a ``.tsv`` / ``.txt`` (``id<TAB>name`` or ``name`` lines), a ``.json`` class index (also
``{"class_to_idx": ...}``, a list, ``{"0": "name"}``), or a folder holding one of ``CLASS_INDEX_FILES``.
"""
import os

from src.data.listing import read_table_file
from src.errors import ClassNamesError


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMAGENET_CLASSES_TSV = os.path.join(REPO_ROOT, "data", "imagenet", "imagenet1k_classes.tsv")
CLASS_INDEX_FILES = ("class_index.json", "class_to_idx.json", "class_indices.json", "classes.json",
                     "classes.tsv", "classes.txt")


def _read_table(path):
    """[(id or None, name)] of a TSV/TXT file's non-blank lines (``id<TAB>name`` or ``name``)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line.rstrip("\r\n").partition("\t") for line in f if line.strip()]
    except (OSError, UnicodeDecodeError) as err:  # not UTF-8: a names file saved in a legacy code page
        raise ClassNamesError(f"cannot read class names file {path}: {err}"
                              f"{' (save it as UTF-8)' if isinstance(err, UnicodeDecodeError) else ''}") from None
    if not lines:
        raise ClassNamesError(f"class names file {path} is empty")
    return [(key.strip(), name.strip()) if tab else (None, key.strip()) for key, tab, name in lines]


def _names_from_json(path):
    data, _ = read_table_file(path, "class index", ClassNamesError)
    if isinstance(data, dict) and isinstance(data.get("class_to_idx"), dict):
        data = data["class_to_idx"]
    if isinstance(data, list):
        if not all(isinstance(n, str) for n in data):
            raise ClassNamesError(f"class index {path}: a list must hold class names (strings)")
        return list(data)
    if not isinstance(data, dict) or not data:
        raise ClassNamesError(f"class index {path}: expected a non-empty {{name: index}} object")
    if all(isinstance(v, int) and not isinstance(v, bool) for v in data.values()):
        by_index = {v: k for k, v in data.items()}
    elif all(isinstance(k, str) and k.isdigit() for k in data) and all(isinstance(v, str) for v in data.values()):
        by_index = {int(k): v for k, v in data.items()}
    else:
        raise ClassNamesError(f"class index {path}: expected {{name: int index}} or {{\"index\": name}}")
    if len(by_index) != len(data) or sorted(by_index) != list(range(len(by_index))):
        raise ClassNamesError(f"class index {path}: indices must be 0..{len(data) - 1}, each used once")
    return [by_index[i] for i in range(len(by_index))]


def load_imagenet_synsets():
    """The 1000 ImageNet-1k synset ids in class-index order (n01440764 first)."""
    return [key for key, _ in _read_table(IMAGENET_CLASSES_TSV)]


def load_imagenet_class_names():
    """The 1000 ImageNet-1k class names in class-index order ("tench, Tinca tinca" first)."""
    return [name for _, name in _read_table(IMAGENET_CLASSES_TSV)]


def load_class_names(path=None, num_classes=1000):
    """``num_classes`` names in index order from ``path`` (module doc); ``ClassNamesError`` when the source is
    unreadable or holds another number of classes (``num_classes=None`` accepts any)."""
    if path is None or path == "":
        if num_classes is None or int(num_classes) == 1000:
            names = load_imagenet_class_names()
        else:
            return [f"class_{i}" for i in range(int(num_classes))]
    else:
        path = os.fspath(path)
        if os.path.isdir(path):
            found = [p for p in (os.path.join(path, n) for n in CLASS_INDEX_FILES) if os.path.isfile(p)]
            if not found:
                raise ClassNamesError(f"no class index in {path} (looked for {', '.join(CLASS_INDEX_FILES)})")
            path = found[0]
        if not os.path.isfile(path):
            raise ClassNamesError(f"class names file not found: {path}")
        if path.lower().endswith(".json"):
            names = _names_from_json(path)
        else:
            names = [name for _, name in _read_table(path)]
    if num_classes is not None and len(names) != int(num_classes):
        raise ClassNamesError(f"{path or IMAGENET_CLASSES_TSV} has {len(names)} classes, "
                              f"the model has {num_classes}")
    return names
