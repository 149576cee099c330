"""The network on the tiny arch: shapes, feature maps and head, padding semantics, init, head options (the
full-size networks: tests/reference/test_full_network.py)."""
import numpy as np
import pytest
import mindspore as ms

from src.archs import CspArch, get_arch
from src.cspdarknet53 import ConvNormAct
from src.image_classification import create_model


def _input(n, h, w, seed=0):
    return ms.Tensor(np.random.RandomState(seed).standard_normal((n, 3, h, w)).astype(np.float32))


def test_feature_maps_forward_features_and_head(calibrate):
    x = _input(2, 64, 48)
    net = calibrate(create_model("cspdarknet_tiny"), 0, x.asnumpy())  # feature maps that vary over space
    feats = net.feature_maps(x)
    assert [tuple(f.shape) for f in feats] == [(2, 8, 64, 48), (2, 16, 32, 24), (2, 16, 16, 12), (2, 32, 8, 6),
                                               (2, 64, 4, 3), (2, 128, 2, 2)]
    last = net.forward_features(x).asnumpy()
    np.testing.assert_array_equal(last, feats[-1].asnumpy())
    pooled = net.forward_head(net.forward_features(x), pre_logits=True)
    assert pooled.shape == (2, net.num_features) == (2, 128)
    # the head, written out: global average pool of the last feature map, then fc (weight and bias)
    assert np.ptp(last, axis=(2, 3)).max() > 0.1  # else mean and max pooling would look the same
    expected_pooled = last.astype(np.float64).mean(axis=(2, 3))
    np.testing.assert_allclose(pooled.asnumpy(), expected_pooled, rtol=1e-5, atol=1e-6)
    w, b = net.head.fc.weight.asnumpy().astype(np.float64), net.head.fc.bias.asnumpy().astype(np.float64)
    assert np.abs(b).max() > 0.1
    logits = net(x).asnumpy()
    np.testing.assert_allclose(logits, expected_pooled @ w.T + b, rtol=1e-4, atol=1e-5 * np.abs(logits).max())
    np.testing.assert_array_equal(net.forward_head(net.forward_features(x)).asnumpy(), logits)
    assert net(_input(1, 32, 32)).shape == (1, net.num_classes)  # any input size, down to 32 px
    ext = create_model("cspdarknet_tiny", features_only=True)
    assert [f["reduction"] for f in ext.feature_info] == [8, 16, 32]  # the zoo's detection levels by default
    ext.set_train(False)
    assert [tuple(o.shape) for o in ext(_input(1, 64, 64))] == [(1, 32, 8, 8), (1, 64, 4, 4), (1, 128, 2, 2)]


def test_same_padding_is_tf_style_zero_top_left():
    """Stride-2 3x3 'same' conv pads 0 top/left and 1 bottom/right (the zoo); 'symmetric' pads 1/1."""
    x = np.random.RandomState(1).standard_normal((1, 3, 8, 8)).astype(np.float32)
    for arch, pads in ((get_arch("cspdarknet53"), ((0, 1), (0, 1))), (get_arch("cspdarknet53_timm"), ((1, 1), (1, 1)))):
        unit = ConvNormAct(3, 4, 3, 2, arch)
        w = unit.conv.weight.asnumpy()
        got = unit.conv(ms.Tensor(x)).asnumpy()
        padded = np.pad(x, ((0, 0), (0, 0)) + pads)
        ref = np.zeros_like(got)
        for i in range(got.shape[2]):
            for j in range(got.shape[3]):
                patch = padded[0, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3]
                ref[0, :, i, j] = np.tensordot(w, patch, axes=([1, 2, 3], [0, 1, 2]))
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)


def test_init_is_seeded_and_identical_across_builds():
    a = create_model("cspdarknet_tiny", num_classes=10, init="zoo")
    b = create_model("cspdarknet_tiny", num_classes=10, init="zoo")
    c = create_model("cspdarknet_tiny", num_classes=10, seed=1, init="zoo")
    pa, pb, pc = a.parameters_dict(), b.parameters_dict(), c.parameters_dict()
    for name in pa:
        np.testing.assert_array_equal(pa[name].asnumpy(), pb[name].asnumpy())
    w = "backbone.stages.4.conv_transition.conv.weight"
    assert not np.array_equal(pa[w].asnumpy(), pc[w].asnumpy())
    # zoo scheme: U(+-1/sqrt(fan_in))
    weight = pa[w].asnumpy()
    bound = 1 / np.sqrt(weight.shape[1])
    assert np.abs(weight).max() <= bound and np.abs(weight).max() > 0.9 * bound


def test_fp16_head_emits_float16_logits():
    net = create_model("cspdarknet_tiny", num_classes=5, fp16_head=True)
    net.set_train(False)
    out = net(_input(2, 32, 32))
    assert out.dtype == ms.float16
    ref = create_model("cspdarknet_tiny", num_classes=5)
    ref.set_train(False)
    np.testing.assert_allclose(out.asnumpy().astype(np.float32), ref(_input(2, 32, 32)).asnumpy(), atol=2e-2)


def test_reset_classifier_and_activation():
    net = create_model("cspdarknet_tiny", num_classes=10)
    net.reset_classifier(3)
    assert net.num_classes == 3 and net.head.fc.weight.shape == (3, 128)
    assert "head.fc.weight" in net.parameters_dict()
    soft = create_model("cspdarknet_tiny", num_classes=4, activation="Softmax")
    soft.set_train(False)
    np.testing.assert_allclose(soft(_input(2, 32, 32)).asnumpy().sum(axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="activation"):
        create_model("cspdarknet_tiny", activation="Relu")


def test_bad_arch_and_arch_validation():
    with pytest.raises(ValueError, match="unknown arch 'cspdarknet'"):
        get_arch("cspdarknet")
    with pytest.raises(ValueError, match="widths has 2 entries"):
        CspArch(name="bad", widths=(1, 2))
    with pytest.raises(ValueError, match="num_classes"):
        create_model("cspdarknet_tiny", num_classes=0)


def test_hub_entry_returns_eval_ready_classifier(tmp_path):
    from mindspore_hub_conf import create_network
    from src.checkpoint import save_checkpoint_atomic
    src_net = create_model("cspdarknet_tiny", num_classes=6, seed=3)
    path = tmp_path / "tiny.ckpt"
    save_checkpoint_atomic(src_net, path, metadata={"arch": "cspdarknet_tiny"})
    net = create_network("cspdarknet_tiny", num_classes=6, checkpoint_path=str(path))
    assert not net.training
    x = _input(1, 32, 32)
    src_net.set_train(False)
    np.testing.assert_array_equal(net(x).asnumpy(), src_net(x).asnumpy())
    with pytest.raises(NotImplementedError, match="resnet50 is not implemented"):
        create_network("resnet50")
