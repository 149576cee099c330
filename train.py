"""Train CSPDarkNet53 (GRAPH mode; single device, or data parallel under msrun / an HCCL rank table).

    python train.py                                  # the embedded Fashion-MNIST demo (demo profile)
    python train.py --data_dir=/data/imagenet/train  # the model zoo's ImageNet recipe
    python train.py --resume=outputs/<run>           # continue a run from its newest checkpoint

Outputs go to ``<ckpt_path>/<run>/``: ``log.txt``, ``config.yaml`` (the resolved config),
``class_index.json``, ``metrics.csv``, ``curves.png`` (with matplotlib) and ``ckpt_<rank>/``.
Exit status: 0 done, 2 bad input (the message says which file, key or value), 3 non-finite loss.
"""
import math
import os
import sys
import time

import numpy as np

from model_utils.config import ConfigError, load_config, resolve_is_distributed, save_config
from src.checkpoint import CheckpointError, network_metadata, read_state_dict
from src.dataset import DatasetError

USER_ERRORS = (ConfigError, CheckpointError, DatasetError)


class NonFiniteLoss(RuntimeError):
    pass


def _prepare_demo(cfg, log_lines):
    """No data folder: train on the embedded Fashion-MNIST slice with the demo profile."""
    from src.demo_data import ensure_demo_dataset

    demo = ensure_demo_dataset()
    cfg.data_dir = demo.train
    if not cfg.is_explicit("val_data_dir"):
        cfg.val_data_dir = demo.val
    changed = cfg.apply_profile("demo")
    log_lines.append(f"no data_dir given: training on the embedded Fashion-MNIST slice ({demo.train}) with the "
                     f"demo profile: " + ", ".join(f"{k}={cfg[k]}" for k in changed))


def _run_folder_of(checkpoint):
    """``<run>/ckpt_<rank>/x.ckpt`` -> ``<run>``; None if the checkpoint is not inside a run folder."""
    parent = os.path.dirname(os.path.abspath(checkpoint))
    if os.path.basename(parent).startswith("ckpt_"):
        return os.path.dirname(parent)
    return None


def _restore_training_state(path, step_cell, ema, log):
    """Loads network weights, optimizer moments, global step, loss scale and EMA; returns metadata."""
    import mindspore as ms

    arrays, meta = read_state_dict(path)
    if "epoch" not in arrays:
        raise CheckpointError(f"{path}: not a training checkpoint of this project (no epoch counter); "
                              "use pretrained= to start from its weights")
    if meta.get("arch") and meta["arch"] != step_cell.arch_name:
        raise CheckpointError(f"{path}: was trained with arch {meta['arch']!r}, the config says "
                              f"{step_cell.arch_name!r}")
    targets = {p.name: p for p in step_cell.get_parameters()}
    if ema is not None:
        targets.update({e["name"]: e["data"] for e in ema.checkpoint_entries()})
    wanted = {n for n in targets if n != "learning_rate"}  # the LR array is rebuilt from the config
    if ema is not None and not any(n.startswith("ema.") for n in arrays):
        log.warning("%s has no EMA weights: the EMA starts from the restored weights", path)
        wanted -= {n for n in wanted if n.startswith("ema")}
    missing = sorted(n for n in wanted if n not in arrays)
    shape_errors = [n for n in wanted if n in arrays and tuple(arrays[n].shape) != tuple(targets[n].shape)]
    if missing or shape_errors:
        raise CheckpointError(f"{path}: cannot resume this config from it: missing {missing[:8]}"
                              f"{' ...' if len(missing) > 8 else ''}; shape mismatches {shape_errors[:8]}")
    for name in wanted:
        param = targets[name]
        param.set_data(ms.Tensor(arrays[name].astype(ms.dtype_to_nptype(param.dtype)), param.dtype))
    if ema is not None and "ema_updates" not in wanted:
        ema.reset_from_network()
    meta = dict(meta)
    meta["epoch"] = int(arrays["epoch"])
    meta["best_top1"] = float(arrays["best_top1"]) if "best_top1" in arrays else -1.0
    return meta


