"""src.utils.tensorboard: the event files hold exactly the values of metrics.csv and the step scalars, read
back with the module's own reader and with TensorBoard's EventAccumulator; resume purging; rank/empty-dir
switches; a clear error without tensorboardX; PyTorch is not dragged in."""
import os
import sys

import pytest

pytest.importorskip("tensorboardX")

from src.reporting import MetricsWriter  # noqa: E402
from src.utils.tensorboard import (EPOCH_TAGS, STEP_TAGS, TensorBoardLogger, TensorBoardUnavailable,  # noqa: E402
                                   create_tensorboard_logger, epoch_scalars, event_files, read_scalars,
                                   step_scalars)

STEPS_PER_EPOCH = 4


def _fake_run(tmp_path, epochs=3):
    """What the trainer will do: step scalars every step, an epoch row to metrics.csv and to TensorBoard."""
    run_dir = tmp_path / "outputs" / "2026-11-26_time_10_00_00"
    run_dir.mkdir(parents=True)
    metrics = MetricsWriter(str(run_dir / "metrics.csv"))
    tb = create_tensorboard_logger(str(tmp_path / "tb"), run_dir=str(run_dir), rank=0, flush_secs=1)
    logged_steps = []
    for epoch in range(1, epochs + 1):
        for s in range(STEPS_PER_EPOCH):
            step = (epoch - 1) * STEPS_PER_EPOCH + s + 1
            values = dict(loss=2.0 / step + 0.123456789, lr=0.1 * (1 - step / 20), images_per_sec=300.0 + step,
                          loss_scale=1024.0)
            tb.add_scalars(step, step_scalars(**values))
            logged_steps.append((step, values))
        val = {} if epoch == 2 else dict(val_top1=50.0 + epoch + 1 / 3, val_top5=90.0 + epoch / 7)
        row = dict(epoch=epoch, train_loss=1.0 / epoch + 1e-7, lr=0.1 / epoch, epoch_time_s=12.5 * epoch,
                   images_per_sec=321.987654, **val)
        metrics.write(**row)
        tb.add_scalars(epoch * STEPS_PER_EPOCH, epoch_scalars(row))
    tb.close()
    return run_dir, metrics, logged_steps, tb


def _check_against_csv(scalars, metrics):
    rows = metrics.read()
    assert len(rows) == 3
    for row in rows:
        epoch = int(row["epoch"])
        step = epoch * STEPS_PER_EPOCH
        for key, tag in EPOCH_TAGS.items():
            points = dict(scalars.get(tag, []))
            if row[key] == "":
                assert step not in points, (tag, step)  # no validation that epoch: nothing logged
            else:
                assert points[step] == pytest.approx(float(row[key]), rel=1e-6), (tag, step)


def test_event_file_holds_metrics_csv_values(tmp_path):
    run_dir, metrics, logged_steps, tb = _fake_run(tmp_path)
    assert tb.log_dir == str(tmp_path / "tb" / run_dir.name)  # one folder per run, named after the run
    files = event_files(tmp_path / "tb")
    assert len(files) == 1 and os.path.dirname(files[0]) == tb.log_dir
    scalars = read_scalars(tb.log_dir)
    _check_against_csv(scalars, metrics)
    for step, values in logged_steps:
        for key, tag in STEP_TAGS.items():
            assert dict(scalars[tag])[step] == pytest.approx(values[key], rel=1e-6)
    assert set(scalars) == set(STEP_TAGS.values()) | set(EPOCH_TAGS.values())


def test_tensorboard_reads_the_event_file(tmp_path):
    """TensorBoard's own reader, where tensorboard is installed."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir, metrics, logged_steps, tb = _fake_run(tmp_path)
    acc = EventAccumulator(tb.log_dir, size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert tags == set(STEP_TAGS.values()) | set(EPOCH_TAGS.values())
    scalars = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in tags}
    _check_against_csv(scalars, metrics)
    assert [s for s, _ in scalars["train/loss"]] == [s for s, _ in logged_steps]
    assert scalars == read_scalars(tb.log_dir)  # the module's reader agrees with TensorBoard's


def test_resume_purges_the_interrupted_steps(tmp_path):
    with TensorBoardLogger(tmp_path, "run", flush_secs=1) as tb:
        for step in range(1, 11):
            tb.add_scalars(step, {"train/loss": float(step)})
    with TensorBoardLogger(tmp_path, "run", purge_step=6, flush_secs=1) as tb:  # resumed from step 6
        for step in range(6, 9):
            tb.add_scalars(step, {"train/loss": 100.0 + step})
    assert len(event_files(tmp_path / "run")) == 2
    expect = [(s, float(s)) for s in range(1, 6)] + [(s, 100.0 + s) for s in range(6, 9)]
    assert read_scalars(tmp_path / "run")["train/loss"] == expect
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        return
    acc = EventAccumulator(str(tmp_path / "run"), size_guidance={"scalars": 0})
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("train/loss")] == expect


def test_switches_and_values(tmp_path):
    assert create_tensorboard_logger("", run_dir=str(tmp_path)) is None
    assert create_tensorboard_logger(str(tmp_path / "tb"), run_dir=str(tmp_path), rank=1) is None
    assert not (tmp_path / "tb").exists()  # nothing created off rank 0
    assert step_scalars(loss=1.5, lr=None) == {"train/loss": 1.5}
    assert epoch_scalars({"epoch": 3, "val_top1": "", "other": 1}) == {"epoch/epoch": 3}
    with TensorBoardLogger(tmp_path, "r") as tb:
        import numpy as np
        assert tb.add_scalars(1, {"a": np.float32(0.5), "b": None, "c": "", "d": np.array(2.0)}) == 2
        with pytest.raises(TypeError, match="not a number"):
            tb.add_scalars(2, {"x": "abc"})
    with pytest.raises(RuntimeError, match="closed"):
        tb.add_scalars(3, {"a": 1.0})
    assert dict(read_scalars(tmp_path / "r")) == {"a": [(1, 0.5)], "d": [(1, 2.0)]}


def test_corrupt_event_file_is_reported(tmp_path):
    with TensorBoardLogger(tmp_path, "r") as tb:
        tb.add_scalars(1, {"a": 1.0})
    path = event_files(tmp_path)[0]
    data = bytearray(open(path, "rb").read())
    data[-6] ^= 0xFF
    open(path, "wb").write(bytes(data))
    with pytest.raises(ValueError, match="CRC"):
        read_scalars(path)


def test_missing_tensorboardx_names_the_package(tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "tensorboardX" or m.startswith("tensorboardX.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    with pytest.raises(TensorBoardUnavailable, match=r"tensorboardX==2\.6\.5"):
        create_tensorboard_logger(str(tmp_path / "tb"), run_dir=str(tmp_path))
    assert create_tensorboard_logger("", run_dir=str(tmp_path)) is None  # off: nothing imported, no error


