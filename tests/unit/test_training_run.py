"""The training run's bookkeeping, in process: the step book (loop and sink share it), checkpoint retention
(newest full, older weights-only, a mid-epoch save removed once superseded), file modes under the user's umask,
curves.png without matplotlib, the LR array's bounds, an epoch whose data delivers no batch."""
import logging
import math
import os
import sys

import mindspore as ms
import numpy as np
import pytest

from src.errors import ConfigError, DatasetError, NonFiniteLoss
from src.reporting import MetricsWriter, ProgressLogger, StepBook, plot_curves

LOG = logging.getLogger("training_run_test")  # outside src.*: RunLog may stop src.* from propagating


def _book(steps=4, last_saved=None):
    lr = np.linspace(0.1, 0.0, 3 * steps, dtype=np.float32)
    progress = ProgressLogger(LOG, steps, 3, 8, log_interval=100, stream=open(os.devnull, "w"))
    return StepBook(lr, steps, progress, LOG, last_saved=last_saved)


def test_step_book_keeps_the_position_and_the_mean_over_updating_steps(caplog):
    book = _book()
    book.begin_epoch(1)
    with caplog.at_level(logging.WARNING, logger="training_run_test"):
        book.record(1.0, False, 1024.0)
        book.record(float("inf"), True, 512.0)  # overflow: skipped update, warned, not in the mean
        book.record(3.0, False, 512.0)
    assert (book.epoch, book.step, book.global_step) == (1, 3, 7)
    assert book.mean_loss() == 2.0
    assert math.isnan(book.step_losses[1]) and book.step_losses[::2] == [1.0, 3.0]
    assert "epoch 2 step 2: gradient overflow, update skipped; loss scale now 512" in caplog.text
    resumed = _book()  # a resumed epoch continues the position and the losses of the saved one
    resumed.begin_epoch(1, 3, book.step_losses)
    resumed.record(4.0, False, 1.0)
    book.record(4.0, False, 1.0)
    assert resumed.mean_loss() == book.mean_loss() and resumed.step == book.step == 4


def test_step_book_stops_on_a_non_finite_loss_naming_the_last_checkpoint():
    book = _book(last_saved="/run/ckpt_0/0-1_4.ckpt")
    book.begin_epoch(0)
    with pytest.raises(NonFiniteLoss, match=r"loss became nan at epoch 1, step 1 .*0-1_4\.ckpt"):
        book.record(float("nan"), False, 1024.0)


# ------------------------------------------------------------------------------------------------ checkpoints
def _entries(value, step_in_epoch=0):
    """A training checkpoint's entries: network parameter ``w``, optimizer state, counters."""
    from src.checkpoint import training_state_entries

    class Step:
        @staticmethod
        def get_parameters():
            return [ms.Parameter(ms.Tensor(np.full((4, 4), value, np.float32)), name="w"),
                    ms.Parameter(ms.Tensor(np.full((4, 4), -value, np.float32)), name="moments.w"),
                    ms.Parameter(ms.Tensor(np.array([7], np.int32)), name="global_step")]

    return training_state_entries(Step, None, epoch=int(value), best_top1=1.0, step_in_epoch=step_in_epoch,
                                  step_losses=[0.5] * step_in_epoch)


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def test_retention_keeps_the_newest_full_and_older_ones_weights_only(tmp_path, umask_027):
    from src.checkpoint import CheckpointManager, read_state_dict, training_checkpoints

    folder = tmp_path / "ckpt_0"
    manager = CheckpointManager(str(folder), 0, keep_max=3, steps_per_epoch=4, optimizer_names=["moments.w", "global_step"])
    meta = {"arch": "toy", "num_classes": 3}  # an int is stored as a tensor: it must survive the slimming too
    for epoch in (1, 2):
        manager.save(_entries(epoch), epoch, 4, meta)
    manager.save(_entries(2, step_in_epoch=3), 3, 3, meta)  # a stop signal in epoch 3
    names = [os.path.basename(p) for _, _, p in training_checkpoints(str(folder))]
    assert names == ["0-1_4.ckpt", "0-2_4.ckpt", "0-3_3.ckpt"]
    mid, _ = read_state_dict(folder / "0-3_3.ckpt")
    assert int(mid["step_in_epoch"]) == 3 and mid["epoch_step_losses"].tolist() == [0.5] * 3
    manager.save(_entries(3), 3, 4, meta)
    manager.save(_entries(4), 4, 4, meta)
    names = [os.path.basename(p) for _, _, p in training_checkpoints(str(folder))]
    assert names == ["0-2_4.ckpt", "0-3_4.ckpt", "0-4_4.ckpt"]  # keep_max 3; the mid-epoch one is gone
    newest, _ = read_state_dict(folder / "0-4_4.ckpt")
    assert {"w", "moments.w", "global_step", "epoch"} <= set(newest)
    for name in ("0-2_4.ckpt", "0-3_4.ckpt"):
        older, meta = read_state_dict(folder / name)
        assert set(older) == {"w", "epoch", "best_top1", "num_classes"} and meta["arch"] == "toy"
    best = manager.save_best(_entries(4), {"arch": "toy", "num_classes": 3})
    assert set(read_state_dict(best)[0]) == {"w", "epoch", "best_top1", "num_classes"}
    modes = {name: os.stat(folder / name).st_mode & 0o777 for name in os.listdir(folder)}
    assert set(modes.values()) == {0o640}, modes  # the umask's, not MindSpore's read-only 0400


