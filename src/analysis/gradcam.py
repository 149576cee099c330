"""Grad-CAM (Selvaraju et al., ICCV 2017) for the project's classifiers, and heatmap overlays.

``alpha_k = mean_ij d logit_c / d A_k(i, j)`` over the feature map ``A = forward_features(x)``, ``cam = ReLU(sum_k
alpha_k A_k)`` upsampled bilinearly (half-pixel centres, as PIL / PyTorch's ``align_corners=False``) and scaled
per image to [0, 1]. Overlays use matplotlib's colour map, else a built-in jet.
"""
import os

from dataclasses import dataclass

import numpy as np


def _cells(net):
    """The graph-mode Cells of Grad-CAM for ``net`` (built on first use: mindspore is imported lazily)."""
    import mindspore as ms
    from mindspore import nn, ops

    class _Features(nn.Cell):
        def __init__(self, model):
            super().__init__(auto_prefix=False)
            self.model = model

        def construct(self, x):
            return self.model.forward_features(x)

    class _Logits(nn.Cell):
        def __init__(self, model):
            super().__init__(auto_prefix=False)
            self.model = model

        def construct(self, features):
            return ops.cast(self.model.forward_head(features), ms.float32)

    class _ScoreGrad(nn.Cell):
        """d sum_n onehot_n . logits_n / d features: every image's own d logit_c / d A (logits weighted by onehot)."""

        def __init__(self, logits):
            super().__init__(auto_prefix=False)
            self.logits = logits
            self.grad = ops.GradOperation(sens_param=True)  # w.r.t. the first input: the feature map

        def construct(self, features, onehot):
            return self.grad(self.logits)(features, onehot)

    logits = _Logits(net)
    return _Features(net), logits, _ScoreGrad(logits)


@dataclass
class GradCAMResult:
    cams: np.ndarray     # (N, H, W) float32 in [0, 1]
    classes: np.ndarray  # (N,) the explained classes
    logits: np.ndarray   # (N, K)
    raw: np.ndarray      # (N, h, w) the unnormalised ReLU map at feature resolution
    weights: np.ndarray  # (N, C) the alphas

    @property
    def probabilities(self):
        x = self.logits.astype(np.float64)
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def peaks(self):
        """``(row, col)`` of each heatmap's maximum (the first one in row-major order)."""
        flat = self.cams.reshape(self.cams.shape[0], -1).argmax(axis=1)
        return np.stack(np.unravel_index(flat, self.cams.shape[1:]), axis=1)


class GradCAM:
    """``GradCAM(net)(images, class_index=None)`` for a network with ``forward_features`` / ``forward_head``
    (``src.image_classification``), switched to eval mode. GRAPH mode; PyNative works too, only slower."""

    def __init__(self, net):
        if not (hasattr(net, "forward_features") and hasattr(net, "forward_head")):
            raise TypeError(f"{type(net).__name__} has no forward_features/forward_head: Grad-CAM needs the "
                            "project's ImageClassificationNetwork (src.image_classification.create_model)")
        net.set_train(False)
        self.net = net
        self.num_classes = int(net.num_classes)
        self._features, self._logits, self._grad = _cells(net)

    def features(self, images):
        import mindspore as ms
        return self._features(ms.Tensor(np.ascontiguousarray(images, dtype=np.float32)))

    def _classes(self, class_index, logits):
        n = logits.shape[0]
        if class_index is None:
            return np.argsort(-logits, axis=1, kind="stable")[:, 0]  # ties to the lower index, as topk_correct
        classes = np.asarray(class_index, dtype=np.int64).reshape(-1)
        if classes.size == 1:
            classes = np.full(n, classes[0], dtype=np.int64)
        if classes.shape != (n,):
            raise ValueError(f"class_index: {np.size(class_index)} classes for {n} images")
        if classes.min() < 0 or classes.max() >= self.num_classes:
            raise ValueError(f"class_index {classes[(classes < 0) | (classes >= self.num_classes)][0]} is outside "
                             f"0..{self.num_classes - 1}")
        return classes

    def gradients(self, features, classes):
        """d logit_c / d A for feature maps ``features`` (a Tensor or array) and classes ``classes``."""
        import mindspore as ms
        if not isinstance(features, ms.Tensor):
            features = ms.Tensor(np.ascontiguousarray(features, dtype=np.float32))
        onehot = np.zeros((features.shape[0], self.num_classes), dtype=np.float32)
        onehot[np.arange(features.shape[0]), np.asarray(classes)] = 1.0
        return self._grad(features, ms.Tensor(onehot)).asnumpy().astype(np.float32)

    def __call__(self, images, class_index=None, output_size=None):
        """Grad-CAM of eval-preprocessed (N, 3, H, W) ``images`` for ``class_index`` (None: the predicted class; one
        for all, or one per image), heatmaps of ``output_size`` (default: the input's)."""
        images = np.asarray(images, dtype=np.float32)
        if images.ndim != 4:
            raise ValueError(f"images must be (N, 3, H, W), got shape {images.shape}")
        features = self.features(images)
        logits = self._logits(features).asnumpy().astype(np.float32)
        classes = self._classes(class_index, logits)
        grads = self.gradients(features, classes)
        fmap = features.asnumpy().astype(np.float32)
        weights = grads.mean(axis=(2, 3))                              # (N, C)
        raw = np.maximum(np.einsum("nc,nchw->nhw", weights, fmap), 0)  # (N, h, w)
        size = tuple(output_size) if output_size is not None else images.shape[2:]
        cams = normalize_cam(upsample_bilinear(raw, size))
        return GradCAMResult(cams=cams, classes=classes, logits=logits, raw=raw, weights=weights)


