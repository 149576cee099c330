"""Test-time augmentation (src/deploy/tta.py): each image's logits averaged with its own mirror image's."""
import numpy as np
import pytest

from src.deploy.tta import check_tta, flip_images, tta_logits


def _predict(images):
    """A 'model' that is not mirror-symmetric and tells images apart: the logits are the first pixel row of
    channel 0, plus the image's mean times 10 (so a row swap between images would show)."""
    x = np.asarray(images, dtype=np.float32)
    return x[:, 0, 0, :] + 10 * x.mean(axis=(1, 2, 3))[:, None]


def test_flip_average_per_image():
    x = np.random.default_rng(0).normal(size=(3, 3, 4, 5)).astype(np.float32)
    out = tta_logits(_predict, x, "flip")
    for i in range(3):
        mirrored = x[i, :, :, ::-1]
        expected = (x[i, 0, 0] + mirrored[0, 0]) / 2 + 10 * x[i].mean()
        np.testing.assert_allclose(out[i], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(tta_logits(_predict, x, "none"), _predict(x))
    np.testing.assert_array_equal(flip_images(x), x[..., ::-1])
    with pytest.raises(ValueError, match="tta"):
        check_tta("vflip")


def test_float16_logits_stay_float16():
    x = np.ones((2, 3, 2, 2), np.float32)
    out = tta_logits(lambda a: _predict(a).astype(np.float16), x, "flip")
    assert out.dtype == np.float16


def test_flip_cell_equals_the_two_passes():
    import mindspore as ms

    from src.deploy.tta import FlipTTA, wrap_tta
    from src.image_classification import create_model

    net = create_model("cspdarknet_tiny", num_classes=5, seed=0)
    net.set_train(False)
    x = np.random.default_rng(1).normal(size=(3, 3, 32, 32)).astype(np.float32)
    one = net(ms.Tensor(x)).asnumpy()
    mirror = net(ms.Tensor(np.ascontiguousarray(x[..., ::-1]))).asnumpy()
    assert np.abs(one - mirror).max() > 1e-3   # the network itself is not mirror-symmetric
    wrapped = FlipTTA(net)
    wrapped.set_train(False)
    np.testing.assert_allclose(wrapped(ms.Tensor(x)).asnumpy(), (one + mirror) / 2, rtol=1e-5, atol=1e-5)
    assert wrap_tta(net, "none") is net
    # the wrapper keeps the network's parameter names (a checkpoint loads into either)
    assert [p.name for p in wrapped.get_parameters()] == [p.name for p in net.get_parameters()]