def run_train(cfg):
    import mindspore as ms
    import mindspore.dataset as ds

    from src.callbacks import (CheckpointManager, MetricsWriter, ProgressLogger, find_resume_checkpoint,
                               plot_curves)
    from src.checkpoint import load_weights
    from src.dataset import create_dataset_from_config, save_class_index
    from src.image_classification import create_model
    from src.loss import create_loss
    from src.lr_generator import get_lr_from_config
    from src.train_step import TrainStep, WeightEMA, apply_amp, resolve_amp_level
    from src.utils.optimizers_init import create_optimizer
    from src.utils.runtime import create_run_dir, important_info, init_distributed, setup_device, setup_logger

    notes = []
    if not cfg.data_dir and not cfg.data_list:
        _prepare_demo(cfg, notes)

    target = setup_device(cfg.device_target)
    perf_applied, network_settings = {}, {}
    if target == "CPU":
        # Before the first graph runs: on AVX-512 CPUs oneDNN must be capped at AVX2, or every 3x3
        # conv runs its scalar reference kernel (20-150x slower; see src/utils/perf.py and
        # docs/performance.md). The network settings (activation recompute) save memory only.
        from src.utils.perf import apply_cpu_performance_settings, recommended_settings, split_settings
        process_settings, network_settings = split_settings(recommended_settings("train"))
        perf_applied = apply_cpu_performance_settings(**process_settings)
    rank, group_size = init_distributed(resolve_is_distributed(cfg.is_distributed))
    cfg.device_target_resolved, cfg.rank, cfg.group_size = target, rank, group_size

    resume_path = None
    if cfg.resume:
        try:
            resume_path = find_resume_checkpoint(cfg.resume)
        except FileNotFoundError as err:
            raise ConfigError(str(err)) from None
    run_dir = (_run_folder_of(resume_path) if resume_path else None) or create_run_dir(cfg.ckpt_path)
    cfg.outputs_dir = run_dir
    log = setup_logger("cspdarknet53.train", os.path.join(run_dir, "log.txt" if rank == 0 else f"log_rank{rank}.txt"),
                       rank=rank)
    for line in notes:
        log.info(line)
    log.info("run folder: %s (rank %d of %d, device %s)", run_dir, rank, group_size, target)
    if perf_applied or network_settings:
        log.info("CPU settings: %s", ", ".join(f"{k}={v}" for k, v in {**perf_applied, **network_settings}.items()))

    ms.set_seed(cfg.seed)
    np.random.seed(cfg.seed)

    bundle = create_dataset_from_config(cfg, "train", rank, group_size)
    steps_per_epoch = bundle.steps_per_epoch
    num_data_classes = len(bundle.class_to_idx)
    if num_data_classes < cfg.num_classes:  # more classes than outputs is a DatasetError already
        log.warning("data has %d classes, the head has num_classes=%d outputs", num_data_classes, cfg.num_classes)
    val_bundle = None
    if cfg.val_data_dir:
        val_bundle = create_dataset_from_config(cfg, "eval", rank, group_size, data_dir=cfg.val_data_dir,
                                                class_to_idx=bundle.class_to_idx)
    cfg.steps_per_epoch = steps_per_epoch
    if rank == 0:
        save_config(cfg, os.path.join(run_dir, "config.yaml"))
        save_class_index(bundle.class_to_idx, os.path.join(run_dir, "class_index.json"))
    log.info("train: %d images, %d classes, %d steps/epoch of %d per device%s", bundle.total_images or
             bundle.num_images, num_data_classes, steps_per_epoch, cfg.per_batch_size,
             f"; validation: {val_bundle.total_images or val_bundle.num_images} images" if val_bundle else "")

    important_info(log, "start create network")
    net = create_model(cfg.arch, num_classes=cfg.num_classes, seed=cfg.seed)
    if network_settings:
        from src.utils.perf import prepare_network
        prepare_network(net, train=True, **network_settings)
    if cfg.pretrained:
        report = load_weights(net, cfg.pretrained, fine_tune=True)
        log.info("loaded pretrained %s (%s layout)%s", cfg.pretrained, report.layout,
                 "; its classifier head had another number of classes and was re-initialised for "
                 f"{cfg.num_classes} classes" if report.head_reinitialized else "")
    amp_level = resolve_amp_level(cfg.amp_level, target)
    dynamic = bool(cfg.is_dynamic_loss_scale)
    loss_scale = float(cfg.loss_scale)
    lr = get_lr_from_config(cfg, steps_per_epoch)
    optimizer = create_optimizer(net, ms.Tensor(lr), momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                                 loss_scale=1.0 if dynamic else loss_scale)
    loss_fn = create_loss(cfg.label_smooth, cfg.label_smooth_factor, cfg.num_classes)
    train_net = apply_amp(net, amp_level)
    step_cell = TrainStep(train_net, loss_fn, optimizer, loss_scale=loss_scale, dynamic=dynamic)
    step_cell.arch_name = cfg.arch
    ema = WeightEMA(net, cfg.ema_decay) if cfg.ema else None
    log.info("arch %s, amp_level %s, %s loss scale %g, lr schedule %s (peak %g), EMA %s", cfg.arch, amp_level,
             "dynamic" if dynamic else "fixed", loss_scale, cfg.lr_scheduler, cfg.lr,
             f"on (decay {cfg.ema_decay})" if ema is not None else "off")

    start_epoch, best_top1 = 0, -1.0
    if resume_path:
        meta = _restore_training_state(resume_path, step_cell, ema, log)
        start_epoch, best_top1 = meta["epoch"], meta["best_top1"]
        log.info("resumed from %s: %d epochs done, global step %d, next lr %.6g", resume_path, start_epoch,
                 int(optimizer.global_step.asnumpy().reshape(-1)[0]), lr[min(start_epoch * steps_per_epoch,
                                                                              len(lr) - 1)])
        if start_epoch >= cfg.max_epoch:
            log.info("nothing to do: the checkpoint already has %d of max_epoch=%d epochs", start_epoch,
                     cfg.max_epoch)
            return 0

    save_ckpt = rank == 0 or not cfg.is_save_on_master
    ckpts = CheckpointManager(os.path.join(run_dir, f"ckpt_{rank}"), rank, cfg.ckpt_save_max) if save_ckpt else None
    metrics = MetricsWriter(os.path.join(run_dir, "metrics.csv")) if rank == 0 else None
    global_batch = cfg.per_batch_size * group_size
    progress = ProgressLogger(log, steps_per_epoch, cfg.max_epoch, global_batch, cfg.log_interval, start_epoch)

    def checkpoint_entries(epoch, best):
        entries = [{"name": p.name, "data": p} for p in step_cell.get_parameters()]
        if ema is not None:
            entries += ema.checkpoint_entries()
        entries.append({"name": "epoch", "data": ms.Tensor(np.array(epoch, np.int32))})
        entries.append({"name": "best_top1", "data": ms.Tensor(np.array(best, np.float64))})
        return entries

    metadata = network_metadata(net)
    last_saved = resume_path
    shard_file = None
    if cfg.dump_shard_files:  # record the image files this rank reads, per epoch (data-parallel tests)
        shard_file = os.path.join(run_dir, f"shard_rank{rank}.txt")
        bundle.source.read_log = []
    important_info(log, "start training")
    for epoch in range(start_epoch, cfg.max_epoch):
        # A fresh iterator per epoch with a seed derived from the epoch: the data order of an epoch
        # is the same whether the run was resumed or not. The seed the engine's random ops take when
        # the iterator is created also depends on the rank, so that ranks draw different augmentations
        # (one process: seed + epoch, as before).
        ds.config.set_seed(cfg.seed + epoch * group_size + rank)
        if bundle.sampler is not None:  # a fresh iterator does not advance the sampler: new shards every epoch
            bundle.sampler.set_epoch(epoch)
        progress.epoch_begin()
        losses = []
        for i, (images, labels) in enumerate(bundle.dataset.create_tuple_iterator(num_epochs=1), 1):
            global_step = epoch * steps_per_epoch + i - 1
            loss, overflow, scale = step_cell(images, labels)
            if ema is not None:
                ema()
            loss_value = float(loss.asnumpy())
            if bool(overflow.asnumpy()):
                log.warning("epoch %d step %d: gradient overflow, update skipped; loss scale now %g", epoch + 1, i,
                            float(scale.asnumpy()))
            elif not math.isfinite(loss_value):
                raise NonFiniteLoss(f"loss became {loss_value} at epoch {epoch + 1}, step {i} (lr "
                                    f"{lr[global_step]:.6g}); stopping. The last good checkpoint is "
                                    f"{last_saved or 'none (none was saved yet)'}. Lower lr, or set "
                                    "is_dynamic_loss_scale=1 when training in float16.")
            else:
                losses.append(loss_value)
            progress.step_end(epoch + 1, i, loss_value, float(lr[global_step]))
        if shard_file:
            with open(shard_file, "a", encoding="utf-8") as f:
                f.writelines(f"{epoch + 1}\t{path}\n" for path in sorted(bundle.source.read_log))
            bundle.source.read_log.clear()
        mean_loss = float(np.mean(losses)) if losses else float("nan")
        epoch_time, fps = progress.epoch_end(epoch + 1, mean_loss)

        top1 = top5 = None
        if val_bundle is not None and ((epoch + 1) % cfg.val_interval == 0 or epoch + 1 == cfg.max_epoch):
            from src.evaluation import evaluate
            if ema is not None:
                ema.swap()
            train_net.set_train(False)
            result = evaluate(train_net, val_bundle, rank=rank, group_size=group_size)
            train_net.set_train(True)
            if ema is not None:
                ema.swap()
            top1, top5 = 100.0 * result.top1, 100.0 * result.top5
            log.info("epoch[%d] validation%s: top1 %.2f%%, top5 %.2f%% (%d images)", epoch + 1,
                     " (EMA weights)" if ema is not None else "", top1, top5, result.total)
        is_best = top1 is not None and top1 > best_top1
        if is_best:
            best_top1 = top1
        if metrics is not None:
            metrics.write(epoch=epoch + 1, train_loss=f"{mean_loss:.6f}", lr=f"{lr[(epoch + 1) * steps_per_epoch - 1]:.6g}",
                          val_top1=None if top1 is None else f"{top1:.4f}",
                          val_top5=None if top5 is None else f"{top5:.4f}", epoch_time_s=f"{epoch_time:.3f}",
                          images_per_sec=f"{fps:.3f}")
        if ckpts is not None:
            entries = checkpoint_entries(epoch + 1, best_top1)
            if (epoch + 1) % cfg.ckpt_interval == 0 or epoch + 1 == cfg.max_epoch:
                last_saved = ckpts.save(entries, epoch + 1, steps_per_epoch, metadata)
                log.info("saved %s", last_saved)
            if is_best:
                log.info("new best top1 %.2f%%: saved %s", top1, ckpts.save_best(entries, metadata))

    if metrics is not None:
        png = plot_curves(metrics.path, os.path.join(run_dir, "curves.png"))
        if png:
            log.info("curves: %s", png)
    log.info("training finished: %d epochs%s; outputs in %s", cfg.max_epoch,
             f", best val top1 {best_top1:.2f}%" if best_top1 >= 0 else "", run_dir)
    return 0


