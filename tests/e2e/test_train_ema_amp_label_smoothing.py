"""train.py end to end, for what the unit tests of the step cannot show: EMA validation and best.ckpt, the
dynamic loss scale's overflow path in a real run, and O2/O3 mixed precision on CPU.

* EMA: the validation top-1 that train.py logs each epoch is what eval.py ``--use_ema=1`` gives on that
  epoch's checkpoint (and not what the raw weights give), and best.ckpt is the checkpoint of the best epoch.
* O2 with a fixed and O3 with a dynamic loss scale: the run finishes with finite losses; its checkpoints hold
  float32 master weights and optimizer moments (AMP casts the computation, not the parameters) and load in
  eval.py.
* Overflow: O3 with an initial dynamic scale of 2^21 overflows for sure on the first step (2^21 times the
  loss gradient, ~0.14 per logit for a batch of 4, is far above float16's 65504 when it is cast to float16
  at the network's output); the run logs each skipped step and the halved scale, the skipped steps do not
  count in the optimizer's global step, and it finishes. (A float32 scale of 1e38 overflows only now and
  then on cspdarknet_tiny -- measured 1 step of 8 -- so it cannot be the provocation of a test.)

cspdarknet_tiny, 32 px, three brightness classes (36 train, 24 val images).
"""
import csv
import glob
import json
import math
import os
import re

import numpy as np
import pytest

from src.checkpoint import read_state_dict

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STEP_LOSS = re.compile(r"epoch\[(\d+)\], step\[(\d+)/(\d+)\], loss: (\S+),")
OVERFLOW = re.compile(r"epoch (\d+) step (\d+): gradient overflow, update skipped; loss scale now (\S+)")


@pytest.fixture(scope="module")
def data(make_tiny_data):
    """Three classes told apart by brightness (12 train / 8 val images per class, 40 px JPEGs)."""
    return make_tiny_data(3, {"train": 12, "val": 8}, 40, ext="JPEG")


def _script(run_script, name, cwd, args, timeout=300):
    return run_script(name, cwd=cwd, timeout=timeout, **args)


def _train(run_script, cwd, data, out, **over):
    args = dict(arch="cspdarknet_tiny", max_epoch=1, log_interval=1, data_dir=data / "train", num_classes=3,
                image_size="32,32", per_batch_size=8, warmup_epochs=0, lr=0.05, num_parallel_workers=1,
                ckpt_path=out, lr_scheduler="cosine_step", eta_min=0.0)
    args.update(over)
    proc = _script(run_script, "train.py", cwd, args)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (run,) = glob.glob(os.path.join(str(out), "*"))
    return proc, run


def _eval(run_script, cwd, data, pretrained, output=None, **over):
    """eval.py on ``pretrained`` (a file or a folder); returns {checkpoint file name: result record}.
    ``output``: a list that gets the run's stdout + stderr."""
    result = os.path.join(str(cwd), f"eval_{len(os.listdir(cwd))}.json")
    args = dict(pretrained=pretrained, data_dir=data / "val", per_batch_size=8, num_parallel_workers=1,
                log_path=os.path.join(str(cwd), "eval_logs"), result_file=result, no_plots=1)
    args.update(over)
    proc = _script(run_script, "eval.py", cwd, args)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    if output is not None:
        output.append(proc.stdout + proc.stderr)
    with open(result) as f:
        doc = json.load(f)
    return {os.path.basename(r["checkpoint"]): r for r in doc.get("results", [doc])}


def _metrics(run):
    with open(os.path.join(run, "metrics.csv"), newline="") as f:
        return list(csv.DictReader(f))


def _log(run):
    with open(os.path.join(run, "log.txt"), encoding="utf-8") as f:
        return f.read()


# ---------------------------------------------------------------------------------------------- EMA

