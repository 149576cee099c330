"""What a checkpoint of this project records besides its weights: one writer (``checkpoint_metadata``, used by
training and the tests), one reader (``checkpoint_model_info``: own, zoo or timm files, every value checked) and
``resolve_model`` (checkpoint + config -> the model eval, predict and export build; the command line wins).
Recorded: ``arch``, ``num_classes``, ``image_size``/``eval_resize``/``crop_pct``, ``class_names`` (JSON list);
training adds ``epoch`` and ``best_top1`` tensors. Names missing there come from a nearby ``class_index.json``.
"""
import json
import logging
import os
from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from src.archs import EVAL_RESIZE_MODES, REGISTRY, arch_for_layout, resolve_preprocess
from src.checkpoint.formats import CheckpointError, read_state_dict
from src.checkpoint.layouts import detect_layout, strip_wrappers, unknown_layout
from src.config import MAX_SIDE

logger = logging.getLogger(__name__)

PREPROCESS_KEYS = ("image_size", "eval_resize", "crop_pct")
_NOT_WEIGHTS = ("ema.", "moments.", "accum.")


def checkpoint_metadata(net, preprocess, class_to_idx):
    """The writer: ``save_checkpoint_atomic``'s ``metadata`` for ``net``, ``preprocess``
    (``src.archs.resolve_preprocess``'s) and the training data's ``class_to_idx``."""
    from src.utils.paths import json_dumps

    names = [name for name, _ in sorted(class_to_idx.items(), key=lambda kv: kv[1])]
    return {"arch": net.arch.name, "num_classes": int(net.num_classes), "image_size": preprocess["image_size"],
            "eval_resize": preprocess["eval_resize"], "crop_pct": str(preprocess["crop_pct"]),
            "class_names": json_dumps(names)}  # names that are not UTF-8 as \udcXX escapes (lossless)


def _bad(path, key, value, expected):
    shown = repr(value)
    return CheckpointError(f"{path}: bad metadata {key}={shown[:80] + '...' if len(shown) > 80 else shown}: "
                           f"expected {expected}")


def _scalar(value):
    """A recorded number: a str, or a 0-d/1-element tensor (MindSpore stores int and float values as tensors)."""
    if isinstance(value, (bytes, str)):
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    arr = np.asarray(value)
    return arr.reshape(-1)[0].item() if arr.size == 1 else value


def _parsed(parse, text):
    """``parse(text)``, or None when it raises ValueError."""
    try:
        return parse(text)
    except ValueError:
        return None


def _int(path, key, value, low):
    value = _scalar(value)
    try:
        number = int(value) if not isinstance(value, float) or value.is_integer() else None
    except (TypeError, ValueError):
        number = None
    if number is None or number < low:
        raise _bad(path, key, value, f"an integer >= {low}")
    return number


def read_metadata(path, arrays, meta):
    """``read_state_dict(path)``'s ``(arrays, meta)`` checked and decoded: ``{"arch", "num_classes" (the head's
    rows), "preprocess", "class_names", "epoch", "best_top1"}``, None (``preprocess`` empty) where not recorded."""
    meta = {k: v.decode("utf-8", "replace") if isinstance(v, bytes) else v for k, v in meta.items()}
    out = {"arch": meta.get("arch") or None, "num_classes": None, "preprocess": {}, "class_names": None,
           "epoch": None, "best_top1": None}
    if out["arch"] is not None and out["arch"] not in REGISTRY:
        raise _bad(path, "arch", out["arch"], f"one of {', '.join(REGISTRY)}")
    recorded = meta.get("num_classes", arrays.get("num_classes"))
    if recorded is not None:
        out["num_classes"] = _int(path, "num_classes", recorded, 1)
    head = next((a for n, a in arrays.items() if n.endswith("head.fc.weight") and not n.startswith(_NOT_WEIGHTS)
                 and getattr(a, "ndim", 0) == 2), None)
    if head is not None:
        if out["num_classes"] is not None and out["num_classes"] != head.shape[0]:
            raise CheckpointError(f"{path}: bad metadata num_classes={out['num_classes']}: its classifier head has "
                                  f"{head.shape[0]} rows")
        out["num_classes"] = int(head.shape[0])
    pre = {k: meta[k] for k in PREPROCESS_KEYS if meta.get(k) not in (None, "")}
    if "image_size" in pre:
        hw = _parsed(lambda text: [int(v) for v in text.split(",")], str(pre["image_size"])) or []
        if len(hw) != 2 or min(hw) < 1 or max(hw) > MAX_SIDE:
            raise _bad(path, "image_size", pre["image_size"], f"'height,width' of integers in [1, {MAX_SIDE}]")
        pre["image_size"] = "%d,%d" % tuple(hw)
    if "eval_resize" in pre and pre["eval_resize"] not in EVAL_RESIZE_MODES:
        raise _bad(path, "eval_resize", pre["eval_resize"], f"one of {', '.join(EVAL_RESIZE_MODES)}")
    if "crop_pct" in pre:
        pre["crop_pct"] = _parsed(float, pre["crop_pct"])
        if pre["crop_pct"] is None or not 0 < pre["crop_pct"] <= 1:
            raise _bad(path, "crop_pct", meta["crop_pct"], "a number in (0, 1]")
    out["preprocess"] = pre
    if meta.get("class_names"):
        names = _parsed(json.loads, meta["class_names"])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or \
                (out["num_classes"] is not None and len(names) > out["num_classes"]):
            raise _bad(path, "class_names", meta["class_names"], "a JSON list of at most num_classes names")
        out["class_names"] = names or None
    if "epoch" in arrays:
        out["epoch"] = _int(path, "epoch", arrays["epoch"], 0)
    if "best_top1" in arrays:
        best = _scalar(arrays["best_top1"])
        if not isinstance(best, float) or not (best == -1.0 or 0 <= best <= 100):
            raise _bad(path, "best_top1", best, "a top-1 percentage in [0, 100] (or -1: none yet)")
        out["best_top1"] = best
    return out


