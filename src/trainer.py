"""The training loop: ``fit`` = ``build_training`` -> ``restore`` (refuses a checkpoint that does not fit, before
anything is written) -> ``open_run`` (claims or locks the run folder, writes its files) -> ``Run`` epochs (the
Python loop or ``src.sink``; each epoch's order and augmentation seed derive from the epoch, so a resume is bit-exact)
-> ``Run.finish``. Stop signals are deferred from ``open_run`` on: the step in progress ends, the position is saved
and ``Stopped`` raised; a resumed epoch replays its iterator through the steps already done without training them.

Deviation from the zoo's ``train.py`` (``Model.train`` with sink mode and callbacks): a Python loop over a compiled
train step, so that validation, EMA, exact resume and per-step progress work the same on every device.
"""
import atexit
import math
import os
import signal
import sys
from dataclasses import dataclass, field
from typing import Any, List, Optional

import numpy as np

from src.archs import resolve_preprocess
from src.checkpoint import (CheckpointError, CheckpointManager, checkpoint_metadata, find_resume_checkpoint,
                            load_weights, restore_training_state, run_folder_of, training_state_entries)
from src.config import resolve_amp_level, resolve_is_distributed, resolve_sink_mode, save_config
from src.data import save_class_index
from src.data.balance import class_weights_from_counts, describe_counts
from src.data.pipeline import create_dataset_from_config
from src.errors import ConfigError, DatasetError, Stopped
from src.lr_generator import get_lr_from_config
from src.reporting import MetricsWriter, ProgressLogger, StepBook, plot_curves
from src.resume import check_group_size, check_same_classes, trained_class_names
from src.sink import build_sink, train_one_epoch_sink
from src.utils import signals
from src.utils.fileio import check_output_dir, check_output_file
from src.utils.run_folder import RunLock, check_not_locked, check_run_name, new_run_dir
from src.utils.runtime import important_info
from src.utils.seeding import seed_everything, set_augmentation_seed
from src.utils.tensorboard import TensorBoardUnavailable, _tensorboardx, create_tensorboard_logger, epoch_scalars


#: the files a run folder holds besides ckpt_<rank>/ (the output guard checks each before the run writes)
RUN_FILES = ("config.yaml", "run.json", "class_index.json", "metrics.csv", "log.txt", "curves.png")


@dataclass
class TrainingSetup:
    """Everything a run trains with."""
    data: Any                  # train DatasetBundle
    val_data: Optional[Any]    # validation DatasetBundle or None
    net: Any                   # the classifier (float32 master weights)
    train_net: Any             # the network as trained (cast for AMP)
    step: Any                  # src.train_step.TrainStep
    optimizer: Any             # its nn.Momentum (global step, LR array)
    ema: Optional[Any]         # src.train_step.WeightEMA or None
    lr: np.ndarray             # per-step learning rates
    amp_level: str
    preprocess: dict           # image_size, eval_resize, crop_pct used
    sink: Optional[Any] = None  # a src.sink feeder in sink mode (dataset_sink_mode), else None

    @property
    def steps_per_epoch(self):
        return self.data.steps_per_epoch


