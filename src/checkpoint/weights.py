"""Checkpoints and networks: strict weight loading from any layout, the metadata a checkpoint records,
and building the inference model a checkpoint needs.

Loading is strict: missing keys, unexpected keys and shape mismatches are collected and reported
in one ``CheckpointError``. (MindSpore's ``load_param_into_net(strict_load=True)`` only makes dtype
mismatches fatal; missing and unexpected keys pass silently, which is how the zoo's eval ended up
scoring random weights.) A head for another number of classes is dropped, with a warning, only
when the caller asks to fine-tune.
"""
import json
import logging
import os
from dataclasses import dataclass

import numpy as np

from src.archs import arch_for_layout
from src.checkpoint.formats import CheckpointError, read_state_dict
from src.checkpoint.layouts import (HEAD_KEYS, detect_layout, format_list, is_non_weight, strip_wrappers,
                                    to_own_layout)

logger = logging.getLogger(__name__)


@dataclass
class LoadReport:
    path: str
    layout: str
    num_loaded: int
    skipped_non_weights: int
    head_reinitialized: bool
    used_ema: bool
    metadata: dict
    has_ema: bool = False  # the checkpoint holds EMA weights (ema.*), used or not


def load_weights(net, path, fine_tune=False, use_ema=False):
    """Loads ``path`` into ``net`` (an ``ImageClassificationNetwork`` or ``FeatureExtractor``), strictly.

    ``fine_tune``: a head whose shape differs from the network's is left at its fresh
    initialisation (warned), instead of being an error. A ``FeatureExtractor`` ignores the head.
    ``use_ema``: take the ``ema.*`` weights of a training checkpoint (an error if it has none).
    Returns a ``LoadReport``; raises ``CheckpointError`` listing every problem at once.
    """
    import mindspore as ms

    path = os.fspath(path)
    raw, meta = read_state_dict(path, use_ema=use_ema)
    arrays = {strip_wrappers(name): arr for name, arr in raw.items()}
    layout = detect_layout(arrays)
    arch_name = net.arch.name
    if layout == "unknown":
        raise CheckpointError(f"{path}: no CSPDarkNet53 weights found (first keys: {format_list(list(arrays), 5)}); "
                              "expected this project's, the MindSpore model zoo's or timm's key names")
    ckpt_arch = meta.get("arch") or arch_for_layout(layout)
    if ckpt_arch and ckpt_arch != arch_name:
        raise CheckpointError(f"{path}: holds weights for arch {ckpt_arch!r} ({layout} layout) but the network is "
                              f"{arch_name!r}; build it with arch={ckpt_arch}")

    used_ema = False
    has_ema = any(n.startswith("ema.") for n in arrays)
    if use_ema:
        ema = {n[len("ema."):]: a for n, a in arrays.items() if n.startswith("ema.")}
        if not ema and layout == "own":
            raise CheckpointError(f"{path}: use_ema was requested but the checkpoint has no EMA weights (ema.*)")
        if ema:
            arrays.update(ema)
            used_ema = True
    skipped = [n for n in arrays if is_non_weight(n)]
    arrays = {n: a for n, a in arrays.items() if not is_non_weight(n)}
    arrays, unmapped = to_own_layout(arrays, layout)

    params = net.parameters_dict()
    expected = set(params)
    has_head = all(k in expected for k in HEAD_KEYS)
    if not has_head:  # a feature extractor: the classifier is not part of the network
        for k in HEAD_KEYS:
            arrays.pop(k, None)

    head_reinitialized = False
    shape_errors = []
    for name in sorted(set(arrays) & expected):
        want, got = tuple(params[name].shape), tuple(arrays[name].shape)
        if want == got:
            continue
        if name in HEAD_KEYS and fine_tune:
            head_reinitialized = True
            continue
        shape_errors.append(f"{name}: checkpoint {got} vs network {want}")
    if head_reinitialized:
        for k in HEAD_KEYS:
            arrays.pop(k, None)
        logger.warning("%s: classifier head has another number of classes; it is re-initialised for %d classes "
                       "(fine-tuning)", path, net.num_classes)
    missing = expected - set(arrays) - (set(HEAD_KEYS) if head_reinitialized else set())
    unexpected = (set(arrays) - expected) | set(unmapped)

    problems = []
    head_shape_error = [e for e in shape_errors if e.startswith("head.fc.weight")]
    if head_shape_error:
        ckpt_classes = arrays["head.fc.weight"].shape[0]
        problems.append(f"the checkpoint's head has {ckpt_classes} classes and the network's {net.num_classes}: "
                        f"set num_classes={ckpt_classes}, or fine-tune (the head is then re-initialised)")
        shape_errors = [e for e in shape_errors if not e.startswith("head.fc.")]
    if shape_errors:
        problems.append(f"{len(shape_errors)} shape mismatches: {format_list(shape_errors, 6)}")
    if missing:
        problems.append(f"{len(missing)} network parameters missing from the checkpoint: {format_list(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected checkpoint entries: {format_list(unexpected)}")
    if problems:
        raise CheckpointError(f"{path} ({layout} layout) does not fit arch {arch_name!r}: " + "; ".join(problems))

    to_load = {}
    for name, arr in arrays.items():
        dtype = params[name].dtype
        to_load[name] = ms.Parameter(ms.Tensor(np.ascontiguousarray(arr), dtype), name=name)
    not_loaded, _ = ms.load_param_into_net(net, to_load, strict_load=True)
    not_loaded = [n for n in not_loaded if not (head_reinitialized and n in HEAD_KEYS)]
    if not_loaded:  # cannot happen after the checks above; kept so a silent partial load is impossible
        raise CheckpointError(f"{path}: MindSpore did not load {format_list(not_loaded)}")
    logger.info("loaded %s (%s layout, %d tensors%s)", path, layout, len(to_load), ", EMA" if used_ema else "")
    return LoadReport(path=path, layout=layout, num_loaded=len(to_load), skipped_non_weights=len(skipped),
                      head_reinitialized=head_reinitialized, used_ema=used_ema, metadata=meta,
                      has_ema=has_ema)


