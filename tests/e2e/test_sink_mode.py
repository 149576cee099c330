"""Sink mode (dataset_sink_mode=1: many steps per host call, EMA inside the compiled step) against the
Python loop (dataset_sink_mode=0) on CPU: same seed -> the same per-epoch losses, weights, EMA weights and
validation; resume in sink mode continues exactly; progress lines come per sink."""
import csv
import glob
import os

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def sink_data(make_tiny_data):
    """Three classes told apart by brightness (12 train / 4 val images per class, 40 px JPEGs)."""
    return make_tiny_data(3, {"train": 12, "val": 4}, 40, ext="JPEG")


def _train(run_script, tmp_path, data, out, **over):
    args = dict(arch="cspdarknet_tiny", max_epoch=2, log_interval=1, data_dir=data / "train",
                val_data_dir=data / "val", num_classes=3, image_size="32,32", per_batch_size=4, warmup_epochs=0,
                lr=0.05, num_parallel_workers=1, ckpt_path=out, lr_scheduler="cosine_step", eta_min=0.0, ema=1,
                ema_decay=0.9)
    args.update(over)
    proc = run_script("train.py", cwd=tmp_path, timeout=600, **args)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = sorted(glob.glob(os.path.join(str(out), "*")))
    return runs[0] if len(runs) == 1 else runs


def _metrics(run):
    with open(os.path.join(run, "metrics.csv"), newline="") as f:
        return list(csv.DictReader(f))


def _last_state(run):
    from src.checkpoint import read_state_dict, training_checkpoints

    ckpts = training_checkpoints(os.path.join(run, "ckpt_0"))
    arrays, _ = read_state_dict(ckpts[-1][2])
    return arrays


def _compare_states(a, b, atol=0.0):
    keys = [k for k in a if not k.startswith("learning_rate")]
    assert set(keys) <= set(b)
    worst = max(float(np.max(np.abs(a[k].astype(np.float64) - b[k].astype(np.float64)))) for k in keys)
    assert worst <= atol, worst
    return worst


def test_sink_mode_matches_the_loop_and_resumes_exactly(tmp_path, sink_data, run_script):
    loop = _train(run_script, tmp_path, sink_data, tmp_path / "loop", dataset_sink_mode=0)
    sink = _train(run_script, tmp_path, sink_data, tmp_path / "sink", dataset_sink_mode=1, sink_size=4)  # -> 3 (divides 9)

    m_loop, m_sink = _metrics(loop), _metrics(sink)
    assert [r["epoch"] for r in m_sink] == ["1", "2"]
    for a, b in zip(m_loop, m_sink):
        assert float(a["train_loss"]) == pytest.approx(float(b["train_loss"]), rel=1e-6, abs=1e-7), (a, b)
        assert a["val_top1"] == b["val_top1"] and a["val_top5"] == b["val_top5"]
    # weights, optimizer moments, global step and the EMA (updated inside the sunk step) agree
    s_loop, s_sink = _last_state(loop), _last_state(sink)
    assert any(k.startswith("ema.") for k in s_sink)
    assert int(s_sink["global_step"].reshape(-1)[0]) == 18  # 36 images / 4 per step * 2 epochs
    _compare_states(s_loop, s_sink, atol=1e-6)

    log = open(os.path.join(sink, "log.txt")).read()
    assert "sink mode: 3 steps per sink (host feed)" in log
    assert "epoch[2], step[9/9], loss:" in log and "epoch[1], step[1/9], loss:" in log


def test_sink_resume_continues_exactly(tmp_path, sink_data, run_script):
    """Stopped after epoch 1 and resumed, a sink run ends in the very state of the uninterrupted sink run."""
    from src.checkpoint import read_state_dict

    full = _train(run_script, tmp_path, sink_data, tmp_path / "full", dataset_sink_mode=1, sink_size=3, ckpt_older_weights_only=0)
    resumed = tmp_path / "resumed"
    (resumed / "ckpt_0").mkdir(parents=True)
    os.link(os.path.join(full, "ckpt_0", "0-1_9.ckpt"), resumed / "ckpt_0" / "0-1_9.ckpt")
    _train(run_script, tmp_path, sink_data, tmp_path / "unused", dataset_sink_mode=1, sink_size=3, resume=resumed)
    a, _ = read_state_dict(os.path.join(full, "ckpt_0", "0-2_9.ckpt"))
    b, _ = read_state_dict(resumed / "ckpt_0" / "0-2_9.ckpt")
    assert set(a) == set(b) and any(k.startswith("ema.") for k in a)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_sink_chunk_size_and_mode():
    from src.sink import resolve_sink_mode, sink_chunk_size

    assert sink_chunk_size(9, 0) == 9 and sink_chunk_size(9, 2) == 1 and sink_chunk_size(9, 3) == 3
    assert sink_chunk_size(1251, 500) == 417 and sink_chunk_size(8, 100) == 8
    assert resolve_sink_mode("auto", "Ascend") and resolve_sink_mode("auto", "GPU")
    assert not resolve_sink_mode("auto", "CPU") and resolve_sink_mode("1", "CPU") and not resolve_sink_mode("0", "GPU")
    with pytest.raises(ValueError):
        resolve_sink_mode("sometimes", "CPU")
