"""postprocess.py, create_imagenet2012_label.py (in process), the ImageNet class-name table and
src/data/class_names.py. The two scripts run as scripts in tests/e2e/test_postprocess_cli.py."""
import json
import os

import numpy as np
import pytest

import create_imagenet2012_label as label_script
import postprocess
from src.data import class_names

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
K = 10


def _row_with_rank(label, rank, k=K, rng=None):
    """Logits (distinct small integers, exact in fp16) where `label` is the rank-th largest."""
    rng = rng or np.random.default_rng(0)
    order = [c for c in rng.permutation(k) if c != label]
    order.insert(rank, label)                 # order[0] gets the largest logit
    row = np.empty(k, np.float32)
    row[np.array(order)] = np.arange(k, 0, -1, dtype=np.float32) - 3.0
    return row


def _write(folder, name, rows, dtype):
    np.asarray(rows, dtype=dtype).tofile(os.path.join(folder, f"{name}_0.bin"))


def _setup(tmp_path, dtype, ranks, labels, batch=1):
    """Write result files for images with given true labels and label ranks; return paths, expected."""
    res = tmp_path / "result_Files"
    res.mkdir()
    rng = np.random.default_rng(1)
    label_json = {}
    rows = [_row_with_rank(l, r, rng=rng) for l, r in zip(labels, ranks)]
    if batch == 1:
        for i, (row, l) in enumerate(zip(rows, labels)):
            _write(res, f"img_{i:04d}", [row], dtype)
            label_json[f"img_{i:04d}.JPEG"] = int(l)
    else:
        for b, start in enumerate(range(0, len(rows), batch)):
            _write(res, f"batch_{b:03d}", rows[start:start + batch], dtype)
            label_json[f"batch_{b:03d}"] = [int(l) for l in labels[start:start + batch]]
    lp = tmp_path / "labels.json"
    lp.write_text(json.dumps(label_json))
    top1 = sum(r == 0 for r in ranks)
    top5 = sum(r < 5 for r in ranks)
    return str(res), str(lp), top1, top5


RANKS = [0, 0, 3, 7, 1, 9, 0, 4, 5, 2, 0, 6]
LABELS = [9, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0]     # covers 0..9: largest label + 1 == K


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_known_answers_auto_dtype(tmp_path, dtype):
    res, lp, top1, top5 = _setup(tmp_path, dtype, RANKS, LABELS)
    r = postprocess.evaluate(res, lp)
    assert (r.dtype, r.num_classes) == (dtype, K)
    assert (r.total, r.top1, r.top5) == (12, top1, top5) == (12, 4, 8)
    assert postprocess.format_summary(r) == f"Total data: 12, top1 accuracy: {4 / 12}, top5 accuracy: {8 / 12}"
    assert r.results_without_label == [] and r.labels_without_result == []


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_batch_files_with_label_lists(tmp_path, dtype):
    # 12 images in batches of 5 -> files of 5, 5 and 2 rows
    res, lp, top1, top5 = _setup(tmp_path, dtype, RANKS, LABELS, batch=5)
    assert sorted(os.listdir(res)) == ["batch_000_0.bin", "batch_001_0.bin", "batch_002_0.bin"]
    r = postprocess.evaluate(res, lp, num_classes=K)
    assert (r.dtype, r.total, r.top1, r.top5) == (dtype, 12, top1, top5)


def test_ambiguous_size_needs_dtype(tmp_path):
    # labels only up to 3: 40 bytes/row is float32 x 10 or float16 x 20 -> ambiguous
    res, lp, top1, top5 = _setup(tmp_path, "float32", [0, 1, 5, 0], [0, 1, 2, 3])
    with pytest.raises(postprocess.PostprocessError, match="--dtype"):
        postprocess.evaluate(res, lp)
    r = postprocess.evaluate(res, lp, dtype="float32")
    assert (r.num_classes, r.top1, r.top5) == (10, 2, 3)
    r = postprocess.evaluate(res, lp, num_classes=10)
    assert (r.dtype, r.top1, r.top5) == ("float32", 2, 3)