def network_metadata(net):
    """What an own checkpoint records about the network it came from."""
    return {"arch": net.arch.name, "num_classes": int(net.num_classes)}


PREPROCESS_KEYS = ("image_size", "eval_resize", "crop_pct")


def _decode(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _run_folder_record(path):
    """What the training run folder around ``path`` saved (config.yaml, class_index.json), for checkpoints
    written before checkpoints carried it themselves (outside a run folder: a ``class_index.json`` in the
    checkpoint's own folder): ``(preprocess dict, class names or None, the index file or None)``."""
    from src.checkpoint.store import run_folder_of

    run_dir = run_folder_of(path)
    preprocess, names = {}, None
    if not run_dir:  # a checkpoint copied out of its run folder: a class_index.json beside it still counts
        index_path = os.path.join(os.path.dirname(os.path.abspath(path)), "class_index.json")
        if os.path.isfile(index_path):
            try:
                from src.data.listing import load_class_index
                index = load_class_index(index_path)
                return preprocess, [n for n, _ in sorted(index.items(), key=lambda kv: kv[1])], index_path
            except ValueError:
                pass
        return preprocess, names, None
    import yaml  # a requirement (the config loader's)

    try:
        with open(os.path.join(run_dir, "config.yaml"), encoding="utf-8") as f:
            saved = yaml.safe_load(f) or {}
        preprocess = {k: saved[k] for k in PREPROCESS_KEYS if isinstance(saved, dict) and k in saved
                      and saved[k] not in ("auto", 0, None)}
    except (OSError, ValueError, yaml.YAMLError):  # an unreadable record is no record (not UTF-8: ValueError)
        pass
    index_path = os.path.join(run_dir, "class_index.json")
    try:
        from src.data.listing import load_class_index
        index = load_class_index(index_path)
        names = [n for n, _ in sorted(index.items(), key=lambda kv: kv[1])]
    except ValueError:
        index_path = None
    return preprocess, names, index_path


def checkpoint_model_info(path):
    """What a checkpoint says about its network and its training data.

    ``{"arch": str or None, "num_classes": int or None, "preprocess": {...}, "class_names": [...] or None,
    "class_names_source": where the names come from}``:
    ``arch`` from the recorded metadata, else from the key layout (a foreign layout implies the
    architecture the registry gives it); ``num_classes`` from the metadata, else the classifier's shape;
    ``preprocess`` (image_size, eval_resize, crop_pct it was trained with) and ``class_names`` (in index
    order) from the metadata, else from the training run folder around the file; ``layout`` (own, zoo,
    timm, unknown) and ``problem``: why no network can load it (no CSPDarkNet53 weights), else None.
    Raises ``CheckpointError`` for an unreadable file.
    """
    arrays, meta = read_state_dict(path)
    meta = {k: _decode(v) for k, v in meta.items()}
    layout = detect_layout(strip_wrappers(name) for name in arrays)
    arch = meta.get("arch") or arch_for_layout(layout)
    num_classes = meta.get("num_classes", arrays.get("num_classes"))
    if num_classes is not None:
        try:
            num_classes = int(np.asarray(num_classes).reshape(-1)[0]) if not isinstance(num_classes, str) \
                else int(num_classes)
        except (ValueError, IndexError):
            num_classes = None
    if num_classes is None:
        for name, arr in arrays.items():
            if name.endswith("head.fc.weight") and not name.startswith(("ema.", "moments.", "accum.")) \
                    and getattr(arr, "ndim", 0) == 2:
                num_classes = int(arr.shape[0])
                break
    preprocess = {k: meta[k] for k in PREPROCESS_KEYS if meta.get(k)}
    names, names_source = None, None
    if meta.get("class_names"):
        try:
            names, names_source = json.loads(meta["class_names"]), f"recorded in {path}"
        except ValueError:
            names = None
    if not preprocess or names is None:
        folder_pre, folder_names, index_path = _run_folder_record(path)
        preprocess = preprocess or folder_pre
        if names is None and folder_names is not None:
            names, names_source = folder_names, index_path
    if names is not None and num_classes is not None and len(names) > num_classes:
        names, names_source = None, None  # belongs to another model
    return {"arch": arch or None, "num_classes": num_classes, "preprocess": preprocess, "class_names": names,
            "class_names_source": names_source, "layout": layout,
            "problem": None if layout != "unknown" else
            f"no CSPDarkNet53 weights found (first keys: {format_list(list(arrays), 5)}); expected this project's, "
            "the MindSpore model zoo's or timm's key names"}


def resolve_model_info(info, arch, num_classes, arch_explicit=False, num_classes_explicit=False):
    """The ``(arch, num_classes)`` to build: the caller's values where explicit, else the checkpoint's
    (``info`` from ``checkpoint_model_info``), else the caller's defaults."""
    if not arch_explicit and info.get("arch"):
        arch = info["arch"]
    if not num_classes_explicit and info.get("num_classes"):
        num_classes = info["num_classes"]
    return arch, int(num_classes)


def build_inference_model(ckpt_path, arch, num_classes, num_classes_explicit=False, arch_explicit=False,
                          use_ema=False, fp16_head=False, info=None, prepare=None):
    """Builds the classifier a checkpoint needs, loads it strictly and switches it to eval mode.

    The checkpoint's recorded ``num_classes`` (or its head shape) and ``arch`` are used unless the
    caller marks its own value as explicit (then a mismatch is the loader's clear error).
    ``prepare``: ``src.utils.perf.prepare_network`` rewrites applied after loading (e.g. ``fold_bn``);
    the network can then no longer take another checkpoint.
    Returns ``(net, LoadReport, info)`` with ``info`` the resolved ``{"arch", "num_classes"}``.
    """
    from src.image_classification import create_model

    if info is None:
        info = checkpoint_model_info(ckpt_path)
    arch, num_classes = resolve_model_info(info, arch, num_classes, arch_explicit, num_classes_explicit)
    net = create_model(arch, num_classes=num_classes, fp16_head=bool(fp16_head))
    report = load_weights(net, ckpt_path, use_ema=bool(use_ema))
    if prepare:
        from src.utils.perf import prepare_network
        prepare_network(net, train=False, **prepare)
    net.set_train(False)
    return net, report, {"arch": arch, "num_classes": num_classes}