def build_training(cfg, ctx, log, network_rewrites=None):
    """Data, network, optimizer, loss, train step and EMA for ``cfg`` on ``ctx``'s device and rank."""
    import mindspore as ms

    from src.image_classification import create_model
    from src.loss import create_loss
    from src.train_step import TrainStep, WeightEMA, apply_amp
    from src.utils.optimizers_init import create_optimizer

    seed_everything(cfg.device.seed)
    preprocess = resolve_preprocess(cfg.model.arch, cfg.data.image_size, cfg.data.eval_resize, cfg.data.crop_pct)
    common = dict(seed=cfg.device.seed, num_classes=cfg.model.num_classes, rank=ctx.rank, group_size=ctx.group_size,
                  **preprocess)
    data = create_dataset_from_config(cfg.data, "train", **common)
    if len(data.class_to_idx) < cfg.model.num_classes:  # more classes than outputs is a DatasetError already
        log.warning("data has %d classes, the head has num_classes=%d outputs", len(data.class_to_idx),
                    cfg.model.num_classes)
    val_data = None
    if cfg.data.val_data_dir:
        val_data = create_dataset_from_config(cfg.data, "eval", data_dir=cfg.data.val_data_dir,
                                              class_to_idx=data.class_to_idx, **common)

    net = create_model(cfg.model.arch, num_classes=cfg.model.num_classes, seed=cfg.device.seed, init=cfg.model.init)
    if network_rewrites:
        from src.utils.perf import prepare_network
        prepare_network(net, train=True, **network_rewrites)
    if cfg.weights.pretrained:
        report = load_weights(net, cfg.weights.pretrained, fine_tune=True)
        log.info("loaded pretrained %s (%s layout)%s", cfg.weights.pretrained, report.layout,
                 "; its classifier head had another number of classes and was re-initialised for "
                 f"{cfg.model.num_classes} classes" if report.head_reinitialized else "")
    amp_level = resolve_amp_level(cfg.device.amp_level, ctx.device_target)
    optim = cfg.optim
    lr = _lr_array(optim, data.steps_per_epoch, get_lr_from_config)
    dynamic = optim.is_dynamic_loss_scale
    optimizer = create_optimizer(net, ms.Tensor(lr), momentum=optim.momentum, weight_decay=optim.weight_decay,
                                 loss_scale=1.0 if dynamic else optim.loss_scale)
    loss_fn = create_loss(optim.label_smooth, optim.label_smooth_factor, cfg.model.num_classes,
                          class_weights=_class_weights(optim.class_weights, data, cfg.model.num_classes, log),
                          label_smooth_style=optim.label_smooth_style)
    train_net = apply_amp(net, amp_level)
    step = TrainStep(train_net, loss_fn, optimizer, loss_scale=optim.loss_scale, dynamic=dynamic)
    ema = WeightEMA(net, optim.ema_decay) if optim.ema else None
    sink = build_sink(step, ema, data, ctx.device_target, cfg.train.sink_size) \
        if resolve_sink_mode(cfg.train.dataset_sink_mode, ctx.device_target) else None
    return TrainingSetup(data=data, val_data=val_data, net=net, train_net=train_net, step=step, optimizer=optimizer,
                         ema=ema, lr=lr, amp_level=amp_level, preprocess=preprocess, sink=sink)


def _lr_array(optim, steps_per_epoch, build):
    """The per-step LR array; ``ConfigError`` when it is past the int32 step counter or cannot be allocated."""
    total = int(optim.max_epoch) * int(steps_per_epoch)
    if total >= 2 ** 31:
        raise ConfigError(f"max_epoch={optim.max_epoch}: {total} steps ({steps_per_epoch} per epoch) exceed the "
                          "optimizer's step counter (int32: 2147483647 steps)")
    try:
        return build(optim, steps_per_epoch)
    except MemoryError:
        raise ConfigError(f"max_epoch={optim.max_epoch}: the learning-rate array of {total} steps "
                          f"({steps_per_epoch} per epoch, {total * 4 / 2 ** 30:.1f} GiB) cannot be allocated") from None


def _class_weights(mode, data, num_classes, log):
    """The loss's per-class weights (None for none), logged with the class balance."""
    names = {i: n for n, i in data.class_to_idx.items()}
    log.info("class balance of the training data: %s", describe_counts(data.class_counts[:num_classes], names))
    weights = class_weights_from_counts(data.class_counts, num_classes, mode, data.class_to_idx)
    if weights is not None:
        shown = ", ".join(f"{w:.3g}" for w in weights[:10]) + (", ..." if len(weights) > 10 else "")
        log.info("class_weights=%s: loss weights per class %s (min %.3g, max %.3g)", mode, shown,
                 float(weights.min()), float(weights.max()))
    return weights


