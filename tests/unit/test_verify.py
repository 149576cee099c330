"""Tests for src/data/verify.py: full decode check in isolated workers, manifest cache, ranks."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

from src.data.verify import (CONVERT, OK, SKIP, Manifest, VerifyError, default_manifest_path, summarize,
                             verify_images)
from tests.fuzz_images import known_crashers

FAULTS = "tests.verify_faults:check"


def _jpeg(path, seed=0, size=(40, 32)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(
        path, quality=90)
    return path


def _png(path, seed=0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(path)
    return path


def _by_name(results):
    return {os.path.basename(r.path): r for r in results}


def _crashes_mindspore(path):
    """Whether MindSpore's Decode really crashes on this file here (run in a child)."""
    code = ("import sys, numpy as np, mindspore.dataset.vision as V; "
            "V.Decode()(np.fromfile(sys.argv[1], np.uint8))")
    r = subprocess.run([sys.executable, "-c", code, path], capture_output=True,
                       env=dict(os.environ, GLOG_v="3"), timeout=120)
    return r.returncode < 0, r.returncode


# ------------------------------------------------------------------------------ classification
def test_kinds_of_files_with_the_mindspore_decoder(tmp_path):
    d = tmp_path / "d"
    good = _jpeg(str(d / "good.jpg"))
    png = _png(str(d / "good.png"))
    gif = str(d / "anim.gif")
    Image.fromarray(np.zeros((8, 8), np.uint8), "L").save(gif)
    (d / "text.jpg").write_text("not an image")
    (d / "empty.jpg").write_bytes(b"")
    raw = open(good, "rb").read()
    (d / "truncated.jpg").write_bytes(raw[: len(raw) // 2])
    os.symlink("loop_b.jpg", str(d / "loop_a.jpg"))
    os.symlink("loop_a.jpg", str(d / "loop_b.jpg"))
    os.symlink("nowhere.jpg", str(d / "dangling.jpg"))
    os.mkdir(str(d / "folder.jpg"))
    names = ["good.jpg", "good.png", "anim.gif", "text.jpg", "empty.jpg", "truncated.jpg", "loop_a.jpg",
             "dangling.jpg", "folder.jpg", "missing.jpg"]
    res = verify_images([str(d / n) for n in names], workers=1)
    assert [r.path for r in res] == [str(d / n) for n in names]
    got = _by_name(res)
    assert got["good.jpg"].status == OK and got["good.png"].status == OK
    assert got["anim.gif"].status == CONVERT
    for n in names[3:]:
        assert got[n].status == SKIP, n
    assert "not an image" in got["text.jpg"].reason
    assert got["empty.jpg"].reason == "empty file"
    assert "truncated" in got["truncated.jpg"].reason
    assert got["loop_a.jpg"].reason == "symbolic link loop"
    assert got["dangling.jpg"].reason == "broken symbolic link"
    assert got["folder.jpg"].reason == "not a regular file"
    assert got["missing.jpg"].reason == "missing file"


def test_a_file_that_really_crashes_the_decoder_is_named_and_the_run_goes_on(tmp_path):
    name, data = known_crashers()[0]
    bad = tmp_path / name
    bad.write_bytes(data)
    crashes, rc = _crashes_mindspore(str(bad))
    goods = [_jpeg(str(tmp_path / f"g{i}.jpg"), seed=i) for i in range(4)]
    paths = goods[:2] + [str(bad)] + goods[2:]
    stats = {}
    res = verify_images(paths, workers=1, stats=stats)
    assert [r.status for r in res] == [OK, OK, SKIP, OK, OK]   # the worker was restarted after the crash
    if crashes:
        assert f"the decoder crashed on this file ({signal.Signals(-rc).name})" in res[2].reason
        assert "Corrupt JPEG data" in res[2].reason    # what libjpeg printed just before
        assert stats["crashed"] == 1
    else:  # a MindSpore that rejects it cleanly is fine too
        assert "decoder" in res[2].reason


@pytest.mark.parametrize("kind, expect", [("segv", "SIGSEGV"), ("abort", "SIGABRT"), ("fpe", "SIGFPE"),
                                          ("exit", "exit status 3")])
def test_worker_deaths_blame_the_file(tmp_path, kind, expect):
    paths = [_png(str(tmp_path / f"a{i}.png"), i) for i in range(3)]
    bad = tmp_path / f"x_{kind}.png"
    bad.write_bytes(open(paths[0], "rb").read())
    paths.insert(1, str(bad))
    stats = {}
    res = verify_images(paths, workers=2, decoder=FAULTS, stats=stats)
    assert [r.status for r in res] == [OK, SKIP, OK, OK]
    assert res[1].reason.startswith(f"the decoder crashed on this file ({expect})")
    if kind == "segv":
        assert "about to crash" in res[1].reason
    assert stats["crashed"] == 1


def test_a_crash_caused_by_an_earlier_file_is_not_blamed_on_the_victim(tmp_path):
    src = _png(str(tmp_path / "a.png"))
    paths = []
    for name in ("b_poison.png", "c_victim.png", "d.png", "e_segv.png", "f.png"):
        (tmp_path / name).write_bytes(open(src, "rb").read())
        paths.append(str(tmp_path / name))
    stats = {}
    res = verify_images(paths, workers=1, decoder=FAULTS, stats=stats)
    assert [r.status for r in res] == [OK, OK, OK, SKIP, OK]   # the victim decodes fine in a fresh worker
    assert "decoder said: Corrupt JPEG data" in res[0].reason
    assert stats["collateral"] == 1 and stats["crashed"] == 1
    assert "crashed on this file (SIGSEGV)" in res[3].reason     # a real crasher is confirmed and blamed
    # after clean files only, a crash is blamed at once (one worker start-up per crash, not two)
    stats = {}
    res = verify_images([paths[2], paths[3], paths[4]], workers=1, decoder=FAULTS, stats=stats)
    assert [r.status for r in res] == [OK, SKIP, OK] and stats["restarts"] == 1


def test_a_hang_is_killed_after_the_timeout(tmp_path):
    paths = [_png(str(tmp_path / f"a{i}.png"), i) for i in range(3)]
    hang = tmp_path / "b_hang.png"
    hang.write_bytes(open(paths[0], "rb").read())
    paths.append(str(hang))
    t0 = time.monotonic()
    stats = {}
    res = verify_images(paths, workers=2, decoder=FAULTS, timeout_s=2, stats=stats)
    assert time.monotonic() - t0 < 60
    assert [r.status for r in res] == [OK, OK, OK, SKIP]
    assert "did not finish this file within 2 s" in res[3].reason and stats["timed_out"] == 1


def test_decoder_messages_and_python_errors_are_kept_per_file(tmp_path):
    a = _png(str(tmp_path / "a_noisy.png"))
    b = _png(str(tmp_path / "b.png"), 1)
    c = tmp_path / "c_raise.png"
    c.write_bytes(open(b, "rb").read())
    res = verify_images([a, b, str(c)], workers=1, decoder=FAULTS)
    assert res[0].status == OK and "decoder said: Corrupt JPEG data: 3 extraneous" in res[0].reason
    assert res[1].status == OK and "said" not in res[1].reason
    assert res[2].status == SKIP and "MemoryError: boom" in res[2].reason


def test_a_worker_that_cannot_start_is_an_error(tmp_path):
    p = _png(str(tmp_path / "a.png"))
    with pytest.raises(VerifyError, match="does not start"):
        verify_images([p], workers=1, decoder="no_such_module_xyz:check")


def test_non_utf8_file_name(tmp_path):
    raw = os.path.join(os.fsencode(str(tmp_path)), b"caf\xe9.jpg")
    _jpeg(os.fsdecode(raw))
    path = os.path.join(str(tmp_path), os.listdir(str(tmp_path))[0])
    man = str(tmp_path / "m.jsonl")
    res = verify_images([path], workers=1, manifest=man)
    assert res[0].status == OK and res[0].path == path
    with open(man, encoding="utf-8") as f:  # valid UTF-8 text, the name escaped losslessly
        lines = f.read().splitlines()
    assert json.loads(lines[1])[0] == "caf\udce9.jpg"
    stats = {}
    assert verify_images([path], workers=1, manifest=man, stats=stats)[0].status == OK
    assert stats["cached"] == 1


# ------------------------------------------------------------------------------ manifest
def test_manifest_second_run_checks_nothing_and_changes_are_rechecked(tmp_path):
    d = tmp_path / "data"
    paths = [_jpeg(str(d / "c" / f"{i}.jpg"), seed=i) for i in range(5)]
    (d / "c" / "bad.jpg").write_text("junk")
    paths.append(str(d / "c" / "bad.jpg"))
    man = str(d / ".m.jsonl")
    s1, s2, s3 = {}, {}, {}
    r1 = verify_images(paths, workers=2, manifest=man, root=str(d), stats=s1)
    assert s1["checked"] == 6 and s1["cached"] == 0
    with open(man, encoding="utf-8") as f:
        head = json.loads(f.readline())
        keys = [json.loads(line)[0] for line in f]
    assert head["format"] == "cspdarknet53-verify-manifest" and head["decoder"].startswith("mindspore-")
    assert sorted(keys) == sorted(f"c/{os.path.basename(p)}" for p in paths)    # relative to root
    r2 = verify_images(paths, workers=2, manifest=man, root=str(d), stats=s2)
    assert r2 == r1 and s2["checked"] == 0 and s2["cached"] == 6
    # rewrite one file (new size and mtime): only it is checked again
    with open(paths[0], "ab") as f:
        f.write(b"\0")
    r3 = verify_images(paths, workers=2, manifest=man, root=str(d), stats=s3)
    assert s3["checked"] == 1 and s3["cached"] == 5 and r3[0].status == OK


def test_manifest_of_another_decoder_is_not_trusted(tmp_path):
    p = _png(str(tmp_path / "a.png"))
    man = str(tmp_path / "m.jsonl")
    verify_images([p], decoder="cheap", manifest=man)
    s = {}
    verify_images([p], decoder="pil", manifest=man, workers=1, stats=s)
    assert s["checked"] == 1
    m = Manifest(man, str(tmp_path), "pil").load()
    assert m.lookup(p, os.path.getsize(p), os.stat(p).st_mtime_ns) == (OK, "png")


def test_corrupt_or_foreign_manifest_is_ignored(tmp_path, caplog):
    p = _png(str(tmp_path / "a.png"))
    man = tmp_path / "m.jsonl"
    man.write_text("garbage\n")
    s = {}
    assert verify_images([p], decoder="cheap", manifest=str(man), stats=s)[0].status == OK
    assert s["checked"] == 1 and "not a manifest" in caplog.text
    assert json.loads(man.read_text().splitlines()[0])["format"] == "cspdarknet53-verify-manifest"


def test_killed_check_resumes_from_the_periodic_manifest(tmp_path):
    """A long check saves the manifest as it goes; a killed run's successor re-checks only the rest."""
    paths = [_png(str(tmp_path / f"a{i}.png"), i) for i in range(4)]
    hang = tmp_path / "z_hang.png"
    hang.write_bytes(open(paths[0], "rb").read())
    paths.append(str(hang))
    man = str(tmp_path / "m.jsonl")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from src.data.verify import verify_images; "
            "verify_images(sys.argv[3:], workers=1, manifest=sys.argv[2], decoder='tests.verify_faults:check', "
            "timeout_s=600, flush_every_s=0)")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.Popen([sys.executable, "-c", code, root, man] + paths)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if os.path.exists(man) and sum(1 for _ in open(man)) >= 5:   # header + 4 entries
                break
            time.sleep(0.2)
    finally:
        proc.kill()
        proc.wait()
    s = {}
    res = verify_images(paths[:4], workers=1, manifest=man, decoder=FAULTS, stats=s)
    assert s["cached"] == 4 and s["checked"] == 0 and all(r.status == OK for r in res)


def test_default_manifest_path(tmp_path, monkeypatch):
    assert default_manifest_path(str(tmp_path)) == str(tmp_path / ".cspdarknet53_verified.jsonl")
    ro = tmp_path / "ro"
    ro.mkdir()
    monkeypatch.setattr(os, "access", lambda p, m: False)
    monkeypatch.setenv("CSPDARKNET53_CACHE", str(tmp_path / "cache"))
    got = default_manifest_path(str(ro))
    assert got.startswith(str(tmp_path / "cache" / "verify" / "ro-")) and got.endswith(".jsonl")


# ------------------------------------------------------------------------------ ranks
def _ranks(paths, man, root, group, **kw):
    out, stats = [None] * group, [dict() for _ in range(group)]

    def run(r):
        out[r] = verify_images(paths, manifest=man, root=root, rank=r, group_size=group, stats=stats[r],
                               decoder="cheap", **kw)

    threads = [threading.Thread(target=run, args=(r,)) for r in range(group)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return out, stats


def test_ranks_split_the_work_and_end_with_the_same_results(tmp_path):
    d = tmp_path / "data"
    paths = [_png(str(d / f"{i:02d}.png"), i) for i in range(24)]
    (d / "bad.png").write_text("x")
    paths.append(str(d / "bad.png"))
    man = str(d / ".m.jsonl")
    out, stats = _ranks(paths, man, str(d), 3)
    assert out[0] == out[1] == out[2]
    assert summarize(out[0]) == {OK: 24, CONVERT: 0, SKIP: 1}
    checked = [s["checked"] for s in stats]
    assert sum(checked) == 25 and all(c > 0 for c in checked)   # each file checked once, by one rank
    assert not [n for n in os.listdir(str(d)) if ".rank" in n]   # parts merged and removed
    s = {}
    verify_images(paths, manifest=man, root=str(d), decoder="cheap", stats=s)
    assert s["cached"] == 25
    # new files later: the part files hold only the new results, not a copy of the manifest
    extra = [_png(str(d / f"new{i}.png"), 100 + i) for i in range(6)]
    parts = {}
    orig = Manifest.write

    def spy(self, path=None, merge=True, only_new=False):
        if path and ".rank" in str(path):
            parts[path] = len(self.new_keys) if only_new else len(self.entries)
        return orig(self, path, merge, only_new)

    Manifest.write = spy
    try:
        out, stats = _ranks(paths + extra, man, str(d), 2)
    finally:
        Manifest.write = orig
    assert out[0] == out[1] and sum(s["checked"] for s in stats) == 6 and sum(parts.values()) == 6


def test_a_rank_whose_peers_never_report_checks_the_rest_itself(tmp_path, caplog):
    paths = [_png(str(tmp_path / f"{i}.png"), i) for i in range(8)]
    man = str(tmp_path / "m.jsonl")
    s = {}
    res = verify_images(paths, manifest=man, rank=1, group_size=4, decoder="cheap", wait_timeout_s=0.5, stats=s)
    assert all(r.status == OK for r in res) and s["checked"] == 8
    assert "not verified by the other ranks" in caplog.text
