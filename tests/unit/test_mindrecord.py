"""src/data/mindrecord.py (the reader) and src/data/convert.py (the converter) on tiny real image folders (the
converter's command line and a killed conversion: tests/e2e/test_mindrecord_e2e.py)."""
import json
import os
import stat

import numpy as np
import pytest
from PIL import Image

from src.config import ConfigError
from src.data import DatasetError, create_dataset
from src.data.convert import convert_to_mindrecord
from src.data.mindrecord import CLASS_INDEX_SUFFIX, META_SUFFIX, mindrecord_rows, read_meta, shard_files
from tests.fuzz_images import known_crashers

LATIN = b"caf\xe9.jpg"


def read_rows(prefix):
    """Every row as (relative path, bytes, label), in the stored order."""
    rows = mindrecord_rows(prefix, mode="eval").dataset.create_dict_iterator(output_numpy=True, num_epochs=1)
    return [(json.loads(str(r["id"])), r["image"].tobytes(), int(r["label"])) for r in rows]


def create_mindrecord_dataset(prefix, image_size, batch, **kw):
    return create_dataset(prefix, image_size, batch, dataset_format="mindrecord", **kw)


def _tree(root, per_class=(5, 4, 3)):
    rng = np.random.default_rng(0)
    for c, n in enumerate(per_class):
        for i in range(n):
            folder = os.path.join(root, f"class_{c}")
            os.makedirs(folder, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (36, 44, 3), dtype=np.uint8)).save(
                os.path.join(folder, f"{i:02d}.jpg" if i % 2 == 0 else f"{i:02d}.png"))
    return str(root)


@pytest.fixture
def tree(tmp_path):
    return _tree(tmp_path / "data")


def _ids(dataset, key="id"):
    return [json.loads(str(r[key])) for r in dataset.create_dict_iterator(output_numpy=True, num_epochs=1)]


def test_roundtrip_bytes_labels_class_index(tree, tmp_path):
    prefix = str(tmp_path / "mr" / "train.mindrecord")
    info = convert_to_mindrecord(tree, prefix, shards=2, workers=1, manifest=None, progress=False)
    assert info.num_rows == 12 and info.files == shard_files(prefix, 2)
    assert info.class_to_idx == {"class_0": 0, "class_1": 1, "class_2": 2}
    assert info.class_counts == {"class_0": 5, "class_1": 4, "class_2": 3}
    with open(prefix + CLASS_INDEX_SUFFIX, encoding="utf-8") as f:
        assert json.load(f) == info.class_to_idx
    rows = read_rows(prefix)
    assert len(rows) == 12
    for rel, data, label in rows:
        with open(os.path.join(tree, rel), "rb") as f:
            assert f.read() == data, rel
        assert label == int(rel.split("/")[0].split("_")[1])
    assert sorted(r[0] for r in rows) == sorted(f"class_{c}/{n}" for c in range(3)
                                                for n in os.listdir(os.path.join(tree, f"class_{c}")))
    for f in info.files:  # readable like any file (FileWriter makes 0600)
        assert os.stat(f).st_mode & 0o044 == 0o044 & ~_umask()


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


def test_unusable_files_are_left_out_and_listed_other_formats_converted(tree, tmp_path, caplog):
    name, data = known_crashers()[0]
    with open(os.path.join(tree, "class_1", "zz_" + name), "wb") as f:
        f.write(data)
    with open(os.path.join(tree, "class_2", "zz_text.jpg"), "w") as f:
        f.write("not an image")
    Image.fromarray(np.full((20, 20), 7, np.uint8), "L").save(os.path.join(tree, "class_0", "zz.gif"))
    os.makedirs(os.fsencode(os.path.join(tree, "class_0")), exist_ok=True)
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(
        os.path.join(os.fsencode(os.path.join(tree, "class_0")), LATIN), format="JPEG")
    prefix = str(tmp_path / "mr.mindrecord")
    info = convert_to_mindrecord(tree, prefix, shards=1, workers=1, manifest=None, progress=False)
    assert info.files == [prefix]
    left = dict(info.skipped)
    assert set(left) == {"class_1/zz_" + name, "class_2/zz_text.jpg"}
    assert caplog.text.count("unusable image") == 2
    rows = {rel: (data, label) for rel, data, label in read_rows(prefix)}
    assert len(rows) == 14
    gif = rows["class_0/zz.gif"][0]
    assert gif[:8] == b"\x89PNG\r\n\x1a\n"          # stored as PNG, which the engine decodes
    latin = os.fsdecode(b"class_0/" + LATIN)
    assert latin in rows and rows[latin][1] == 0      # the non-UTF-8 name survives, escaped
    bundle = create_mindrecord_dataset(prefix, 32, 4, mode="eval")
    n = sum(x.shape[0] for x, _ in bundle.dataset.create_tuple_iterator(output_numpy=True, num_epochs=1))
    assert n == 14


