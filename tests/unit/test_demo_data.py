"""Tests for the embedded Fashion-MNIST demo data (src/demo_data.py, tools/make_fashion_mnist_slice.py)."""
import gzip
import os

import numpy as np
import pytest

import src.data.demo as dd
from src.data import DatasetError, create_dataset
from src.data.demo import CLASS_FOLDERS, ensure_demo_dataset



def count(folder):
    return {c: len(os.listdir(os.path.join(folder, c))) for c in sorted(os.listdir(folder))}


def test_slice_is_small_and_balanced():
    assert os.path.getsize(dd.SLICE_PATH) < 800_000
    xt, yt, xv, yv = dd.load_slice()
    assert xt.shape == (1000, 28, 28) and xv.shape == (500, 28, 28) and xt.dtype == np.uint8
    assert np.bincount(yt).tolist() == [100] * 10 and np.bincount(yv).tolist() == [50] * 10
    assert os.path.isfile(os.path.join(os.path.dirname(dd.SLICE_PATH), "LICENSE"))


def test_materializes_and_is_reused(tmp_path, monkeypatch):
    paths = ensure_demo_dataset(str(tmp_path / "cache"))
    assert paths.num_classes == 10 and paths.class_names[0] == "T-shirt/top" and paths.class_names[9] == "Ankle boot"
    assert count(paths.train) == {c: 100 for c in CLASS_FOLDERS}
    assert count(paths.val) == {c: 50 for c in CLASS_FOLDERS}
    assert sorted(CLASS_FOLDERS) == CLASS_FOLDERS
    assert [n for n in os.listdir(tmp_path / "cache") if not n.startswith("fashion_mnist_")] == []

    def boom(*a, **k):
        raise AssertionError("rebuilt instead of reused")
    monkeypatch.setattr(dd, "write_image_folder", boom)
    assert ensure_demo_dataset(str(tmp_path / "cache")) == paths


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CSPDARKNET53_CACHE", str(tmp_path / "envcache"))
    assert ensure_demo_dataset().train.startswith(str(tmp_path / "envcache"))


def test_incomplete_tree_is_rebuilt(tmp_path):
    paths = ensure_demo_dataset(str(tmp_path))
    folder = os.path.dirname(paths.train)
    os.remove(os.path.join(folder, dd._MARKER))
    os.remove(os.path.join(paths.val, CLASS_FOLDERS[3], os.listdir(os.path.join(paths.val, CLASS_FOLDERS[3]))[0]))
    again = ensure_demo_dataset(str(tmp_path))
    assert again == paths and count(again.val) == {c: 50 for c in CLASS_FOLDERS}
    assert [n for n in os.listdir(tmp_path) if not n.startswith("fashion_mnist_")] == []


def test_missing_slice_raises(tmp_path):
    with pytest.raises(DatasetError, match="nothere.npz"):
        ensure_demo_dataset(str(tmp_path), slice_path=str(tmp_path / "nothere.npz"))


def test_pipeline_runs_on_demo_val(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    paths = ensure_demo_dataset(str(tmp_path / "cache"))
    b = create_dataset(paths.val, 32, 100, mode="eval", num_parallel_workers=2)
    assert b.class_to_idx == {c: i for i, c in enumerate(CLASS_FOLDERS)} and b.steps_per_epoch == 5
    labels = np.concatenate([y for _, y in b.dataset.create_tuple_iterator(output_numpy=True, num_epochs=1)])
    assert np.bincount(labels).tolist() == [50] * 10
    # labels match the slice: the images of folder k are those with label k
    xt, yt, xv, yv = dd.load_slice()
    from PIL import Image
    first = os.path.join(paths.val, CLASS_FOLDERS[int(yv[0])], "00000.jpg")
    assert np.abs(np.asarray(Image.open(first), np.int16) - xv[0]).mean() < 3  # JPEG q95


# ---------------------------------------------------------------------------------- the slice tool
from tools import make_fashion_mnist_slice as mk  # noqa: E402


def _write_idx(path, arr):
    magic = 0x800 + arr.ndim
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_tool_makes_slice_and_full_tree_from_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "src"
    src.mkdir()
    for split, n in (("train", 40), ("t10k", 30)):
        _write_idx(src / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(src / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    out = tmp_path / "s.npz"
    mk.main(["--source_dir", str(src), "--out", str(out), "--train_per_class", "3", "--val_per_class", "2"])
    with np.load(out) as z:
        assert z["x_train"].shape == (30, 28, 28) and np.bincount(z["y_train"]).tolist() == [3] * 10
        assert z["train_index"].tolist() == list(range(30)) and z["val_index"].tolist() == list(range(20))
    mk.main(["--source_dir", str(src), "--full", str(tmp_path / "full")])
    assert sum(count(str(tmp_path / "full" / "train")).values()) == 40
    assert sum(count(str(tmp_path / "full" / "val")).values()) == 30
    with pytest.raises(SystemExit):
        mk.main(["--source_dir", str(tmp_path / "none"), "--out", str(out)])


@pytest.mark.skipif(not os.path.isfile(os.path.join(mk.DEFAULT_SOURCE, mk.FILES["train_images"])),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_committed_slice_matches_the_debian_package(tmp_path):
    out = tmp_path / "slice.npz"
    mk.main(["--out", str(out)])
    with np.load(out) as new, np.load(dd.SLICE_PATH) as old:
        for k in ("x_train", "y_train", "x_val", "y_val", "train_index", "val_index"):
            np.testing.assert_array_equal(new[k], old[k])
