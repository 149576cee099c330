"""The evaluation job behind eval.py: which checkpoints, which labels, scoring, and the one result record.

``evaluate_job(cfg, run_log)`` in order, every check before any device work or output folder:

1. the checkpoints (``ckpt_file``, or ``pretrained``: a file, or a folder of ``*.ckpt`` / ``*.safetensors``),
   each read and resolved into the model it needs (``src.checkpoint.resolve_model``); in a folder, one that
   cannot be read or does not fit is set aside and reported at the end, the others are scored;
2. the outputs (``log_path``, ``result_file``): never one of the run's inputs (``src.utils.fileio``);
3. the labels (``label_check``): the data's class folders against the classes the checkpoints were trained on;
4. the data pipeline, the run folder ``<log_path>/eval_<timestamp>/`` (its log, config.yaml with the keys
   eval reads (``src.config.script_keys``), run.json);
5. each checkpoint scored (``score_checkpoint``: zero images scored or outputs that are not finite are errors,
   never a result) with its analysis files (``src.analysis.report``);
6. one record per checkpoint (``result_record``), written once at the end, atomically, as standard JSON
   (``write_results``): a run stopped before that leaves no ``eval_result.json``.
"""
import dataclasses
import os

from src.checkpoint import (CheckpointError, build_inference_model, checkpoint_files, checkpoint_model_info,
                            load_weights, resolve_model)
from src.errors import ConfigError, DatasetError

__all__ = ["RESULT_NAME", "evaluate_job", "select_checkpoints", "label_check", "score_checkpoint",
           "result_record", "write_results", "class_names_for", "analysis_dirs"]

RESULT_NAME = "eval_result.json"


# ------------------------------------------------------------------------------------------------ checkpoints
def select_checkpoints(cfg, log):
    """``(specs, unreadable)``: a ``ModelSpec`` for every checkpoint to score, and ``[(checkpoint, error)]`` for
    those of a folder that cannot be read or do not fit (a single checkpoint raises ``CheckpointError``).
    The checkpoints of one folder that record their classes or their preprocessing must agree on them (one
    dataset scores them all, with the recorded preprocessing, which every spec then carries)."""
    path = cfg.weights.ckpt_file
    if not path:
        raise ConfigError("no checkpoint given: pass --ckpt_file=PATH (or --pretrained=PATH), a checkpoint file "
                          "(.ckpt, .safetensors, timm .pth) or a folder of .ckpt/.safetensors files; eval never "
                          "scores random weights")
    ckpts = checkpoint_files(path)
    specs, recorded, unreadable = [], [], []
    for ckpt in ckpts:
        try:
            info = checkpoint_model_info(ckpt)
            specs.append(resolve_model(cfg, ckpt, info, log))
        except CheckpointError as err:
            if len(ckpts) == 1:
                raise
            unreadable.append((ckpt, str(err)))
            continue
        if info["preprocess"]:
            recorded.append(specs[-1])
    if not specs:
        raise CheckpointError(f"no checkpoint in {path} can be scored: " + "; ".join(e for _, e in unreadable))
    for key, known in (("class_names", [s for s in specs if s.class_names]), ("preprocess", recorded)):
        other = next((s for s in known if getattr(s, key) != getattr(known[0], key)), None)
        if other is not None:
            what = "classes" if key == "class_names" else "preprocessing (give image_size, eval_resize, crop_pct)"
            raise CheckpointError(f"{other.checkpoint} was trained with other {what} than {known[0].checkpoint} "
                                  f"({_describe(other, key)} vs {_describe(known[0], key)}); score them separately")
    pre = (recorded or specs)[0].preprocess
    return [dataclasses.replace(s, preprocess=pre) for s in specs], unreadable


def _describe(spec, key):
    if key == "class_names":
        return spec.class_names_source
    return ", ".join(f"{k}={v}" for k, v in spec.preprocess.items())