@dataclass
class Start:
    """Where a run starts: ``epoch`` epochs and ``step`` steps of the next done, and what it resumes from."""
    epoch: int = 0
    step: int = 0
    step_losses: List[float] = field(default_factory=list)
    best_top1: float = -1.0
    checkpoint: Optional[str] = None
    run_dir: Optional[str] = None


def train_one_epoch(setup, book, seed, ctx):
    """The steps of epoch ``book.epoch`` after the ``book.step`` done, until its end or a stop signal. Steps done
    (a resumed epoch) are replayed, not trained, so later steps get the uninterrupted run's batches and draws."""
    set_augmentation_seed(seed, ctx.rank, book.epoch, ctx.group_size)
    setup.data.set_epoch(book.epoch)
    replay, samples = book.step, 0
    if replay >= setup.steps_per_epoch:
        return
    for images, labels in signals.guarded(setup.data.dataset.create_tuple_iterator(num_epochs=1)):
        samples += images.shape[0]
        if replay:
            replay -= 1
        else:
            loss, overflow, scale = setup.step(images, labels)
            if setup.ema is not None:
                setup.ema()
            book.record(float(loss.asnumpy()), bool(overflow.asnumpy()), scale)
        if signals.requested():
            return
    setup.data.account(samples, f"epoch {book.epoch + 1}")


def restore(cfg, ctx, setup, log):
    """The ``Start`` of the run, restoring ``cfg.train.resume`` into ``setup``; ``CheckpointError`` /
    ``ClassIndexError`` when it does not fit the config, the device count or the data's classes."""
    if not cfg.train.resume:
        return Start()
    path = find_resume_checkpoint(cfg.train.resume)
    meta = restore_training_state(path, setup.step, setup.ema, cfg.model.arch, log)
    recorded = meta.get("num_classes")
    if recorded is not None and int(recorded) != cfg.model.num_classes:
        raise CheckpointError(f"{path}: was trained with num_classes={int(recorded)}, the config says "
                              f"{cfg.model.num_classes}")
    run_dir = run_folder_of(path)
    check_same_classes(trained_class_names(meta, run_dir), setup.data.class_to_idx, path)
    check_group_size(run_dir, ctx.group_size, path)
    step = meta["step_in_epoch"]
    if step > setup.steps_per_epoch:
        raise CheckpointError(f"{path}: stopped after step {step} of epoch {meta['epoch'] + 1}, but an epoch has "
                              f"{setup.steps_per_epoch} steps with this data; resume on the run's data")
    if step and setup.sink is not None:
        setup.sink.check_resume_step(step)
    return Start(meta["epoch"], step, meta["step_losses"], meta["best_top1"], path, run_dir)


def run_inputs(cfg, checkpoint=None, run_dir=None):
    """What a run reads (no output may be or lie in one); not the resumed run's own config.yaml (rewritten)."""
    own = os.path.join(run_dir, "config.yaml") if run_dir else None
    config = cfg.config_path if not (own and cfg.config_path and os.path.exists(own)
                                     and os.path.exists(cfg.config_path)
                                     and os.path.samefile(own, cfg.config_path)) else ""
    weights = cfg.optim.class_weights if os.path.isfile(str(cfg.optim.class_weights)) else ""
    return tuple(p for p in (cfg.data.data_dir, cfg.data.val_data_dir, cfg.data.data_list, cfg.weights.pretrained,
                             checkpoint, weights, config) if p)


