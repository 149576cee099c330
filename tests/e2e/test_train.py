"""train.py end to end on a tiny folder: outputs and falling loss (of the session's reference run), warm start
with loss scaling, non-finite loss and bad input. (Exact resume, sink mode, stop signals and SIGKILL recovery:
tests/e2e/test_train_resume.py.)"""
import csv
import glob
import os

import numpy as np
import pytest

from src.checkpoint import training_checkpoints as list_checkpoints
from src.checkpoint import checkpoint_model_info, read_state_dict

@pytest.fixture(scope="module")
def tiny_data(make_tiny_data):
    """Three classes told apart by brightness (learnable in a few steps): train/ 3 x 12, val/ 3 x 4, 40 px."""
    return make_tiny_data(classes=3, per_class={"train": 12, "val": 4}, size=40, ext="JPEG")


def _args(data, out, **over):
    args = dict(arch="cspdarknet_tiny", max_epoch=2, log_interval=2, data_dir=data / "train", num_classes=3,
                image_size="32,32", per_batch_size=8, warmup_epochs=0, lr=0.05, num_parallel_workers=1,
                ckpt_path=out, lr_scheduler="cosine_step", eta_min=0.0)
    args.update(over)
    return [f"--{k}={v}" for k, v in args.items()]


@pytest.fixture
def train(run_script):
    """train(cwd, args, timeout=300): train.py in a subprocess (tests/conftest.py run_script)."""
    return lambda cwd, args, timeout=300: run_script("train.py", args, cwd=cwd, timeout=timeout)


def _run_dir(out):
    runs = sorted(glob.glob(os.path.join(str(out), "*")))
    assert len(runs) == 1, runs
    return runs[0]


def test_a_finished_run_writes_its_outputs_and_the_loss_falls(reference_run):
    run, _ = reference_run("loop")  # 3 epochs of 9 steps, validation on (tests/e2e/conftest.py)
    for name in ("log.txt", "config.yaml", "class_index.json", "metrics.csv", "curves.png"):
        assert os.path.isfile(os.path.join(run, name)), name
    ckpts = list_checkpoints(os.path.join(run, "ckpt_0"))
    assert [(e, s) for e, s, _ in ckpts] == [(1, 9), (2, 9), (3, 9)]  # zoo names <rank>-<epoch>_<step>
    assert os.path.isfile(os.path.join(run, "ckpt_0", "best.ckpt"))
    with open(os.path.join(run, "metrics.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    losses = [float(r["train_loss"]) for r in rows]
    assert losses[-1] < losses[0], losses
    assert all(r["val_top1"] and float(r["images_per_sec"]) > 0 for r in rows)
    log = open(os.path.join(run, "log.txt")).read()
    # progress lines (loss, lr, images/s, ETA) and the zoo's epoch line
    assert "step[2/9], loss:" in log and "imgs/sec:" in log and "ETA:" in log
    assert "epoch[3], iter[8], mean loss:" in log and "mean_fps:" in log and "per_step_time:" in log
    arrays, meta = read_state_dict(ckpts[-1][2])
    assert meta["arch"] == "cspdarknet_tiny" and int(arrays["epoch"]) == 3
    assert int(arrays["global_step"].reshape(-1)[0]) == 27
    assert any(k.startswith("moments.") for k in arrays)


def test_dynamic_loss_scale_and_pretrained_fine_tune(tmp_path, tiny_data, train, reference_run):
    run, _ = reference_run("loop")  # fixed loss scale, EMA on, trained on tiny_data (tests/e2e/conftest.py)
    ckpt = list_checkpoints(os.path.join(run, "ckpt_0"))[-1][2]
    # its weights as a warm start for a 5-class head, with dynamic loss scaling
    proc = train(tmp_path, _args(tiny_data, tmp_path / "b", max_epoch=1, num_classes=5, pretrained=ckpt,
                                  is_dynamic_loss_scale=1, loss_scale=65536))
    assert proc.returncode == 0, proc.stderr
    assert "re-initialised for 5 classes" in proc.stdout  # the warm start says what it did not keep
    tuned = os.path.join(_run_dir(tmp_path / "b"), "ckpt_0", "0-1_4.ckpt")
    arrays, _ = read_state_dict(tuned)
    assert checkpoint_model_info(tuned)["num_classes"] == 5 and arrays["head.fc.weight"].shape[0] == 5
    # the dynamic scale's state (a fixed scale has none): halved on an overflow, good steps counted
    fixed, _ = read_state_dict(ckpt)
    assert "loss_scale_good_steps" not in fixed and "loss_scale_good_steps" in arrays
    scale = float(arrays["scale_sense"].reshape(-1)[0])
    assert scale <= 65536 and np.log2(scale).is_integer()
    assert int(arrays["global_step"].reshape(-1)[0]) >= int(arrays["loss_scale_good_steps"].reshape(-1)[0])


def test_non_finite_loss_stops_with_clear_message(tmp_path, tiny_data, train):
    proc = train(tmp_path, _args(tiny_data, tmp_path / "out", max_epoch=3, lr=1e30, ckpt_interval=1))
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "loss became" in proc.stderr and "last good checkpoint" in proc.stderr
    run = _run_dir(tmp_path / "out")
    for _, _, path in list_checkpoints(os.path.join(run, "ckpt_0")):
        arrays, _ = read_state_dict(path)
        assert all(np.isfinite(v).all() for k, v in arrays.items() if v.dtype.kind == "f"), path


@pytest.mark.parametrize("over, message", [
    (dict(data_dir="/no/such/folder"), "/no/such/folder"),
    (dict(per_bach_size=4), "per_batch_size"),
    (dict(resume="/no/such/run"), "/no/such/run"),
    (dict(num_classes=2), "out of range for num_classes=2"),
])
def test_bad_input_is_a_clear_error(tmp_path, tiny_data, train, over, message):
    proc = train(tmp_path, _args(tiny_data, tmp_path / "out", **over), timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