def test_resolve_layout_rules():
    rl = postprocess.resolve_layout
    assert rl(2000, 999) == ("float16", 1000)           # the zoo's fp16 head
    assert rl(4000, 999) == ("float32", 1000)           # fp32 export scored on every class
    assert rl(4000, 10, num_classes=1000) == ("float32", 1000)
    assert rl(4000, 10, num_classes=2000) == ("float16", 2000)
    assert rl(4000, 10, dtype="float16") == ("float16", 2000)
    with pytest.raises(postprocess.PostprocessError):
        rl(4000, 10)
    with pytest.raises(postprocess.PostprocessError):
        rl(3000, 10, num_classes=1000)
    with pytest.raises(postprocess.PostprocessError):
        rl(4000, 10, dtype="float32", num_classes=500)
    with pytest.raises(postprocess.PostprocessError):
        rl(6, 10)                                        # too small for label 10


def test_missing_labels_and_results_are_reported(tmp_path, capsys):
    res, lp, _, _ = _setup(tmp_path, "float16", RANKS, LABELS)
    os.remove(os.path.join(res, "img_0003_0.bin"))                       # label without result
    _write(res, "stray", [np.zeros(K)], "float16")                      # result without label
    open(os.path.join(res, "img_0000_1.bin"), "wb").close()              # not *_0.bin: ignored
    r = postprocess.evaluate(res, lp, num_classes=K)
    assert r.results_without_label == ["stray_0.bin"]
    assert r.labels_without_result == ["img_0003.JPEG"]
    assert r.ignored_files == ["img_0000_1.bin"]
    assert (r.total, r.top1, r.top5) == (11, 4, 8)                      # img_0003 had rank 7: a miss anyway
    assert postprocess.main(["--result_path", res, "--label_path", lp, "--num_classes", "10"]) == 0
    out, err = capsys.readouterr()
    assert out.strip().splitlines()[-1] == f"Total data: 11, top1 accuracy: {4 / 11}, top5 accuracy: {8 / 11}"
    assert "1 result files have no label: stray_0.bin" in err
    assert "1 labels have no result file: img_0003.JPEG" in err
    assert postprocess.main(["--result_path", res, "--label_path", lp, "--num_classes", "10", "--strict"]) == 1


def test_malformed_inputs_exit_2_naming_the_file(tmp_path, capsys):
    res, lp, _, _ = _setup(tmp_path, "float16", RANKS, LABELS)
    bad = os.path.join(res, "img_0005_0.bin")
    with open(bad, "ab") as f:
        f.write(b"\0")                                                  # 21 bytes
    assert postprocess.main(["--result_path", res, "--label_path", lp]) == 2
    assert "img_0005_0.bin" in capsys.readouterr().err
    os.truncate(bad, 0)
    assert postprocess.main(["--result_path", res, "--label_path", lp]) == 2
    assert "img_0005_0.bin" in capsys.readouterr().err
    os.truncate(bad, 20)
    # label out of range for the detected K
    data = json.loads(open(lp).read())
    data["img_0005.JPEG"] = 10
    open(lp, "w").write(json.dumps(data))
    assert postprocess.main(["--result_path", res, "--label_path", lp, "--num_classes", "10"]) == 2
    assert "img_0005_0.bin" in capsys.readouterr().err
    # broken JSON, wrong value type, missing folders
    open(lp, "w").write("{not json")
    assert postprocess.main(["--result_path", res, "--label_path", lp]) == 2
    assert "labels.json" in capsys.readouterr().err
    open(lp, "w").write(json.dumps({"img_0000.JPEG": "3"}))
    assert postprocess.main(["--result_path", res, "--label_path", lp]) == 2
    assert "labels.json" in capsys.readouterr().err
    assert postprocess.main(["--result_path", str(tmp_path / "nope"), "--label_path", lp]) == 2
    assert "nope" in capsys.readouterr().err
    # two label keys that map to the same result file
    open(lp, "w").write(json.dumps({"img_0001.JPEG": 1, "img_0001.png": 2}))
    with pytest.raises(postprocess.PostprocessError, match="img_0001_0.bin"):
        postprocess.evaluate(res, lp)
    # no overlap at all
    open(lp, "w").write(json.dumps({"zzz.JPEG": 1}))
    assert postprocess.main(["--result_path", res, "--label_path", lp]) == 2


