"""Fuzz test: ~150 randomly corrupted copies of real JPEG and PNG photos (fixed seed, tests/fuzz_images.py)
through the verifier and then through the real train and eval pipelines.

Asserts: the test process survives; every file is classified; every clean file is kept; each unusable file
is named exactly once in the log; and every file the verifier keeps is decoded by the train and eval
pipelines (in a child process, so a miss shows as a crash there, not here) with no sample dropped.
"""
import logging
import os
import subprocess
import sys
import textwrap

import pytest

from src.data.verify import CONVERT, OK, SKIP, report_unusable, verify_images
from tests.fuzz_images import known_crashers, make_corpus

N_FUZZ = 150
SEED = 20240611


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("fuzz")
    items = make_corpus(str(out / "files"), n=N_FUZZ, seed=SEED, sizes=((96, 72),), write_clean=True)
    for name, data in known_crashers():
        path = out / "files" / f"known_{name}"
        path.write_bytes(data)
    paths = sorted(os.path.join(str(out / "files"), n) for n in os.listdir(str(out / "files")))
    labels = {it.path: it.label for it in items}
    return str(out), paths, labels


@pytest.fixture(scope="module")
def verified(corpus):
    out, paths, _ = corpus
    stats = {}
    res = verify_images(paths, workers=2, manifest=os.path.join(out, "manifest.jsonl"), stats=stats,
                        timeout_s=60)
    return res, stats


def test_every_file_is_classified_and_clean_files_are_kept(corpus, verified):
    _, paths, labels = corpus
    res, stats = verified
    assert [r.path for r in res] == paths
    assert all(r.status in (OK, CONVERT, SKIP) and r.reason for r in res)
    clean = [r for r in res if os.path.basename(r.path).startswith("clean_")]
    assert clean and all(r.status == OK for r in clean), [r for r in clean if r.status != OK]
    known = [r for r in res if os.path.basename(r.path).startswith("known_")]
    assert len(known) == 2 and all(r.status == SKIP for r in known)
    n_skip = sum(r.status == SKIP for r in res)
    # the corpus is mostly unusable, but not all of it: both outcomes occur
    assert 0.3 * N_FUZZ < n_skip < 0.95 * N_FUZZ, n_skip
    print(f"\nfuzz: {len(res)} files, {n_skip} unusable ({stats['crashed']} crashed the decoder, "
          f"{stats['timed_out']} timed out), checked in {stats['seconds']:.1f} s")


def test_each_unusable_file_is_named_once_in_the_log(verified, caplog):
    res, _ = verified
    log = logging.getLogger("fuzz.run")
    with caplog.at_level(logging.WARNING, logger="fuzz.run"):
        bad = report_unusable(res, log, where="the fuzz corpus")
    text = caplog.text
    for r in res:
        if r.status == SKIP:
            assert text.count(f"unusable image {r.path}:") == 1, r.path
        else:
            assert r.path not in text
    assert len(bad) == sum(r.status == SKIP for r in res)


def test_second_run_reuses_the_manifest(corpus, verified):
    out, paths, _ = corpus
    stats = {}
    again = verify_images(paths, workers=2, manifest=os.path.join(out, "manifest.jsonl"), stats=stats)
    assert again == verified[0] and stats["checked"] == 0


_PIPELINE = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, sys.argv[1])
    from src.data import create_dataset
    list_path, mode = sys.argv[2], sys.argv[3]
    b = create_dataset("", 32, 4, mode=mode, data_list=list_path, num_parallel_workers=2, verify_files=False,
                       shuffle=False, drop_remainder=False, num_classes=2)
    rows = sum(int(x.shape[0]) for x, _ in b.dataset.create_tuple_iterator(output_numpy=True, num_epochs=1))
    print("ROWS", rows, b.num_images)
""")


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_every_kept_file_goes_through_the_real_pipeline(corpus, verified, tmp_path, mode):
    res, _ = verified
    kept = [r.path for r in res if r.status != SKIP]
    lst = tmp_path / "kept.txt"
    lst.write_text("".join(f"{p} {i % 2}\n" for i, p in enumerate(kept)), encoding="utf-8")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    r = subprocess.run([sys.executable, "-c", _PIPELINE, root, str(lst), mode], capture_output=True, text=True,
                       cwd=str(tmp_path), env=dict(os.environ, GLOG_v="3"), timeout=300)
    assert r.returncode == 0, f"pipeline exit {r.returncode}: {r.stderr[-2000:]}"
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("ROWS")][0]
    rows, n = map(int, line.split()[1:])
    assert n == len(kept) and rows == len(kept), f"{rows} rows for {len(kept)} kept files: {r.stderr[-1500:]}"