def check_outputs(cfg):
    """Fails before any device work when an output cannot be written or is an input, the resumed run is in use,
    ``$CSPDARKNET53_RUN_NAME`` is bad (``src.utils.run_folder``) or ``pretrained`` does not exist."""
    if cfg.weights.pretrained and not os.path.exists(cfg.weights.pretrained):
        raise CheckpointError(f"pretrained={cfg.weights.pretrained!r}: no such checkpoint file")
    checkpoint = find_resume_checkpoint(cfg.train.resume) if cfg.train.resume else None
    run_dir = run_folder_of(checkpoint) if checkpoint else None
    single = not resolve_is_distributed(cfg.device.is_distributed)
    inputs = run_inputs(cfg, checkpoint, run_dir)
    if run_dir:
        check_output_dir(run_dir, "resume", inputs=inputs)
        if single:
            check_not_locked(run_dir, 0, "resume", cfg.train.resume)
    else:
        check_output_dir(cfg.train.ckpt_path, "ckpt_path", inputs=inputs)
        check_run_name(cfg.train.ckpt_path, single)
    if cfg.train.tensorboard_dir:
        check_output_dir(cfg.train.tensorboard_dir, "tensorboard_dir", inputs=inputs)


def open_run(cfg, ctx, run_log, setup, start):
    """Claims (new) or locks (resumed) the run folder, attaches its log, writes its files; ``(run_dir, lock)``."""
    key = "resume" if start.run_dir else "ckpt_path"
    run_dir = start.run_dir or new_run_dir(cfg.train.ckpt_path)
    inputs = run_inputs(cfg, start.checkpoint, start.run_dir)
    check_output_dir(run_dir, key, inputs=inputs)
    for name in RUN_FILES:
        check_output_file(os.path.join(run_dir, name), key, inputs=inputs)
    lock = RunLock(run_dir, ctx.rank, key, cfg.train.resume or cfg.train.ckpt_path).acquire()
    if start.checkpoint and os.path.isdir(cfg.train.resume) and \
            os.path.abspath(find_resume_checkpoint(cfg.train.resume)) != os.path.abspath(start.checkpoint):
        lock.release()
        raise ConfigError(f"resume={cfg.train.resume}: the run moved on while this process started (its newest "
                          f"checkpoint is now {find_resume_checkpoint(cfg.train.resume)}); run the command again")
    ctx.run_dir = run_dir
    run_log.attach_file(os.path.join(run_dir, "log.txt" if ctx.is_main else f"log_rank{ctx.rank}.txt"))
    if ctx.is_main:
        if not (start.run_dir and cfg.resumed_from) or set(cfg.changed_on_resume) - {"ckpt_path"}:
            save_config(cfg, os.path.join(run_dir, "config.yaml"))  # a resume rewrites it only when it changed a key
        ctx.save(os.path.join(run_dir, "run.json"), cfg, resumed_from=start.checkpoint)
        index_path = os.path.join(run_dir, "class_index.json")
        if not os.path.isfile(index_path):
            save_class_index(setup.data.class_to_idx, index_path)
    return run_dir, lock