def main(argv=None):
    from src.utils.runtime import user_error_exit

    try:
        cfg = load_config(argv)
    except ConfigError as err:
        return user_error_exit(err)
    if cfg.enable_modelarts:
        from model_utils.moxing_adapter import moxing_wrapper, unzip_modelarts_dataset

        def pre_process():
            # Relative data paths are inside the downloaded (and extracted) dataset, an empty data_dir is
            # its root; a relative pretrained is inside load_path (the checkpoint_url download).
            dataset_root = unzip_modelarts_dataset(cfg) or cfg.data_path
            for key in ("data_dir", "val_data_dir", "data_list"):
                if cfg[key] and not os.path.isabs(cfg[key]):
                    setattr(cfg, key, os.path.join(dataset_root, cfg[key]))
            if not cfg.data_dir and not cfg.data_list:
                cfg.data_dir = dataset_root
            if cfg.pretrained and not os.path.isabs(cfg.pretrained):
                cfg.pretrained = os.path.join(cfg.load_path, cfg.pretrained)
            cfg.ckpt_path = os.path.join(cfg.output_path, cfg.ckpt_path)

        job = moxing_wrapper(cfg, pre_process=pre_process)(run_train)
    else:
        job = run_train
    try:
        return job(cfg)
    except USER_ERRORS as err:
        return user_error_exit(err)
    except NonFiniteLoss as err:
        print(f"error: {err}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