# ------------------------------------------------------------------------------------------------ labels
def _imagenet_class_index(data_dir, num_classes):
    """For a 1000-class model and a folder whose class folders are all ImageNet synset ids (e.g. a
    subset of the val set), the ImageNet label of each folder; None otherwise."""
    if num_classes != 1000 or not data_dir or not os.path.isdir(data_dir):
        return None
    from src.data.class_names import load_imagenet_synsets

    folders = sorted(e.name for e in os.scandir(data_dir) if e.is_dir() and not e.name.startswith("."))
    index = {s: i for i, s in enumerate(load_imagenet_synsets())}
    if not folders or any(f not in index for f in folders) or len(folders) == 1000:
        return None  # all 1000 folders: sorted order is the ImageNet order already
    return {f: index[f] for f in folders}


def label_check(cfg, spec, log):
    """The labels to score with: ``(class_to_idx or None, record for the result JSON)``.

    The classes ``spec`` was trained on (recorded in the checkpoint, or a class_index.json) are compared with
    the data's class folders (a MindRecord dataset's stored classes): a folder that is no trained class is an
    error naming it (``ClassIndexError``, exit 2) unless ``class_map`` maps it; a subset of the classes is fine
    and logged; the labels are then the trained indices. Without class names: ImageNet synset folders get
    their ImageNet indices for a 1000-class model, anything else is scored in sorted folder order with a
    warning that it is unchecked."""
    from src.data.class_check import compare_class_index, load_class_mapping, trained_class_index

    data_dir = cfg.data.data_dir
    if cfg.data.data_list:
        log.info("labels come from %s as class indices: the class-name check does not apply", cfg.data.data_list)
        return None, {"kind": "not checked (data_list)"}
    if cfg.data.dataset_format == "mindrecord":
        from src.data.mindrecord import read_meta
        stored = read_meta(data_dir).class_to_idx
        folders = [n for n, _ in sorted(stored.items(), key=lambda kv: kv[1])]
    else:
        from src.data.listing import list_class_folders
        folders = list_class_folders(data_dir)
    names, source = spec.class_names, spec.class_names_source
    mapping = load_class_mapping(cfg.eval.class_map) if cfg.eval.class_map else None
    if names is None and mapping is None:
        synsets = _imagenet_class_index(data_dir, spec.num_classes) if cfg.data.dataset_format == "folder" else None
        if synsets is not None:
            log.info("%s holds %d ImageNet synset folders: labels are their ImageNet-1k indices", data_dir,
                     len(synsets))
            return synsets, {"kind": "imagenet synsets"}
        log.warning("%s records no class names and has no class_index.json beside it: the labels are the sorted "
                    "order of the %d class folders of %s, unchecked (give class_map to map them explicitly)",
                    spec.checkpoint, len(folders), data_dir)
        return None, {"kind": "not checked (no class names in the checkpoint)"}
    if names is None:  # a mapping onto class indices only
        names, source = [str(i) for i in range(spec.num_classes)], "class indices (the checkpoint records no names)"
    res = compare_class_index(trained_class_index(names), folders, mapping, where=data_dir, source=source)
    if not res.ok:
        raise res.error()
    log.info("class check: %s", res.message)
    return res.class_to_idx, {"kind": res.kind, "message": res.message, "trained_classes": len(names),
                              "missing_classes": len(res.missing)}


def class_names_for(spec, bundle, num_classes, imagenet_labels, data_list):
    """Names of the ``num_classes`` rows of the confusion matrix (the labels scored): ImageNet's when the labels
    are ImageNet indices (``imagenet_labels``: synset folders, or a 1000-class model without recorded names
    whose classes are ImageNet's or that reads a ``data_list``); else the names the checkpoint records; else
    the data's class folders (not with a ``data_list``: its labels are indices, not names); gaps ``class_<i>``."""
    from src.data.class_names import load_class_names, load_imagenet_synsets

    generic = [f"class_{i}" for i in range(num_classes)]
    recorded = spec.class_names or []
    folders = {} if data_list else {i: name for name, i in bundle.class_to_idx.items() if 0 <= i < num_classes}
    if num_classes == 1000 and (imagenet_labels or recorded == load_imagenet_synsets() or (not recorded and (
            data_list or [folders.get(i) for i in range(1000)] == load_imagenet_synsets()))):
        return load_class_names(None, 1000)
    if recorded:
        return list(recorded[:num_classes]) + generic[len(recorded):]
    return [folders.get(i, generic[i]) for i in range(num_classes)]


