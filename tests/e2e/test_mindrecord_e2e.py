"""MindRecord end to end: tools/convert_to_mindrecord.py (a crasher left out and named, the class index stored
beside), train.py --dataset_format mindrecord with validation (the same transforms), a resumed run equal to
the uninterrupted one tensor for tensor, and eval.py --dataset_format mindrecord (every row scored, the stored
classes checked against the checkpoint's)."""
import json
import os
import re
import time

import numpy as np
import pytest
from PIL import Image

from src.checkpoint import training_checkpoints
from src.data import DatasetError
from src.data.convert import convert_to_mindrecord
from src.data.mindrecord import read_meta
from tests.fuzz_images import known_crashers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def tree(tmp_path):
    """12 images in 3 class folders, JPEG and PNG."""
    rng = np.random.default_rng(0)
    for c, n in enumerate((5, 4, 3)):
        folder = tmp_path / "data" / f"class_{c}"
        folder.mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (36, 44, 3), dtype=np.uint8)).save(
                folder / (f"{i:02d}.jpg" if i % 2 == 0 else f"{i:02d}.png"))
    return str(tmp_path / "data")


def _convert(scripts, data, prefix, shards):
    code, out = scripts.run("tools/convert_to_mindrecord.py", "--data_dir", data, "--output", prefix, "--shards",
                            shards, "--quiet")
    assert code == 0, out[-3000:]
    return out


def test_convert_train_resume_and_eval(tmp_path, scripts, write_images):
    from src.checkpoint import read_state_dict
    for split, n in (("train", 8), ("val", 3)):
        for k, name in enumerate(("ant", "bee", "cow")):
            write_images(str(tmp_path / split / name), n, 40 + 80 * k, seed=10 * k + (split == "val"))
    name, data = known_crashers()[1]
    crasher = tmp_path / "train" / "bee" / name
    crasher.write_bytes(data)
    train, val = str(tmp_path / "mr" / "train.mindrecord"), str(tmp_path / "mr" / "val.mindrecord")
    out = _convert(scripts, tmp_path / "train", train, 2)
    assert "24 images, 3 classes, 1 left out -> 2 shard file(s)" in out
    assert f"unusable image {crasher}: the decoder crashed on this file" in out
    with open(train + ".class_index.json", encoding="utf-8") as f:
        assert json.load(f) == {"ant": 0, "bee": 1, "cow": 2}
    _convert(scripts, tmp_path / "val", val, 1)

    keys = dict(dataset_format="mindrecord", val_data_dir=val, num_classes=3, max_epoch=2, seed=3)
    code, out = scripts.train(train, tmp_path / "straight", dump_shard_files=1, ckpt_older_weights_only=0, **keys)
    assert code == 0, out[-3000:]
    run = scripts.run_dir(tmp_path / "straight")
    log = scripts.read_log(os.path.join(run, "log.txt"))
    assert [os.path.basename(p) for _, _, p in training_checkpoints(os.path.join(run, "ckpt_0"))] == [
        "0-1_3.ckpt", "0-2_3.ckpt"]  # 24 images (one left out at conversion), batch 8: 3 steps an epoch
    assert re.search(r"epoch\[2\] validation: top1 [\d.]+%, top5 [\d.]+% \(9 images\)", log)
    assert "dump_shard_files is ignored: a mindrecord dataset has no file source" in log
    with open(os.path.join(run, "class_index.json"), encoding="utf-8") as f:
        assert json.load(f) == {"ant": 0, "bee": 1, "cow": 2}

    # resume after epoch 1: epoch 2 reads the same order and augmentations -> the same weights
    straight = os.path.join(run, "ckpt_0")
    resumed = tmp_path / "resumed"
    (resumed / "ckpt_0").mkdir(parents=True)
    os.link(os.path.join(straight, "0-1_3.ckpt"), resumed / "ckpt_0" / "0-1_3.ckpt")
    code, out = scripts.train(train, tmp_path / "unused", resume=resumed, **keys)
    assert code == 0, out[-3000:]
    a, _ = read_state_dict(os.path.join(straight, "0-2_3.ckpt"))
    b, _ = read_state_dict(resumed / "ckpt_0" / "0-2_3.ckpt")
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)

    # eval on the MindRecord validation set
    code, out = scripts.run("eval.py", dataset_format="mindrecord", data_dir=val,
                            pretrained=os.path.join(straight, "0-2_3.ckpt"), per_batch_size=4,
                            num_parallel_workers=1, log_path=tmp_path / "eval")
    assert code == 0, out[-3000:]
    assert "tot=9," in out and "class check: identical" in out


_KILLED = """
import sys, time
import mindspore.mindrecord as mr
orig = mr.FileWriter.commit
def slow_commit(self):
    r = orig(self)
    open(sys.argv[3], "w").close()   # tell the test the shards exist (in the temporary folder)
    time.sleep(120)
    return r
mr.FileWriter.commit = slow_commit
from src.data.convert import convert_to_mindrecord
convert_to_mindrecord(sys.argv[1], sys.argv[2], shards=2, verify=False, progress=False)
"""


def test_a_killed_conversion_leaves_nothing_that_looks_complete(tree, tmp_path, run_script):
    prefix = str(tmp_path / "out" / "mr.mindrecord")
    flag = str(tmp_path / "committed")
    proc = run_script.popen(None, ["-c", _KILLED, tree, prefix, flag])
    try:
        deadline = time.monotonic() + 120
        while not os.path.exists(flag) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert os.path.exists(flag), "the conversion did not get to commit"
    finally:
        proc.kill()
        proc.wait()
    out = str(tmp_path / "out")
    visible = [n for n in os.listdir(out) if not n.startswith(".")]
    assert visible == []                                   # shards only in the hidden temporary folder
    with pytest.raises(DatasetError, match="not found"):
        read_meta(prefix)
    convert_to_mindrecord(tree, prefix, shards=2, verify=False, progress=False)   # a rerun: cleans up
    assert [n for n in os.listdir(out) if n.startswith(".")] == []
    assert read_meta(prefix).num_rows == 12




def test_cli(tree, tmp_path, run_script):
    out = str(tmp_path / "cli.mindrecord")
    r = run_script("tools/convert_to_mindrecord.py", ["--data_dir", tree, "--output", out, "--shards", "2",
                                                     "--workers", "1", "--manifest", "none", "--quiet"], timeout=300)
    assert r.returncode == 0, r.stderr
    assert "12 images, 3 classes, 0 left out -> 2 shard file(s)" in r.stdout
    r = run_script("tools/convert_to_mindrecord.py", ["--data_dir", tmp_path / "nope", "--output", out + "2"],
                   timeout=300)
    assert r.returncode == 2 and "dataset folder not found" in r.stderr
