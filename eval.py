"""Evaluate CSPDarkNet53 checkpoints: top-1 / top-5 over every image of an ImageFolder (GRAPH mode).

    python eval.py --pretrained=CKPT --data_dir=/data/imagenet/val [--per_batch_size=64]
    python eval.py --pretrained=outputs/<run>/ckpt_0/          # every checkpoint in a folder, best first
    python eval.py --pretrained=CKPT --data_dir=ROOT --data_list=val.txt   # "relative/path label" lines
    python eval.py --pretrained=CKPT                           # no data_dir: the embedded demo val slice

``pretrained`` is required: a checkpoint file in any format ``src.checkpoint`` reads, or a folder of
``*.ckpt`` / ``*.safetensors`` files. A checkpoint that records its ``arch`` / ``num_classes`` is built
with them unless the command line says otherwise. Precision follows the device as in the model zoo
(Ascend float16, GPU float16 with float32 BatchNorm, CPU float32); ``use_ema=1`` scores EMA weights.
Distributed (msrun / rank table, ``is_distributed``): every rank scores its own disjoint shard and the
counts are summed; rank 0 writes the results.

Outputs: the model zoo's lines ``top1_correct=N, tot=M, acc=XX.XX%(TOP1)``, the TOP5 line and
``Inference Performance: X.XX img/sec``; ``<log_path>/<run>/eval_result.json`` (and ``result_file`` when
given); the log ``<log_path>/<run>/eval_rank<R>.log`` and the resolved ``config.yaml``.
Exit status: 0 done, 2 bad input (the message names the file, key or value).
"""
import os
import sys
import time

os.environ.setdefault("GLOG_v", "3")

from model_utils.config import ConfigError, load_config, resolve_is_distributed, save_config  # noqa: E402
from src.checkpoint import CheckpointError  # noqa: E402
from src.dataset import DatasetError  # noqa: E402
from src.utils.fileio import write_json_atomic  # noqa: E402

USER_ERRORS = (ConfigError, CheckpointError, DatasetError)
RESULT_NAME = "eval_result.json"


def _checkpoints(cfg):
    from src.evaluation import list_checkpoints

    if not cfg.pretrained:
        raise ConfigError("no checkpoint given: pass --pretrained=PATH, a checkpoint file (.ckpt, .safetensors, "
                          "timm .pth) or a folder of .ckpt/.safetensors files; eval never scores random weights")
    return list_checkpoints(cfg.pretrained)


def _imagenet_class_index(data_dir, num_classes):
    """For a 1000-class model and a folder whose class folders are all ImageNet synset ids (e.g. a
    subset of the val set), the ImageNet label of each folder; None otherwise."""
    if num_classes != 1000 or not data_dir or not os.path.isdir(data_dir):
        return None
    from src.class_names import load_imagenet_synsets

    folders = sorted(e.name for e in os.scandir(data_dir) if e.is_dir() and not e.name.startswith("."))
    index = {s: i for i, s in enumerate(load_imagenet_synsets())}
    if not folders or any(f not in index for f in folders) or len(folders) == 1000:
        return None  # all 1000 folders: sorted order is the ImageNet order already
    return {f: index[f] for f in folders}


def _result_record(cfg, ckpt, info, result, report, data_dir, precision, device, images_total):
    rec = {
        "arch": info["arch"],
        "checkpoint": os.path.abspath(ckpt),
        "images": result.total,
        "top1": round(result.top1, 6),
        "top5": round(result.top5, 6),
        "top1_correct": result.top1_correct,
        "top5_correct": result.top5_correct,
        "images_per_sec": round(result.images_per_sec, 3),
        "seconds": round(result.seconds, 3),
        "data_dir": os.path.abspath(data_dir) if data_dir else "",
        "num_classes": info["num_classes"],
        "image_size": cfg.image_size,
        "eval_resize": cfg.eval_resize,
        "crop_pct": cfg.crop_pct,
        "per_batch_size": cfg.per_batch_size,
        "device_target": device,
        "precision": precision,
        "use_ema": bool(report.used_ema),
        "checkpoint_layout": report.layout,
        "group_size": result.group_size,
    }
    if cfg.data_list:
        rec["data_list"] = os.path.abspath(cfg.data_list)
    if images_total is not None and images_total != result.total:
        rec["images_listed"] = images_total
    return rec