# ------------------------------------------------------------------------------------------------ data
def _eval_data(cfg):
    """``(cfg, note)``: the embedded demo val slice when no data is given; a MindRecord dataset's or a folder's
    existence checked (``DatasetError`` naming it)."""
    from src.data.demo import with_demo_data

    if not cfg.data.data_dir and not cfg.data.data_list:
        return with_demo_data(cfg, "val")
    if cfg.data.dataset_format == "mindrecord":
        from src.data.mindrecord import read_meta
        read_meta(cfg.data.data_dir)  # a DatasetError naming what is missing
    elif cfg.data.data_dir and not os.path.isdir(cfg.data.data_dir):
        raise DatasetError(f"dataset folder not found: {cfg.data.data_dir} (data_dir: an ImageFolder root, "
                           "root/<class>/<image>; leave it empty to evaluate the embedded demo data)")
    return cfg, None


def _inputs(cfg):
    """What the run reads: no output may be (or lie inside) one of these."""
    return tuple(p for p in (cfg.weights.ckpt_file, cfg.data.data_dir, cfg.data.data_list, cfg.eval.class_map,
                             cfg.config_path) if p)


# ------------------------------------------------------------------------------------------------ scoring
def analysis_dirs(ckpts, run_dir):
    """Where each checkpoint's analysis files go: the run folder for one, ``<run>/<checkpoint stem>/`` for several."""
    if len(ckpts) == 1:
        return {ckpts[0]: run_dir}
    stems = [os.path.splitext(os.path.basename(c))[0] for c in ckpts]
    return {c: os.path.join(run_dir, stem if stems.count(stem) == 1 else os.path.basename(c))
            for c, stem in zip(ckpts, stems)}


def score_checkpoint(net, bundle, spec, ctx, log, worst_mistakes):
    """Scores ``net`` (eval mode, at its precision) on ``bundle``: ``(EvalResult, EvalAccumulator or None)``, the
    counts of all ranks. Zero images scored is a ``DatasetError`` (``evaluate``: the pipeline's sample
    count); outputs that are not finite (NaN or infinite logits) are a ``CheckpointError`` naming how many:
    neither ever becomes a result."""
    import numpy as np

    from src.analysis.metrics import EvalAccumulator, SumAcrossRanks
    from src.evaluation import evaluate
    from src.utils import signals

    acc = None
    if max(bundle.class_to_idx.values(), default=-1) < spec.num_classes:  # every label fits this model's matrix
        acc = EvalAccumulator(spec.num_classes, worst_n=worst_mistakes, index_offset=ctx.rank,
                              index_stride=ctx.group_size)
    else:
        log.warning("%s has %d classes, fewer than the data's labels: no per-class analysis for it",
                    spec.checkpoint, spec.num_classes)
    state = {"not_finite": 0, "first": True}

    def on_batch(logits, labels):
        signals.install()  # the network's first call (graph compilation) installs MindSpore's SIGINT handler
        bad = int((~np.isfinite(logits).all(axis=1)).sum())
        state["not_finite"] += bad
        if acc is not None and not bad:
            acc.update(logits, labels)
        if state["first"]:
            state["first"] = False
            log.info("scoring started: the first batch of %s is done", os.path.basename(spec.checkpoint))

    result = evaluate(net, bundle, rank=ctx.rank, group_size=ctx.group_size, on_batch=on_batch)
    bad = state["not_finite"]
    if ctx.group_size > 1:
        bad = int(round(SumAcrossRanks()([bad])[0]))  # every rank takes the same branch below
    if bad:
        raise CheckpointError(f"{spec.checkpoint}: the network's outputs are NaN or infinite for {bad} of "
                              f"{result.total} images (its precision on this device, or broken weights); "
                              "not scored")
    if acc is not None:
        acc.all_reduce(ctx.rank, ctx.group_size)  # every rank: the totals of all shards
    return result, acc


