"""Test-time augmentation: the logits of an image and of its mirror image, averaged.

``tta="flip"`` runs each NCHW batch twice, once as given and once flipped left-right (the width axis), and
averages the two logits of each image (logits, not probabilities: the average of two logit vectors is what
temperature scaling and the arg-max then see; timm's ``--tta`` averages the same way before its softmax).
Row i of the result belongs to row i of the input.

* ``tta_logits(predict, images, tta)``: for any function ``[N, 3, H, W] float32 -> [N, K]`` (a MindSpore
  network call, an onnxruntime session, ...), in NumPy;
* ``FlipTTA(net)``: a MindSpore cell wrapping a classifier; one network call on the doubled batch
  ``concat([x, flip(x)])``, so eval and predict use it like the network itself (and it can be exported).
  The average is computed in float32 and returned in the network's output dtype.
"""
import numpy as np

__all__ = ["TTA_MODES", "check_tta", "flip_images", "tta_logits", "FlipTTA", "wrap_tta"]

TTA_MODES = ("none", "flip")


def check_tta(tta):
    tta = str(tta or "none").lower()
    if tta not in TTA_MODES:
        raise ValueError(f"tta={tta!r}: expected one of {TTA_MODES}")
    return tta


def flip_images(images):
    """The batch mirrored left-right: NCHW, the last axis reversed."""
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"expected an NCHW batch, got shape {images.shape}")
    return np.ascontiguousarray(images[..., ::-1])


def tta_logits(predict, images, tta="flip"):
    """``predict(images)`` with test-time augmentation ``tta`` ("none": unchanged; "flip": the mean of the
    logits of the batch and of its mirror image, row by row), as float32 unless the model gives float16."""
    tta = check_tta(tta)
    out = np.asarray(predict(images))
    if tta == "none":
        return out
    flipped = np.asarray(predict(flip_images(images)))
    if flipped.shape != out.shape:
        raise ValueError(f"the flipped batch gave logits of shape {flipped.shape}, the batch {out.shape}")
    mean = (out.astype(np.float32) + flipped.astype(np.float32)) * np.float32(0.5)
    return mean.astype(out.dtype) if out.dtype == np.float16 else mean


def _flip_cell_class():
    from mindspore import nn, ops

    class FlipTTA(nn.Cell):
        """``net`` with horizontal-flip test-time augmentation: ``(net(x) + net(flip(x))) / 2`` per image."""

        def __init__(self, net):
            super().__init__(auto_prefix=False)   # the wrapped network keeps its parameter names
            self.net = net
            self.concat = ops.Concat(axis=0)
            self.reverse = ops.ReverseV2(axis=[3])
            self.cast = ops.Cast()

        def construct(self, x):
            n = x.shape[0]
            both = self.net(self.concat((x, self.reverse(x))))
            dtype = both.dtype
            both = self.cast(both, ms_float32)
            mean = (both[:n] + both[n:]) * 0.5
            return self.cast(mean, dtype)

    import mindspore as ms
    ms_float32 = ms.float32
    return FlipTTA


def FlipTTA(net):  # noqa: N802 (a factory: MindSpore is imported lazily)
    return _flip_cell_class()(net)


def wrap_tta(net, tta):
    """``net`` itself for ``tta="none"``, ``FlipTTA(net)`` for ``"flip"``."""
    return net if check_tta(tta) == "none" else FlipTTA(net)
