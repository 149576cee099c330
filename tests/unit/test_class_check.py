"""Tests for src/data/class_check.py: trained class index vs the data's class folders."""
import json
import os

import pytest

from src.data.class_check import (ClassIndexError, compare_class_index, trained_class_index,
                                  load_class_mapping, nearest_names)

TRAINED = {"cat": 0, "dog": 1, "eel": 2, "fox": 3}


def test_identical_uses_trained_indices_even_when_not_sorted_order():
    trained = {"dog": 0, "cat": 1}
    r = compare_class_index(trained, ["cat", "dog"])
    assert r.ok and r.kind == "identical"
    assert r.class_to_idx == {"cat": 1, "dog": 0}
    assert "identical" in r.message


def test_subset_is_fine_and_says_which_classes_are_absent():
    r = compare_class_index(TRAINED, ["dog", "fox"])
    assert r.ok and r.kind == "subset"
    assert r.missing == ["cat", "eel"]
    assert r.class_to_idx == {"dog": 1, "fox": 3}
    assert "2 of its 4 classes have no folder: cat, eel" in r.message


def test_mismatch_names_the_folders_and_nearest_trained_names():
    r = compare_class_index(TRAINED, ["Cat", "dog", "e-el", "zebra"], where="/data/val")
    assert not r.ok and r.kind == "mismatch"
    assert r.unknown == ["Cat", "e-el", "zebra"]
    assert r.suggestions["Cat"] == ["cat"] and r.suggestions["e-el"] == ["eel"] and r.suggestions["zebra"] == []
    msg = r.message
    assert "3 of 4 class folder(s) of /data/val are not classes of the model" in msg
    assert "Cat (nearest trained: cat)" in msg and "zebra" in msg and "mapping" in msg
    with pytest.raises(ClassIndexError, match="zebra"):
        raise r.error()


def test_mismatch_is_a_dataset_error():
    from src.data import DatasetError
    assert issubclass(ClassIndexError, DatasetError)


def test_sorted_order_swap_is_caught():
    """The silent failure of the issue: eval folders named differently from the training classes."""
    trained = {"n01": 0, "n02": 1}
    r = compare_class_index(trained, ["a_n01", "b_n02"])
    assert not r.ok and r.unknown == ["a_n01", "b_n02"]


def test_mapping_by_name_index_and_null(tmp_path):
    mapping = {"Cat": "cat", "hound": 1, "junk": None}
    r = compare_class_index(TRAINED, ["Cat", "hound", "eel", "junk"], mapping)
    assert r.ok and r.kind == "mapped"
    assert r.class_to_idx == {"Cat": 0, "hound": 1, "eel": 2}
    assert r.ignored == ["junk"] and r.missing == ["fox"]
    assert "left out: junk" in r.message


def test_mapping_to_unknown_target_is_an_error_naming_it():
    with pytest.raises(ClassIndexError, match="'kat' is not a trained class .nearest: cat"):
        compare_class_index(TRAINED, ["Cat"], {"Cat": "kat"})
    with pytest.raises(ClassIndexError, match="9 is not an index"):
        compare_class_index(TRAINED, ["Cat"], {"Cat": 9})


def test_mapping_notes_unused_entries_and_merges():
    r = compare_class_index(TRAINED, ["a", "b"], {"a": "cat", "b": "cat", "c": "dog"})
    assert r.ok and r.mapping_unused == ["c"] and r.merged == {0: ["a", "b"]}
    assert "name no folder" in r.message and "several folders map to one class" in r.message


def test_all_mapped_away_is_a_mismatch():
    r = compare_class_index(TRAINED, ["x"], {"x": None})
    assert not r.ok and "no class folder" in r.message


def test_mapping_files(tmp_path):
    j = tmp_path / "map.json"
    j.write_text(json.dumps({"Cat": "cat", "hound": 1, "junk": None}))
    assert load_class_mapping(str(j)) == {"Cat": "cat", "hound": 1, "junk": None}
    t = tmp_path / "map.txt"
    t.write_text("# folder target\nCat cat\nbig dogs\tdog\nhound 1\njunk -\n")
    assert load_class_mapping(str(t)) == {"Cat": "cat", "big dogs": "dog", "hound": 1, "junk": None}
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"caf\xe9 cat\n")
    with pytest.raises(ClassIndexError, match="not UTF-8"):
        load_class_mapping(str(bad))
    with pytest.raises(ClassIndexError, match="cannot read"):
        load_class_mapping(str(tmp_path / "none.json"))


