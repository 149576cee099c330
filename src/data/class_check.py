"""The label check: a model's trained class index against the class folders of new data.

``compare_class_index(trained, folders, mapping)`` -> ``ClassCheck``: ``identical`` (labels follow the trained
index), ``subset`` (some trained classes have no folder), ``mapped`` (after an explicit mapping: folder -> trained
name or index, null / ``-`` leaves it out) or ``mismatch`` (``error()``: names the folders and the nearest names).
"""
from __future__ import annotations

import difflib
import unicodedata
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Union

from src.data.listing import read_table_file
from src.errors import ClassIndexError
from src.utils.paths import display_name

_LISTED = 10

Target = Union[str, int, None]


@dataclass
class ClassCheck:
    kind: str                                   # identical | subset | mapped | mismatch
    class_to_idx: Dict[str, int]                # data folder -> trained label index (the folders usable)
    missing: List[str] = field(default_factory=list)      # trained classes without a data folder
    unknown: List[str] = field(default_factory=list)      # data folders that are not trained classes
    suggestions: Dict[str, List[str]] = field(default_factory=dict)   # unknown folder -> nearest trained names
    ignored: List[str] = field(default_factory=list)      # folders mapped to null (left out)
    mapping_unused: List[str] = field(default_factory=list)  # mapping keys that are no data folder
    merged: Dict[int, List[str]] = field(default_factory=dict)  # trained index -> several folders mapped onto it
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.kind != "mismatch"

    def error(self) -> ClassIndexError:
        return ClassIndexError(self.message)


