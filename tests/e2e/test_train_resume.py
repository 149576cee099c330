"""Resumed training ends where uninterrupted training does, with real processes, against the session's
uninterrupted reference runs (tests/e2e/conftest.py reference_run, loop and sink mode):

- sink mode (dataset_sink_mode=1: many steps per host call, EMA inside the compiled step) gives the Python
  loop's per-epoch losses, weights, EMA weights and validation; progress lines come per sink;
- a run resumed from an epoch's checkpoint (``--resume`` on a folder holding it) ends bit for bit in the
  reference's state: weights, optimizer moments, EMA, global step, epoch and the LR schedule continue;
- SIGTERM / SIGINT during training save the position (epoch, step in the epoch) and exit 143 / 130 with one
  line saying how to resume; the resumed run ends bit for bit where the reference does;
- a signal during start-up leaves nothing half-written; a second process on a run that is training is
  refused with the holder's pid; SIGKILL (no handler runs) loses at most the epoch under way: the run resumes
  from its newest complete checkpoint.

cspdarknet_tiny at 32 px, 3 classes x 12 images, 4 per batch (9 steps per epoch), EMA and validation on."""
import csv
import glob
import os
import signal
import subprocess
import time

import numpy as np
import pytest

from src.checkpoint import find_resume_checkpoint, read_state_dict, training_checkpoints

pytestmark = pytest.mark.timeout(method="signal")  # a hang fails in Python, so that `finally` kills train.py

STEPS = 9  # 36 images / 4 per batch


def _run_dir(out):
    (run,) = glob.glob(os.path.join(str(out), "*"))
    return run


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


def _compare_states(a_path, b_path, atol=0.0):
    a, _ = read_state_dict(a_path)
    b, _ = read_state_dict(b_path)
    keys = [k for k in a if not k.startswith("learning_rate")]
    assert set(keys) <= set(b) and any(k.startswith("ema.") for k in a)
    worst = max(float(np.max(np.abs(a[k].astype(np.float64) - b[k].astype(np.float64)))) for k in keys)
    assert worst <= atol, worst
    return b


def test_sink_mode_matches_the_loop(reference_run):
    loop, _ = reference_run("loop")
    sink, _ = reference_run("sink")
    m_loop, m_sink = _metrics(loop), _metrics(sink)
    assert [m[0] for m in m_sink] == ["1", "2", "3"]
    for a, b in zip(m_loop, m_sink):  # (epoch, train_loss, lr, val_top1, val_top5)
        assert float(a[1]) == pytest.approx(float(b[1]), rel=1e-6, abs=1e-7), (a, b)
        assert a[2:] == b[2:], (a, b)
    # weights, optimizer moments, global step and the EMA (updated inside the sunk step) agree
    final = _compare_states(os.path.join(loop, "ckpt_0", "0-3_9.ckpt"), os.path.join(sink, "ckpt_0", "0-3_9.ckpt"),
                            atol=1e-6)
    assert int(final["global_step"].reshape(-1)[0]) == 3 * STEPS
    log = open(os.path.join(sink, "log.txt")).read()
    assert "sink mode: 3 steps per sink (host feed)" in log
    assert "epoch[2], step[9/9], loss:" in log and "epoch[1], step[1/9], loss:" in log


@pytest.mark.parametrize("mode", ["loop", "sink"])
def test_resume_from_an_epoch_checkpoint_continues_exactly(tmp_path, reference_run, run_script, mode):
    """Stopped after epoch 2 and resumed, the run ends in the very state of the uninterrupted one."""
    straight, _ = reference_run(mode)
    resumed = tmp_path / "resumed"
    (resumed / "ckpt_0").mkdir(parents=True)
    epoch2 = os.path.join(straight, "ckpt_0", "0-2_9.ckpt")
    os.link(epoch2, resumed / "ckpt_0" / "0-2_9.ckpt")
    proc = run_script("train.py", reference_run.args(tmp_path / "unused", mode, resume=resumed), cwd=tmp_path)
    assert proc.returncode == 0, proc.output[-3000:]
    _assert_same_state(os.path.join(straight, "ckpt_0", "0-3_9.ckpt"), resumed / "ckpt_0" / "0-3_9.ckpt")
    final, _ = read_state_dict(resumed / "ckpt_0" / "0-3_9.ckpt")
    start, _ = read_state_dict(epoch2)
    moment = next(k for k in final if k.startswith("moments."))
    assert not np.array_equal(start[moment], final[moment])  # the moments did move on in epoch 3
    assert int(final["global_step"].reshape(-1)[0]) == 3 * STEPS and int(final["epoch"]) == 3
    assert not os.path.exists(tmp_path / "unused")  # resume writes into the checkpoint's own run folder


