"""Real data-parallel training: 2 CPU ranks on 127.0.0.1 through scripts/run_distribute_train_msrun.sh.

* identical trainable weights on both ranks after training (gradients averaged; BatchNorm moving
  statistics stay per rank and must differ, which also shows the ranks saw different images);
* the files each rank read (``--dump_shard_files=1``) are disjoint and cover the data set, every epoch;
* one log per rank; with the default ``is_save_on_master=1`` only rank 0 writes checkpoints;
* a worker killed mid-run ends the job by itself with a non-zero status and a message naming its rank and
  pid, and the surviving rank and every other process of the job are gone afterwards.

Each 2-rank start costs about 25-45 s on a 2-core machine, so there are only two runs.
"""
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest

from src.checkpoint import training_checkpoints as list_checkpoints
from src.checkpoint import read_state_dict

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPT = os.path.join(REPO, "scripts", "run_distribute_train_msrun.sh")
N_IMAGES = 16  # 2 classes x 8; 8 per rank, batch 4: 2 steps per epoch
TRAIN_FLAGS = ["--arch=cspdarknet_tiny", "--num_classes=2", "--image_size=32,32", "--per_batch_size=4",
               "--warmup_epochs=0", "--lr=0.05", "--num_parallel_workers=1", "--log_interval=1"]

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("bash") is None,
                                reason="the launch scripts need Linux and bash")