def _listing(names: Sequence[str], limit: int = _LISTED) -> str:
    shown = ", ".join(display_name(n) for n in names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def _norm(name: str) -> str:
    s = unicodedata.normalize("NFKC", name).casefold()
    for ch in " -_.":
        s = s.replace(ch, "")
    return s


def nearest_names(name: str, candidates: Sequence[str], n: int = 3) -> List[str]:
    """Trained names that ``name`` is probably meant to be."""
    key = _norm(name)
    same = [c for c in candidates if _norm(c) == key]
    if same:
        return same[:n]
    return difflib.get_close_matches(name, list(candidates), n=n, cutoff=0.6)


def _resolve_target(folder: str, target: Target, trained: Mapping[str, int],
                    by_index: Mapping[int, str]) -> Optional[int]:
    if target is None:
        return None
    if isinstance(target, bool):
        raise ClassIndexError(f"class mapping: {display_name(folder)} -> {target!r} is not a class name or index")
    if isinstance(target, int):
        if target not in by_index:
            raise ClassIndexError(f"class mapping: {display_name(folder)} -> {target} is not an index of the trained "
                                  f"classes (0..{max(by_index) if by_index else -1})")
        return target
    target = str(target)
    if target in trained:
        return trained[target]
    if target.lstrip("-").isdigit() and int(target) in by_index:
        return int(target)
    near = nearest_names(target, list(trained))
    hint = f" (nearest: {_listing(near, 3)})" if near else ""
    raise ClassIndexError(f"class mapping: {display_name(folder)} -> {display_name(target)!r} is not a trained "
                          f"class{hint}")


def compare_class_index(trained: Mapping[str, int], data_classes: Sequence[str],
                        mapping: Optional[Mapping[str, Target]] = None, *, where: str = "the data",
                        source: str = "the trained class index") -> ClassCheck:
    """Compare the trained ``name -> index`` map with the data's class folder names (see the module doc)."""
    trained = {str(k): int(v) for k, v in trained.items()}
    by_index = {v: k for k, v in trained.items()}
    folders = list(dict.fromkeys(str(c) for c in data_classes))  # keep order, drop duplicates
    mapping = dict(mapping or {})
    class_to_idx: Dict[str, int] = {}
    unknown, ignored = [], []
    for f in folders:
        if f in mapping:
            idx = _resolve_target(f, mapping[f], trained, by_index)
            if idx is None:
                ignored.append(f)
            else:
                class_to_idx[f] = idx
        elif f in trained:
            class_to_idx[f] = trained[f]
        else:
            unknown.append(f)
    used = set(class_to_idx.values())
    missing = [by_index[i] for i in sorted(by_index) if i not in used]
    mapping_unused = [k for k in mapping if k not in folders]
    merged: Dict[int, List[str]] = {}
    for f, i in class_to_idx.items():
        merged.setdefault(i, []).append(f)
    merged = {i: fs for i, fs in merged.items() if len(fs) > 1}
    res = ClassCheck(kind="", class_to_idx=class_to_idx, missing=missing, unknown=unknown, ignored=ignored,
                     mapping_unused=mapping_unused, merged=merged)
    notes = []
    if ignored:
        notes.append(f"{len(ignored)} folder(s) mapped to nothing are left out: {_listing(ignored)}")
    if mapping_unused:
        notes.append(f"{len(mapping_unused)} mapping entr(y/ies) name no folder of {where}: "
                     f"{_listing(mapping_unused)}")
    if merged:
        notes.append("several folders map to one class: " + "; ".join(
            f"{display_name(by_index[i])} <- {_listing(fs, 4)}" for i, fs in list(merged.items())[:_LISTED]))
    if unknown:
        res.kind = "mismatch"
        res.suggestions = {f: nearest_names(f, list(trained)) for f in unknown}
        shown = _listing([f + (f" (nearest trained: {_listing(near, 3)})" if near else "")
                          for f, near in res.suggestions.items()])
        res.message = (f"{len(unknown)} of {len(folders)} class folder(s) of {where} are not classes of the model "
                       f"({source}, {len(trained)} classes): {shown}. The labels would be wrong; "
                       f"rename the folders, or map them explicitly with a class mapping file "
                       f"(JSON {{\"folder\": \"trained class name or index\"}}, or 'folder target' lines)")
        if notes:
            res.message += ". Also: " + "; ".join(notes)
        return res
    if not class_to_idx:
        res.kind = "mismatch"
        res.message = f"no class folder of {where} is left to evaluate after the mapping"
        return res
    mapped = sum(f in mapping for f in folders)
    res.kind = "mapped" if mapping and mapped else ("subset" if missing else "identical")
    base = (f"{len(class_to_idx)} class folder(s) of {where} are classes of the model; {len(missing)} of its "
            f"{len(trained)} classes have no folder: {_listing(missing)}" if missing else
            f"the {len(folders)} class folder(s) of {where} are the model's classes ({source})")
    base = f"{res.kind}: {base}" + (f" (mapping applied to {mapped} folder(s))" if res.kind == "mapped" else "")
    res.message = base + (". " + "; ".join(notes) if notes else "")
    return res


def load_class_mapping(path: str) -> Dict[str, Target]:
    """A mapping file: JSON object ``{"folder": "trained name" | index | null}``, or text lines
    ``folder<TAB>target`` / ``folder target`` (the target is the last field; ``-`` leaves the folder out;
    ``#`` starts a comment). Names that are not valid UTF-8 may be written as JSON ``\\udcXX`` escapes."""
    data, lines = read_table_file(path, "class mapping file", ClassIndexError)
    if data is not None:
        if not isinstance(data, dict):
            raise ClassIndexError(f"class mapping file {path} must be a JSON object {{\"folder\": target}}")
        for k, v in data.items():
            if v is not None and not isinstance(v, (str, int)) or isinstance(v, bool):
                raise ClassIndexError(f"class mapping file {path}: {k!r} -> {v!r} must be a class name, an index "
                                      f"or null")
        return {str(k): v for k, v in data.items()}
    out = {}
    for lineno, line in lines:
        if line.startswith("#"):
            continue
        parts = line.split("\t") if "\t" in line else line.rsplit(None, 1)
        if len(parts) != 2:
            raise ClassIndexError(f"{path}:{lineno}: expected 'folder target', got {line!r}")
        folder, target = parts[0].strip(), parts[1].strip()
        out[folder] = None if target == "-" else (int(target) if target.isdigit() else target)
    return out


def trained_class_index(names: Sequence[str]) -> Dict[str, int]:
    """``name -> index`` of class names in index order (``checkpoint_model_info``'s ``class_names``)."""
    return {str(n): i for i, n in enumerate(names)}
