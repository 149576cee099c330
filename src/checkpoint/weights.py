"""Strict weight loading from any layout, and the inference model a ``ModelSpec`` needs. Missing or unexpected
keys, other shapes and weights that are not finite are one ``CheckpointError`` (the zoo's
``load_param_into_net(strict_load=True)`` let missing keys pass: its eval scored random weights). A head for
another number of classes is dropped, with a warning, only when fine-tuning."""
import logging
import os
from collections import namedtuple

import numpy as np

from src.archs import arch_for_layout
from src.checkpoint.formats import CheckpointError, read_state_dict
from src.checkpoint.metadata import read_metadata
from src.checkpoint.layouts import (HEAD_KEYS, detect_layout, format_list, is_non_weight, strip_wrappers,
                                    to_own_layout, unknown_layout)

logger = logging.getLogger(__name__)
#: what ``load_weights`` did; ``has_ema``: the file holds ``ema.*`` weights, used or not
LoadReport = namedtuple("LoadReport", "path layout num_loaded skipped_non_weights head_reinitialized used_ema metadata "
                                      "has_ema")


def load_weights(net, path, fine_tune=False, use_ema=False):
    """Loads ``path`` into ``net`` strictly (a ``FeatureExtractor`` ignores the head): a ``LoadReport`` or one
    ``CheckpointError`` listing every problem. ``fine_tune``: a head of another shape stays initialised."""
    import mindspore as ms

    path = os.fspath(path)
    raw, meta = read_state_dict(path, use_ema=use_ema)
    arrays = {strip_wrappers(name): arr for name, arr in raw.items()}
    layout = detect_layout(arrays)
    arch_name = net.arch.name
    if layout == "unknown":
        raise CheckpointError(f"{path}: {unknown_layout(arrays)}")
    ckpt_arch = read_metadata(path, raw, meta)["arch"] or arch_for_layout(layout)
    if ckpt_arch and ckpt_arch != arch_name:
        raise CheckpointError(f"{path}: holds weights for arch {ckpt_arch!r} ({layout} layout) but the network is "
                              f"{arch_name!r}; build it with arch={ckpt_arch}")

    has_ema = any(n.startswith("ema.") for n in arrays)
    ema = {n[len("ema."):]: a for n, a in arrays.items() if n.startswith("ema.")} if use_ema else {}
    if use_ema and not ema and layout == "own":
        raise CheckpointError(f"{path}: use_ema was requested but the checkpoint has no EMA weights (ema.*)")
    arrays.update(ema)
    used_ema = bool(ema)
    skipped = [n for n in arrays if is_non_weight(n)]
    arrays = {n: a for n, a in arrays.items() if not is_non_weight(n)}
    arrays, unmapped = to_own_layout(arrays, layout)

    params = net.parameters_dict()
    expected = set(params)
    if not all(k in expected for k in HEAD_KEYS):  # a feature extractor: the classifier is not part of it
        arrays = {n: a for n, a in arrays.items() if n not in HEAD_KEYS}
    mismatched = [n for n in sorted(set(arrays) & expected) if tuple(params[n].shape) != tuple(arrays[n].shape)]
    head_reinitialized = fine_tune and any(n in HEAD_KEYS for n in mismatched)
    if head_reinitialized:
        arrays = {n: a for n, a in arrays.items() if n not in HEAD_KEYS}
        logger.warning("%s: classifier head has another number of classes; it is re-initialised for %d classes "
                       "(fine-tuning)", path, net.num_classes)
    missing = expected - set(arrays) - (set(HEAD_KEYS) if head_reinitialized else set())
    unexpected = (set(arrays) - expected) | set(unmapped)
    problems = []
    if "head.fc.weight" in mismatched and not head_reinitialized:
        ckpt_classes = arrays["head.fc.weight"].shape[0]
        problems.append(f"the checkpoint's head has {ckpt_classes} classes and the network's {net.num_classes}: "
                        f"set num_classes={ckpt_classes}, or fine-tune (the head is then re-initialised)")
    if head_reinitialized or "head.fc.weight" in mismatched:
        mismatched = [n for n in mismatched if n not in HEAD_KEYS]
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches: " + format_list(
            [f"{n}: checkpoint {tuple(arrays[n].shape)} vs network {tuple(params[n].shape)}" for n in mismatched], 6))
    if missing:
        problems.append(f"{len(missing)} network parameters missing from the checkpoint: {format_list(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected checkpoint entries: {format_list(unexpected)}")
    if problems:
        raise CheckpointError(f"{path} ({layout} layout) does not fit arch {arch_name!r}: " + "; ".join(problems))

    not_finite = [n for n, a in arrays.items() if a.dtype.kind == "f" and not np.isfinite(a).all()]
    if not_finite:
        raise CheckpointError(f"{path}: {len(not_finite)} of {len(arrays)} weight tensors hold NaN or infinite "
                              f"values ({format_list(not_finite, 4)}); these weights are broken (a diverged "
                              "training run?) and are not used")
    to_load = {name: ms.Parameter(ms.Tensor(np.ascontiguousarray(arr), params[name].dtype), name=name)
               for name, arr in arrays.items()}
    ms.load_param_into_net(net, to_load, strict_load=True)
    logger.info("loaded %s (%s layout, %d tensors%s)", path, layout, len(to_load), ", EMA" if used_ema else "")
    return LoadReport(path=path, layout=layout, num_loaded=len(to_load), skipped_non_weights=len(skipped),
                      head_reinitialized=head_reinitialized, used_ema=used_ema, metadata=meta,
                      has_ema=has_ema)


def build_inference_model(spec, use_ema=False, fp16_head=False, prepare=None):
    """The classifier of ``spec`` (a ``ModelSpec``) with its checkpoint loaded strictly, in eval mode: ``(net,
    LoadReport)``. ``prepare``: ``src.utils.perf.prepare_network`` rewrites applied after loading (``fold_bn``)."""
    from src.image_classification import create_model

    net = create_model(spec.arch, num_classes=spec.num_classes, fp16_head=bool(fp16_head))
    report = load_weights(net, spec.checkpoint, use_ema=bool(use_ema))
    if prepare:
        from src.utils.perf import prepare_network
        prepare_network(net, train=False, **prepare)
    net.set_train(False)
    return net, report