def test_result_names_from_either_cpp_app(tmp_path):
    # "v.1.JPEG": this project's app writes v.1_0.bin (last extension cut), the zoo's app v_0.bin
    assert postprocess.result_name_candidates("v.1.JPEG") == ["v.1.JPEG", "v.1", "v"]
    assert postprocess.result_name_candidates("plain") == ["plain"]
    for written in ("v.1", "v"):
        res = tmp_path / written
        res.mkdir()
        _write(res, written, [[0, 5, 1]], "float32")
        lp = tmp_path / "l.json"
        lp.write_text(json.dumps({"v.1.JPEG": 1, "w.JPEG": 0}))
        r = postprocess.evaluate(str(res), str(lp), dtype="float32")
        assert (r.total, r.top1, r.labels_without_result) == (1, 1, ["w.JPEG"])


def test_inconsistent_row_sizes(tmp_path):
    res, lp, _, _ = _setup(tmp_path, "float16", RANKS, LABELS)
    _write(res, "img_0002", [np.zeros(K)], "float32")
    with pytest.raises(postprocess.PostprocessError, match="img_0002_0.bin"):
        postprocess.evaluate(res, lp)


# ---------------------------------------------------------------- label script

def _image_tree(root, layout):
    for cls, files in layout.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for f in files:
            (root / cls / f).write_bytes(b"x")


def test_label_script_sorted_classes(tmp_path, capsys):
    img = tmp_path / "val"
    _image_tree(img, {"n02": ["c.JPEG"], "n01": ["a.JPEG", "b.JPEG"], "n03": []})
    (img / "stray.txt").write_text("x")
    out = tmp_path / "out" / "labels.json"
    assert label_script.main(["--img_path", str(img), "--output", str(out)]) == 0
    assert json.loads(out.read_text()) == {"a.JPEG": 0, "b.JPEG": 0, "c.JPEG": 1}
    printed = capsys.readouterr()
    assert "[INFO] Completed! Total 3 data." in printed.out
    assert "stray.txt" in printed.err and "n03" in printed.err
    labels, classes, stats = label_script.build_labels(str(img))
    assert classes == ["n01", "n02", "n03"] and stats["empty_classes"] == ["n03"]
    assert stats["stem_clashes"] == [] and stats["first_dot_clashes"] == []
    _image_tree(img, {"n03": ["a.png", "c.1.JPEG"]})
    _, _, stats = label_script.build_labels(str(img))
    assert stats["stem_clashes"] == [("a.JPEG", "a.png")]
    assert ("c.JPEG", "c.1.JPEG") in stats["first_dot_clashes"]


def test_label_script_errors(tmp_path, capsys):
    assert label_script.main(["--img_path", str(tmp_path / "missing"), "--output", str(tmp_path / "l.json")]) == 2
    assert "missing" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert label_script.main(["--img_path", str(empty), "--output", str(tmp_path / "l.json")]) == 2
    assert "no class sub-folders" in capsys.readouterr().err
    _image_tree(tmp_path / "nofiles", {"a": [], "b": []})
    with pytest.raises(label_script.LabelError, match="no image files"):
        label_script.build_labels(str(tmp_path / "nofiles"))
    _image_tree(tmp_path / "dup", {"a": ["x.JPEG"], "b": ["x.JPEG"]})
    with pytest.raises(label_script.LabelError, match="x.JPEG"):
        label_script.build_labels(str(tmp_path / "dup"))
    assert not (tmp_path / "l.json").exists()