def _class_index_near(path):
    """``(names in index order, file)`` of a ``class_index.json`` beside ``path`` or in its run folder, or
    ``(None, None)``."""
    from src.checkpoint.store import run_folder_of
    from src.data.listing import load_class_index

    folders = [os.path.dirname(os.path.abspath(path))] + [d for d in [run_folder_of(path)] if d]
    for folder in folders:
        index_path = os.path.join(folder, "class_index.json")
        if os.path.isfile(index_path):
            index = load_class_index(index_path)  # a broken file is an error naming it, never ignored
            return [n for n, _ in sorted(index.items(), key=lambda kv: kv[1])], index_path
    return None, None


def checkpoint_model_info(path):
    """The reader: ``read_metadata``'s dict plus ``layout``, ``problem`` (why no network can load it, else None)
    and ``class_names_source``; ``arch`` falls back to a foreign layout's, ``class_names`` to a nearby
    ``class_index.json``."""
    arrays, meta = read_state_dict(path)
    info = read_metadata(path, arrays, meta)
    info["layout"] = layout = detect_layout(strip_wrappers(name) for name in arrays)
    info["arch"] = info["arch"] or arch_for_layout(layout)
    info["problem"] = unknown_layout(arrays) if layout == "unknown" else None
    info["class_names_source"] = f"recorded in {path}" if info["class_names"] is not None else None
    if info["class_names"] is None:
        names, source = _class_index_near(path)
        if names is not None and info["num_classes"] is not None and len(names) > info["num_classes"]:
            logger.warning("%s names %d classes but %s has %d outputs: not its class names", source, len(names),
                           path, info["num_classes"])
        elif names is not None:
            info["class_names"], info["class_names_source"] = names, source
    return info


@dataclass(frozen=True)
class ModelSpec:
    """The network a job builds for a checkpoint."""
    checkpoint: str
    arch: str
    num_classes: int
    preprocess: dict                      # {"image_size": "H,W", "eval_resize", "crop_pct"}
    class_names: Optional[List[str]]      # the trained classes in index order, if known
    class_names_source: Optional[str]     # where they come from
    layout: str                           # own, zoo, timm


def resolve_model(cfg, ckpt, info=None, log=None):
    """The one checkpoint -> model resolution of eval, predict and export (a ``ModelSpec``): ``arch`` and
    ``num_classes`` the checkpoint's, else the config's (an explicit contradicting one is a ``CheckpointError``);
    preprocessing by ``src.archs.resolve_preprocess``. ``info``: ``checkpoint_model_info(ckpt)`` if read."""
    info = checkpoint_model_info(ckpt) if info is None else info
    if info["problem"]:
        raise CheckpointError(f"{ckpt}: {info['problem']}")
    arch, num_classes = cfg.model.arch, cfg.model.num_classes
    if info["arch"] and info["arch"] != arch:
        if cfg.is_explicit("arch"):
            raise CheckpointError(f"{ckpt}: holds weights for arch {info['arch']!r} but --arch={arch}")
        arch = info["arch"]
    if info["num_classes"] and info["num_classes"] != num_classes:
        if cfg.is_explicit("num_classes"):
            raise CheckpointError(f"{ckpt}: has a {info['num_classes']}-class head but --num_classes={num_classes} "
                                  "(leave num_classes out to use the checkpoint's)")
        num_classes = info["num_classes"]
    given = {k for k in PREPROCESS_KEYS if cfg.is_explicit(k)}
    pre = resolve_preprocess(arch, cfg.data.image_size, cfg.data.eval_resize, cfg.data.crop_pct,
                             recorded=info["preprocess"], given=given)
    unknown = [k for k in PREPROCESS_KEYS if k not in given and k not in info["preprocess"]]
    if info["layout"] == "own" and unknown and log is not None:
        log.warning("%s records no %s (written before checkpoints recorded their preprocessing): using %s; give "
                    "--%s to choose", ckpt, "/".join(unknown), ", ".join(f"{k}={pre[k]}" for k in unknown),
                    unknown[0])
    return ModelSpec(checkpoint=ckpt, arch=arch, num_classes=int(num_classes), preprocess=pre,
                     class_names=info["class_names"], class_names_source=info["class_names_source"],
                     layout=info["layout"])
