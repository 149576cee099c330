"""Initialisation schemes (src/utils/var_init.py): the timm default and the zoo's exact scheme."""
import numpy as np
import pytest
from mindspore import nn

from src.cspdarknet53 import DarkBlock
from src.image_classification import create_model
from src.utils.var_init import DEFAULT_INIT, INIT_SCHEMES, init_weights


def _convs(net):
    return [(n, c) for n, c in net.cells_and_names() if isinstance(c, nn.Conv2d)]


def test_default_is_timm_and_both_schemes_are_selectable():
    assert DEFAULT_INIT == "timm" and set(INIT_SCHEMES) == {"timm", "zoo"}
    with pytest.raises(ValueError, match="init='bad'"):
        create_model("cspdarknet_tiny", num_classes=10, init="bad")


def test_timm_scheme_statistics():
    net = create_model("cspdarknet_tiny", num_classes=10, seed=3)  # the default: timm
    # Kaiming-normal, fan_out: std = sqrt(2 / (out_channels * kh * kw)). Pool all convs in units of their std.
    z = []
    for _, conv in _convs(net):
        w = conv.weight.asnumpy()
        fan_out = w.shape[0] * w.shape[2] * w.shape[3]
        z.append(w.ravel() / np.sqrt(2.0 / fan_out))
        if w.size >= 2000:  # large enough for a per-layer check
            assert abs(w.std() / np.sqrt(2.0 / fan_out) - 1) < 0.1, conv.weight.name
    z = np.concatenate(z)
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1) < 0.02
    fc = net.head.fc
    assert abs(fc.weight.asnumpy().std() - 0.01) < 0.001 and not fc.bias.asnumpy().any()
    # every block's last BN gamma is 0 (block = identity at start), every other gamma 1, betas 0
    last_bn = set()
    for name, cell in net.cells_and_names():
        if isinstance(cell, DarkBlock):
            last_bn.add(cell.conv2.bn.gamma.name)
    assert len(last_bn) == 5  # cspdarknet_tiny: one block per stage
    for p in net.get_parameters():
        if p.name.endswith(".gamma"):
            assert (p.asnumpy() == (0.0 if p.name in last_bn else 1.0)).all(), p.name
        elif p.name.endswith(".beta") or p.name.endswith("moving_mean"):
            assert not p.asnumpy().any(), p.name
        elif p.name.endswith("moving_variance"):
            assert (p.asnumpy() == 1.0).all(), p.name


def test_zoo_scheme_kept_exactly():
    net = create_model("cspdarknet_tiny", num_classes=10, init="zoo")
    for _, conv in _convs(net):
        w = conv.weight.asnumpy()
        bound = 1.0 / np.sqrt(w.shape[1] * w.shape[2] * w.shape[3])
        assert np.abs(w).max() <= bound
        if w.size >= 2000:
            assert abs(w.std() / (bound / np.sqrt(3)) - 1) < 0.1  # U(-b, b): std = b / sqrt(3)
    for p in net.get_parameters():
        if p.name.endswith(".gamma"):
            assert (p.asnumpy() == 1.0).all(), p.name
    b = 1.0 / np.sqrt(net.head.fc.weight.shape[1])
    assert np.abs(net.head.fc.bias.asnumpy()).max() <= b and net.head.fc.bias.asnumpy().any()


def test_schemes_are_seeded_and_init_weights_reinitialises_in_place():
    for scheme in INIT_SCHEMES:
        a = create_model("cspdarknet_tiny", num_classes=10, init=scheme, seed=5).parameters_dict()
        b = create_model("cspdarknet_tiny", num_classes=10, init=scheme, seed=5).parameters_dict()
        for name in a:
            np.testing.assert_array_equal(a[name].asnumpy(), b[name].asnumpy())
    net = create_model("cspdarknet_tiny", num_classes=10, init="zoo")
    init_weights(net, "timm", seed=0)
    ref = create_model("cspdarknet_tiny", num_classes=10, init="timm", seed=0).parameters_dict()
    for name, p in net.parameters_dict().items():
        np.testing.assert_array_equal(p.asnumpy(), ref[name].asnumpy())


def test_reset_classifier_follows_the_scheme():
    net = create_model("cspdarknet_tiny", num_classes=10)
    net.reset_classifier(3)
    assert not net.head.fc.bias.asnumpy().any() and abs(net.head.fc.weight.asnumpy().std() - 0.01) < 0.005
    zoo = create_model("cspdarknet_tiny", num_classes=10, init="zoo")
    zoo.reset_classifier(3)
    assert zoo.head.fc.bias.asnumpy().any()


def test_config_choices_are_the_schemes():
    import dataclasses

    from src.config import SECTIONS, load_config

    field = {f.name: f for f in dataclasses.fields(SECTIONS["model"])}["init"]
    assert field.metadata["choices"] == INIT_SCHEMES
    assert load_config([]).model.init == DEFAULT_INIT