def _load(spec, cfg, ctx, rewrites, cache):
    """The network of ``spec`` with its weights: on CPU without network rewrites one compiled network serves
    every checkpoint of the same arch and classes (a folded network, fold_bn, cannot take other weights)."""
    key = (spec.arch, spec.num_classes)
    if cache.get("key") == key and ctx.device_target == "CPU" and not any(rewrites.values()):
        return cache["net"], load_weights(cache["net"], spec.checkpoint, use_ema=cfg.weights.use_ema)
    cache.clear()
    net, report = build_inference_model(spec, use_ema=cfg.weights.use_ema, prepare=rewrites)
    cache.update(key=key, net=net)
    return net, report


# ------------------------------------------------------------------------------------------------ results
def result_record(spec, result, report, precision, device, data, analysis=None):
    """One checkpoint's result as eval_result.json holds it: counts and rates, the model, the data (``data``:
    data_dir, preprocessing, class check, ``images_listed``: kept only when it differs from the images scored)
    and, from ``analysis`` (``{"output": src.analysis.report.AnalysisOutput, "worst_mistakes": [...], "dir"}``),
    macro precision / recall / F1, the most confused pairs and the worst mistakes' files."""
    from src.analysis.report import JSON_KEYS

    rec = {"arch": spec.arch, "checkpoint": os.path.abspath(spec.checkpoint), "images": result.total,
           "top1": round(result.top1, 6), "top5": round(result.top5, 6), "top1_correct": result.top1_correct,
           "top5_correct": result.top5_correct, "images_per_sec": round(result.images_per_sec, 3),
           "seconds": round(result.seconds, 3), "num_classes": spec.num_classes, "device_target": device,
           "precision": precision, "use_ema": bool(report.used_ema), "checkpoint_layout": report.layout,
           "group_size": result.group_size}
    if analysis is not None:
        rec.update({k: v for k, v in analysis["output"].summary.items() if k in JSON_KEYS})
        rec.update(worst_mistakes=analysis["worst_mistakes"], analysis_dir=analysis["dir"])
    rec.update(data)
    if rec.get("images_listed") == rec["images"]:
        del rec["images_listed"]
    return rec


def write_results(records, unreadable, given, paths):
    """Writes the results document to every one of ``paths`` (atomically, standard JSON: no NaN or Infinity
    tokens) and returns them: the one record, or the best one's fields at the top and every record, best
    first, under ``results`` (with ``unreadable``: the checkpoints not scored, and why)."""
    from src.utils.fileio import write_text_atomic
    from src.utils.paths import json_dumps

    ranked = sorted(records, key=lambda r: (-r["top1"], -r["top5"], r["checkpoint"]))
    data = dict(ranked[0])
    if len(records) > 1 or unreadable:
        data.update(pretrained=os.path.abspath(given), results=ranked,
                    unreadable=[{"checkpoint": os.path.abspath(c), "error": e} for c, e in unreadable])
    text = json_dumps(data, indent=2, ensure_ascii=True, allow_nan=False) + "\n"
    return [write_text_atomic(text, path) for path in paths]


def _ranking(records):
    ranked = sorted(records, key=lambda r: (-r["top1"], -r["top5"], r["checkpoint"]))
    width = max([len("checkpoint")] + [len(os.path.basename(r["checkpoint"])) for r in ranked])
    lines = [f"{'checkpoint':<{width}}  {'top1':>7}  {'top5':>7}  images"]
    return "\n".join(lines + [f"{os.path.basename(r['checkpoint']):<{width}}  {100 * r['top1']:6.2f}%  "
                              f"{100 * r['top5']:6.2f}%  {r['images']}" for r in ranked])


