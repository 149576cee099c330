"""The full-size networks (cspdarknet53, cspdarknet53_timm): parameter counts as the zoo lists them, logits
at 32, 64 and 224 px, the feature maps and head written out, the zoo's detection levels, and the benchmark's
FLOP count against PyTorch's counter on timm's twins. (The same code paths on the tiny arch:
tests/unit/test_model.py.)"""
import numpy as np
import pytest
import mindspore as ms
import timm
import torch

from src.image_classification import count_parameters, create_model


def _input(n, h, w, seed=0):
    return ms.Tensor(np.random.RandomState(seed).standard_normal((n, 3, h, w)).astype(np.float32))


@pytest.mark.parametrize("arch", ["cspdarknet53", "cspdarknet53_timm"])
def test_parameter_count_matches_reference(arch):
    net = create_model(arch)
    assert count_parameters(net) == 27_642_184
    # plus BN running statistics, as the zoo reference lists
    assert count_parameters(net, trainable_only=False) == 27_677_512


@pytest.mark.parametrize("size", [32, 64, 224])
def test_logits_shape(size):
    net = create_model("cspdarknet53", num_classes=7)
    net.set_train(False)
    out = net(_input(1, size, size))
    assert out.shape == (1, 7)
    assert out.dtype == ms.float32
    assert np.isfinite(out.asnumpy()).all()


def test_feature_maps_and_forward_features():
    """The full network's stage widths and strides (the head's arithmetic, shared by every arch, is checked on
    cspdarknet_tiny in tests/unit/test_model.py)."""
    x = _input(2, 64, 48)
    net = create_model("cspdarknet53")
    net.set_train(False)
    feats = net.feature_maps(x)
    assert [tuple(f.shape) for f in feats] == [(2, 32, 64, 48), (2, 64, 32, 24), (2, 128, 16, 12), (2, 256, 8, 6),
                                               (2, 512, 4, 3), (2, 1024, 2, 2)]
    np.testing.assert_array_equal(net.forward_features(x).asnumpy(), feats[-1].asnumpy())
    assert net.forward_head(net.forward_features(x), pre_logits=True).shape == (2, net.num_features) == (2, 1024)


def test_features_only_defaults_to_zoo_detect_levels():
    ext = create_model("cspdarknet53", features_only=True)
    ext.set_train(False)
    outs = ext(_input(1, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(1, 256, 8, 8), (1, 512, 4, 4), (1, 1024, 2, 2)]
    assert [f["reduction"] for f in ext.feature_info] == [8, 16, 32]
    ext6 = create_model("cspdarknet_tiny", features_only=True, out_indices=range(6))
    assert len(ext6(_input(1, 32, 32))) == 6
    with pytest.raises(ValueError, match="outside"):
        create_model("cspdarknet53", features_only=True, out_indices=(6,))


def test_flops_match_torch_flop_counter():
    from torch.utils.flop_counter import FlopCounterMode

    from benchmarks.flops import forward_flops

    for arch, kwargs, size in (("cspdarknet53", {"act_layer": "mish"}, 224), ("cspdarknet53_timm", {}, 256)):
        model = timm.create_model("cspdarknet53", num_classes=1000, **kwargs).eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, 3, size, size))
        assert forward_flops(arch, size) == counter.get_total_flops(), arch
    assert round(forward_flops("cspdarknet53", 224) / 1e9, 3) == 10.005