def run(cfg):
    from src.dataset import create_dataset_from_config
    from src.checkpoint import load_weights
    from src.evaluation import (apply_eval_precision, build_inference_model, checkpoint_model_info, evaluate,
                                inference_performance_settings, resolve_model_info)
    from src.utils.runtime import create_run_dir, important_info, init_distributed, setup_device, setup_logger

    ckpts = _checkpoints(cfg)  # before any device work: a wrong path fails fast
    notes = []
    data_dir = cfg.data_dir
    if data_dir and not os.path.isdir(data_dir):  # before any device work or run folder
        raise DatasetError(f"dataset folder not found: {data_dir} (data_dir: an ImageFolder root, "
                           "root/<class>/<image>; leave it empty to evaluate the embedded demo data)")
    if not data_dir and not cfg.data_list:
        from src.demo_data import ensure_demo_dataset

        demo = ensure_demo_dataset()
        if cfg.is_explicit("num_classes") and cfg.num_classes != demo.num_classes:
            raise ConfigError(f"no data_dir given, so the embedded demo data ({demo.num_classes} classes) is "
                              f"evaluated, but --num_classes={cfg.num_classes}; pass --data_dir")
        data_dir = demo.val
        cfg.apply_profile("demo")
        notes.append(f"no data_dir given: evaluating the embedded Fashion-MNIST val slice ({data_dir}) with the "
                     f"demo profile: " + ", ".join(f"{k}={cfg[k]}" for k in ("image_size", "num_classes",
                                                                                "per_batch_size")))

    try:
        target = setup_device(cfg.device_target)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    perf_applied, rewrites = inference_performance_settings(target)
    rank, group_size = init_distributed(resolve_is_distributed(cfg.is_distributed))
    run_dir = create_run_dir(cfg.log_path)
    log = setup_logger("cspdarknet53.eval", os.path.join(run_dir, f"eval_rank{rank}.log"), rank=rank)
    cfg.outputs_dir, cfg.rank, cfg.group_size, cfg.device_target_resolved = run_dir, rank, group_size, target
    for line in notes:
        log.info(line)
    if rank == 0:
        save_config(cfg, os.path.join(run_dir, "config.yaml"))
    log.info("run folder: %s (rank %d of %d, device %s); %d checkpoint(s) to score", run_dir, rank, group_size,
             target, len(ckpts))
    if perf_applied or rewrites:
        log.info("CPU settings: %s", ", ".join(f"{k}={v}" for k, v in {**perf_applied, **rewrites}.items()))

    infos = {}
    infos[ckpts[0]] = checkpoint_model_info(ckpts[0])
    _, num_classes = resolve_model_info(infos[ckpts[0]], cfg.arch, cfg.num_classes, True,
                                        cfg.is_explicit("num_classes"))
    class_to_idx = _imagenet_class_index(data_dir, num_classes)
    if class_to_idx is not None:
        log.info("%s holds %d ImageNet synset folders: labels are their ImageNet-1k indices", data_dir,
                 len(class_to_idx))
    bundle = create_dataset_from_config(cfg, "eval", rank, group_size, data_dir=data_dir, num_classes=num_classes,
                                        class_to_idx=class_to_idx)
    images_total = bundle.total_images or bundle.num_images
    log.info("eval data: %s, %d images in %d classes (%d on this rank, %d batches of up to %d)%s",
             f"{cfg.data_list} (root {data_dir or '.'})" if cfg.data_list else data_dir,
             images_total, len(bundle.class_to_idx), bundle.num_images, bundle.steps_per_epoch, cfg.per_batch_size,
             f"; {len(bundle.skipped)} unreadable file(s) skipped" if bundle.skipped else "")

    records = []
    # On CPU without network rewrites one compiled graph serves every checkpoint of the same shape;
    # a folded network (fold_bn) cannot take other weights, so each checkpoint gets its own.
    reuse = target == "CPU" and not any(rewrites.values())
    net, net_key = None, None
    for ckpt in ckpts:
        info = infos.get(ckpt) or checkpoint_model_info(ckpt)
        arch, nc = resolve_model_info(info, cfg.arch, cfg.num_classes, cfg.is_explicit("arch"),
                                      cfg.is_explicit("num_classes"))
        important_info(log, f"evaluating {ckpt}")
        if reuse and net is not None and net_key == (arch, nc):
            report = load_weights(net, ckpt, use_ema=bool(cfg.use_ema))
        else:
            net, report, _ = build_inference_model(ckpt, arch, nc, num_classes_explicit=True, arch_explicit=True,
                                                   use_ema=cfg.use_ema, info=info, prepare=rewrites)
            net_key = (arch, nc)
        resolved = {"arch": arch, "num_classes": nc}
        if resolved["num_classes"] < len(bundle.class_to_idx) and class_to_idx is None:
            raise ConfigError(f"{ckpt}: the model has {resolved['num_classes']} classes but {data_dir} has "
                              f"{len(bundle.class_to_idx)} class folders")
        log.info("loaded %s (%s layout%s): %s, %d classes", ckpt, report.layout,
                 ", EMA weights" if report.used_ema else "", resolved["arch"], resolved["num_classes"])
        run_net, precision = apply_eval_precision(net, target)
        run_net.set_train(False)
        start = time.perf_counter()
        result = evaluate(run_net, bundle, rank=rank, group_size=group_size)
        for line in result.zoo_lines():
            log.info(line)
        log.info("scored %d images in %.1f s (%s)%s", result.total, time.perf_counter() - start, precision,
                 "" if result.extra.get("timed_images") else "; too few batches to time without graph "
                 "compilation, so images/s includes it")
        records.append(_result_record(cfg, ckpt, resolved, result, report, data_dir, precision, target,
                                      images_total))

    ranked = sorted(records, key=lambda r: (-r["top1"], -r["top5"], r["checkpoint"]))
    if len(records) > 1:
        width = max([len("checkpoint")] + [len(os.path.basename(r["checkpoint"])) for r in ranked])
        lines = [f"{'checkpoint':<{width}}  {'top1':>7}  {'top5':>7}  images"]
        lines += [f"{os.path.basename(r['checkpoint']):<{width}}  {100 * r['top1']:6.2f}%  {100 * r['top5']:6.2f}%  "
                  f"{r['images']}" for r in ranked]
        log.info("%d checkpoints in %s, best first:\n%s", len(records), cfg.pretrained, "\n".join(lines))
    if rank == 0:
        if len(records) == 1:
            data = dict(records[0])
        else:  # the best checkpoint's fields at the top level, every checkpoint under "results"
            data = dict(ranked[0])
            data.update(pretrained=os.path.abspath(cfg.pretrained), results=ranked)
        paths = [write_json_atomic(data, os.path.join(run_dir, RESULT_NAME))]
        if cfg.result_file:
            paths.append(write_json_atomic(data, cfg.result_file))
        log.info("results written to %s", ", ".join(paths))
    return 0


def main(argv=None):
    from src.utils.runtime import user_error_exit

    try:
        cfg = load_config(argv)
        return run(cfg)
    except USER_ERRORS as err:
        import logging

        return user_error_exit(err, logging.getLogger("cspdarknet53.eval"))
    except RuntimeError as err:
        if str(err).startswith("distributed init failed"):
            return user_error_exit(err)
        raise


if __name__ == "__main__":
    sys.exit(main())