# ------------------------------------------------------------------------------------------------ the job
def _open_run_folder(cfg, ctx, specs, run_log):
    """``<log_path>/eval_<timestamp>/`` with the rank's log, and on rank 0 ``config.yaml`` (the keys eval reads,
    with the values the run uses: the checkpoint's where the user set none) and ``run.json``."""
    import yaml

    from src.config import script_keys
    from src.utils.fileio import write_text_atomic
    from src.utils.run_folder import new_run_dir

    ctx.run_dir = new_run_dir(cfg.eval.log_path, key="log_path", prefix="eval_")
    run_log.attach_file(os.path.join(ctx.run_dir, f"eval_rank{ctx.rank}.log"))
    used = dict(specs[0].preprocess)
    used.update({k: getattr(specs[0], k) for k in ("arch", "num_classes") if len({getattr(s, k) for s in specs}) == 1})
    keys = [k for k in script_keys("eval") if cfg.modelarts.enable_modelarts or not hasattr(cfg.modelarts, k)]
    settings = {k: used.get(k, v) for k, v in cfg.flat().items() if k in keys}
    if ctx.is_main:
        write_text_atomic(yaml.safe_dump(settings, sort_keys=False, allow_unicode=True),
                          os.path.join(ctx.run_dir, "config.yaml"))
        ctx.save(os.path.join(ctx.run_dir, "run.json"), cfg)
    log = run_log.log
    log.info("eval settings: %s", ", ".join(f"{k}={v}" for k, v in settings.items()))
    log.info("run folder: %s (rank %d of %d, device %s); %d checkpoint(s) to score", ctx.run_dir, ctx.rank,
             ctx.group_size, ctx.device_target, len(specs))
    if ctx.settings:
        log.info("CPU settings: %s", ", ".join(f"{k}={v}" for k, v in ctx.settings.items()))


def _describe_data(cfg, bundle, pre, class_check, log):
    """Logs the data and returns its part of every result record."""
    listed = bundle.total_images or bundle.num_images
    log.info("eval data: %s, %d images in %d classes (%d on this rank, %d batches of up to %d), %s px, %s resize, "
             "crop_pct %g%s", f"{cfg.data.data_list} (root {cfg.data.data_dir or '.'})" if cfg.data.data_list
             else cfg.data.data_dir, listed, len(bundle.class_to_idx), bundle.num_images, bundle.steps_per_epoch,
             cfg.data.per_batch_size, pre["image_size"], pre["eval_resize"], pre["crop_pct"],
             f"; {len(bundle.skipped)} unreadable file(s) skipped" if bundle.skipped else "")
    data = {"data_dir": os.path.abspath(cfg.data.data_dir) if cfg.data.data_dir else "",
            "per_batch_size": cfg.data.per_batch_size, **pre, "class_check": class_check, "images_listed": listed}
    if cfg.data.data_list:
        data["data_list"] = os.path.abspath(cfg.data.data_list)
    return data


def _analyze(spec, acc, bundle, cfg, class_check, folder, log):
    """Writes the analysis files of one checkpoint (rank 0) and returns ``result_record``'s ``analysis``."""
    from src.analysis.report import write_eval_analysis

    names = class_names_for(spec, bundle, acc.num_classes, class_check.get("kind") == "imagenet synsets",
                            cfg.data.data_list)
    out = write_eval_analysis(acc, folder, names, image_for_index=bundle.path_of, plots=not cfg.eval.no_plots,
                              log=log)
    log.info("analysis: %s", ", ".join(out.files.values()))
    mistakes = [{"image": bundle.path_of(m.index) and os.path.abspath(bundle.path_of(m.index)), "true": m.true,
                 "true_name": names[m.true], "predicted": m.predicted, "predicted_name": names[m.predicted],
                 "confidence": round(m.confidence, 6)} for m in acc.worst_mistakes()]
    return {"output": out, "worst_mistakes": mistakes, "dir": os.path.abspath(folder)}