def test_existing_output_needs_overwrite_and_fewer_shards_leave_no_stale_files(tree, tmp_path):
    prefix = str(tmp_path / "mr.mindrecord")
    convert_to_mindrecord(tree, prefix, shards=3, verify=False, progress=False)
    with pytest.raises(DatasetError, match="exists"):
        convert_to_mindrecord(tree, prefix, shards=2, verify=False, progress=False)
    convert_to_mindrecord(tree, prefix, shards=2, verify=False, progress=False, overwrite=True)
    names = sorted(os.listdir(str(tmp_path)))
    assert names == sorted(["data", "mr.mindrecord0", "mr.mindrecord0.db", "mr.mindrecord1", "mr.mindrecord1.db",
                            "mr.mindrecord" + META_SUFFIX, "mr.mindrecord" + CLASS_INDEX_SUFFIX])
    assert read_meta(prefix).num_rows == 12


def test_reader_refuses_missing_incomplete_or_changed(tree, tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        read_meta(str(tmp_path / "none.mindrecord"))
    prefix = str(tmp_path / "mr.mindrecord")
    convert_to_mindrecord(tree, prefix, shards=2, verify=False, progress=False)
    os.remove(prefix + META_SUFFIX)
    with pytest.raises(DatasetError, match="incomplete.*meta.json is missing"):
        read_meta(prefix)
    convert_to_mindrecord(tree, prefix, shards=2, verify=False, progress=False, overwrite=True)
    with open(prefix + "1", "ab") as f:
        f.write(b"x")
    with pytest.raises(DatasetError, match="has .* bytes, the meta file says"):
        read_meta(prefix)
    os.remove(prefix + "1")
    with pytest.raises(DatasetError, match="shard file .*mr.mindrecord1 is missing"):
        read_meta(prefix)


def test_non_utf8_output_prefix_is_a_clear_error(tree, tmp_path):
    bad = os.fsdecode(os.path.join(os.fsencode(str(tmp_path)), b"caf\xe9.mindrecord"))
    with pytest.raises(DatasetError, match=r"caf\\\\xe9.mindrecord.*not valid UTF-8"):
        convert_to_mindrecord(tree, bad, verify=False, progress=False)


# ------------------------------------------------------------------------------ order and shards
@pytest.fixture
def prefix20(tmp_path):
    root = _tree(tmp_path / "d20", per_class=(7, 7, 6))
    prefix = str(tmp_path / "mr20.mindrecord")
    convert_to_mindrecord(root, prefix, shards=3, verify=False, progress=False)
    return prefix


def _epoch_paths(prefix, epoch, rank=0, group=1, seed=7):
    rows = mindrecord_rows(prefix, mode="train", rank=rank, group_size=group, seed=seed)
    rows.sampler.set_epoch(epoch)
    return _ids(rows.dataset)


def test_epoch_order_is_a_function_of_seed_and_epoch(prefix20):
    rows = mindrecord_rows(prefix20, mode="train", seed=7)
    uninterrupted = []
    for epoch in range(3):
        rows.sampler.set_epoch(epoch)   # train.py: a fresh iterator per epoch after set_epoch
        uninterrupted.append(_ids(rows.dataset))
    assert len({tuple(o) for o in uninterrupted}) == 3               # reshuffled every epoch
    assert all(sorted(o) == sorted(uninterrupted[0]) for o in uninterrupted)
    assert _epoch_paths(prefix20, 2) == uninterrupted[2]              # a run resumed at epoch 2
    assert _epoch_paths(prefix20, 0, seed=8) != uninterrupted[0]


def test_one_iterator_over_several_epochs_gives_the_same_orders(prefix20):
    rows = mindrecord_rows(prefix20, mode="train", seed=7)
    it = rows.dataset.create_dict_iterator(output_numpy=True, num_epochs=3)
    orders = [[json.loads(str(r["id"])) for r in it] for _ in range(3)]
    assert orders == [_epoch_paths(prefix20, e) for e in range(3)]


@pytest.mark.parametrize("group", [2, 3])
def test_rank_shards_are_equal_disjoint_up_to_padding_and_cover(prefix20, group):
    n = 20
    per = -(-n // group)
    for epoch in (0, 1):
        shards = [_epoch_paths(prefix20, epoch, r, group) for r in range(group)]
        assert all(len(s) == per for s in shards)
        everything = [p for s in shards for p in s]
        assert len(set(everything)) == n                        # every image this epoch
        assert len(everything) - len(set(everything)) == per * group - n   # only the padding repeats
        # the same global permutation dealt out: position k of rank r is position k*G + r of one order
        full = _epoch_paths(prefix20, epoch, 0, 1)
        assert [shards[k % group][k // group] for k in range(n)] == full


def test_eval_shards_cover_each_row_once(prefix20):
    everything = []
    for r in range(3):
        rows = mindrecord_rows(prefix20, mode="eval", rank=r, group_size=3)
        got = _ids(rows.dataset)
        assert len(got) == rows.num_rows
        everything += got
    assert sorted(everything) == sorted(p for p, _, _ in read_rows(prefix20))


def test_create_mindrecord_dataset_matches_the_folder_pipeline_in_eval(tmp_path):
    """Same transforms: eval output of the MindRecord reader equals the folder reader's, image by image."""
    root = _tree(tmp_path / "d", per_class=(3, 3))
    prefix = str(tmp_path / "e.mindrecord")
    convert_to_mindrecord(root, prefix, verify=False, progress=False)
    folder = create_dataset(root, 32, 2, mode="eval")
    mr = create_mindrecord_dataset(prefix, 32, 2, mode="eval")
    assert mr.class_to_idx == folder.class_to_idx and mr.steps_per_epoch == folder.steps_per_epoch
    fx = np.concatenate([x for x, _ in folder.dataset.create_tuple_iterator(output_numpy=True, num_epochs=1)])
    mx = np.concatenate([x for x, _ in mr.dataset.create_tuple_iterator(output_numpy=True, num_epochs=1)])
    order = [p for p, _, _ in read_rows(prefix)]
    listing = sorted(order)
    np.testing.assert_array_equal(mx, fx[[listing.index(p) for p in order]])


def test_train_bundle_and_relabel_by_trained_index(prefix20):
    b = create_mindrecord_dataset(prefix20, 32, 4, mode="train", seed=3)
    assert b.steps_per_epoch == 5 and b.sampler is not None
    b.sampler.set_epoch(1)
    batches = list(b.dataset.create_tuple_iterator(output_numpy=True, num_epochs=1))
    assert len(batches) == 5 and batches[0][0].shape == (4, 3, 32, 32) and batches[0][1].dtype == np.int32
    trained = {"class_2": 0, "class_0": 1, "class_1": 2, "extra": 3}
    e = create_mindrecord_dataset(prefix20, 32, 20, mode="eval", class_to_idx=trained, num_classes=4)
    labels = np.concatenate([y for _, y in e.dataset.create_tuple_iterator(output_numpy=True, num_epochs=1)])
    stored = [lab for _, _, lab in read_rows(prefix20)]
    np.testing.assert_array_equal(labels, [[1, 2, 0][s] for s in stored])
    with pytest.raises(DatasetError, match="not in the given class index: class_2"):
        create_mindrecord_dataset(prefix20, 32, 4, mode="eval", class_to_idx={"class_0": 0, "class_1": 1})




# ------------------------------------------------------------------------------ the converter's output guard
def test_more_shards_than_files_is_refused_before_any_work(tree, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(DatasetError, match=r"shards=13 is more than the 12 image file\(s\)"):
        convert_to_mindrecord(tree, str(out / "mr.mindrecord"), shards=13, verify=False, progress=False)
    with open(os.path.join(tree, "class_0", "00.jpg"), "w") as f:   # 12 files, 11 usable
        f.write("no image")
    with pytest.raises(DatasetError, match=r"shards=12 is more than the 11 usable image\(s\)"):
        convert_to_mindrecord(tree, str(out / "mr.mindrecord"), shards=12, verify=False, progress=False)
    assert not out.exists() or not [n for n in os.listdir(out) if not n.startswith(".")]


def test_overwrite_replaces_a_conversion_but_never_a_foreign_file(tree, tmp_path):
    theirs = tmp_path / "notes.txt"                 # one shard: the prefix itself is the shard file
    theirs.write_text("my notes\n")
    with pytest.raises(ConfigError, match="exists and was not written by this project"):
        convert_to_mindrecord(tree, str(theirs), verify=False, progress=False, overwrite=True)
    assert theirs.read_text() == "my notes\n"
    image = os.path.join(tree, "class_0", "00.jpg")
    before = open(image, "rb").read()
    with pytest.raises(ConfigError, match="lies inside the input folder"):
        convert_to_mindrecord(tree, image, verify=False, progress=False, overwrite=True)
    assert open(image, "rb").read() == before
    with pytest.raises(ConfigError, match="exists and is not a regular file"):
        convert_to_mindrecord(tree, "/dev/null", verify=False, progress=False, overwrite=True)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    prefix = str(tmp_path / "mr.mindrecord")        # a conversion of ours is replaced
    convert_to_mindrecord(tree, prefix, shards=2, verify=False, progress=False)
    convert_to_mindrecord(tree, prefix, shards=2, verify=False, progress=False, overwrite=True)
    assert read_meta(prefix).num_rows == 12
