"""Fuzz test, end to end: randomly corrupted copies of real JPEG and PNG photos (bytes flipped, overwritten,
zeroed, inserted, cut, truncated, in the header, tables and entropy data; fixed seed; ``tests/fuzz_images.py``),
two files known to crash MindSpore 2.10's decoder, and clean files go through train.py, eval.py and
predict.py as a user runs them.

Asserts: no run crashes; each unusable file is named exactly once in each run's log (and only those);
every usable file is used: eval scores all of them (the engine dropped none), predict predicts all of them,
train reads all of them (up to the dropped last partial batch) and runs every step of its epoch. Kept under
3 minutes on 2 shared cores (measured 42 s at load average 11, 89 s at 12 with a training job beside it).
"""
import json
import os
import re
import shutil

from src.checkpoint import read_state_dict
from tests.fuzz_images import known_crashers, make_base_files, make_corpus

N_FUZZ = 150
SEED = 20240611
BATCH = 8


def _corpus(root):
    """Class folders a/ and b/ holding the fuzzed files, clean files and the known crashers."""
    flat = os.path.join(os.path.dirname(root), "flat")
    items = make_corpus(flat, n=N_FUZZ, seed=SEED)
    files = [it.path for it in items]
    for name, fmt, data in make_base_files(((96, 72),), ("astronaut", "coffee")):
        path = os.path.join(flat, f"clean_{name}.{'jpg' if fmt == 'jpeg' else 'png'}")
        with open(path, "wb") as f:
            f.write(data)
        files.append(path)
    for name, data in known_crashers():
        path = os.path.join(flat, f"crasher_{name}")
        with open(path, "wb") as f:
            f.write(data)
        files.append(path)
    placed = []
    for k, src in enumerate(sorted(files)):
        dst = os.path.join(root, "ab"[k % 2], os.path.basename(src))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.move(src, dst)
        placed.append(dst)
    return placed


def _named(log, files):
    """{file: times named as unusable in the log}, for the files named at least once."""
    counts = {f: log.count(f"unusable image {f}:") for f in files}
    return {f: c for f, c in counts.items() if c}


def test_fuzz_corpus_through_train_eval_and_predict(tmp_path, scripts):
    data = str(tmp_path / "data")
    files = _corpus(data)
    clean = [f for f in files if os.path.basename(f).startswith("clean_")]
    crashers = [f for f in files if os.path.basename(f).startswith("crasher_")]

    # ---- train: one epoch over the corpus, recording every file it reads
    code, out = scripts.train(data, tmp_path / "out", num_classes=2, per_batch_size=BATCH, dump_shard_files=1)
    assert code == 0, out[-3000:]
    run = scripts.run_dir(tmp_path / "out")
    log = scripts.read_log(os.path.join(run, "log.txt"))
    named = _named(log, files)
    assert set(named.values()) == {1}, {f: c for f, c in named.items() if c != 1}   # each named once
    bad = set(named)
    usable = [f for f in files if f not in bad]
    assert set(crashers) <= bad and not bad & set(clean)
    assert 0 < len(bad) < len(files) - len(clean)
    assert re.search(rf"train: {len(usable)} images, 2 classes", log), log[-3000:]
    steps = len(usable) // BATCH
    arrays, _ = read_state_dict(os.path.join(run, "ckpt_0", f"0-1_{steps}.ckpt"))
    assert int(arrays["global_step"].reshape(-1)[0]) == steps  # the epoch ran to its end: no sample was dropped
    assert f"skipped {len(bad)} of {len(files)} image files" in log
    with open(os.path.join(run, "shard_rank0.txt"), encoding="utf-8") as f:
        read = {line.rstrip("\n").split("\t", 1)[1] for line in f}
    assert read <= set(usable) and len(set(usable) - read) < BATCH   # all but the dropped partial batch

    # ---- eval: the same folder (its manifest is reused), every usable file scored
    ckpt = os.path.join(run, "ckpt_0", sorted(os.listdir(os.path.join(run, "ckpt_0")))[-1])
    code, out = scripts.run("eval.py", pretrained=ckpt, data_dir=data, per_batch_size=BATCH,
                            num_parallel_workers=1, log_path=tmp_path / "eval")
    assert code == 0, out[-3000:]
    assert f"tot={len(usable)}," in out
    elog = scripts.read_log(os.path.join(scripts.run_dir(tmp_path / "eval"), "eval_rank0.log"))
    assert _named(elog, files) == named
    assert "class check: identical" in elog

    # ---- predict: the folder, recursively; one record per file, an error exactly for the unusable ones
    code, out = scripts.run("predict.py", ckpt_file=ckpt, image_path=data, result_file=tmp_path / "pred.json",
                            per_batch_size=BATCH)
    assert code == 0, out[-3000:]
    assert _named(out, files) == named
    with open(tmp_path / "pred.json", encoding="utf-8") as f:
        records = json.load(f)["predictions"]
    assert sorted(r["image"] for r in records) == sorted(files)
    assert {r["image"] for r in records if "error" in r} == bad
    assert all(len(r["topk"]) == 2 for r in records if "error" not in r)
