"""Tests for src/data/balance.py (class weights, class-balanced sampler) and the weighted loss."""
import json

import numpy as np
import pytest

from src.data.balance import (BalanceError, ClassBalancedOrder, balanced_weights, class_weights_from_counts,
                              describe_counts, load_weights_file)
from src.data.sampler import mindspore_sampler


LABELS = np.array([0] * 90 + [1] * 9 + [2] * 1)  # 90 / 9 / 1


def class_weights(labels, k, mode):
    return class_weights_from_counts(np.bincount(labels, minlength=k), k, mode)


def test_none_gives_no_weights():
    assert class_weights(LABELS, 3, "none") is None
    assert class_weights(LABELS, 3, None) is None


def test_balanced_is_inverse_frequency_with_mean_one():
    w = class_weights(LABELS, 3, "balanced")
    assert w.dtype == np.float32
    np.testing.assert_allclose(w.mean(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(w[0] * 90, w[1] * 9, rtol=1e-6)
    np.testing.assert_allclose(w[1] * 9, w[2] * 1, rtol=1e-6)


def test_balanced_empty_class_gets_one_and_mean_over_present_is_one():
    w = balanced_weights([10, 0, 30])
    assert w[1] == 1.0
    np.testing.assert_allclose(w[[0, 2]].mean(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(w[0], 3 * w[2], rtol=1e-6)


def test_weights_file_forms(tmp_path):
    lines = tmp_path / "w.txt"
    lines.write_text("# weights\n1.0\n2.5  # rare\n\n4\n")
    np.testing.assert_allclose(class_weights(LABELS, 3, str(lines)), [1, 2.5, 4])
    js = tmp_path / "w.json"
    js.write_text(json.dumps([0.5, 1, 2]))
    np.testing.assert_allclose(class_weights(LABELS, 3, str(js)), [0.5, 1, 2])
    named = tmp_path / "named.json"
    named.write_text(json.dumps({"cat": 3.0}))
    np.testing.assert_allclose(load_weights_file(str(named), 3, {"dog": 0, "cat": 1, "eel": 2}), [1, 3, 1])


@pytest.mark.parametrize("content, match", [("1\n2\n", "has 2 weights"), ("1\nx\n3\n", "not a number"),
                                            ("[1, -1, 2]", ">= 0"), ("[0, 0, 0]", "not all 0"),
                                            ("[1, 2", "not valid JSON"), ('{"cat": 1}', "no class index")])
def test_bad_weights_files_name_the_file(tmp_path, content, match):
    f = tmp_path / "w.txt"
    f.write_text(content)
    with pytest.raises(BalanceError, match=match) as e:
        class_weights(LABELS, 3, str(f))
    assert str(f) in str(e.value)


def test_unknown_mode_is_an_error():
    with pytest.raises(BalanceError, match="none, balanced or a weights file"):
        class_weights(LABELS, 3, "inverse")


def _epoch(labels, group, epoch, seed=0, **kw):
    return [ClassBalancedOrder(labels, r, group, seed, **kw).indices(epoch) for r in range(group)]


def test_sampler_balances_classes_and_keeps_epoch_length():
    o = ClassBalancedOrder(LABELS, seed=3)
    idx = o.indices(0)
    assert len(idx) == len(o) == len(LABELS)
    counts = np.bincount(LABELS[idx], minlength=3)
    assert sorted(counts.tolist()) == [33, 33, 34]
    # frequent class: no image twice; rare class: its one image repeated
    c0 = idx[LABELS[idx] == 0]
    assert len(set(c0.tolist())) == len(c0)
    assert set(idx[LABELS[idx] == 2].tolist()) == {99}


def test_sampler_rare_class_images_evenly_repeated():
    labels = np.array([0] * 50 + [1] * 5)
    idx = ClassBalancedOrder(labels, seed=1).indices(0)
    rare = idx[labels[idx] == 1]
    reps = np.bincount(rare, minlength=55)[50:]
    assert reps.max() - reps.min() <= 1 and reps.sum() == len(rare)


def test_sampler_power_one_is_natural_frequency():
    idx = ClassBalancedOrder(LABELS, seed=0, power=1.0).indices(0)
    assert np.bincount(LABELS[idx], minlength=3).tolist() == [90, 9, 1]


def test_sampler_order_is_a_function_of_seed_and_epoch():
    a = ClassBalancedOrder(LABELS, seed=5)
    first = list(a)
    second = list(a)          # the next epoch
    assert first != second
    b = ClassBalancedOrder(LABELS, seed=5)
    b.set_epoch(1)           # resume at epoch 1
    assert list(b) == second
    assert list(ClassBalancedOrder(LABELS, seed=6)) != first


def test_sampler_shards_are_equal_and_partition_the_epoch():
    for group in (1, 2, 3, 8):
        shards = _epoch(LABELS, group, epoch=2, seed=11)
        assert len({len(s) for s in shards}) == 1
        full = ClassBalancedOrder(LABELS, 0, group, 11).epoch_indices(2)
        merged = np.empty(len(full), np.int64)
        for r, s in enumerate(shards):
            merged[r::group] = s
        np.testing.assert_array_equal(merged, full)


def test_sampler_bad_input():
    with pytest.raises(BalanceError):
        ClassBalancedOrder([], 0, 1)
    with pytest.raises(BalanceError):
        ClassBalancedOrder(LABELS, 2, 2)


def test_mindspore_sampler_drives_a_generator_dataset():
    import mindspore.dataset as ds
    labels = np.array([0] * 12 + [1] * 4)
    sampler = mindspore_sampler(ClassBalancedOrder, labels, 0, 1, seed=2)
    data = ds.GeneratorDataset([(np.array(i, np.int32), np.array(labels[i], np.int32)) for i in range(16)],
                               column_names=["i", "label"], sampler=sampler)
    got = [int(i) for i, _ in data.create_tuple_iterator(output_numpy=True, num_epochs=1)]
    assert got == ClassBalancedOrder(labels, 0, 1, 2).indices(0).tolist()
    assert np.bincount(labels[got]).tolist() == [8, 8]


def test_describe_names_the_rarest():
    assert "ratio 90.0" in describe_counts(np.bincount(LABELS)) and "2: 1" in describe_counts(np.bincount(LABELS))