@pytest.mark.parametrize("mode", ["loop", "sink"])
def test_a_stop_signal_saves_the_position_and_the_resumed_run_matches_the_uninterrupted_one(tmp_path, reference_run,
                                                                                            run_script, mode):
    straight, _ = reference_run(mode)
    # loop: SIGTERM after a step of epoch 2; sink: SIGINT after the first sink of epoch 2 (the next boundary)
    signum = signal.SIGTERM if mode == "loop" else signal.SIGINT
    marker = "epoch[2], step[2/9]" if mode == "loop" else "epoch[2], step[3/9]"
    status, output = run_script.signal_when("train.py", reference_run.args(tmp_path / "stopped", mode), tmp_path,
                                            marker, signum)
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
    _assert_same_state(os.path.join(straight, "ckpt_0", "0-3_9.ckpt"), os.path.join(run, "ckpt_0", "0-3_9.ckpt"))
    assert _metrics(run) == _metrics(straight)
    assert not os.path.exists(os.path.join(run, "ckpt_0", f"0-2_{done}.ckpt"))  # superseded, removed


def test_a_signal_during_start_up_exits_with_nothing_half_written(tmp_path, reference_run, run_script):
    out = tmp_path / "out"
    status, output = run_script.signal_when("train.py", reference_run.args(out), tmp_path, "start create network",
                                            signal.SIGTERM)
    assert status == 143, output[-3000:]
    assert [t for t in output.splitlines() if t.startswith("error: ")][0].startswith("error: stopped by SIGTERM")
    assert not glob.glob(str(out / "**" / "*.ckpt"), recursive=True) and _no_temporary_files(tmp_path)


def _wait_for_checkpoint(proc, out, name):
    """Until the training ``proc`` writing under ``out`` has saved ``name``; it must still be running meanwhile."""
    while not glob.glob(str(out / "*" / "ckpt_0" / name)):
        assert proc.poll() is None, f"training ended before it saved {name}"
        time.sleep(0.05)


def test_a_second_process_is_refused_and_a_sigkilled_run_resumes_from_its_newest_complete_checkpoint(
        tmp_path, reference_run, run_script):
    """While a run trains, a second train.py on its folder is refused naming the holder's pid (and so is a new run
    under its name); SIGKILLed at any moment (no handler runs), it resumes from the newest checkpoint that was
    complete."""
    out = tmp_path / "out"
    first = run_script.popen("train.py", reference_run.args(out, max_epoch=40), cwd=tmp_path, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        _wait_for_checkpoint(first, out, "0-1_9.ckpt")
        run = _run_dir(out)
        second = run_script("train.py", [f"--resume={run}"], cwd=tmp_path, timeout=120)
        assert second.returncode == 2 and f"process {first.pid} is training into it" in second.stderr, second.output
        leftover = run_script("train.py", reference_run.args(out), cwd=tmp_path, timeout=120,
                              env={"CSPDARKNET53_RUN_NAME": os.path.basename(run)})
        assert leftover.returncode == 2 and "already holds another run" in leftover.stderr, leftover.output
        assert first.poll() is None  # the first one trains on
        _wait_for_checkpoint(first, out, "0-2_9.ckpt")  # 40 epochs: far from its end
        os.kill(first.pid, signal.SIGKILL)
        assert first.wait(timeout=30) == -signal.SIGKILL
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    newest = find_resume_checkpoint(run)
    arrays, _ = read_state_dict(newest)  # complete and readable, whatever the kill interrupted
    done = int(arrays["epoch"])
    assert done >= 2 and [e for e, _, _ in training_checkpoints(os.path.join(run, "ckpt_0"))][-1] == done
    resumed = run_script("train.py", [f"--resume={run}", f"--max_epoch={done + 1}"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.output[-3000:]
    final, _ = read_state_dict(os.path.join(run, "ckpt_0", f"0-{done + 1}_9.ckpt"))
    assert int(final["epoch"]) == done + 1 and int(final["global_step"].reshape(-1)[0]) == STEPS * (done + 1)