def _interp_matrix(n_out, n_in):
    """(n_out, n_in) weights of 1-D linear interpolation with half-pixel centres, edges clamped."""
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    src = np.clip(src, 0.0, n_in - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    m = np.zeros((n_out, n_in), dtype=np.float64)
    rows = np.arange(n_out)
    np.add.at(m, (rows, lo), 1.0 - frac)
    np.add.at(m, (rows, hi), frac)
    return m


def upsample_bilinear(maps, size):
    """Bilinear resize of (h, w) or (N, h, w) maps to ``size`` (H, W); float32."""
    maps = np.asarray(maps, dtype=np.float64)
    single = maps.ndim == 2
    if single:
        maps = maps[None]
    height, width = int(size[0]), int(size[1])
    ry = _interp_matrix(height, maps.shape[1])
    rx = _interp_matrix(width, maps.shape[2])
    out = np.einsum("Hh,nhw,Ww->nHW", ry, maps, rx).astype(np.float32)
    return out[0] if single else out


def normalize_cam(cams):
    """Per map ``(cam - min) / (max - min)``; a constant map becomes zeros."""
    cams = np.asarray(cams, dtype=np.float32)
    single = cams.ndim == 2
    c = cams[None] if single else cams
    lo = c.min(axis=(1, 2), keepdims=True)
    span = c.max(axis=(1, 2), keepdims=True) - lo
    out = np.divide(c - lo, span, out=np.zeros_like(c), where=span > 0)
    return out[0] if single else out


def denormalize(image, mean=None, std=None):
    """A network input (3, H, W), normalised with ImageNet mean/std on 0-255 pixels, as HWC uint8."""
    if mean is None or std is None:
        from src.data.transforms import IMAGENET_MEAN, IMAGENET_STD
        mean = IMAGENET_MEAN if mean is None else mean
        std = IMAGENET_STD if std is None else std
    x = np.asarray(image, dtype=np.float64)
    if x.ndim != 3 or x.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) image, got {x.shape}")
    x = x * np.asarray(std, dtype=np.float64)[:, None, None] + np.asarray(mean, dtype=np.float64)[:, None, None]
    return np.clip(x, 0, 255).round().astype(np.uint8).transpose(1, 2, 0)


def _builtin_jet(x):
    """matplotlib's ``jet`` in closed form (blue -> cyan -> yellow -> red)."""
    r = np.clip(1.5 - np.abs(4.0 * x - 3.0), 0, 1)
    g = np.clip(1.5 - np.abs(4.0 * x - 2.0), 0, 1)
    b = np.clip(1.5 - np.abs(4.0 * x - 1.0), 0, 1)
    return np.stack([r, g, b], axis=-1)


def apply_colormap(cam, colormap="jet"):
    """(H, W) values in [0, 1] -> (H, W, 3) uint8 colours: matplotlib's ``colormap`` when importable
    (and known), else the built-in jet."""
    x = np.clip(np.nan_to_num(np.asarray(cam, dtype=np.float64)), 0.0, 1.0)
    try:
        import matplotlib
        rgb = matplotlib.colormaps[colormap](x)[..., :3]
    except (ImportError, KeyError, AttributeError):
        rgb = _builtin_jet(x)
    return (rgb * 255.0).round().astype(np.uint8)


def overlay_cam(image, cam, alpha=0.5, colormap="jet"):
    """The heatmap ``cam`` (h, w in [0, 1], resized to the image) blended onto ``image`` (a path, a PIL
    image or an HWC/HW array): ``(1 - alpha) * image + alpha * colour``. Returns an RGB ``PIL.Image``."""
    from PIL import Image

    from src.analysis.plots import load_rgb

    base = np.asarray(load_rgb(image), dtype=np.float64)
    cam = np.asarray(cam, dtype=np.float32)
    if cam.shape != base.shape[:2]:
        cam = upsample_bilinear(cam, base.shape[:2])
    heat = apply_colormap(cam, colormap).astype(np.float64)
    out = (1.0 - alpha) * base + alpha * heat
    return Image.fromarray(np.clip(out, 0, 255).round().astype(np.uint8))


def save_cam_overlay(image, cam, path, alpha=0.5, colormap="jet", caption=None, side_by_side=False,
                     min_size=160):
    """Writes the overlay (beside the image with ``side_by_side``, ``caption`` under it) to the PNG ``path``; returns
    its absolute path. Images under ``min_size`` pixels are enlarged pixel by pixel."""
    from PIL import Image, ImageDraw

    from src.analysis.plots import _fit, _font, _save_png, load_rgb

    base = load_rgb(image)
    over = overlay_cam(base, cam, alpha, colormap)
    scale = max(1, int(np.ceil(min_size / max(base.size))))
    if scale > 1:
        base = base.resize((base.width * scale, base.height * scale), Image.NEAREST)
        over = over.resize((over.width * scale, over.height * scale), Image.NEAREST)
    panels = [base, over] if side_by_side else [over]
    gap = 4 if side_by_side else 0
    width = sum(p.width for p in panels) + gap * (len(panels) - 1)
    strip = 18 if caption else 0
    canvas = Image.new("RGB", (width, over.height + strip), (255, 255, 255))
    x = 0
    for p in panels:
        canvas.paste(p, (x, 0))
        x += p.width + gap
    if caption:
        draw = ImageDraw.Draw(canvas)
        font = _font(11)
        draw.text((3, over.height + 2), _fit(draw, str(caption), font, width - 6), fill=(0, 0, 0), font=font)
    return _save_png(canvas, os.fspath(path))
