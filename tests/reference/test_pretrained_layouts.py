"""The published weights' layouts load into the full-size network and reproduce its logits: the model zoo's
MindSpore checkpoint (checked against the zoo's forward pass written out from its key names) and timm's
cspdarknet53 (PyTorch) through safetensors and .pth; each is refused by the other architecture."""
import numpy as np
import pytest
import mindspore as ms
import torch
from mindspore import ops

from src.checkpoint import CheckpointError, load_weights
from src.image_classification import create_model


def _input(n, h, w, seed=0):
    return np.random.RandomState(seed).standard_normal((n, 3, h, w)).astype(np.float32)


def _logits(net, x):
    net.set_train(False)
    return net(ms.Tensor(x)).asnumpy()


def _zoo_keys():
    """Key names and shapes of the zoo's CSPDarkNet53 (reference section 1.2 and 1.6)."""
    convs = {0: (3, 32, 3), 1: (32, 64, 3), 2: (64, 64, 1), 3: (64, 32, 1), 4: (32, 64, 3), 5: (64, 64, 1),
             6: (64, 64, 1), 7: (128, 64, 1)}
    for n, width in zip(range(2, 6), (128, 256, 512, 1024)):
        base = 8 + 5 * (n - 2)
        half = width // 2
        convs.update({base: (width // 2, width, 3), base + 1: (width, half, 1), base + 2: (half, half, 1),
                      base + 3: (width, half, 1), base + 4: (width, width, 1)})
    units = {f"backbone.conv{i}": spec for i, spec in convs.items()}
    for n, depth, width in zip(range(2, 6), (2, 8, 8, 4), (128, 256, 512, 1024)):
        for j in range(depth):
            units[f"backbone.layer{n}.{j}.conv1"] = (width // 2, width // 2, 1)
            units[f"backbone.layer{n}.{j}.conv2"] = (width // 2, width // 2, 3)
    return units


def _zoo_state(rng):
    state = {}
    for unit, (cin, cout, k) in _zoo_keys().items():
        state[f"{unit}.0.weight"] = rng.uniform(-1, 1, (cout, cin, k, k)).astype(np.float32) / np.sqrt(cin * k * k)
        state[f"{unit}.1.gamma"] = rng.uniform(0.4, 0.8, cout).astype(np.float32)
        state[f"{unit}.1.beta"] = rng.uniform(-0.2, 0.2, cout).astype(np.float32)
        state[f"{unit}.1.moving_mean"] = rng.uniform(-0.2, 0.2, cout).astype(np.float32)
        state[f"{unit}.1.moving_variance"] = rng.uniform(0.5, 1.5, cout).astype(np.float32)
    state["head.fc.weight"] = rng.uniform(-0.03, 0.03, (1000, 1024)).astype(np.float32)
    state["head.fc.bias"] = rng.uniform(-0.03, 0.03, 1000).astype(np.float32)
    return state


def _zoo_reference_forward(state, x):
    """The zoo's forward pass written from its description, using only the zoo's key names."""
    def unit(name, t):
        w = ms.Tensor(state[f"{name}.0.weight"])
        stride = 2 if w.shape[2] == 3 and name in strided else 1
        y = ops.conv2d(t, w, stride=stride, pad_mode="same").asnumpy()
        g, b, m, v = (state[f"{name}.1.{k}"][None, :, None, None]
                      for k in ("gamma", "beta", "moving_mean", "moving_variance"))
        y = (y - m) / np.sqrt(v + 1e-5) * g + b
        return ms.Tensor((y * np.tanh(np.log1p(np.exp(y)))).astype(np.float32))

    strided = {"backbone.conv1", "backbone.conv8", "backbone.conv13", "backbone.conv18", "backbone.conv23"}
    c1 = unit("backbone.conv0", ms.Tensor(x))
    c2 = unit("backbone.conv1", c1)
    c3 = unit("backbone.conv2", c2)
    c6 = ms.Tensor(c3.asnumpy() + unit("backbone.conv4", unit("backbone.conv3", c3)).asnumpy())
    c7 = unit("backbone.conv5", c6)
    c8 = unit("backbone.conv6", c2)
    out = unit("backbone.conv7", ms.Tensor(np.concatenate([c7.asnumpy(), c8.asnumpy()], axis=1)))
    for n, depth in zip(range(2, 6), (2, 8, 8, 4)):
        base = 8 + 5 * (n - 2)
        d = unit(f"backbone.conv{base}", out)
        m = unit(f"backbone.conv{base + 1}", d)
        for j in range(depth):
            m = ms.Tensor(m.asnumpy() + unit(f"backbone.layer{n}.{j}.conv2",
                                             unit(f"backbone.layer{n}.{j}.conv1", m)).asnumpy())
        m = unit(f"backbone.conv{base + 2}", m)
        b = unit(f"backbone.conv{base + 3}", d)
        out = unit(f"backbone.conv{base + 4}", ms.Tensor(np.concatenate([m.asnumpy(), b.asnumpy()], axis=1)))
    pooled = out.asnumpy().mean(axis=(2, 3))
    return pooled @ state["head.fc.weight"].T + state["head.fc.bias"]


def test_zoo_layout_checkpoint_loads_every_tensor_in_place(tmp_path):
    state = _zoo_state(np.random.RandomState(3))
    assert len(state) == 72 * 5 + 2  # 72 conv units (weight + 4 BN tensors) and the fc
    # As the zoo's training saved it: "network." prefixes and optimizer moments beside the weights.
    entries = [{"name": "network." + k, "data": ms.Tensor(v)} for k, v in state.items()]
    entries += [{"name": "moments.network." + k, "data": ms.Tensor(np.zeros_like(v))} for k, v in state.items()
                if not k.endswith(("moving_mean", "moving_variance"))]
    entries.append({"name": "global_step", "data": ms.Tensor(np.array([375300], np.int32))})
    path = tmp_path / "cspdarknet53_ascend_v120.ckpt"
    ms.save_checkpoint(entries, str(path))
    net = create_model("cspdarknet53")
    report = load_weights(net, path)
    assert report.layout == "zoo" and report.num_loaded == len(state)
    x = _input(1, 40, 40, seed=4)
    ours = _logits(net, x)
    ref = _zoo_reference_forward(state, x)
    assert np.abs(ours - ref).max() < 1e-4 * np.abs(ref).max()
    # and a zoo checkpoint never goes into the timm-numerics network
    with pytest.raises(CheckpointError, match="arch 'cspdarknet53'.*build it with arch=cspdarknet53"):
        load_weights(create_model("cspdarknet53_timm"), path)


def _timm_logits(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("shape", [(64, 64), (57, 45)])
def test_timm_parity_safetensors(tmp_path, timm_model, shape):
    from safetensors.torch import save_file
    path = tmp_path / "cspdarknet53.safetensors"
    save_file({k: v.contiguous() for k, v in timm_model.state_dict().items()}, str(path))
    net = create_model("cspdarknet53_timm")
    report = load_weights(net, path)
    assert report.layout == "timm"
    x = _input(2, *shape, seed=11)
    ref = _timm_logits(timm_model, x)
    ours = _logits(net, x)
    rel = np.abs(ours - ref).max() / np.abs(ref).max()
    print(f"timm parity {shape}: max abs diff {np.abs(ours - ref).max():.3e}, relative {rel:.3e}")
    assert rel < 1e-4
    assert (ours.argmax(1) == ref.argmax(1)).all()


def test_timm_pth_loads_and_is_refused_by_zoo_arch(tmp_path, timm_model):
    path = tmp_path / "cspdarknet53_ra.pth"
    torch.save({"state_dict": timm_model.state_dict()}, str(path))
    net = create_model("cspdarknet53_timm")
    load_weights(net, path)
    x = _input(1, 32, 32, seed=2)
    ref = _timm_logits(timm_model, x)
    assert np.abs(_logits(net, x) - ref).max() < 1e-4 * np.abs(ref).max()
    with pytest.raises(CheckpointError, match="timm layout.*build it with arch=cspdarknet53_timm|"
                                              "arch 'cspdarknet53_timm'"):
        load_weights(create_model("cspdarknet53"), path)
