"""Flip test-time augmentation: the mean of the logits of each image and of its mirror image (logits, not
probabilities, as timm's ``--tta``). ``tta_logits`` wraps any NumPy batch function; ``FlipTTA`` is a MindSpore
cell running the doubled batch in one call (float32 mean, returned in the network's dtype).
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
    """The NCHW batch mirrored left-right (the last axis reversed)."""
    return np.ascontiguousarray(np.asarray(images)[..., ::-1])


def tta_logits(predict, images, tta="flip"):
    """``predict(images)``, or with ``tta="flip"`` the mean with ``predict`` of the mirrored batch, row by row."""
    tta = check_tta(tta)
    out = np.asarray(predict(images))
    if tta == "none":
        return out
    flipped = np.asarray(predict(flip_images(images)))
    mean = (out.astype(np.float32) + flipped.astype(np.float32)) * np.float32(0.5)
    return mean.astype(out.dtype) if out.dtype == np.float16 else mean


def FlipTTA(net):  # noqa: N802 (a cell factory: MindSpore is imported lazily)
    """``net`` with flip test-time augmentation: ``(net(x) + net(flip(x))) / 2`` per image."""
    import mindspore as ms
    from mindspore import nn, ops

    class _FlipTTA(nn.Cell):
        def __init__(self):
            super().__init__(auto_prefix=False)   # the wrapped network keeps its parameter names
            self.net = net

        def construct(self, x):
            n = x.shape[0]
            both = self.net(ops.concat((x, ops.reverse(x, axis=[3])), axis=0))
            mean = (ops.cast(both[:n], ms.float32) + ops.cast(both[n:], ms.float32)) * 0.5
            return ops.cast(mean, both.dtype)

    return _FlipTTA()


def wrap_tta(net, tta):
    """``net`` itself for ``tta="none"``, ``FlipTTA(net)`` for ``"flip"``."""
    return net if check_tta(tta) == "none" else FlipTTA(net)
