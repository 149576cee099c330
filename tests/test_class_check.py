"""Tests for src/data/class_check.py: trained class index vs the data's class folders."""
import json
import os

import pytest

from src.data.class_check import (CHECKPOINT_KEY, ClassIndexError, class_index_beside, class_index_from_metadata,
                                  class_index_metadata, compare_class_index, find_trained_class_index,
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
    from src.dataset import DatasetError
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


def test_checkpoint_metadata_roundtrip_including_non_utf8():
    latin = os.fsdecode(b"caf\xe9")
    meta = class_index_metadata({latin: 1, "tea": 0})
    assert list(meta) == [CHECKPOINT_KEY]
    meta[CHECKPOINT_KEY].encode("ascii")
    assert class_index_from_metadata(meta) == {latin: 1, "tea": 0}
    assert class_index_from_metadata({}) is None
    assert class_index_from_metadata({CHECKPOINT_KEY: "not json"}) is None


def test_class_index_stored_in_a_real_checkpoint(tmp_path):
    import mindspore as ms
    from mindspore import Parameter, Tensor
    import numpy as np
    from src.checkpoint import read_state_dict
    latin = os.fsdecode(b"caf\xe9")
    path = str(tmp_path / "ckpt_0" / "m.ckpt")
    os.makedirs(os.path.dirname(path))
    ms.save_checkpoint([{"name": "w", "data": Parameter(Tensor(np.ones(2, np.float32)), name="w")}], path,
                       append_dict=class_index_metadata({latin: 0, "tea": 1}))
    arrays, meta = read_state_dict(path)
    assert "w" in arrays
    found = find_trained_class_index(path, meta)
    assert found == ({latin: 0, "tea": 1}, f"stored in {path}")


def test_find_trained_class_index_beside_and_explicit(tmp_path):
    run = tmp_path / "run"
    (run / "ckpt_0").mkdir(parents=True)
    ckpt = run / "ckpt_0" / "x.ckpt"
    ckpt.write_bytes(b"")
    assert find_trained_class_index(str(ckpt), {}) is None
    (run / "class_index.json").write_text(json.dumps({"a": 0, "b": 1}))
    assert class_index_beside(str(ckpt)) == str(run / "class_index.json")
    assert find_trained_class_index(str(ckpt), {}) == ({"a": 0, "b": 1}, str(run / "class_index.json"))
    # stored copy wins over the file beside it
    meta = class_index_metadata({"z": 0})
    assert find_trained_class_index(str(ckpt), meta)[0] == {"z": 0}
    other = tmp_path / "ci.json"
    other.write_text(json.dumps({"q": 0}))
    assert find_trained_class_index(str(ckpt), meta, explicit=str(other)) == ({"q": 0}, str(other))
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(ClassIndexError, match="JSON object"):
        find_trained_class_index(str(ckpt), {}, explicit=str(bad))


def test_nearest_names():
    assert nearest_names("n01440765", ["n01440764", "n01443537", "zzz"]) == ["n01440764", "n01443537"]
    assert nearest_names("GOLD_FISH", ["goldfish", "shark"]) == ["goldfish"]