def test_a_weights_only_checkpoint_is_not_resumable(tmp_path):
    from src.checkpoint import CheckpointError, CheckpointManager, restore_training_state

    manager = CheckpointManager(str(tmp_path), 0, keep_max=1, steps_per_epoch=4, optimizer_names=["moments.w", "global_step"])
    best = manager.save_best(_entries(1), {})
    with pytest.raises(CheckpointError, match="holds weights only.*pretrained="):
        restore_training_state(best, None, None, "toy", LOG)


def test_keep_max_one_keeps_the_newest_alone_and_older_full_on_request(tmp_path):
    from src.checkpoint import CheckpointManager, read_state_dict, training_checkpoints

    alone = CheckpointManager(str(tmp_path / "a"), 0, keep_max=1, steps_per_epoch=4, optimizer_names=["moments.w", "global_step"])
    full = CheckpointManager(str(tmp_path / "b"), 0, keep_max=5, steps_per_epoch=4, optimizer_names=["moments.w", "global_step"],
                             older_weights_only=False)
    for epoch in (1, 2, 3):
        alone.save(_entries(epoch), epoch, 4, {})
        full.save(_entries(epoch), epoch, 4, {})
    assert [e for e, _, _ in training_checkpoints(str(tmp_path / "a"))] == [3]
    assert all("moments.w" in read_state_dict(p)[0] for _, _, p in training_checkpoints(str(tmp_path / "b")))


# ------------------------------------------------------------------------------------------------ curves
def _metrics(tmp_path):
    writer = MetricsWriter(str(tmp_path / "metrics.csv"))
    writer.write(epoch=1, train_loss="1.5", lr="0.1", val_top1="40.0", val_top5="90.0")
    writer.write(epoch=2, train_loss="1.0", lr="0.05", val_top1="60.0", val_top5="95.0")
    return writer.path


def test_curves_without_matplotlib_say_how_to_get_them(tmp_path, monkeypatch, caplog):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails as if it were not installed
    with caplog.at_level(logging.INFO, logger="training_run_test"):
        assert plot_curves(_metrics(tmp_path), str(tmp_path / "curves.png"), LOG) is None
    assert "curves.png is not drawn: matplotlib is not installed" in caplog.text and "pip install" in caplog.text
    assert not (tmp_path / "curves.png").exists()


def test_curves_follow_the_umask(tmp_path, umask_027):
    pytest.importorskip("matplotlib")
    png = plot_curves(_metrics(tmp_path), str(tmp_path / "curves.png"), LOG)
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.stat(png).st_mode & 0o777 == 0o640 and sorted(os.listdir(tmp_path)) == ["curves.png", "metrics.csv"]


# ------------------------------------------------------------------------------------------------ LR, empty epoch
def test_the_lr_array_is_bounded(monkeypatch):
    from src.lr_generator import get_lr_from_config
    from src.config import load_config
    from src.trainer import _lr_array

    optim = load_config(["--max_epoch=10000"]).optim  # the config's bound; the steps per epoch have none
    with pytest.raises(ConfigError, match=r"max_epoch=10000: 3000000000 steps .*int32"):
        _lr_array(optim, 300000, get_lr_from_config)

    def out_of_memory(optim, steps):
        raise MemoryError

    with pytest.raises(ConfigError, match=r"max_epoch=10000: the learning-rate array of 300000000 steps"):
        _lr_array(optim, 30000, out_of_memory)
    assert len(_lr_array(load_config(["--max_epoch=2"]).optim, 5, get_lr_from_config)) == 10


def test_an_epoch_whose_data_delivers_no_batch_is_an_error(tmp_path, make_tiny_data, graph_mode):
    from src.config import load_config
    from src.trainer import Run, Start, build_training
    from src.utils.runtime import RunContext

    data = make_tiny_data(3, 8, 40)
    cfg = load_config([f"--data_dir={data}", "--arch=cspdarknet_tiny", "--image_size=32,32", "--num_classes=3",
                       "--per_batch_size=4", "--num_parallel_workers=1", "--max_epoch=1"])
    ctx = RunContext(device_target="CPU")
    setup = build_training(cfg, ctx, LOG)
    setup.data.dataset = setup.data.dataset.skip(1000)  # a pipeline that drops every batch
    run = Run(cfg, ctx, setup, Start(), str(tmp_path), LOG)
    with pytest.raises(DatasetError, match="epoch 1: no sample of .* came out of the data pipeline"):
        run.train_epoch(0)
    assert not os.listdir(tmp_path / "ckpt_0")
