"""src.analysis.gradcam: the gradient against finite differences and the head's closed form, Grad-CAM against
an independent NumPy computation, both architectures at odd input sizes, class choice, upsampling and the
overlays (with and without matplotlib). The trained-net corner test is tests/e2e/test_analysis_gradcam_corner.py."""
import dataclasses
import os
import sys

import numpy as np
import pytest
import mindspore as ms
from PIL import Image

from src.analysis.gradcam import (GradCAM, apply_colormap, denormalize, normalize_cam, overlay_cam,
                                  save_cam_overlay, upsample_bilinear)
from src.archs import get_arch
from src.image_classification import create_model

TIMM_TINY = dataclasses.replace(get_arch("cspdarknet_tiny"), name="cspdarknet_tiny_timm", activation="leaky_relu",
                                padding="symmetric", split="merged", concat_order="cross_first")


def _net(arch, num_classes=3, seed=0):
    """A tiny classifier with a random head and BatchNorm scales, so the logits and maps are not flat."""
    net = create_model(arch, num_classes=num_classes, seed=seed)
    rng = np.random.RandomState(seed)
    for name, p in net.parameters_dict().items():
        if name.endswith("head.fc.weight"):
            p.set_data(ms.Tensor(rng.uniform(-1, 1, p.shape).astype(np.float32)))
        elif name.endswith("gamma"):
            p.set_data(ms.Tensor(rng.uniform(0.5, 1.5, p.shape).astype(np.float32)))
        elif name.endswith("beta"):
            p.set_data(ms.Tensor(rng.uniform(-0.2, 0.2, p.shape).astype(np.float32)))
    net.set_train(False)
    return net


def _reference_cam(net, features, classes, size):
    """Grad-CAM written out for the project's head (mean pool + Dense): alpha = W[c] / (h * w)."""
    w = net.head.fc.weight.asnumpy().astype(np.float64)
    n, _, h, wd = features.shape
    raw = np.maximum(np.einsum("nc,nchw->nhw", w[classes] / (h * wd), features), 0)
    return raw, normalize_cam(upsample_bilinear(raw, size))


def test_gradient_matches_finite_differences_and_closed_form(graph_mode):
    net = _net("cspdarknet_tiny")
    cam = GradCAM(net)
    x = np.random.RandomState(1).randn(2, 3, 40, 56).astype(np.float32)
    feats = cam.features(x).asnumpy()
    assert feats.shape == (2, 128, 2, 2)  # ceil(40/32) x ceil(56/32)
    classes = np.array([2, 0])
    grads = cam.gradients(feats, classes)
    assert grads.shape == feats.shape

    def score(a):  # sum_n logit_{c_n}(a_n), through the network's own head
        logits = cam._logits(ms.Tensor(a.astype(np.float32))).asnumpy().astype(np.float64)
        return logits[np.arange(a.shape[0]), classes].sum()

    rng = np.random.RandomState(2)
    eps = 1e-2
    for _ in range(12):
        idx = tuple(rng.randint(0, s) for s in feats.shape)
        up, down = feats.copy(), feats.copy()
        up[idx] += eps
        down[idx] -= eps
        fd = (score(up) - score(down)) / (2 * eps)
        assert grads[idx] == pytest.approx(fd, rel=2e-3, abs=1e-5), idx
    w = net.head.fc.weight.asnumpy()
    expect = np.broadcast_to((w[classes] / 4.0)[:, :, None, None], feats.shape)
    np.testing.assert_allclose(grads, expect, rtol=1e-5, atol=1e-7)


# one odd, non-square size per architecture: each size is a new GRAPH compile, and every odd size takes the
# same path (the last feature map rounds up; the CAM is upsampled to the input's own size)
@pytest.mark.parametrize("arch,hw", [("cspdarknet_tiny", (33, 97)), (TIMM_TINY, (37, 50))],
                         ids=["mish-33x97", "timm-37x50"])
def test_both_architectures_any_input_size(graph_mode, arch, hw):
    net = _net(arch, num_classes=4, seed=3)
    x = np.random.RandomState(4).randn(3, 3, *hw).astype(np.float32)
    result = GradCAM(net)(x)
    assert result.cams.shape == (3,) + hw and result.cams.dtype == np.float32
    assert result.cams.min() >= 0.0 and result.cams.max() <= 1.0
    full = net(ms.Tensor(x)).asnumpy()
    np.testing.assert_allclose(result.logits, full, rtol=1e-5, atol=1e-5)  # the head of the same forward
    np.testing.assert_array_equal(result.classes, np.argsort(-full, axis=1, kind="stable")[:, 0])
    feats = net.forward_features(ms.Tensor(x)).asnumpy()
    raw, cams = _reference_cam(net, feats, result.classes, hw)
    np.testing.assert_allclose(result.raw, raw, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(result.cams, cams, atol=1e-4)
    assert result.weights.shape == (3, net.num_features)
    assert result.peaks().shape == (3, 2)
    probs = result.probabilities
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)


