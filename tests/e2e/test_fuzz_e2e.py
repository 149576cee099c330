"""Hostile files end to end: randomly corrupted copies of real JPEG and PNG photos (bytes flipped, overwritten,
zeroed, inserted, cut, truncated, in the header, tables and entropy data; fixed seed; ``tests/fuzz_images.py``),
two files known to crash MindSpore 2.10's decoder, a symbolic link loop and clean files, in a class folder whose
name is not UTF-8 (Latin-1 bytes) and one beside it holding a file whose name is not UTF-8, go through train.py,
eval.py and predict.py as a user runs them, with a strict UTF-8 stdout (``PYTHONIOENCODING=utf-8``, as an
en_US.UTF-8 terminal).

Asserts: no run crashes; each unusable file is named exactly once in each run's log (and only those, with the
reason for the loop and the crashers); every usable file is used: eval scores all of them (the engine dropped
none), predict predicts all of them, train reads all of them (up to the dropped last partial batch) and runs
every step of its epoch; the names that are not UTF-8 reach the logs readable and class_index.json, the
checkpoint and the result JSON files exact. (Data lists that are not UTF-8: tests/e2e/test_names_e2e.py.)
"""
import json
import os
import re
import shutil

from src.checkpoint import checkpoint_model_info, read_state_dict
from src.utils.paths import display_name
from tests.fuzz_images import known_crashers, make_base_files, make_corpus

N_FUZZ = 150
SEED = 20240611
BATCH = 8
LATIN_CLASS = b"caf\xe9"          # a class folder named in Latin-1
LATIN_FILE = b"cr\xe8me br\xfbl\xe9e.jpg"
CLASSES = (LATIN_CLASS, b"tea")


def _corpus(root):
    """``(files, latin_file, loop)``: class folders caf\\xe9/ and tea/ holding the fuzzed files, clean files and the
    known crashers, taking turns; a clean copy named LATIN_FILE and a symbolic link loop in tea/."""
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
        dst = os.path.join(os.fsdecode(os.path.join(os.fsencode(root), CLASSES[k % 2])), os.path.basename(src))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.move(src, dst)
        placed.append(dst)
    tea = os.path.join(root, "tea")
    latin_file = os.fsdecode(os.path.join(os.fsencode(tea), LATIN_FILE))
    shutil.copy(next(p for p in placed if os.path.basename(p).startswith("clean_") and p.endswith(".jpg")), latin_file)
    loop = [os.path.join(tea, "loop_a.jpg"), os.path.join(tea, "loop_b.jpg")]
    os.symlink("loop_b.jpg", loop[0])
    os.symlink("loop_a.jpg", loop[1])
    return placed + [latin_file] + loop, latin_file, loop


def _named(log, files):
    """{file: times named as unusable in the log}, for the files named at least once (names that are not
    UTF-8 appear as display_name writes them)."""
    counts = {f: log.count(f"unusable image {display_name(f)}:") for f in files}
    return {f: c for f, c in counts.items() if c}


def test_hostile_files_and_names_through_train_eval_and_predict(tmp_path, scripts):
    data = str(tmp_path / "data")
    files, latin_file, loop = _corpus(data)
    latin_class = os.fsdecode(LATIN_CLASS)
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
    assert set(crashers) <= bad and set(loop) <= bad and not bad & set(clean + [latin_file])
    for path, why in [(p, "symbolic link loop") for p in loop] + [(p, "the decoder crashed") for p in crashers]:
        assert f"unusable image {display_name(path)}: {why}" in log, path
    assert 0 < len(bad) < len(files) - len(clean)
    assert re.search(rf"train: {len(usable)} images, 2 classes", log), log[-3000:]
    steps = len(usable) // BATCH
    arrays, _ = read_state_dict(os.path.join(run, "ckpt_0", f"0-1_{steps}.ckpt"))
    assert int(arrays["global_step"].reshape(-1)[0]) == steps  # the epoch ran to its end: no sample was dropped
    assert f"skipped {len(bad)} of {len(files)} image files" in log
    with open(os.path.join(run, "shard_rank0.txt"), encoding="utf-8", errors="surrogateescape") as f:
        read = {line.rstrip("\n").split("\t", 1)[1] for line in f}
    assert read <= set(usable) and len(set(usable) - read) < BATCH   # all but the dropped partial batch
    with open(os.path.join(run, "class_index.json"), encoding="utf-8") as f:
        assert json.load(f) == {latin_class: 0, "tea": 1}          # exact, through JSON escapes

    # ---- eval: the same folder (its manifest is reused), every usable file scored
    ckpt = os.path.join(run, "ckpt_0", sorted(os.listdir(os.path.join(run, "ckpt_0")))[-1])
    assert checkpoint_model_info(ckpt)["class_names"] == [latin_class, "tea"]
    code, out = scripts.run("eval.py", pretrained=ckpt, data_dir=data, per_batch_size=BATCH,
                            num_parallel_workers=1, log_path=tmp_path / "eval", result_file=tmp_path / "eval.json")
    assert code == 0, out[-3000:]
    assert f"tot={len(usable)}," in out
    with open(tmp_path / "eval.json", encoding="utf-8") as f:
        assert json.load(f)["images"] == len(usable)
    elog = scripts.read_log(os.path.join(scripts.run_dir(tmp_path / "eval"), "eval_rank0.log"))
    assert _named(elog, files) == named
    assert "class check: identical" in elog

    # ---- predict: the folder, recursively; one record per file, an error exactly for the unusable ones
    code, out = scripts.run("predict.py", ckpt_file=ckpt, image_path=data, result_file=tmp_path / "pred.json",
                            per_batch_size=BATCH)
    assert code == 0, out[-3000:]
    assert _named(out, files) == named
    assert f"\n{display_name(latin_file)}\n  1. " in out and "UnicodeEncodeError" not in out
    with open(tmp_path / "pred.json", "rb") as f:
        records = json.loads(f.read().decode("utf-8"))["predictions"]
    assert sorted(r["image"] for r in records) == sorted(files)                # the exact names back
    assert {r["image"] for r in records if "error" in r} == bad
    assert all(len(r["topk"]) == 2 for r in records if "error" not in r)
    (latin,) = [r for r in records if r["image"] == latin_file]
    assert bytes.fromhex(latin["image_bytes"]) == os.fsencode(latin_file)      # and the raw bytes for others