# ---------------------------------------------------------------- class names

def test_imagenet_class_table():
    path = os.path.join(REPO, "data", "imagenet", "imagenet1k_classes.tsv")
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    assert lines[-1] == "" and len(lines) == 1001
    rows = [line.split("\t") for line in lines[:-1]]
    assert all(len(r) == 2 and r[1] for r in rows)
    synsets = [r[0] for r in rows]
    assert len(set(synsets)) == 1000 and synsets == sorted(synsets)
    assert all(s.startswith("n") and len(s) == 9 and s[1:].isdigit() for s in synsets)
    assert rows[0] == ["n01440764", "tench, Tinca tinca"]
    assert rows[-1][0] == "n15075141" and rows[-1][1].startswith("toilet tissue")
    assert class_names.load_imagenet_synsets() == synsets
    names = class_names.load_imagenet_class_names()
    assert names[0] == "tench, Tinca tinca" and len(names) == 1000
    assert class_names.load_class_names() == names


def test_load_class_names_sources(tmp_path):
    assert class_names.load_class_names(num_classes=3) == ["class_0", "class_1", "class_2"]
    (tmp_path / "class_index.json").write_text(json.dumps({"cat": 1, "ant": 0, "dog": 2}))
    assert class_names.load_class_names(str(tmp_path), num_classes=3) == ["ant", "cat", "dog"]
    assert class_names.load_class_names(tmp_path / "class_index.json", None) == ["ant", "cat", "dog"]
    with pytest.raises(class_names.ClassNamesError, match="class_index.json"):
        class_names.load_class_names(str(tmp_path), num_classes=4)
    (tmp_path / "bad.json").write_text(json.dumps({"a": 0, "b": 2}))
    with pytest.raises(class_names.ClassNamesError, match="bad.json"):
        class_names.load_class_names(str(tmp_path / "bad.json"), None)
    (tmp_path / "names.txt").write_text("x\ny\n")
    assert class_names.load_class_names(str(tmp_path / "names.txt"), 2) == ["x", "y"]
    with pytest.raises(class_names.ClassNamesError):
        class_names.load_class_names(str(tmp_path / "empty_dir_missing"), 2)


def test_class_table_matches_timm_when_installed():
    import importlib.util
    if importlib.util.find_spec("timm") is None:
        pytest.skip("timm not installed")
    from tools import make_imagenet_class_names as tool
    assert tool.main(["--check"]) == 0


# ------------------------------------------------------------------------------------------------ issue 23
def _model_with_record(tmp_path, names, dtype="float32"):
    """A MINDIR stand-in whose sidecar holds a model record with these class names."""
    k = len(names)
    record = {"format": "cspdarknet53-model-record", "version": 1, "arch": "cspdarknet_tiny", "num_classes": k,
              "class_names": names, "input": {"shape": [1, 3, 32, 32]},
              "preprocess": {"image_size": [32, 32], "eval_resize": "squash", "crop_pct": 1.0, "resize": [32, 32],
                             "mean": [0, 0, 0], "std": [1, 1, 1]},
              "output": {"dtype": dtype}, "calibration": None}
    model = tmp_path / "net.mindir"
    model.write_bytes(b"x")
    (tmp_path / "net.mindir.json").write_text(json.dumps(record))
    return model


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_logits_are_refused(tmp_path, capsys, bad):
    res, lp, _, _ = _setup(tmp_path, "float32", RANKS, LABELS)
    rows = np.full((1, K), bad, np.float32)        # all-NaN: argsort would rank class 0 first, a "hit" for label 0
    rows.tofile(os.path.join(res, "img_0001_0.bin"))   # img_0001 has label 0
    with pytest.raises(postprocess.PostprocessError, match="1 of 12 images have non-finite logits"):
        postprocess.evaluate(res, lp, num_classes=K)
    assert postprocess.main([f"--result_path={res}", f"--label_path={lp}", f"--num_classes={K}"]) == 2
    err = capsys.readouterr()
    assert "error: 1 of 12 images have non-finite logits" in err.err and "top1 accuracy" not in err.out
    # scored anyway (library use): the row is a miss, never a hit
    r = postprocess.evaluate(res, lp, num_classes=K, allow_nonfinite=True)
    assert r.nonfinite_rows == 1 and r.top1 == 3 and r.top5 == 7


