"""src/data/verify.py's worker pool: workers forked from a zygote (a restart after a crash costs milliseconds),
idle clean workers reused by the next call, and the slow path (a new process per worker) when the zygote is
off or gone."""
import os
import signal
import time

import numpy as np
import pytest
from PIL import Image

from src.data import verify
from src.data.verify import OK, SKIP, verify_images

FAULTS = "tests.verify_faults:check"


def _png(path, seed=0):
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(path)
    return str(path)


@pytest.fixture(autouse=True)
def _fresh_pool():
    verify.shutdown_workers()
    yield
    verify.shutdown_workers()


def _crashers(tmp_path, n):
    src = _png(tmp_path / "src.png")
    paths = []
    for i in range(n):
        for name in (f"{i:02d}a.png", f"{i:02d}b_segv.png"):
            with open(src, "rb") as f, open(tmp_path / name, "wb") as g:
                g.write(f.read())
            paths.append(str(tmp_path / name))
    return paths


def test_crashes_restart_forked_workers_quickly(tmp_path):
    paths = _crashers(tmp_path, 8)
    stats = {}
    t0 = time.monotonic()
    res = verify_images(paths, workers=1, decoder=FAULTS, stats=stats)
    seconds = time.monotonic() - t0
    assert [r.status for r in res] == [OK, SKIP] * 8
    assert all("crashed on this file (SIGSEGV)" in r.reason for r in res[1::2])
    assert stats["crashed"] == 8 and stats["restarts"] >= 7
    assert FAULTS in verify._zygotes and verify._zygotes[FAULTS].alive()
    # 8+ worker starts: forked, not a Python start-up each (~1 s of CPU each); generous for a loaded machine
    assert seconds < 30, seconds


def test_without_the_zygote_the_same_results(tmp_path, monkeypatch):
    monkeypatch.setattr(verify, "USE_ZYGOTE", False)
    paths = _crashers(tmp_path, 2)
    res = verify_images(paths, workers=1, decoder=FAULTS)
    assert [r.status for r in res] == [OK, SKIP, OK, SKIP] and not verify._zygotes


def test_an_idle_clean_worker_serves_the_next_call(tmp_path):
    paths = [_png(tmp_path / f"{i}.png", i) for i in range(3)]
    s1, s2 = {}, {}
    verify_images(paths[:2], workers=1, decoder=FAULTS, stats=s1)
    assert len(verify._idle) == 1
    pid = verify._idle[0].proc.pid
    verify_images(paths[2:], workers=1, decoder=FAULTS, stats=s2)
    assert s2["restarts"] == 0 and [w.proc.pid for w in verify._idle] == [pid]


def test_a_worker_that_met_a_bad_file_is_not_kept(tmp_path):
    a = _png(tmp_path / "a_noisy.png")      # decodes, but the decoder printed a warning: maybe a bad state
    verify_images([a], workers=1, decoder=FAULTS)
    assert verify._idle == []


def test_a_dead_zygote_is_replaced_and_no_file_is_blamed(tmp_path):
    paths = [_png(tmp_path / f"{i}.png", i) for i in range(4)]
    verify_images(paths[:2], workers=1, decoder=FAULTS)
    zygote = verify._zygotes[FAULTS]
    os.kill(zygote.proc.pid, signal.SIGKILL)   # its idle worker dies with it (PR_SET_PDEATHSIG)
    zygote.proc.wait()
    res = verify_images(paths, workers=1, decoder=FAULTS)
    assert [r.status for r in res] == [OK] * 4
    assert verify._zygotes[FAULTS] is not zygote and verify._zygotes[FAULTS].alive()


def test_idle_workers_and_the_zygote_end_after_the_keep_time(tmp_path, monkeypatch):
    monkeypatch.setattr(verify, "IDLE_KEEP_S", 0.4)
    verify_images([_png(tmp_path / "a.png")], workers=1, decoder=FAULTS)
    assert len(verify._idle) == 1 and FAULTS in verify._zygotes
    zygote = verify._zygotes[FAULTS]
    deadline = time.monotonic() + 10
    while (verify._idle or verify._zygotes or zygote.proc.poll() is None) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert verify._idle == [] and verify._zygotes == {} and zygote.proc.poll() is not None
