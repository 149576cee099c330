"""Real data-parallel training: 2 CPU ranks on 127.0.0.1 through scripts/run_distribute_train_msrun.sh.

* identical trainable weights on both ranks after training (gradients averaged; BatchNorm moving
  statistics stay per rank and must differ, which also shows the ranks saw different images);
* the files each rank read (``--dump_shard_files=1``) are disjoint and cover the data set, every epoch;
* one log per rank; with the default ``is_save_on_master=1`` only rank 0 writes checkpoints;
* a worker killed mid-run ends the job with a non-zero status and a message naming its rank, within a
  bounded time, leaving no process of the job behind.

Each 2-rank start costs about 25-45 s on a 2-core machine, so there are only two runs.
"""
import glob
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest
from PIL import Image

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
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist_data")
    rng = np.random.RandomState(0)
    for c in range(2):
        (root / f"class{c}").mkdir()
        for i in range(N_IMAGES // 2):
            pixels = (rng.rand(36, 36, 3) * 60 + c * 90).astype(np.uint8)
            Image.fromarray(pixels).save(root / f"class{c}" / f"img{i}.jpg", quality=90)
    return root


def _env(out, run_name, **extra):
    env = dict(os.environ, GLOG_v="3", PYTHON=sys.executable, OUTPUT_ROOT=str(out), CSPDARKNET53_RUN_NAME=run_name,
               QUIET="1", CLUSTER_TIME_OUT="120")
    env.pop("MS_ROLE", None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _read_shards(path):
    by_epoch = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            epoch, file_name = line.rstrip("\n").split("\t")
            by_epoch.setdefault(int(epoch), []).append(file_name)
    return by_epoch


def _job_processes(run_name):
    """pids of live processes (not zombies) whose environment carries this job's run name."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            with open(f"/proc/{entry}/comm") as f:
                comm = f.read().strip()
        except (OSError, ValueError):
            continue
        if env.get(b"CSPDARKNET53_RUN_NAME") == run_name.encode() and state != "Z":
            found[int(entry)] = (comm, env.get(b"MS_ROLE", b"").decode(), env.get(b"MS_NODE_ID", b"").decode())
    return found


def test_two_ranks_train_identical_weights_on_disjoint_shards(tmp_path, tiny_data):
    out, cwd = tmp_path / "out", tmp_path / "elsewhere"
    cwd.mkdir()
    run_name = "dp_" + uuid.uuid4().hex[:8]
    start = time.monotonic()
    proc = subprocess.run(["bash", SCRIPT, "2", str(tiny_data), "CPU", *TRAIN_FLAGS, "--max_epoch=2",
                           "--is_save_on_master=0", "--dump_shard_files=1"],
                          cwd=cwd, env=_env(out, run_name), capture_output=True, text=True, timeout=400)
    wall = time.monotonic() - start
    run = out / run_name
    assert proc.returncode == 0, proc.stdout + proc.stderr + (run / "msrun.log").read_text()
    print(f"2-rank msrun job (2 epochs x 2 steps, cspdarknet_tiny 32 px): {wall:.1f} s wall")

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
    assert any(not np.array_equal(w0[k], w1[k]) for k in moving), "BN statistics equal: did both ranks see the same images?"
    assert any(np.abs(w0[k]).max() > 0 for k in w0 if k.startswith("moments.")), "no optimizer update happened"


def test_dead_rank_ends_the_job_naming_it_and_only_rank0_saves(tmp_path, tiny_data):
    out = tmp_path / "out"
    run_name = "dead_" + uuid.uuid4().hex[:8]
    run = out / run_name
    proc = subprocess.Popen(["bash", SCRIPT, "2", str(tiny_data), "CPU", *TRAIN_FLAGS, "--max_epoch=500"],
                            cwd=tmp_path, env=_env(out, run_name, EXIT_GRACE_S=5), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        # wait until rank 1 is into epoch 2: both ranks are past the end of epoch 1, where checkpoints are saved
        deadline = time.monotonic() + 300
        log1 = run / "log_rank1.txt"
        while not (log1.is_file() and "epoch[2], step[" in log1.read_text()):
            assert proc.poll() is None, "job ended early:\n" + proc.stdout.read() + proc.stderr.read()
            assert time.monotonic() < deadline, "rank 1 never reached epoch 2"
            time.sleep(0.5)
        workers = {pid: node for pid, (comm, role, node) in _job_processes(run_name).items()
                   if role == "MS_WORKER" and comm != "tail"}
        victim = [pid for pid, node in workers.items() if node == "1"]
        assert len(victim) == 1, workers
        killed_at = time.monotonic()
        os.kill(victim[0], signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=150)
        elapsed = time.monotonic() - killed_at
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    print(f"job ended {elapsed:.1f} s after rank 1 was killed; the script said:\n{stderr}")
    assert proc.returncode != 0
    assert "error: distributed training failed: rank 1 " in stderr and "killed by signal 9" in stderr, stderr
    assert elapsed < 150
    time.sleep(1)
    assert not _job_processes(run_name), f"processes of the job left behind: {_job_processes(run_name)}"
    # default is_save_on_master=1: rank 0 saved epoch 1, rank 1 saved nothing
    assert list_checkpoints(str(run / "ckpt_0")), os.listdir(run)
    assert not (run / "ckpt_1").exists()