def test_ema_validation_scores_the_ema_weights_and_best_ckpt_holds_them(tmp_path, data, run_script):
    epochs, steps = 3, 4
    _, run = _train(run_script, tmp_path, data, tmp_path / "out", max_epoch=epochs, lr=0.1, val_data_dir=data / "val",
                    ema=1, ema_decay=0.9, log_interval=4)
    log = _log(run)
    assert log.count("validation (EMA weights): top1") == epochs
    rows = _metrics(run)
    logged = {int(r["epoch"]): float(r["val_top1"]) for r in rows}
    assert sorted(logged) == list(range(1, epochs + 1))
    folder = os.path.join(run, "ckpt_0")
    ema_out, raw_out = [], []
    ema_scores = _eval(run_script, tmp_path, data, folder, ema_out, use_ema=1)
    raw_scores = _eval(run_script, tmp_path, data, folder, raw_out, use_ema=0)
    assert all(r["use_ema"] for r in ema_scores.values()) and not any(r["use_ema"] for r in raw_scores.values())
    # scoring the raw weights of an EMA run says so, once per checkpoint (they are not what training validated)
    assert raw_out[0].count("also holds EMA weights") == len(raw_scores) and "also holds EMA" not in ema_out[0]

    # 1. each epoch's logged validation is the EMA weights' score (eval.py, float32, other batching)
    for epoch, top1 in logged.items():
        rec = ema_scores[f"0-{epoch}_{steps}.ckpt"]
        assert rec["images"] == 24
        assert abs(100.0 * rec["top1_correct"] / rec["images"] - top1) < 1e-3, (epoch, top1, rec["top1"])
    # ... which is not the raw weights' score (else this run could not tell the two apart)
    raw = {e: 100.0 * raw_scores[f"0-{e}_{steps}.ckpt"]["top1"] for e in logged}
    assert any(abs(raw[e] - logged[e]) > 1e-3 for e in logged), f"raw {raw} equals EMA {logged}: no test"

    # 2. best.ckpt is the checkpoint of the (first) best epoch, EMA weights included, weights-only (no optimizer
    #    state), and scores what was logged
    best_epoch = max(logged, key=lambda e: (logged[e], -e))
    best, best_meta = read_state_dict(os.path.join(folder, "best.ckpt"))
    same_epoch, _ = read_state_dict(os.path.join(folder, f"0-{best_epoch}_{steps}.ckpt"))
    assert set(best) <= set(same_epoch) and not any(k.startswith("moments.") or k == "global_step" for k in best)
    for key in best:
        np.testing.assert_array_equal(best[key], same_epoch[key], err_msg=key)
    assert abs(float(best["best_top1"]) - logged[best_epoch]) < 1e-3
    assert int(best["ema_updates"]) == best_epoch * steps
    assert abs(100.0 * ema_scores["best.ckpt"]["top1"] - logged[best_epoch]) < 1e-3
    assert f"new best top1 {logged[best_epoch]:.2f}%" in log

    # 3. the EMA copies (weights and BN statistics) are float32 and are not the raw weights
    ema_keys = [k for k in best if k.startswith("ema.")]
    assert any(k.endswith("moving_mean") for k in ema_keys) and any(k.endswith("head.fc.weight") for k in ema_keys)
    for key in ema_keys:
        assert best[key].dtype == np.float32, key
        assert best[key].shape == best[key[len("ema."):]].shape, key
    differing = [k for k in ema_keys if not np.array_equal(best[k], best[k[len("ema."):]])]
    assert len(differing) > 0.9 * len(ema_keys), f"only {len(differing)} of {len(ema_keys)} EMA tensors differ"


# -------------------------------------------------------------------------------- O2 / O3, overflow

AMP_RUNS = {  # name: train.py options; batch 4: 9 steps. O2 with a fixed scale and O3 with the dynamic scale where
    # it overflows: each cast level and each loss-scale path once (a dynamic scale without overflow:
    # tests/e2e/test_train.py)
    "O2_fixed": dict(amp_level="O2", is_dynamic_loss_scale=0, loss_scale=1024, val_data_dir="VAL"),
    "O3_dynamic_overflow": dict(amp_level="O3", is_dynamic_loss_scale=1, loss_scale=2 ** 21),
}
STEPS = 9


@pytest.fixture(scope="module")
def amp_runs(tmp_path_factory, data, run_script):
    """Every AMP_RUNS run, once: {name: (run folder, its last checkpoint)}."""
    runs = {}
    for name, over in AMP_RUNS.items():
        cwd = tmp_path_factory.mktemp(name)
        over = {k: (data / "val" if v == "VAL" else v) for k, v in over.items()}
        _, run = _train(run_script, cwd, data, cwd / "out", per_batch_size=4, **over)
        runs[name] = (run, os.path.join(run, "ckpt_0", f"0-1_{STEPS}.ckpt"))
    return runs


