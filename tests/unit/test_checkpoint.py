"""Checkpoint I/O: own checkpoints, strictness, errors, atomic save (the zoo and timm layouts against their
reference networks: tests/reference/test_pretrained_layouts.py)."""
import os

import numpy as np
import pytest
import mindspore as ms

from src.checkpoint import CheckpointError, load_weights, read_state_dict, save_checkpoint_atomic
from src.image_classification import create_model

def _input(n, h, w, seed=0):
    return np.random.RandomState(seed).standard_normal((n, 3, h, w)).astype(np.float32)


def _logits(net, x):
    net.set_train(False)
    return net(ms.Tensor(x)).asnumpy()


# ------------------------------------------------------------------------------------------------
# Own checkpoints
# ------------------------------------------------------------------------------------------------

def test_own_checkpoint_round_trip_with_training_state(tmp_path, randomize, save_trained):
    src = randomize(create_model("cspdarknet_tiny", num_classes=10), seed=1)
    entries = [{"name": n, "data": p} for n, p in src.parameters_dict().items()]
    # what a training checkpoint adds: optimizer moments, scalars, EMA copies
    entries += [{"name": "moments." + n, "data": ms.Tensor(np.zeros(p.shape, np.float32))}
                for n, p in src.parameters_dict().items() if p.requires_grad]
    entries += [{"name": "global_step", "data": ms.Tensor(np.array([7], np.int32))},
                {"name": "learning_rate", "data": ms.Tensor(np.array(0.1, np.float32))}]
    ema = {n: p.asnumpy() + 1.0 for n, p in src.parameters_dict().items()}
    entries += [{"name": "ema." + n, "data": ms.Tensor(a)} for n, a in ema.items()]
    path = tmp_path / "0-1_7.ckpt"
    save_trained(src, path, entries=entries)  # with the metadata training writes
    dst = create_model("cspdarknet_tiny", num_classes=10, seed=5)
    report = load_weights(dst, path)
    assert report.layout == "own" and report.skipped_non_weights > 0 and not report.used_ema
    x = _input(2, 32, 32)
    np.testing.assert_array_equal(_logits(dst, x), _logits(src, x))
    report = load_weights(dst, path, use_ema=True)
    assert report.used_ema
    w = "backbone.stem.conv1.conv.weight"
    np.testing.assert_array_equal(dst.parameters_dict()[w].asnumpy(), ema[w])


def test_save_is_atomic_replace_and_keeps_metadata(tmp_path):
    net = create_model("cspdarknet_tiny", num_classes=3)
    path = tmp_path / "best.ckpt"
    save_checkpoint_atomic(net, path, metadata={"arch": "cspdarknet_tiny", "epoch": 2})
    save_checkpoint_atomic(net, path, metadata={"arch": "cspdarknet_tiny", "epoch": 3})  # over a 0400 file
    arrays, meta = read_state_dict(path)
    assert meta["arch"] == "cspdarknet_tiny" and int(arrays["epoch"]) == 3
    assert sorted(os.listdir(tmp_path)) == ["best.ckpt"]  # no temporary files left behind


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    net = create_model("cspdarknet_tiny", num_classes=10)
    params = net.parameters_dict()
    entries = [{"name": n, "data": p} for n, p in params.items() if n != "backbone.stem.conv1.bn.gamma"]
    entries.append({"name": "backbone.stem.conv9.weight", "data": ms.Tensor(np.ones(3, np.float32))})
    path = tmp_path / "partial.ckpt"
    save_checkpoint_atomic(entries, path)
    with pytest.raises(CheckpointError) as err:
        load_weights(create_model("cspdarknet_tiny", num_classes=10), path)
    msg = str(err.value)
    assert "partial.ckpt" in msg and "1 network parameters missing" in msg and "backbone.stem.conv1.bn.gamma" in msg
    assert "1 unexpected" in msg and "backbone.stem.conv9.weight" in msg


def test_wrong_num_classes_is_an_error_unless_fine_tuning(tmp_path):
    src = create_model("cspdarknet_tiny", num_classes=10)
    path = tmp_path / "ten.ckpt"
    save_checkpoint_atomic(src, path, metadata={"arch": "cspdarknet_tiny"})
    dst = create_model("cspdarknet_tiny", num_classes=4)
    head_before = dst.head.fc.weight.asnumpy().copy()
    with pytest.raises(CheckpointError, match="head has 10 classes and the network's 4"):
        load_weights(dst, path)
    report = load_weights(dst, path, fine_tune=True)
    assert report.head_reinitialized
    np.testing.assert_array_equal(dst.head.fc.weight.asnumpy(), head_before)
    w = "backbone.stages.2.conv_main.conv.weight"
    np.testing.assert_array_equal(dst.parameters_dict()[w].asnumpy(), src.parameters_dict()[w].asnumpy())


def test_wrong_arch_is_an_error(tmp_path):
    path = tmp_path / "other.ckpt"  # the arch recorded in the checkpoint is not the network's
    save_checkpoint_atomic(create_model("cspdarknet_tiny"), path, metadata={"arch": "cspdarknet53"})
    with pytest.raises(CheckpointError, match="arch 'cspdarknet53'.*network is 'cspdarknet_tiny'"):
        load_weights(create_model("cspdarknet_tiny"), path)


@pytest.mark.parametrize("case", ["missing", "directory", "empty", "garbage", "extension", "no_ema"])
def test_unreadable_checkpoints_raise_clear_errors(tmp_path, case):
    net = create_model("cspdarknet_tiny")
    if case == "missing":
        path, match = tmp_path / "nope.ckpt", "does not exist"
    elif case == "directory":
        path, match = tmp_path, "is a directory"
    elif case == "empty":
        path, match = tmp_path / "empty.ckpt", "is empty"
        path.write_bytes(b"")
    elif case == "garbage":
        path, match = tmp_path / "garbage.ckpt", "cannot be read as a MindSpore checkpoint"
        path.write_bytes(os.urandom(2000))
    elif case == "extension":
        path, match = tmp_path / "weights.npz", "unknown extension"
        path.write_bytes(b"x")
    else:
        path, match = tmp_path / "plain.ckpt", "no EMA weights"
        save_checkpoint_atomic(net, path)
    with pytest.raises(CheckpointError, match=match):
        load_weights(net, path, use_ema=(case == "no_ema"))
