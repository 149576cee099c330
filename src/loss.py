"""Cross-entropy with label smoothing, in PyTorch's convention or the model zoo's.

Two conventions for the smoothed target of eps (``style``); both rows sum to 1:
  * ``"pytorch"`` (``torch.nn.CrossEntropyLoss(label_smoothing=eps)``, timm, mindcv): the true class
    gets ``1 - eps + eps/K`` and every other class ``eps/K`` (eps is spread over all K classes);
  * ``"zoo"`` (the MindSpore model zoo's CrossEntropySmooth): the true class gets ``1 - eps`` and every
    other class ``eps/(K - 1)``.
With eps = 0.1 and K = 1000 they differ by 1e-4 (0.9001 vs 0.9); with K = 10 by 0.01 (0.91 vs 0.9).
The zoo's is the zoo's eps' = eps*K/(K-1) in PyTorch's form, i.e. slightly stronger smoothing.

The loss is ``mean_i( -sum_c t_ic * log_softmax(z_i)_c )``, always computed in float32: the
logits are cast inside the Cell, so a float16 head (AMP O2/O3, or the zoo's fp16 fc) still gives
a float32 loss.

Labels:
  * int class indices, shape ``[B]`` (or ``[B, 1]``) -> one-hot with the smoothing above; an index
    outside ``0..K-1`` gives a target row of only the off value (no error in graph mode);
  * soft targets, float ``[B, K]`` (mixup / cutmix) -> used as given by default, because a mixup
    producer normally applies its own smoothing (timm's ``Mixup(label_smoothing=...)``, mindcv's
    mixup). Pass ``smooth_soft_targets=True`` to apply the same smoothing map to them:
    ``t' = t * (on - off) + off``, which turns a one-hot row into exactly the smoothed row above and
    keeps every row's sum.

The choice between the two label forms is made from the label's rank, which is a compile-time
constant in GRAPH mode (no Python control flow on tensor values), so one Cell serves both.

Class weights (``class_weights``: K non-negative numbers, e.g. ``src.data.balance.class_weights``):
each sample's loss is weighted by its class's weight, ``w[y_i]`` for an index label (0 for an index
outside ``0..K-1``) and ``sum_c t_ic w_c`` for a soft target row as given, and the batch loss is the
weighted mean ``sum_i w_i l_i / sum_i w_i`` (PyTorch's ``CrossEntropyLoss(weight=...)`` reduction).
Without weights (the default) the Cell computes exactly what it computed before.
"""
import mindspore as ms
from mindspore import nn, ops, Tensor

__all__ = ["CrossEntropySmooth", "create_loss", "smoothed_target_values", "SMOOTH_STYLES"]

SMOOTH_STYLES = ("pytorch", "zoo")


def smoothed_target_values(smooth_factor, num_classes, style="pytorch"):
    """(on, off): the target of the true class and of every other class for eps and K in ``style``."""
    eps, k = float(smooth_factor), int(num_classes)
    if style not in SMOOTH_STYLES:
        raise ValueError(f"label smoothing style must be one of {', '.join(SMOOTH_STYLES)}, got {style!r}")
    if k < 2:
        return 1.0, 0.0
    if style == "zoo":
        return 1.0 - eps, eps / (k - 1)
    return 1.0 - eps + eps / k, eps / k


class CrossEntropySmooth(nn.Cell):
    """Label-smoothed softmax cross-entropy, mean over the batch, float32.

    Args:
        smooth_factor: eps in [0, 1). 0 gives plain cross-entropy.
        num_classes: K, the one-hot depth for integer labels (must be >= 2 when eps > 0).
        smooth_soft_targets: also smooth float [B, K] targets (default False: use them as given).
        class_weights: None (default) or K per-class weights (see the module doc).
        style: "pytorch" (default) or "zoo", the smoothing convention (see the module doc).
    """

    def __init__(self, smooth_factor=0.1, num_classes=1000, smooth_soft_targets=False, class_weights=None,
                 style="pytorch"):
        super().__init__()
        smooth_factor = float(smooth_factor)
        num_classes = int(num_classes)
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if not 0.0 <= smooth_factor < 1.0:
            raise ValueError(f"smooth_factor must be in [0, 1), got {smooth_factor}")
        if smooth_factor > 0 and num_classes < 2:
            raise ValueError("label smoothing needs num_classes >= 2")
        on, off = smoothed_target_values(smooth_factor, num_classes, style)
        self.smooth_factor = smooth_factor
        self.num_classes = num_classes
        self.smooth_soft_targets = bool(smooth_soft_targets) and smooth_factor > 0
        self.on_value = Tensor(on, ms.float32)
        self.off_value = Tensor(off, ms.float32)
        # linear map that sends a one-hot row to the smoothed row: t' = a*t + b
        self.soft_scale = Tensor(on - off, ms.float32)
        self.soft_shift = Tensor(off, ms.float32)
        self.log_softmax = nn.LogSoftmax(axis=-1)
        self.weighted = class_weights is not None
        if self.weighted:
            import numpy as np
            w = np.asarray(class_weights, dtype=np.float32).reshape(-1)
            if w.shape != (num_classes,):
                raise ValueError(f"class_weights must have one weight per class ({num_classes}), got {w.size}")
            if not np.all(np.isfinite(w)) or (w < 0).any() or not (w > 0).any():
                raise ValueError("class_weights must be finite, >= 0 and not all 0")
            self.class_weights = Tensor(w, ms.float32)
            self.one = Tensor(1.0, ms.float32)
            self.zero = Tensor(0.0, ms.float32)
            self.tiny = Tensor(1e-12, ms.float32)

    def construct(self, logits, label):
        logits = ops.cast(logits, ms.float32)
        if label.ndim == 2 and label.shape[1] == 1 and self.num_classes > 1:
            label = ops.reshape(label, (-1,))   # [B, 1] class indices (e.g. NumpySlicesDataset labels)
        if label.ndim == 1:
            target = ops.one_hot(ops.cast(label, ms.int32), self.num_classes,
                                 self.on_value, self.off_value)
        else:
            target = ops.cast(label, ms.float32)
            if self.smooth_soft_targets:
                target = target * self.soft_scale + self.soft_shift
        per_sample = -ops.sum(target * self.log_softmax(logits), -1)
        if not self.weighted:
            return ops.mean(per_sample)
        if label.ndim == 1:
            hard = ops.one_hot(ops.cast(label, ms.int32), self.num_classes, self.one, self.zero)
            weight = ops.sum(hard * self.class_weights, -1)
        else:
            weight = ops.sum(ops.cast(label, ms.float32) * self.class_weights, -1)
        return ops.sum(per_sample * weight) / ops.maximum(ops.sum(weight), self.tiny)


def create_loss(label_smooth=1, label_smooth_factor=0.1, num_classes=1000, smooth_soft_targets=False,
                class_weights=None, label_smooth_style="pytorch"):
    """The zoo's loss factory: ``label_smooth`` 0 forces eps = 0 whatever ``label_smooth_factor`` says."""
    eps = float(label_smooth_factor) if int(label_smooth) else 0.0
    return CrossEntropySmooth(smooth_factor=eps, num_classes=num_classes, smooth_soft_targets=smooth_soft_targets,
                              class_weights=class_weights, style=label_smooth_style)
