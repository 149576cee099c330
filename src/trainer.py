"""The training loop: building the training state, ``train_one_epoch``, ``validate``, checkpoints, ``fit``.

``fit(cfg, ctx, run_log)`` is what ``train.py`` runs. In order:

1. ``build_training``: data (train and validation), network, AMP, optimizer with its per-step LR array,
   loss, train step (fixed or dynamic loss scale), EMA -- everything a run needs, nothing written yet;
2. a resumed run restores its training state (``src.checkpoint.restore_training_state``): a checkpoint
   that does not fit the config is refused here, before anything of the run is written;
3. the run folder is created (a new run) or reused (a resumed one), and its ``config.yaml``,
   ``run.json``, ``class_index.json`` and ``log.txt`` are written;
4. epochs: ``train_one_epoch`` (each epoch's data order and augmentation seed derive from the epoch, so a
   resumed run reproduces an uninterrupted one), ``validate`` every ``val_interval`` epochs (with the EMA
   weights when EMA is on), ``metrics.csv``, checkpoints every ``ckpt_interval`` epochs and ``best.ckpt``;
   with ``tensorboard_dir`` set, rank 0 also logs the step and epoch scalars to
   ``<tensorboard_dir>/<run name>/`` (``src.utils.tensorboard``);
5. ``curves.png``.

Deviations from the model zoo's ``train.py`` (which ran ``Model.train`` with sink mode and callbacks):
a Python loop over a compiled train step, so that validation, EMA, exact resume and per-step progress
work the same on every device.
"""
import atexit
import json
import math
import os
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from src.config import save_config
from src.checkpoint import (CheckpointError, CheckpointManager, find_resume_checkpoint, restore_training_state,
                            run_folder_of, training_state_entries)
from src.data import save_class_index
from src.errors import ConfigError, DatasetError, NonFiniteLoss
from src.utils.paths import json_dumps
from src.reporting import record_step
from src.utils import signals
from src.utils.seeding import seed_everything, set_augmentation_seed

__all__ = ["NonFiniteLoss", "TrainingSetup", "build_training", "train_one_epoch", "validate", "fit",
           "resolve_train_preprocess", "checkpoint_metadata"]


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
    sink: Optional[Any] = None  # src.sink.SinkRunner in sink mode (dataset_sink_mode), else None

    @property
    def steps_per_epoch(self):
        return self.data.steps_per_epoch

    @property
    def global_step(self):
        return int(self.optimizer.global_step.asnumpy().reshape(-1)[0])


def resolve_train_preprocess(cfg):
    """The input size and eval preprocessing of a training run: the config's, "auto" filled in from the
    architecture. Returns ``{"image_size": "H,W", "eval_resize": ..., "crop_pct": ...}``."""
    from src.archs import resolve_preprocess

    return resolve_preprocess(cfg.model.arch, cfg.data.image_size, cfg.data.eval_resize, cfg.data.crop_pct)


def checkpoint_metadata(net, preprocess, class_to_idx):
    """What a training checkpoint records besides tensors: the network (arch, num_classes), the input
    preprocessing it was trained with and its class names in index order, so that eval, predict and
    export of a checkpoint copied anywhere know them."""
    names = [name for name, _ in sorted(class_to_idx.items(), key=lambda kv: kv[1])]
    return {"arch": net.arch.name, "num_classes": int(net.num_classes), "image_size": preprocess["image_size"],
            "eval_resize": preprocess["eval_resize"], "crop_pct": str(preprocess["crop_pct"]),
            "class_names": json_dumps(names)}  # names that are not UTF-8 as \udcXX escapes (lossless)