@pytest.mark.parametrize("name", list(AMP_RUNS))
def test_amp_run_finishes_with_finite_losses(amp_runs, name):
    run, ckpt = amp_runs[name]
    log = _log(run)
    over = AMP_RUNS[name]
    assert f"amp_level {over['amp_level']}, {'dynamic' if over['is_dynamic_loss_scale'] else 'fixed'} loss scale" \
        in log
    losses = [float(m.group(4)) for m in STEP_LOSS.finditer(log)]
    assert len(losses) == STEPS and all(math.isfinite(v) for v in losses), losses
    (row,) = _metrics(run)
    assert math.isfinite(float(row["train_loss"])), row
    if "val_data_dir" in over:
        assert row["val_top1"] and 0 <= float(row["val_top1"]) <= 100
    arrays, meta = read_state_dict(ckpt)
    assert meta["arch"] == "cspdarknet_tiny" and int(arrays["epoch"]) == 1
    for key, value in arrays.items():
        if value.dtype.kind == "f":
            assert np.isfinite(value).all(), key
    if not over["is_dynamic_loss_scale"]:
        assert "gradient overflow" not in log and int(arrays["global_step"].reshape(-1)[0]) == STEPS


def test_amp_checkpoints_hold_float32_master_weights_and_load_in_eval(amp_runs, data, tmp_path, run_script):
    folder = tmp_path / "ckpts"
    folder.mkdir()
    for name, (_, ckpt) in amp_runs.items():
        arrays, _ = read_state_dict(ckpt)
        weights = [k for k in arrays if "." in k]  # network parameters, BN statistics and moments.*
        assert any(k.startswith("moments.") for k in weights) and any(k.endswith("moving_mean") for k in weights)
        wrong = {k: str(arrays[k].dtype) for k in weights if arrays[k].dtype != np.float32}
        assert not wrong, f"{name}: not float32: {wrong}"
        os.link(ckpt, folder / f"{name}.ckpt")
    scores = _eval(run_script, tmp_path, data, folder)
    assert sorted(scores) == sorted(f"{n}.ckpt" for n in AMP_RUNS)
    for name, rec in scores.items():
        assert rec["images"] == 24 and rec["precision"] == "float32" and 0 <= rec["top1"] <= 1, (name, rec)


def test_dynamic_loss_scale_overflow_is_logged_skipped_and_the_run_finishes(amp_runs):
    run, ckpt = amp_runs["O3_dynamic_overflow"]
    log = _log(run)
    events = [(int(m.group(2)), m.group(3)) for m in OVERFLOW.finditer(log)]  # (step, scale as logged, %g)
    assert events and events[0] == (1, f"{2.0 ** 20:g}"), events  # the first step overflows for sure
    # halved on each overflow (and only then: no growth within scale_window=2000 good steps)
    assert [scale for _, scale in events] == [f"{2.0 ** (20 - i):g}" for i in range(len(events))], events
    good = STEPS - len(events)
    assert good >= 1, f"every step overflowed: {events}"
    arrays, _ = read_state_dict(ckpt)
    # skipped steps do not advance the optimizer (as the zoo's TrainOneStepWithLossScaleCell), good ones do
    assert int(arrays["global_step"].reshape(-1)[0]) == good
    assert float(arrays["scale_sense"].reshape(-1)[0]) == 2.0 ** (21 - len(events))
    assert int(arrays["loss_scale_good_steps"].reshape(-1)[0]) == STEPS - events[-1][0]  # good steps since then


def _step_losses(run):
    return [float(m.group(4)) for m in STEP_LOSS.finditer(_log(run))]


def test_label_smooth_style_reaches_the_training_loss(tmp_path, data, run_script):
    """label_smooth_style=zoo with eps is PyTorch's convention with eps*K/(K-1) (K=3: both give the true class
    0.9 and the others 0.05): the two runs log the same step losses; the default (pytorch, eps 0.1: 0.933 and
    0.033) logs other ones. A trainer that dropped the key would give zoo == default instead."""
    runs = {}
    for name, over in {"zoo": dict(label_smooth_style="zoo", label_smooth_factor=0.1),
                       "pytorch_same_targets": dict(label_smooth_style="pytorch", label_smooth_factor=0.15),
                       "default": dict(label_smooth_factor=0.1)}.items():
        (tmp_path / name).mkdir()
        _, run = _train(run_script, tmp_path / name, data, tmp_path / name / "out", **over)  # one epoch
        runs[name] = _step_losses(run)
    assert len(runs["zoo"]) == 36 // 8, runs  # 36 images, batch 8, the partial batch dropped
    np.testing.assert_allclose(runs["zoo"], runs["pytorch_same_targets"], rtol=1e-4)
    assert np.abs(np.asarray(runs["zoo"]) - np.asarray(runs["default"])).max() > 1e-3, runs