def test_chosen_class_and_errors(graph_mode):
    net = _net("cspdarknet_tiny", num_classes=3)
    cam = GradCAM(net)
    x = np.random.RandomState(5).randn(2, 3, 32, 48).astype(np.float32)
    assert cam(x, class_index=1).classes.tolist() == [1, 1]
    r = cam(x, class_index=[2, 0], output_size=(10, 15))
    assert r.classes.tolist() == [2, 0] and r.cams.shape == (2, 10, 15)
    feats = cam.features(x).asnumpy()
    np.testing.assert_allclose(r.raw, _reference_cam(net, feats, np.array([2, 0]), (10, 15))[0], rtol=1e-4,
                               atol=1e-5)
    with pytest.raises(ValueError, match="outside 0..2"):
        cam(x, class_index=3)
    with pytest.raises(ValueError, match="3 classes for 2 images"):
        cam(x, class_index=[0, 1, 2])
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        cam(x[0])
    with pytest.raises(TypeError, match="forward_features"):
        GradCAM(net.backbone)


def test_pynative_gives_the_same_map():
    net = _net("cspdarknet_tiny", num_classes=3, seed=7)
    x = np.random.RandomState(8).randn(1, 3, 36, 36).astype(np.float32)
    previous = ms.get_context("mode")
    try:
        ms.set_context(mode=ms.PYNATIVE_MODE)
        eager = GradCAM(net)(x)
        ms.set_context(mode=ms.GRAPH_MODE)
        graph = GradCAM(net)(x)
    finally:
        ms.set_context(mode=previous)
    np.testing.assert_allclose(eager.cams, graph.cams, atol=1e-4)


def test_upsample_and_normalize():
    a, b, c, d = 1.0, 3.0, 5.0, 9.0
    up = upsample_bilinear(np.array([[a, b], [c, d]]), (4, 4))
    row0 = [a, 0.75 * a + 0.25 * b, 0.25 * a + 0.75 * b, b]
    np.testing.assert_allclose(up[0], row0)
    np.testing.assert_allclose(up[:, 0], [a, 0.75 * a + 0.25 * c, 0.25 * a + 0.75 * c, c])
    m = np.random.RandomState(0).rand(2, 5, 7)
    np.testing.assert_allclose(upsample_bilinear(m, (5, 7)), m, rtol=1e-6)  # same size: identity
    assert upsample_bilinear(np.ones((1, 1)), (3, 4)).shape == (3, 4)
    assert normalize_cam(np.full((3, 3), 2.0)).max() == 0.0  # constant: zeros, no division by zero
    n = normalize_cam(m)
    assert n.min() == 0.0 and n.max() == pytest.approx(1.0)


def test_denormalize_round_trip():
    from src.data.transforms import IMAGENET_MEAN, IMAGENET_STD

    img = np.random.RandomState(0).randint(0, 256, (20, 30, 3)).astype(np.uint8)
    chw = ((img - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)).transpose(2, 0, 1).astype(np.float32)
    np.testing.assert_array_equal(denormalize(chw), img)


def test_overlay_files_with_and_without_matplotlib(tmp_path, monkeypatch):
    img = np.zeros((24, 36, 3), np.uint8)
    cam = np.zeros((2, 2), np.float32)
    cam[0, 1] = 1.0  # hot top-right
    over = np.asarray(overlay_cam(img, cam, alpha=1.0))
    assert over.shape == (24, 36, 3)
    assert over[2, 34, 0] >= 120 and over[2, 34, 1:].max() < 30  # top-right: jet's high end, dark red
    assert over[22, 2, 2] >= 120 and over[22, 2, :2].max() < 30  # bottom-left: jet's low end, dark blue
    path = save_cam_overlay(img, cam, tmp_path / "a" / "x_cam.png", caption="pred: Bag (p=0.93)",
                            side_by_side=True)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 2 * im.size[1] - 40  # two panels side by side
    x = np.linspace(0, 1, 256)[None]
    with_mpl = apply_colormap(x).astype(int)
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    builtin = apply_colormap(x).astype(int)
    assert np.abs(builtin - with_mpl).mean() < 0.05 * 255  # the built-in jet is close to matplotlib's
    path = save_cam_overlay(tmp_path / "a" / "x_cam.png", cam, tmp_path / "b.png")  # a file as the image
    assert os.path.getsize(path) > 0
