"""The label check end to end: a model trained by train.py on folders cat/dog/eel, evaluated by eval.py on
folders named otherwise (exit 2 naming them), on a subset of the classes (fine, and said), through a mapping
file (scores as with the right names), and from a checkpoint copied away from its run folder (it still knows
its classes: train.py records them in every checkpoint)."""
import json
import os
import re
import shutil

import pytest

CLASSES = {"cat": 30, "dog": 130, "eel": 220}   # grey levels: learnable in a few steps


@pytest.fixture(scope="module")
def trained(tmp_path_factory, make_scripts, write_images):
    """(train data, val data, checkpoint) of a short train.py run."""
    root = tmp_path_factory.mktemp("labels")
    for split, n in (("train", 16), ("val", 5)):
        for k, (name, value) in enumerate(CLASSES.items()):
            write_images(root / split / name, n, value, seed=10 * k + (split == "val"))
    scripts = make_scripts(root, root / "cache")
    code, out = scripts.train(root / "train", root / "out", num_classes=3, max_epoch=3)
    assert code == 0, out[-3000:]
    run = scripts.run_dir(root / "out")
    ckpt = os.path.join(run, "ckpt_0", "0-3_6.ckpt")
    assert os.path.isfile(ckpt), os.listdir(os.path.join(run, "ckpt_0"))
    return root / "train", root / "val", ckpt


def _copy_val(val, dst, rename=None, drop=()):
    for name in CLASSES:
        if name not in drop:
            shutil.copytree(os.path.join(val, name), os.path.join(dst, (rename or {}).get(name, name)))
    return str(dst)


def _top1(out):
    m = re.search(r"top1_correct=(\d+), tot=(\d+)", out)
    assert m, out[-3000:]
    return int(m.group(1)), int(m.group(2))


def test_right_names_renamed_folders_subset_and_mapping(tmp_path, trained, scripts, eval_in_process):
    _, val, ckpt = trained
    common = dict(pretrained=ckpt, per_batch_size=5, num_parallel_workers=1)

    # the right names: scored, and the check says so
    code, out = scripts.run("eval.py", data_dir=val, log_path=tmp_path / "e1", **common)
    assert code == 0, out[-3000:]
    right = _top1(out)
    assert right[1] == 15 and right[0] > 5   # better than chance: the model learned something
    assert "class check: identical: the 3 class folder(s)" in out
    with open(os.path.join(scripts.run_dir(tmp_path / "e1"), "eval_result.json"), encoding="utf-8") as f:
        assert json.load(f)["class_check"]["kind"] == "identical"

    # renamed folders (what scored 0% silently before: the sorted order differs): exit 2 naming them
    renamed = _copy_val(val, tmp_path / "renamed", rename={"cat": "felis", "dog": "Dog"})
    code, out = eval_in_process([f"--pretrained={ckpt}", f"--data_dir={renamed}", "--log_path=e2"])
    assert code == 2, out[-3000:]
    assert "2 of 3 class folder(s) of " + renamed + " are not classes of the model" in out
    assert "Dog (nearest trained: dog)" in out and "felis" in out and "class mapping file" in out
    assert "top1_correct" not in out and "Traceback" not in out

    # a subset of the classes: fine, and said
    subset = _copy_val(val, tmp_path / "subset", drop=("eel",))
    code, out = scripts.run("eval.py", data_dir=subset, log_path=tmp_path / "e3", **common)
    assert code == 0, out[-3000:]
    assert "subset: 2 class folder(s)" in out and "1 of its 3 classes have no folder: eel" in out
    assert _top1(out)[1] == 10

    # the renamed folders mapped explicitly: the same score as with the right names
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"felis": "cat", "Dog": 1}))
    code, out = scripts.run("eval.py", data_dir=renamed, class_map=mapping, log_path=tmp_path / "e4", **common)
    assert code == 0, out[-3000:]
    assert "class check: mapped:" in out and _top1(out) == right


def test_a_copied_checkpoint_still_knows_its_classes(tmp_path, trained, eval_in_process):
    _, val, ckpt = trained
    copy = tmp_path / "elsewhere" / "model.ckpt"   # no run folder, no class_index.json beside it
    copy.parent.mkdir()
    shutil.copy(ckpt, copy)
    renamed = _copy_val(val, tmp_path / "renamed", rename={"eel": "anguilla"})
    code, out = eval_in_process([f"--pretrained={copy}", f"--data_dir={renamed}", "--log_path=e"])
    assert code == 2 and "anguilla" in out and f"recorded in {copy}" in out, out[-3000:]
