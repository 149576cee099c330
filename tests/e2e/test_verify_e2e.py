"""The decode check across processes (src/data/verify.py): a check killed by SIGKILL resumes from the manifest
it saved as it went, a killed lock holder lets the next process go on, and tools/verify_dataset.py."""
import json
import os
import signal
import subprocess
import time

import numpy as np
from PIL import Image

from src.data.verify import OK, verify_images

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAULTS = "tests.verify_faults:check"
CHECK = ("import sys; sys.path.insert(0, sys.argv[1]); from src.data.verify import verify_images; "
         "verify_images(sys.argv[3:], workers=1, manifest=sys.argv[2], decoder='tests.verify_faults:check', "
         "timeout_s=600, flush_every_s=0)")


def _png(path, seed=0):
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(path)
    return str(path)


def _files_with_a_hang(tmp_path, n=4):
    paths = [_png(tmp_path / f"a{i}.png", i) for i in range(n)]
    hang = tmp_path / "z_hang.png"
    hang.write_bytes(open(paths[0], "rb").read())
    return paths + [str(hang)]


def _start_check(run_script, man, paths):
    return run_script.popen(None, ["-c", CHECK, ROOT, man] + paths)


def _wait_for_entries(man, n, proc, seconds=120):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        if os.path.exists(man) and sum(1 for _ in open(man)) >= n + 1:   # header + n entries
            return True
        time.sleep(0.2)
    return False


def test_a_killed_check_resumes_from_its_manifest(tmp_path, run_script):
    paths = _files_with_a_hang(tmp_path)
    man = str(tmp_path / "m.jsonl")
    proc = _start_check(run_script, man, paths)
    try:
        assert _wait_for_entries(man, 4, proc)      # saved as it went, then stuck on the hang
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    stats = {}
    res = verify_images(paths[:4], workers=1, manifest=man, decoder=FAULTS, stats=stats)
    assert stats["cached"] == 4 and stats["checked"] == 0 and all(r.status == OK for r in res)


def test_a_killed_lock_holder_lets_the_waiting_process_go_on(tmp_path, run_script):
    paths = _files_with_a_hang(tmp_path)
    man = str(tmp_path / "m.jsonl")
    holder = _start_check(run_script, man, paths)               # holds <manifest>.lock while it hangs on z_hang.png
    try:
        assert _wait_for_entries(man, 4, holder)
        stats, done = {}, []
        waiter = run_script.popen(None, ["-c", CHECK.replace("timeout_s=600", "timeout_s=2") +
                                         "; print('done', flush=True)", ROOT, man] + paths,
                                  stdout=subprocess.PIPE, text=True)
        time.sleep(3)
        assert waiter.poll() is None                # waits for the holder
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        out, _ = waiter.communicate(timeout=120)    # the kernel released the lock: it goes on
        assert waiter.returncode == 0 and "done" in out
    finally:
        for p in (holder,):
            if p.poll() is None:
                p.kill()
                p.wait()
    entries = {json.loads(line)[0]: json.loads(line)[3] for line in open(man).readlines()[1:]}
    assert entries == {**{os.path.basename(p): "ok" for p in paths[:4]}, "z_hang.png": "skip"}
    stats = {}
    verify_images(paths, manifest=man, decoder=FAULTS, stats=stats)
    assert stats["cached"] == 5


def test_verify_dataset_tool(tmp_path, run_script):
    data = tmp_path / "data" / "c"
    data.mkdir(parents=True)
    for i in range(3):
        _png(data / f"{i}.png", i)
    (data / "bad.png").write_text("no image")
    tool = ["--data_dir", tmp_path / "data", "--workers", "1", "--quiet"]
    r = run_script("tools/verify_dataset.py", tool + ["--json", tmp_path / "r.json", "--fail_on_unusable"],
                   timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "4 files under" in r.stdout and "3 ok" in r.stdout and "1 unusable" in r.stdout
    report = json.load(open(tmp_path / "r.json"))
    assert [f["status"] for f in report["files"]] == ["ok", "ok", "ok", "skip"]
    notes = tmp_path / "notes.txt"
    notes.write_text("mine\n")
    r = run_script("tools/verify_dataset.py", tool + ["--manifest", notes], timeout=300)
    assert r.returncode == 2 and r.stderr.startswith(f"error: verify_manifest {notes} exists and is not")
    assert notes.read_text() == "mine\n"