@pytest.fixture(scope="module")
def tiny_data(make_tiny_data):
    return make_tiny_data(classes=2, per_class=N_IMAGES // 2, size=36)


def _env(out, run_name, **extra):
    # GLOG_v unset: the launcher's own default must silence MindSpore
    return dict(dict(PYTHON=sys.executable, OUTPUT_ROOT=out, CSPDARKNET53_RUN_NAME=run_name, QUIET="1",
                     CLUSTER_TIME_OUT="120", GLOG_v=None), **extra)


def _read_shards(path):
    by_epoch = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            epoch, file_name = line.rstrip("\n").split("\t")
            by_epoch.setdefault(int(epoch), []).append(file_name)
    return by_epoch


def test_two_ranks_train_identical_weights_on_disjoint_shards(tmp_path, tiny_data, run_script):
    out, cwd = tmp_path / "out", tmp_path / "elsewhere"
    cwd.mkdir()
    run_name = "dp_" + uuid.uuid4().hex[:8]
    start = time.monotonic()
    proc = run_script.cmd(["bash", SCRIPT, "2", tiny_data, "CPU", *TRAIN_FLAGS, "--max_epoch=2",
                           "--is_save_on_master=0", "--dump_shard_files=1"],
                          cwd=cwd, env=_env(out, run_name, QUIET=0), timeout=400)
    wall = time.monotonic() - start
    run = out / run_name
    assert proc.returncode == 0, proc.stdout + proc.stderr + (run / "msrun.log").read_text()
    print(f"2-rank msrun job (2 epochs x 2 steps, cspdarknet_tiny 32 px): {wall:.1f} s wall")

    # the console shows no MindSpore C++ or launcher log lines ("[INFO] DISTRIBUTED(...)", "[WARNING] ME(...)")
    assert "done: 2 workers finished" in proc.stdout, proc.stdout
    noise = [line for line in proc.stdout.splitlines() if re.match(r"\[(INFO|WARNING|DEBUG)\] [A-Z_]+\(", line)]
    assert not noise, noise[:5]

    # one log per rank: train.py's and msrun's
    for rank, name in ((0, "log.txt"), (1, "log_rank1.txt")):
        text = (run / name).read_text()
        assert f"rank {rank} of 2" in text and "epoch[2], iter[" in text, text
        assert (run / "msrun_log" / f"worker_{rank}.log").is_file()

    # shards: per epoch disjoint, covering, equal
    all_files = sorted(glob.glob(str(tiny_data / "*" / "*.jpg")))
    shards = [_read_shards(run / f"shard_rank{r}.txt") for r in (0, 1)]
    assert sorted(shards[0]) == sorted(shards[1]) == [1, 2]
    for epoch in (1, 2):
        a, b = shards[0][epoch], shards[1][epoch]
        assert len(a) == len(set(a)) == N_IMAGES // 2 and len(b) == len(set(b)) == N_IMAGES // 2, (epoch, a, b)
        assert not set(a) & set(b), f"epoch {epoch}: both ranks read {sorted(set(a) & set(b))}"
        assert sorted(a + b) == all_files
    assert sorted(shards[0][1]) != sorted(shards[0][2]), "the same shard in both epochs: no reshuffle"

    # both ranks saved (is_save_on_master=0): identical trainable weights, per-rank BN statistics
    ckpts = [list_checkpoints(str(run / f"ckpt_{r}")) for r in (0, 1)]
    assert [(e, s) for e, s, _ in ckpts[0]] == [(1, 2), (2, 2)] and [(e, s) for e, s, _ in ckpts[1]] == [(1, 2), (2, 2)]
    w0, _ = read_state_dict(ckpts[0][-1][2])
    w1, _ = read_state_dict(ckpts[1][-1][2])
    assert sorted(w0) == sorted(w1)
    assert int(w0["global_step"].reshape(-1)[0]) == int(w1["global_step"].reshape(-1)[0]) == 4
    moving = [k for k in w0 if "moving_mean" in k or "moving_variance" in k]
    trainable = [k for k in w0 if k not in moving and not k.startswith("moments.") and w0[k].dtype.kind == "f"
                 and w0[k].ndim >= 1 and k != "learning_rate"]
    assert len(trainable) > 50 and moving
    unequal = [k for k in trainable if not np.array_equal(w0[k], w1[k])]
    assert not unequal, f"trainable weights differ between ranks: {unequal[:5]}"
    assert any(
        not np.array_equal(w0[k], w1[k]) for k in moving
    ), "BN statistics equal: did both ranks see the same images?"
    assert any(np.abs(w0[k]).max() > 0 for k in w0 if k.startswith("moments.")), "no optimizer update happened"


@pytest.mark.timeout(method="signal")  # a hang fails in Python, so that `finally` stops the job
def test_dead_rank_ends_the_job_naming_it_and_only_rank0_saves(tmp_path, tiny_data, job_processes, run_script):
    out = tmp_path / "out"
    run_name = "dead_" + uuid.uuid4().hex[:8]
    run = out / run_name
    proc = run_script.popen_cmd(["bash", SCRIPT, "2", tiny_data, "CPU", *TRAIN_FLAGS, "--max_epoch=500"],
                                cwd=tmp_path, env=_env(out, run_name, EXIT_GRACE_S=5), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    try:
        # until rank 1 is into epoch 2: both ranks are past the end of epoch 1, where checkpoints are saved
        # (500 epochs: the job cannot end by itself before that)
        log1 = run / "log_rank1.txt"
        while not (log1.is_file() and "epoch[2], step[" in log1.read_text()):
            assert proc.poll() is None, "job ended early:\n" + proc.stdout.read() + proc.stderr.read()
            time.sleep(0.5)
        workers = {pid: node for pid, (comm, role, node) in job_processes(run_name).items()
                   if role == "MS_WORKER" and comm != "tail"}
        victim = [pid for pid, node in workers.items() if node == "1"]
        survivor = [pid for pid, node in workers.items() if node == "0"]
        assert len(victim) == 1 and len(survivor) == 1, workers
        os.kill(victim[0], signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=300)  # the job must end by itself; this only guards a hang
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        for pid in job_processes(run_name):  # never leave a 500-epoch job behind, whatever failed
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    print(f"the script said:\n{stderr}")
    assert proc.returncode != 0
    # the killed rank, by rank and pid, and how it died (msrun saw that very worker exit)
    assert f"error: distributed training failed: rank 1 (pid {victim[0]}) was killed by signal 9" in stderr, stderr
    assert f"Worker process {victim[0]} exit with exception" in (run / "msrun.log").read_text()
    # the surviving rank did not wait for its dead peer: it is gone, and so is every other process of the job
    left = job_processes(run_name, settle=10)
    assert survivor[0] not in left and not left, f"processes of the job left behind: {left}"
    assert "training finished" not in (run / "log.txt").read_text()
    # default is_save_on_master=1: rank 0 saved epoch 1, rank 1 saved nothing
    assert list_checkpoints(str(run / "ckpt_0")), os.listdir(run)
    assert not (run / "ckpt_1").exists()