class Run:
    """One run in its folder: its epochs, each epoch's end, a stop signal, the finish."""

    def __init__(self, cfg, ctx, setup, start, run_dir, log):
        self.cfg, self.ctx, self.setup, self.start, self.run_dir, self.log = cfg, ctx, setup, start, run_dir, log
        self.best_top1 = start.best_top1
        steps = setup.steps_per_epoch
        self.saved_at = (start.epoch, start.step) if start.checkpoint else (0, 0)  # position of the newest save
        self.metrics = MetricsWriter(os.path.join(run_dir, "metrics.csv"), keep_epochs_before=start.epoch + 1) \
            if ctx.is_main else None
        self.ckpts = None
        if ctx.is_main or not cfg.train.is_save_on_master:
            weights = {p.name for p in setup.net.get_parameters()}
            optimizer = [p.name for p in setup.step.get_parameters() if p.name not in weights]
            self.ckpts = CheckpointManager(os.path.join(run_dir, f"ckpt_{ctx.rank}"), ctx.rank, cfg.train.ckpt_save_max,
                                           steps, optimizer, newest=start.checkpoint,
                                           older_weights_only=cfg.train.ckpt_older_weights_only)
            if self.ckpts.removed_partials:
                log.info("removed %d temporary file(s) of unfinished checkpoint saves: %s",
                         len(self.ckpts.removed_partials),
                         ", ".join(os.path.basename(p) for p in self.ckpts.removed_partials))
        self.metadata = checkpoint_metadata(setup.net, setup.preprocess, setup.data.class_to_idx)
        self.shard_file = os.path.join(run_dir, f"shard_rank{ctx.rank}.txt") if cfg.train.dump_shard_files else None
        if self.shard_file and setup.data.source is None:
            log.warning("dump_shard_files is ignored: a %s dataset has no file source to record", setup.data.format)
            self.shard_file = None
        if self.shard_file:
            setup.data.record_reads()
        purge = start.epoch * steps + start.step + 1 if start.checkpoint else None  # TensorBoard drops later steps
        self.tb = create_tensorboard_logger(cfg.train.tensorboard_dir, run_dir, ctx.rank, purge_step=purge)
        if self.tb is not None:
            atexit.register(self.tb.close)  # flushed even when the run stops with an error
            log.info("TensorBoard scalars: %s (tensorboard --logdir %s)", self.tb.log_dir, cfg.train.tensorboard_dir)
        progress = ProgressLogger(log, steps, cfg.optim.max_epoch, cfg.data.per_batch_size * ctx.group_size,
                                  cfg.train.log_interval, start.epoch, start_step=start.step)
        self.book = StepBook(setup.lr, steps, progress, log, self.tb, last_saved=start.checkpoint)
        self.run_epoch = train_one_epoch if setup.sink is None else train_one_epoch_sink

    def train_epoch(self, epoch):
        """The steps of ``epoch``; on a stop signal, saves the position and raises ``Stopped``."""
        start, book = self.start, self.book
        first, losses = (start.step, start.step_losses) if epoch == start.epoch else (0, ())
        if signals.requested():  # arrived during the start-up or the last epoch's end
            self.stop(signals.requested(), epoch, first, losses)
        book.begin_epoch(epoch, first, losses)
        self.run_epoch(self.setup, book, self.cfg.device.seed, self.ctx)
        if signals.requested():
            self.stop(signals.requested(), epoch, book.step, book.step_losses)

    def end_epoch(self, epoch):
        """Epoch ``epoch``'s end: its line, validation, metrics.csv, TensorBoard, checkpoints."""
        cfg, setup, log, steps = self.cfg, self.setup, self.log, self.setup.steps_per_epoch
        if self.shard_file:
            with open(self.shard_file, "a", encoding="utf-8", errors="surrogateescape") as f:
                f.writelines(f"{epoch + 1}\t{path}\n" for path in setup.data.pop_reads())
        mean_loss = self.book.mean_loss()
        epoch_time, fps = self.book.progress.epoch_end(epoch + 1, mean_loss)
        warn_if_not_learning(log, epoch, mean_loss, cfg.model.num_classes, cfg.optim.warmup_epochs)
        top1 = top5 = None
        last = epoch + 1 == cfg.optim.max_epoch
        if setup.val_data is not None and ((epoch + 1) % cfg.train.val_interval == 0 or last):
            result = validate(setup, self.ctx)
            top1, top5 = 100.0 * result.top1, 100.0 * result.top5
            log.info("epoch[%d] validation%s: top1 %.2f%%, top5 %.2f%% (%d images)", epoch + 1,
                     " (EMA weights)" if setup.ema is not None else "", top1, top5, result.total)
        is_best = top1 is not None and top1 > self.best_top1
        if is_best:
            self.best_top1 = top1
        row = dict(epoch=epoch + 1, train_loss=f"{mean_loss:.6f}", lr=f"{setup.lr[(epoch + 1) * steps - 1]:.6g}",
                   val_top1=None if top1 is None else f"{top1:.4f}", val_top5=None if top5 is None else f"{top5:.4f}",
                   epoch_time_s=f"{epoch_time:.3f}", images_per_sec=f"{fps:.3f}")
        if self.metrics is not None:
            self.metrics.write(**row)
        if self.tb is not None:
            self.tb.add_scalars((epoch + 1) * steps, epoch_scalars(row))
            self.tb.flush()
        if (epoch + 1) % cfg.train.ckpt_interval == 0 or last:
            self.save(epoch + 1, 0)
        if is_best and self.ckpts is not None:
            entries = training_state_entries(setup.step, setup.ema, epoch + 1, self.best_top1)
            log.info("new best top1 %.2f%%: saved %s", top1, self.ckpts.save_best(entries, self.metadata))

    def save(self, epoch, step, step_losses=()):
        """Saves the training state at ``epoch`` epochs + ``step`` steps; the path (None on a rank that saves none)."""
        if self.ckpts is None:
            return None
        entries = training_state_entries(self.setup.step, self.setup.ema, epoch, self.best_top1, step, step_losses)
        path = self.ckpts.save(entries, epoch + 1 if step else epoch, step or self.setup.steps_per_epoch,
                               self.metadata)
        self.book.last_saved, self.saved_at = path, (epoch, step)
        self.log.info("saved %s", path)
        return path

    def stop(self, signum, epoch, step, step_losses):
        """Saves the position (unless saved already or nothing trained); raises ``Stopped`` saying how to resume."""
        name = signal.Signals(signum).name
        if (epoch, step) == (0, 0):
            raise Stopped(signum, f"stopped by {name} before the first step: nothing was trained, no checkpoint "
                                  f"saved (the run folder {self.run_dir} holds its config and log)")
        if (epoch, step) == self.saved_at:
            kept = f"its newest checkpoint {self.book.last_saved} holds that position"
        else:
            path = self.save(epoch, step, step_losses)
            kept = f"saved {path}" if path else "rank 0 saves the checkpoint"
        at = f"epoch {epoch + 1}, step {step} of {self.setup.steps_per_epoch}" if step else f"the end of epoch {epoch}"
        raise Stopped(signum, f"stopped by {name} at {at}: {kept}; continue with: python "
                              f"{os.path.basename(sys.argv[0]) or 'train.py'} --resume={self.run_dir}")

    def finish(self):
        """``curves.png`` and the closing line."""
        if self.tb is not None:
            self.tb.close()
        if self.metrics is not None:
            png = plot_curves(self.metrics.path, os.path.join(self.run_dir, "curves.png"), self.log)
            if png:
                self.log.info("curves: %s", png)
        self.log.info("training finished: %d epochs%s; outputs in %s", self.cfg.optim.max_epoch,
                      f", best val top1 {self.best_top1:.2f}%" if self.best_top1 >= 0 else "", self.run_dir)