def build_training(cfg, ctx, log, network_rewrites=None):
    """Data, network, optimizer, loss, train step and EMA for ``cfg`` on ``ctx``'s device and rank."""
    import mindspore as ms

    from src.checkpoint import load_weights
    from src.data.pipeline import create_dataset_from_config
    from src.image_classification import create_model
    from src.loss import create_loss
    from src.lr_generator import get_lr_from_config
    from src.train_step import TrainStep, WeightEMA, apply_amp, resolve_amp_level
    from src.utils.optimizers_init import create_optimizer

    seed_everything(cfg.device.seed)
    preprocess = resolve_train_preprocess(cfg)
    common = dict(seed=cfg.device.seed, num_classes=cfg.model.num_classes, rank=ctx.rank,
                  group_size=ctx.group_size, image_size=preprocess["image_size"],
                  eval_resize=preprocess["eval_resize"], crop_pct=preprocess["crop_pct"])
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
    lr = get_lr_from_config(optim, data.steps_per_epoch)
    dynamic = optim.is_dynamic_loss_scale
    optimizer = create_optimizer(net, ms.Tensor(lr), momentum=optim.momentum, weight_decay=optim.weight_decay,
                                 loss_scale=1.0 if dynamic else optim.loss_scale)
    loss_fn = create_loss(optim.label_smooth, optim.label_smooth_factor, cfg.model.num_classes,
                          class_weights=_class_weights(optim.class_weights, data, cfg.model.num_classes, log),
                          label_smooth_style=optim.label_smooth_style)
    train_net = apply_amp(net, amp_level)
    step = TrainStep(train_net, loss_fn, optimizer, loss_scale=optim.loss_scale, dynamic=dynamic)
    ema = WeightEMA(net, optim.ema_decay) if optim.ema else None
    sink = None
    from src.sink import build_sink, resolve_sink_mode
    if resolve_sink_mode(cfg.train.dataset_sink_mode, ctx.device_target):
        sink = build_sink(step, ema, data, ctx.device_target, cfg.train.sink_size)
    return TrainingSetup(data=data, val_data=val_data, net=net, train_net=train_net, step=step, optimizer=optimizer,
                         ema=ema, lr=lr, amp_level=amp_level, preprocess=preprocess, sink=sink)


def _class_weights(mode, data, num_classes, log):
    """The loss's per-class weights for ``class_weights`` (None for none), logged with the class balance."""
    from src.data.balance import class_weights_from_counts, describe_counts

    counts = data.class_counts
    if counts is not None:
        names = {i: n for n, i in data.class_to_idx.items()}
        log.info("class balance of the training data: %s", describe_counts(counts[:num_classes], names))
    weights = class_weights_from_counts(counts, num_classes, mode, data.class_to_idx)
    if weights is not None:
        shown = ", ".join(f"{w:.3g}" for w in weights[:10]) + (", ..." if len(weights) > 10 else "")
        log.info("class_weights=%s: loss weights per class %s (min %.3g, max %.3g)", mode, shown,
                 float(weights.min()), float(weights.max()))
    return weights


def train_one_epoch(setup, epoch, seed, ctx, progress, log, last_saved=None, tb=None):
    """Runs epoch ``epoch`` (0-based) and returns its mean loss over the steps that updated the weights.

    Raises ``NonFiniteLoss`` when the loss stops being finite (with a fixed loss scale; a dynamic scale
    skips such steps and logs them). ``tb``: a ``src.utils.tensorboard.TensorBoardLogger`` that gets the
    step's loss, lr, loss scale and (on progress-log steps) images/s at global step ``global_step + 1``.
    """
    # A fresh iterator per epoch, its order and augmentation seed derived from the epoch: the data of an
    # epoch is the same whether the run was resumed or not.
    set_augmentation_seed(seed, ctx.rank, epoch, ctx.group_size)
    setup.data.set_epoch(epoch)
    progress.epoch_begin()
    losses, samples = [], 0
    for i, (images, labels) in enumerate(signals.guarded(setup.data.dataset.create_tuple_iterator(num_epochs=1)), 1):
        samples += images.shape[0]
        loss, overflow, scale = setup.step(images, labels)
        if setup.ema is not None:
            setup.ema()
        record_step(setup, epoch, i, float(loss.asnumpy()), bool(overflow.asnumpy()), scale, losses, progress, log,
                    last_saved, tb)
    setup.data.account(samples, f"epoch {epoch + 1}")  # none: DatasetError; fewer or dropped: a warning
    return float(np.mean(losses)) if losses else float("nan")


def validate(setup, ctx):
    """Top-1 / top-5 (fractions) of the network on the validation data, with the EMA weights when EMA is on."""
    from src.evaluation import evaluate

    if setup.ema is not None:
        setup.ema.swap()
    setup.train_net.set_train(False)
    try:
        result = evaluate(setup.train_net, setup.val_data, rank=ctx.rank, group_size=ctx.group_size)
    finally:
        setup.train_net.set_train(True)
        if setup.ema is not None:
            setup.ema.swap()
    return result


def warn_if_not_learning(log, epoch, mean_loss, num_classes, warmup_epochs):
    """Warns when an epoch after the warmup ends with a mean loss at or above chance: ln(num_classes) is the
    cross entropy of a uniform prediction (with or without label smoothing), so a network that learns
    anything stays below it. Returns whether it warned."""
    chance = math.log(num_classes)
    if num_classes < 2 or epoch + 1 <= max(1, math.ceil(warmup_epochs)) or not mean_loss >= chance:
        return False
    log.warning("epoch %d: mean train loss %.4f is not below chance level ln(%d) = %.4f after the warmup: the "
                "network is not learning (check lr, the data and its labels, or init)", epoch + 1, mean_loss,
                num_classes, chance)
    return True