def test_non_utf8_folder_names_are_compared_and_displayed():
    latin = os.fsdecode(b"caf\xe9")
    r = compare_class_index({latin: 0, "tea": 1}, [latin, "tea"])
    assert r.ok and r.class_to_idx[latin] == 0
    r = compare_class_index({"tea": 0}, [latin])
    assert not r.ok and "caf\\xe9" in r.message
    r.message.encode("utf-8")  # printable


def _train_checkpoint(path, class_to_idx):
    """A checkpoint as train.py writes it: its metadata from src.checkpoint.checkpoint_metadata (the one writer)."""
    from types import SimpleNamespace

    import numpy as np
    import mindspore as ms
    from src.checkpoint import checkpoint_metadata, save_checkpoint_atomic
    net = SimpleNamespace(arch=SimpleNamespace(name="cspdarknet_tiny"), num_classes=len(class_to_idx))
    pre = {"image_size": "32,32", "eval_resize": "squash", "crop_pct": 0.875}
    params = [{"name": "w", "data": ms.Parameter(ms.Tensor(np.ones(2, np.float32)), name="w")}]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_checkpoint_atomic(params, path, metadata=checkpoint_metadata(net, pre, class_to_idx))
    return path


def test_class_names_recorded_in_a_real_checkpoint_including_non_utf8(tmp_path):
    """train.py's checkpoints carry their class names (one key, class_names), so a copy anywhere knows them."""
    from src.checkpoint import checkpoint_model_info, read_state_dict
    latin = os.fsdecode(b"caf\xe9")
    path = _train_checkpoint(str(tmp_path / "copied" / "m.ckpt"), {"tea": 0, latin: 1})
    _, meta = read_state_dict(path)
    meta["class_names"].encode("ascii")            # stored as ASCII escapes: MindSpore's C++ side takes them
    info = checkpoint_model_info(path)
    assert info["class_names"] == ["tea", latin] and info["class_names_source"] == f"recorded in {path}"
    assert trained_class_index(info["class_names"]) == {"tea": 0, latin: 1}
    r = compare_class_index(trained_class_index(info["class_names"]), [latin])
    assert r.ok and r.kind == "subset" and r.class_to_idx == {latin: 1}


def test_class_index_beside_a_checkpoint_without_names(tmp_path):
    """Foreign (or older) checkpoints: a class_index.json beside the file, or <run>/class_index.json for
    <run>/ckpt_0/x.ckpt; a broken one is an error naming it, never ignored."""
    import numpy as np
    import mindspore as ms
    from src.checkpoint import checkpoint_model_info, save_checkpoint_atomic
    from src.errors import DatasetError
    params = [{"name": "w", "data": ms.Parameter(ms.Tensor(np.ones(2, np.float32)), name="w")}]
    run = tmp_path / "run"
    (run / "ckpt_0").mkdir(parents=True)
    ckpt = str(run / "ckpt_0" / "x.ckpt")
    save_checkpoint_atomic(params, ckpt)
    assert checkpoint_model_info(ckpt)["class_names"] is None
    (run / "class_index.json").write_text(json.dumps({"b": 1, "a": 0}))
    info = checkpoint_model_info(ckpt)
    assert info["class_names"] == ["a", "b"] and info["class_names_source"] == str(run / "class_index.json")
    loose = tmp_path / "loose"
    loose.mkdir()
    save_checkpoint_atomic(params, str(loose / "y.ckpt"))
    (loose / "class_index.json").write_text(json.dumps({"q": 0, "p": 1}))
    assert checkpoint_model_info(str(loose / "y.ckpt"))["class_names"] == ["q", "p"]
    (loose / "class_index.json").write_text("{not json")
    with pytest.raises(DatasetError, match="class_index.json"):
        checkpoint_model_info(str(loose / "y.ckpt"))


def test_nearest_names():
    assert nearest_names("n01440765", ["n01440764", "n01443537", "zzz"]) == ["n01440764", "n01443537"]
    assert nearest_names("GOLD_FISH", ["goldfish", "shark"]) == ["goldfish"]