def fit(cfg, ctx, run_log, network_rewrites=None):
    """Trains ``cfg`` on ``ctx`` (see the module docstring); returns the exit status (0)."""
    log = run_log.log
    important_info(log, "start create network")
    setup = build_training(cfg, ctx, log, network_rewrites)
    start = restore(cfg, ctx, setup, log)
    with signals.deferred():
        run_dir, lock = open_run(cfg, ctx, run_log, setup, start)
        try:
            log_setup(cfg, ctx, setup, start, run_dir, log)
            run = Run(cfg, ctx, setup, start, run_dir, log)
            important_info(log, "start training")
            for epoch in range(start.epoch, cfg.optim.max_epoch):
                run.train_epoch(epoch)
                run.end_epoch(epoch)
            run.finish()
        finally:
            lock.release()
    return 0


def log_setup(cfg, ctx, setup, start, run_dir, log):
    """The run's opening lines."""
    for line in ctx.notes:
        log.info(line)
    for line in cfg.warnings:
        log.warning(line)
    log.info("run folder: %s (rank %d of %d, device %s)", run_dir, ctx.rank, ctx.group_size, ctx.device_target)
    if ctx.settings:
        log.info("CPU settings: %s", ", ".join(f"{k}={v}" for k, v in ctx.settings.items()))
    data, val_data, optim, steps = setup.data, setup.val_data, cfg.optim, setup.steps_per_epoch
    log.info("train: %d images, %d classes, %d steps/epoch of %d per device, %s px%s",
             data.total_images, len(data.class_to_idx), steps, cfg.data.per_batch_size,
             setup.preprocess["image_size"],
             f"; validation: {val_data.total_images} images" if val_data else "")
    log.info("arch %s, init %s, amp_level %s, %s loss scale %g, lr schedule %s (peak %g), EMA %s", cfg.model.arch,
             cfg.model.init, setup.amp_level, "dynamic" if optim.is_dynamic_loss_scale else "fixed", optim.loss_scale,
             optim.lr_scheduler, optim.lr, f"on (decay {optim.ema_decay})" if setup.ema is not None else "off")
    lr, n = setup.lr, len(setup.lr)
    log.info("lr schedule: %s", ", ".join(f"step {i} (epoch {i // steps + 1}): {lr[i]:.6g}"
                                          for i in sorted({0, n // 2, n - 1})))
    if setup.sink is not None:
        log.info("sink mode: %d steps per sink (%s feed), one host synchronisation per sink", setup.sink.sink_size,
                 setup.sink.kind)
    if start.checkpoint:
        position = start.epoch * steps + start.step
        global_step = int(setup.optimizer.global_step.asnumpy().reshape(-1)[0])
        log.info("resumed from %s: %d epochs done%s, global step %d, next lr %.6g", start.checkpoint, start.epoch,
                 f" and {start.step} steps of epoch {start.epoch + 1} (replayed without training to restore the "
                 "data position)" if start.step else "", global_step, setup.lr[min(position, len(setup.lr) - 1)])


def validate(setup, ctx):
    """Top-1 / top-5 (fractions) of the network on the validation data, with the EMA weights when EMA is on."""
    from src.evaluation import evaluate

    if setup.ema is not None:
        setup.ema.swap()
    setup.train_net.set_train(False)
    try:
        return evaluate(setup.train_net, setup.val_data, rank=ctx.rank, group_size=ctx.group_size)
    finally:
        setup.train_net.set_train(True)
        if setup.ema is not None:
            setup.ema.swap()


def warn_if_not_learning(log, epoch, mean_loss, num_classes, warmup_epochs):
    """Warns (returns True) when an epoch after the warmup ends with a mean loss at or above chance, ln(K) (the
    cross entropy of a uniform prediction, with or without label smoothing)."""
    chance = math.log(num_classes)
    if num_classes < 2 or epoch + 1 <= max(1, math.ceil(warmup_epochs)) or not mean_loss >= chance:
        return False
    log.warning("epoch %d: mean train loss %.4f is not below chance level ln(%d) = %.4f after the warmup: the "
                "network is not learning (check lr, the data and its labels, or init)", epoch + 1, mean_loss,
                num_classes, chance)
    return True


def check_data_paths(cfg):
    """Fails before any device work on a missing data path, or a ``tensorboard_dir`` without tensorboardX."""
    for k in ("data_dir", "val_data_dir", "data_list"):
        path = getattr(cfg.data, k)
        if k != "data_list" and path and cfg.data.dataset_format == "mindrecord":
            from src.data.mindrecord import read_meta
            read_meta(path)  # a DatasetError naming what is missing (the shards of PREFIX are PREFIX0, ...)
        elif path and not os.path.exists(path):
            raise DatasetError(f"{k}: {path} does not exist")
    if cfg.train.tensorboard_dir:
        try:
            _tensorboardx()
        except TensorBoardUnavailable as err:
            raise ConfigError(str(err)) from None
