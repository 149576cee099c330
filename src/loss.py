"""Cross-entropy with the model zoo's label smoothing.

Label smoothing convention (the zoo's, which differs from PyTorch's ``label_smoothing``):
the true class gets ``1 - eps`` and every other class ``eps / (K - 1)``; the targets sum to 1.
With eps = 0.1 and K = 1000 that is 0.9 and 1.001e-4.

The loss is ``mean_i( -sum_c t_ic * log_softmax(z_i)_c )``, always computed in float32: the
logits are cast inside the Cell, so a float16 head (AMP O2/O3, or the zoo's fp16 fc) still gives
a float32 loss.

Labels:
  * int class indices, shape ``[B]`` (or ``[B, 1]``) -> one-hot with the smoothing above; an index
    outside ``0..K-1`` gives an all-``eps/(K-1)`` target row (no error in graph mode);
  * soft targets, float ``[B, K]`` (mixup / cutmix) -> used as given by default, because a mixup
    producer normally applies its own smoothing (timm's ``Mixup(label_smoothing=...)``, mindcv's
    mixup). Pass ``smooth_soft_targets=True`` to apply the same smoothing map to them:
    ``t' = t * (1 - eps*K/(K-1)) + eps/(K-1)``, which turns a one-hot row into exactly the smoothed
    row above and keeps every row's sum.

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

__all__ = ["CrossEntropySmooth", "create_loss"]


class CrossEntropySmooth(nn.Cell):
    """Label-smoothed softmax cross-entropy, mean over the batch, float32.

    Args:
        smooth_factor: eps in [0, 1). 0 gives plain cross-entropy.
        num_classes: K, the one-hot depth for integer labels (must be >= 2 when eps > 0).
        smooth_soft_targets: also smooth float [B, K] targets (default False: use them as given).
        class_weights: None (default) or K per-class weights (see the module doc).
    """

    def __init__(self, smooth_factor=0.1, num_classes=1000, smooth_soft_targets=False, class_weights=None):
        super().__init__()
        smooth_factor = float(smooth_factor)
        num_classes = int(num_classes)
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if not 0.0 <= smooth_factor < 1.0:
            raise ValueError(f"smooth_factor must be in [0, 1), got {smooth_factor}")
        if smooth_factor > 0 and num_classes < 2:
            raise ValueError("label smoothing needs num_classes >= 2")
        off = smooth_factor / (num_classes - 1) if num_classes > 1 else 0.0
        on = 1.0 - smooth_factor
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
                class_weights=None):
    """The zoo's loss factory: ``label_smooth`` 0 forces eps = 0 whatever ``label_smooth_factor`` says."""
    eps = float(label_smooth_factor) if int(label_smooth) else 0.0
    return CrossEntropySmooth(smooth_factor=eps, num_classes=num_classes,
                              smooth_soft_targets=smooth_soft_targets, class_weights=class_weights)