def _log_schedule(log, lr, steps_per_epoch):
    """The LR at the start, middle and end of the schedule (what each step really uses)."""
    n = len(lr)
    points = sorted({0, n // 2, n - 1})
    log.info("lr schedule: %s", ", ".join(f"step {i} (epoch {i // steps_per_epoch + 1}): {lr[i]:.6g}"
                                          for i in points))


def fit(cfg, ctx, run_log, network_rewrites=None):
    """Trains ``cfg`` on ``ctx`` (see the module docstring); returns the exit status (0)."""
    from src.reporting import MetricsWriter, ProgressLogger, plot_curves
    from src.utils.runtime import important_info, new_run_dir
    from src.utils.tensorboard import create_tensorboard_logger, epoch_scalars

    log = run_log.log
    resume_path = find_resume_checkpoint(cfg.train.resume) if cfg.train.resume else None
    important_info(log, "start create network")
    setup = build_training(cfg, ctx, log, network_rewrites)
    steps_per_epoch = setup.steps_per_epoch
    start_epoch, best_top1 = 0, -1.0
    if resume_path:  # refused here if it does not fit: nothing of the run is written before this point
        meta = restore_training_state(resume_path, setup.step, setup.ema, cfg.model.arch, log)
        start_epoch, best_top1 = meta["epoch"], meta["best_top1"]
        recorded = meta.get("num_classes")
        if recorded is not None and int(recorded) != cfg.model.num_classes:
            raise CheckpointError(f"{resume_path}: was trained with num_classes={int(recorded)}, the config says "
                                  f"{cfg.model.num_classes}")

    run_dir = (run_folder_of(resume_path) if resume_path else None) or new_run_dir(cfg.train.ckpt_path)
    ctx.run_dir = run_dir
    run_log.attach_file(os.path.join(run_dir, "log.txt" if ctx.is_main else f"log_rank{ctx.rank}.txt"))
    for line in ctx.notes:
        log.info(line)
    for line in cfg.warnings:
        log.warning(line)
    log.info("run folder: %s (rank %d of %d, device %s)", run_dir, ctx.rank, ctx.group_size, ctx.device_target)
    if ctx.settings:
        log.info("CPU settings: %s", ", ".join(f"{k}={v}" for k, v in ctx.settings.items()))
    data, val_data = setup.data, setup.val_data
    if ctx.is_main:
        save_config(cfg, os.path.join(run_dir, "config.yaml"))
        ctx.save(os.path.join(run_dir, "run.json"), cfg)
        save_class_index(data.class_to_idx, os.path.join(run_dir, "class_index.json"))
    log.info("train: %d images, %d classes, %d steps/epoch of %d per device, %s px%s",
             data.total_images or data.num_images, len(data.class_to_idx), steps_per_epoch,
             cfg.data.per_batch_size, setup.preprocess["image_size"],
             f"; validation: {val_data.total_images or val_data.num_images} images" if val_data else "")
    optim = cfg.optim
    log.info("arch %s, init %s, amp_level %s, %s loss scale %g, lr schedule %s (peak %g), EMA %s", cfg.model.arch,
             cfg.model.init, setup.amp_level, "dynamic" if optim.is_dynamic_loss_scale else "fixed", optim.loss_scale,
             optim.lr_scheduler, optim.lr, f"on (decay {optim.ema_decay})" if setup.ema is not None else "off")
    _log_schedule(log, setup.lr, steps_per_epoch)
    if setup.sink is not None:
        log.info("sink mode: %d steps per sink (%s feed), one host synchronisation per sink", setup.sink.sink_size,
                 setup.sink.kind)
    if resume_path:
        log.info("resumed from %s: %d epochs done, global step %d, next lr %.6g", resume_path, start_epoch,
                 setup.global_step, setup.lr[min(start_epoch * steps_per_epoch, len(setup.lr) - 1)])
        if start_epoch >= optim.max_epoch:
            log.info("nothing to do: the checkpoint already has %d of max_epoch=%d epochs", start_epoch,
                     optim.max_epoch)
            return 0

    save_ckpt = ctx.is_main or not cfg.train.is_save_on_master
    ckpts = CheckpointManager(os.path.join(run_dir, f"ckpt_{ctx.rank}"), ctx.rank, cfg.train.ckpt_save_max) \
        if save_ckpt else None
    if ckpts is not None and ckpts.removed_partials:
        log.info("removed %d temporary file(s) of unfinished checkpoint saves: %s", len(ckpts.removed_partials),
                 ", ".join(os.path.basename(p) for p in ckpts.removed_partials))
    metrics = MetricsWriter(os.path.join(run_dir, "metrics.csv"), keep_epochs_before=start_epoch + 1) \
        if ctx.is_main else None
    progress = ProgressLogger(log, steps_per_epoch, optim.max_epoch, cfg.data.per_batch_size * ctx.group_size,
                              cfg.train.log_interval, start_epoch)
    metadata = checkpoint_metadata(setup.net, setup.preprocess, data.class_to_idx)
    last_saved = resume_path
    shard_file = os.path.join(run_dir, f"shard_rank{ctx.rank}.txt") if cfg.train.dump_shard_files else None
    if shard_file and not data.can_record_reads:
        log.warning("dump_shard_files is ignored: a %s dataset has no file source to record", data.format)
        shard_file = None
    if shard_file:
        data.record_reads()
    tb = create_tensorboard_logger(cfg.train.tensorboard_dir, run_dir, ctx.rank,
                                   purge_step=start_epoch * steps_per_epoch + 1 if resume_path else None)
    if tb is not None:
        atexit.register(tb.close)  # flushed even when the run stops with an error
        log.info("TensorBoard scalars: %s (tensorboard --logdir %s)", tb.log_dir, cfg.train.tensorboard_dir)
    important_info(log, "start training")
    from src.sink import train_one_epoch_sink
    run_epoch = train_one_epoch if setup.sink is None else train_one_epoch_sink
    for epoch in range(start_epoch, optim.max_epoch):
        mean_loss = run_epoch(setup, epoch, cfg.device.seed, ctx, progress, log, last_saved, tb)
        if shard_file:
            with open(shard_file, "a", encoding="utf-8", errors="surrogateescape") as f:
                f.writelines(f"{epoch + 1}\t{path}\n" for path in data.pop_reads())
        epoch_time, fps = progress.epoch_end(epoch + 1, mean_loss)
        warn_if_not_learning(log, epoch, mean_loss, cfg.model.num_classes, optim.warmup_epochs)

        top1 = top5 = None
        last = epoch + 1 == optim.max_epoch
        if val_data is not None and ((epoch + 1) % cfg.train.val_interval == 0 or last):
            result = validate(setup, ctx)
            top1, top5 = 100.0 * result.top1, 100.0 * result.top5
            log.info("epoch[%d] validation%s: top1 %.2f%%, top5 %.2f%% (%d images)", epoch + 1,
                     " (EMA weights)" if setup.ema is not None else "", top1, top5, result.total)
        is_best = top1 is not None and top1 > best_top1
        if is_best:
            best_top1 = top1
        row = dict(epoch=epoch + 1, train_loss=f"{mean_loss:.6f}",
                   lr=f"{setup.lr[(epoch + 1) * steps_per_epoch - 1]:.6g}",
                   val_top1=None if top1 is None else f"{top1:.4f}",
                   val_top5=None if top5 is None else f"{top5:.4f}", epoch_time_s=f"{epoch_time:.3f}",
                   images_per_sec=f"{fps:.3f}")
        if metrics is not None:
            metrics.write(**row)
        if tb is not None:
            tb.add_scalars((epoch + 1) * steps_per_epoch, epoch_scalars(row))
            tb.flush()
        if ckpts is not None:
            entries = training_state_entries(setup.step, setup.ema, epoch + 1, best_top1)
            if (epoch + 1) % cfg.train.ckpt_interval == 0 or last:
                last_saved = ckpts.save(entries, epoch + 1, steps_per_epoch, metadata)
                log.info("saved %s", last_saved)
            if is_best:
                log.info("new best top1 %.2f%%: saved %s", top1, ckpts.save_best(entries, metadata))

    if tb is not None:
        tb.close()
    if metrics is not None:
        png = plot_curves(metrics.path, os.path.join(run_dir, "curves.png"))
        if png:
            log.info("curves: %s", png)
    log.info("training finished: %d epochs%s; outputs in %s", optim.max_epoch,
             f", best val top1 {best_top1:.2f}%" if best_top1 >= 0 else "", run_dir)
    return 0


def check_data_paths(cfg):
    """Fails fast (before any device work) when a data path the config names does not exist, or when
    ``tensorboard_dir`` is set and tensorboardX cannot be imported (a ``ConfigError``)."""
    for k in ("data_dir", "val_data_dir", "data_list"):
        path = getattr(cfg.data, k)
        if k != "data_list" and path and cfg.data.dataset_format == "mindrecord":
            from src.data.mindrecord import read_meta
            read_meta(path)  # a DatasetError naming what is missing (the shards of PREFIX are PREFIX0, ...)
        elif path and not os.path.exists(path):
            raise DatasetError(f"{k}: {path} does not exist")
    if cfg.train.tensorboard_dir:
        from src.utils.tensorboard import TensorBoardUnavailable, _tensorboardx
        try:
            _tensorboardx()
        except TensorBoardUnavailable as err:
            raise ConfigError(str(err)) from None
