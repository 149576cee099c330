"""Label-smoothed cross-entropy (mean over the batch, always float32: the logits are cast inside the Cell).

``style``: ``"pytorch"`` (torch ``label_smoothing``, timm, mindcv: true class ``1 - eps + eps/K``, others ``eps/K``)
or ``"zoo"`` (the MindSpore zoo's CrossEntropySmooth: ``1 - eps`` and ``eps/(K - 1)``). Labels: int indices ``[B]``
or ``[B, 1]`` (an index outside ``0..K-1`` gives a row of only the off value), or soft targets ``[B, K]`` (mixup),
used as given unless ``smooth_soft_targets`` (``t * (on - off) + off``); the form is chosen from the label's rank,
a compile-time constant. ``class_weights`` (K numbers): the weighted mean ``sum_i w_i l_i / sum_i w_i`` with
``w_i = w[y_i]`` (0 outside ``0..K-1``) or ``sum_c t_ic w_c`` (PyTorch's ``CrossEntropyLoss(weight=...)``).
"""
import mindspore as ms
from mindspore import nn, ops, Tensor


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
    """``smooth_factor`` eps in [0, 1) (0: plain cross-entropy; > 0 needs K >= 2); see the module doc."""

    def __init__(self, smooth_factor=0.1, num_classes=1000, smooth_soft_targets=False, class_weights=None,
                 style="pytorch"):
        super().__init__()
        smooth_factor, num_classes = float(smooth_factor), int(num_classes)
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if not 0.0 <= smooth_factor < 1.0:
            raise ValueError(f"smooth_factor must be in [0, 1), got {smooth_factor}")
        if smooth_factor > 0 and num_classes < 2:
            raise ValueError("label smoothing needs num_classes >= 2")
        on, off = smoothed_target_values(smooth_factor, num_classes, style)
        self.num_classes = num_classes
        self.smooth_soft_targets = bool(smooth_soft_targets) and smooth_factor > 0
        self.on_value = Tensor(on, ms.float32)
        self.off_value = Tensor(off, ms.float32)
        self.soft_scale = Tensor(on - off, ms.float32)
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
                target = target * self.soft_scale + self.off_value
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