def _score(spec, bundle, cfg, ctx, rewrites, cache, log):
    """Loads one checkpoint (``CheckpointError`` when it does not fit), scores it: ``(result, acc, report,
    precision)``."""
    from src.evaluation import apply_eval_precision
    from src.utils.runtime import important_info

    important_info(log, f"evaluating {spec.checkpoint}")
    net, report = _load(spec, cfg, ctx, rewrites, cache)
    log.info("loaded %s (%s layout%s): %s, %d classes", spec.checkpoint, report.layout,
             ", EMA weights" if report.used_ema else "", spec.arch, spec.num_classes)
    if report.has_ema and not report.used_ema:  # train.py validated (and picked best.ckpt) with them
        log.info("%s also holds EMA weights (training validated with them when ema was on); these are the raw "
                 "weights: use_ema=1 scores the EMA ones", spec.checkpoint)
    run_net, precision = apply_eval_precision(net, ctx.device_target)
    run_net.set_train(False)
    result, acc = score_checkpoint(run_net, bundle, spec, ctx, log, cfg.eval.worst_mistakes)
    for line in result.zoo_lines():
        log.info(line)
    log.info("scored %d images in %.1f s (%s)%s", result.total, result.seconds, precision,
             "" if result.extra.get("timed_images") else "; too few batches to time without graph compilation, "
             "so images/s includes it")
    return result, acc, report, precision


def evaluate_job(cfg, run_log):
    from src.data.pipeline import create_dataset_from_config
    from src.utils.fileio import check_output_dir, check_output_file
    from src.utils.runtime import start_context

    log = run_log.log
    specs, unreadable = select_checkpoints(cfg, log)  # before any device work: a wrong path fails fast
    check_output_dir(cfg.eval.log_path, "log_path", inputs=_inputs(cfg))
    if cfg.eval.result_file:
        check_output_file(cfg.eval.result_file, "result_file", inputs=_inputs(cfg))
    cfg, note = _eval_data(cfg)
    first, total = specs[0], len(specs) + len(unreadable)
    class_to_idx, class_check = label_check(cfg, next((s for s in specs if s.class_names), first), log)

    ctx, rewrites = start_context(cfg.device, "infer")
    run_log.set_rank(ctx.rank)
    if note:
        log.info(note)
    bundle = create_dataset_from_config(cfg.data, "eval", seed=cfg.device.seed, num_classes=first.num_classes,
                                        rank=ctx.rank, group_size=ctx.group_size, class_to_idx=class_to_idx,
                                        **first.preprocess)
    if first.num_classes < len(bundle.class_to_idx) and class_to_idx is None:
        raise CheckpointError(f"{first.checkpoint}: the model has {first.num_classes} classes but "
                              f"{cfg.data.data_dir} has {len(bundle.class_to_idx)} class folders")
    _open_run_folder(cfg, ctx, specs, run_log)
    data = _describe_data(cfg, bundle, first.preprocess, class_check, log)
    dirs = analysis_dirs([s.checkpoint for s in specs], ctx.run_dir)

    records, cache = [], {}
    for spec in specs:
        try:
            result, acc, report, precision = _score(spec, bundle, cfg, ctx, rewrites, cache, log)
        except CheckpointError as err:
            if total == 1:
                raise
            log.warning("not scored: %s", err)
            unreadable.append((spec.checkpoint, str(err)))
            cache.clear()
            continue
        analysis = None
        if acc is not None and ctx.is_main:  # the counts of all ranks; rank 0 writes
            analysis = _analyze(spec, acc, bundle, cfg, class_check, dirs[spec.checkpoint], log)
        records.append(result_record(spec, result, report, precision, ctx.device_target, data, analysis))

    given = cfg.weights.ckpt_file
    if not records:
        raise CheckpointError(f"none of the {total} checkpoints in {given} could be scored: "
                              + "; ".join(e for _, e in unreadable))
    if len(records) > 1:
        log.info("%d checkpoints in %s, best first:\n%s", len(records), given, _ranking(records))
    if ctx.is_main:
        paths = [os.path.join(ctx.run_dir, RESULT_NAME)] + ([cfg.eval.result_file] if cfg.eval.result_file else [])
        log.info("results written to %s", ", ".join(write_results(records, unreadable, given, paths)))
    if unreadable:
        raise CheckpointError(f"{len(unreadable)} of {total} checkpoints could not be read or loaded and were not "
                              f"scored (the others were; results in {ctx.run_dir}): "
                              + "; ".join(e for _, e in unreadable))
    return 0