def test_all_nan_results_never_score(tmp_path):
    res, lp, _, _ = _setup(tmp_path, "float16", RANKS, [0] * 12)
    for name in os.listdir(res):
        np.full((1, K), np.nan, np.float16).tofile(os.path.join(res, name))
    r = postprocess.evaluate(res, lp, dtype="float16", allow_nonfinite=True)
    assert (r.top1, r.top5, r.nonfinite_rows) == (0, 0, 12)


def test_model_record_gives_classes_dtype_and_names(tmp_path, capsys):
    names = [f"name{c}" for c in range(K)]
    res, lp, top1, _ = _setup(tmp_path, "float32", RANKS, LABELS)
    model = _model_with_record(tmp_path, names)
    assert postprocess.main([f"--result_path={res}", f"--label_path={lp}", f"--model_path={model}"]) == 0
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert lines[0] == f"Total data: 12, top1 accuracy: {4 / 12}, top5 accuracy: {8 / 12}"
    # per class: label 9 has two images (ranks 0 and 0), label 0 two (ranks 0 and 6)
    assert "class 9 name9: 2 images, top1 1.0000" in lines and "class 0 name0: 2 images, top1 0.5000" in lines
    assert "net.mindir.json" in out.err
    # the record's dtype is used, and a contradicting flag is an error
    assert postprocess.main([f"--result_path={res}", f"--label_path={lp}", f"--model_path={model}",
                             "--dtype=float16"]) == 2
    assert "model record" in capsys.readouterr().err
    bare = tmp_path / "bare.mindir"
    bare.write_bytes(b"x")
    assert postprocess.main([f"--result_path={res}", f"--label_path={lp}", f"--model_path={bare}"]) == 2
    assert "no model record" in capsys.readouterr().err


def test_label_script_skips_hidden_files_and_numbers_folders_by_the_model(tmp_path, capsys):
    img = tmp_path / "val"
    for cls in ("sandal", "bag"):
        (img / cls).mkdir(parents=True)
        (img / cls / f"{cls}.jpg").write_bytes(b"x")
        (img / cls / ".DS_Store").write_bytes(b"x")
    (img / ".cspdarknet53_verified.jsonl").write_text("{}\n")   # the data check's manifest
    labels, classes, stats = label_script.build_labels(str(img))
    assert labels == {"bag.jpg": 0, "sandal.jpg": 1} and stats["stray_files"] == []
    # the model's names decide the indices: a subset of its classes in another order
    labels, _, stats = label_script.build_labels(str(img), ["shirt", "sandal", "coat", "bag"])
    assert labels == {"bag.jpg": 3, "sandal.jpg": 1} and stats["by_name"]
    # no folder is a class name (ImageNet synsets vs words): sorted order; some are: an error naming the rest
    _, _, stats = label_script.build_labels(str(img), ["a", "b", "c"])
    assert not stats["by_name"]
    with pytest.raises(label_script.LabelError, match="not classes of the model: sandal"):
        label_script.build_labels(str(img), ["bag", "coat"])
    model = _model_with_record(tmp_path, ["shirt", "sandal", "coat", "bag"] + [f"x{i}" for i in range(6)])
    out = tmp_path / "labels.json"
    assert label_script.main([f"--img_path={img}", f"--output={out}", f"--model_path={model}"]) == 0
    assert json.loads(out.read_text()) == {"bag.jpg": 3, "sandal.jpg": 1}
    assert "WARNING" not in capsys.readouterr().err
