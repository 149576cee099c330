"""Preemption-safe training with real signals and real processes: SIGTERM / SIGINT during training save the
position (epoch, step in the epoch) and exit 143 / 130 with one line saying how to resume; the resumed run ends
bit for bit where the uninterrupted one does (loop and sink mode); a signal during start-up leaves nothing
half-written; a second process on a run that is training is refused with the holder's pid.

cspdarknet_tiny at 32 px, 3 classes x 12 images, 4 per batch (9 steps per epoch), EMA and validation on."""
import csv
import glob
import os
import signal
import subprocess

import numpy as np
import pytest

from src.checkpoint import find_resume_checkpoint, read_state_dict, training_checkpoints

pytestmark = pytest.mark.timeout(method="signal")  # a hang fails in Python, so that `finally` kills train.py

STEPS = 9  # 36 images / 4 per batch


@pytest.fixture(scope="module")
def data(make_tiny_data):
    return make_tiny_data(3, {"train": 12, "val": 4}, 40, ext="JPEG")


def _args(data, out, **over):
    args = dict(arch="cspdarknet_tiny", max_epoch=3, log_interval=1, data_dir=data / "train", val_data_dir=data / "val",
                num_classes=3, image_size="32,32", per_batch_size=4, warmup_epochs=0, lr=0.05, num_parallel_workers=1,
                ckpt_path=out, lr_scheduler="cosine_step", eta_min=0.0, ema=1, ema_decay=0.9)
    args.update(over)
    return [f"--{k}={v}" for k, v in args.items()]


def _run_dir(out):
    (run,) = glob.glob(os.path.join(str(out), "*"))
    return run


def _signal_when(run_script, args, cwd, line, signum):
    """Starts train.py, sends ``signum`` once a stdout line contains ``line``; returns (status, output)."""
    proc = run_script.popen("train.py", args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    try:
        for text in proc.stdout:
            seen.append(text)
            if line in text:
                proc.send_signal(signum)
                break
        seen.append(proc.communicate(timeout=300)[0])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, "".join(seen)


def _metrics(run):
    with open(os.path.join(run, "metrics.csv"), newline="") as f:
        return [(r["epoch"], r["train_loss"], r["lr"], r["val_top1"], r["val_top5"]) for r in csv.DictReader(f)]


def _assert_same_state(a_path, b_path):
    a, _ = read_state_dict(a_path)
    b, _ = read_state_dict(b_path)
    assert set(a) == set(b) and any(k.startswith("ema.") for k in a) and any(k.startswith("moments.") for k in a)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def _no_temporary_files(root):
    return [p for p in glob.glob(os.path.join(str(root), "**", "*"), recursive=True)
            + glob.glob(os.path.join(str(root), "**", ".*"), recursive=True)
            if ".partial." in os.path.basename(p) or p.endswith(".tmp")] == []


@pytest.mark.parametrize("mode", ["loop", "sink"])
def test_a_stop_signal_saves_the_position_and_the_resumed_run_matches_the_uninterrupted_one(tmp_path, data,
                                                                                            run_script, mode):
    over = dict(dataset_sink_mode=0) if mode == "loop" else dict(dataset_sink_mode=1, sink_size=3)
    straight = run_script("train.py", _args(data, tmp_path / "straight", **over), cwd=tmp_path)
    assert straight.returncode == 0, straight.output[-3000:]

    # loop: SIGTERM after a step of epoch 2; sink: SIGINT after the first sink of epoch 2 (the next boundary)
    signum = signal.SIGTERM if mode == "loop" else signal.SIGINT
    status, output = _signal_when(run_script, _args(data, tmp_path / "stopped", **over), tmp_path,
                                  "epoch[2], step[2/9]" if mode == "loop" else "epoch[2], step[3/9]", signum)
    run = _run_dir(tmp_path / "stopped")
    # MindSpore's runtime re-sends a SIGINT that lands inside a compiled step as SIGTERM (src.utils.signals)
    assert status in ((143,) if mode == "loop" else (130, 143)), output[-3000:]
    saved = find_resume_checkpoint(run)
    arrays, _ = read_state_dict(saved)
    done = int(arrays["step_in_epoch"])
    assert int(arrays["epoch"]) == 1 and 2 <= done < STEPS and os.path.basename(saved) == f"0-2_{done}.ckpt"
    if mode == "sink":
        assert done % 3 == 0  # a sink boundary
    lines = [t for t in output.splitlines() if t.startswith("error: ")]
    assert len(lines) == 1 and f"step {done} of 9: saved {saved}" in lines[0] and f"--resume={run}" in lines[0]
    assert _no_temporary_files(run)

    resumed = run_script("train.py", [f"--resume={run}"], cwd=tmp_path)  # the run's own config, nothing else
    assert resumed.returncode == 0, resumed.output[-3000:]
    assert f"and {done} steps of epoch 2 (replayed" in resumed.output
    final = os.path.join(_run_dir(tmp_path / "straight"), "ckpt_0", "0-3_9.ckpt")
    _assert_same_state(final, os.path.join(run, "ckpt_0", "0-3_9.ckpt"))
    assert _metrics(run) == _metrics(_run_dir(tmp_path / "straight"))
    assert not os.path.exists(os.path.join(run, "ckpt_0", f"0-2_{done}.ckpt"))  # superseded, removed


def test_a_signal_during_start_up_exits_with_nothing_half_written(tmp_path, data, run_script):
    out = tmp_path / "out"
    status, output = _signal_when(run_script, _args(data, out), tmp_path, "start create network", signal.SIGTERM)
    assert status == 143, output[-3000:]
    assert [t for t in output.splitlines() if t.startswith("error: ")][0].startswith("error: stopped by SIGTERM")
    assert not glob.glob(str(out / "**" / "*.ckpt"), recursive=True) and _no_temporary_files(tmp_path)


def test_a_second_process_on_a_training_run_is_refused_with_the_holders_pid(tmp_path, data, run_script):
    out = tmp_path / "out"
    first = run_script.popen("train.py", _args(data, out, max_epoch=40), cwd=tmp_path, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        while not glob.glob(str(out / "*" / "ckpt_0" / "0-1_9.ckpt")):
            assert first.poll() is None, "training ended before the test could start a second process"
        run = _run_dir(out)
        second = run_script("train.py", [f"--resume={run}"], cwd=tmp_path, timeout=120)
        assert second.returncode == 2 and f"process {first.pid} is training into it" in second.stderr, second.output
        leftover = run_script("train.py", _args(data, out), cwd=tmp_path, timeout=120,
                              env={"CSPDARKNET53_RUN_NAME": os.path.basename(run)})
        assert leftover.returncode == 2 and "already holds another run" in leftover.stderr, leftover.output
        assert first.poll() is None  # the first one trains on
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=300) == 143
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert [e for e, _, _ in training_checkpoints(os.path.join(run, "ckpt_0"))]  # its checkpoints, nobody else's
