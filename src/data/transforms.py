"""Train and eval transforms (``mindspore.dataset`` C++ engine) and image-size helpers.

Train (the zoo's): RandomCropDecodeResize, flip, colour jitter (or RandAugment/AutoAugment, as timm), ImageNet
mean/std on 0-255, HWC2CHW, random erasing; mixup/CutMix on batches. Eval: Decode, resize (``squash`` as the zoo,
``shorter`` as timm), centre crop, normalize. A new augmentation: a ``DataConfig`` field and its op here.
"""
from __future__ import annotations

import math
from typing import Tuple

import numpy as np

from src.archs import EVAL_RESIZE_MODES
from src.data.options import data_options
from src.errors import DatasetError

IMAGENET_MEAN = [0.485 * 255, 0.456 * 255, 0.406 * 255]
IMAGENET_STD = [0.229 * 255, 0.224 * 255, 0.225 * 255]


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
    """``vision.Resize``'s size in eval: squash (zoo) -> (round(H/crop_pct), round(W/crop_pct)); shorter (timm) ->
    floor(S/crop_pct) for the shorter side of a square size, else (floor(H/crop_pct), floor(W/crop_pct))."""
    h, w = parse_image_size(image_size)
    if eval_resize == "squash":
        return (int(round(h / crop_pct)), int(round(w / crop_pct)))
    if eval_resize == "shorter":
        if h == w:
            return int(math.floor(h / crop_pct))
        return (int(math.floor(h / crop_pct)), int(math.floor(w / crop_pct)))
    raise DatasetError(f"eval_resize must be one of {EVAL_RESIZE_MODES}, got {eval_resize!r}")


def train_transforms(image_size, opts=None, **keys):
    """The per-image train ops for ``data_options(opts, **keys)`` (random erasing on the normalized CHW image)."""
    import mindspore.dataset.vision as V

    o = data_options(opts, **keys)
    h, w = parse_image_size(image_size)
    ops = [V.RandomCropDecodeResize((h, w), scale=(o.crop_scale_min, 1.0), ratio=(0.75, 1.333)),
           V.RandomHorizontalFlip(prob=0.5)]
    fill = tuple(int(round(m)) for m in IMAGENET_MEAN)
    if o.auto_augment == "randaugment":
        ops.append(V.RandAugment(num_ops=2, magnitude=9, interpolation=V.Inter.BILINEAR, fill_value=fill))
    elif o.auto_augment == "autoaugment":
        ops.append(V.AutoAugment(policy=V.AutoAugmentPolicy.IMAGENET, interpolation=V.Inter.BILINEAR,
                                 fill_value=fill))
    elif o.color_jitter > 0:
        ops.append(V.RandomColorAdjust(brightness=o.color_jitter, contrast=o.color_jitter,
                                       saturation=o.color_jitter))
    ops += [V.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD), V.HWC2CHW()]
    if o.re_prob > 0:
        ops.append(V.RandomErasing(prob=o.re_prob))
    return ops


def eval_transforms(image_size, eval_resize="squash", crop_pct=0.875):
    """Decode, Resize (see ``eval_resize_size``, bilinear), CenterCrop(image_size), Normalize, HWC2CHW."""
    import mindspore.dataset.vision as V
    h, w = parse_image_size(image_size)
    if not 0.0 < float(crop_pct) <= 1.0:
        raise DatasetError(f"crop_pct must be in (0, 1], got {crop_pct!r}")
    return [V.Decode(), V.Resize(eval_resize_size((h, w), eval_resize, crop_pct), V.Inter.LINEAR),
            V.CenterCrop((h, w)), V.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD), V.HWC2CHW()]


def batch_transforms(opts, num_classes):
    """``(label ops before batching, [(op, columns)] after)``: one-hot, mixup/CutMix, float32 labels; or nothing."""
    import mindspore as ms
    import mindspore.dataset.transforms as T
    import mindspore.dataset.vision as V

    mixes = []
    if opts.mixup_alpha > 0:
        mixes.append(V.MixUpBatch(alpha=opts.mixup_alpha))
    if opts.cutmix_alpha > 0:
        mixes.append(V.CutMixBatch(V.ImageBatchFormat.NCHW, alpha=opts.cutmix_alpha, prob=1.0))
    if not mixes:
        return [], []
    op = mixes[0] if len(mixes) == 1 else T.RandomChoice(mixes)  # both on: one of the two per batch (timm)
    if opts.mixup_prob < 1.0:
        op = T.RandomApply([op], prob=opts.mixup_prob)
    return [T.OneHot(num_classes)], [(op, ["image", "label"]), (T.TypeCast(ms.float32), ["label"])]
