"""The evaluation job behind eval.py. ``evaluate_job`` checks everything (checkpoints, outputs, labels) before
any device work or output folder, then scores each checkpoint into ``<log_path>/eval_<timestamp>/`` and writes
one record per checkpoint once at the end (``write_results``): a run stopped before that leaves no result.
In a folder of checkpoints, one that cannot be read or scored is set aside and reported at the end (exit 2).
"""
import dataclasses
import os

from src.checkpoint import (CheckpointError, build_inference_model, checkpoint_files, checkpoint_model_info,
                            load_weights, resolve_model)
from src.errors import ConfigError, DatasetError

__all__ = ["RESULT_NAME", "evaluate_job", "select_checkpoints", "label_check", "score_checkpoint",
           "result_record", "write_results", "class_names_for", "analysis_dirs"]

RESULT_NAME = "eval_result.json"


def select_checkpoints(cfg, log):
    """``(specs, unreadable)``: a ``ModelSpec`` per checkpoint to score, ``[(checkpoint, error)]`` for those of a
    folder that cannot be read; the checkpoints of a folder must agree on their classes and preprocessing."""
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


def _imagenet_class_index(data_dir, num_classes):
    """``{folder: ImageNet index}`` when a 1000-class model meets a subset of ImageNet's synset folders; else None."""
    if num_classes != 1000 or not data_dir or not os.path.isdir(data_dir):
        return None
    from src.data.class_names import load_imagenet_synsets

    folders = sorted(e.name for e in os.scandir(data_dir) if e.is_dir() and not e.name.startswith("."))
    index = {s: i for i, s in enumerate(load_imagenet_synsets())}
    if not folders or any(f not in index for f in folders) or len(folders) == 1000:
        return None  # all 1000 folders: sorted order is the ImageNet order already
    return {f: index[f] for f in folders}


def label_check(cfg, spec, log):
    """``(class_to_idx or None, record for the result JSON)``: the data's class folders checked against the
    classes ``spec`` was trained on (``ClassIndexError`` naming a folder that is none of them, unless
    ``class_map`` maps it); without class names, ImageNet synset folders or sorted folder order (a warning)."""
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
    """Names of the confusion matrix's rows: ImageNet's when the labels are ImageNet indices, else the recorded
    names, else the data's class folders (not with a ``data_list``), gaps ``class_<i>``."""
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


def _eval_data(cfg):
    """``(cfg, note)``: the embedded demo val slice when no data is given; else the data checked to exist."""
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


def analysis_dirs(ckpts, run_dir):
    """The run folder for one checkpoint's analysis files, ``<run>/<checkpoint stem>/`` for several."""
    if len(ckpts) == 1:
        return {ckpts[0]: run_dir}
    stems = [os.path.splitext(os.path.basename(c))[0] for c in ckpts]
    return {c: os.path.join(run_dir, stem if stems.count(stem) == 1 else os.path.basename(c))
            for c, stem in zip(ckpts, stems)}


def score_checkpoint(net, bundle, spec, ctx, log, worst_mistakes, temperature=None, keep_logits=False):
    """``(EvalResult, EvalAccumulator or None)`` over all ranks (non-finite outputs: ``CheckpointError``), with
    ``extra["calibration"]`` (reliability at T=1 and at ``temperature``) and, ``keep_logits``, ``extra["held_out"]``."""
    import numpy as np

    from src.analysis.calibration import DEFAULT_BINS, calibration_sums, reliability_from_sums
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
    sums = {"plain": np.zeros(3 * DEFAULT_BINS + 2), "scaled": np.zeros(3 * DEFAULT_BINS + 2)}
    held = ([], [])

    def on_batch(logits, labels):
        signals.install()  # the network's first call (graph compilation) installs MindSpore's SIGINT handler
        bad = int((~np.isfinite(logits).all(axis=1)).sum())
        state["not_finite"] += bad
        if acc is not None and not bad:
            acc.update(logits, labels)
            labels = np.asarray(labels).astype(np.int64)
            sums["plain"] += calibration_sums(logits, labels)
            if temperature is not None:
                sums["scaled"] += calibration_sums(logits, labels, temperature=temperature)
            if keep_logits:
                held[0].append(np.asarray(logits, np.float32))
                held[1].append(labels)
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
        both = np.concatenate([sums["plain"], sums["scaled"]])
        if ctx.group_size > 1:
            both = SumAcrossRanks()(both)  # summed like the confusion matrix
        n = len(sums["plain"])
        result.extra["calibration"] = {
            "plain": reliability_from_sums(both[:n]),
            "scaled": reliability_from_sums(both[n:], temperature=temperature) if temperature is not None else None}
        if keep_logits:
            k = spec.num_classes
            result.extra["held_out"] = (np.concatenate(held[0]) if held[0] else np.zeros((0, k), np.float32),
                                        np.concatenate(held[1]) if held[1] else np.zeros((0,), np.int64))
    return result, acc


def _load(spec, cfg, ctx, rewrites, cache):
    """The network of ``spec`` with its weights; on CPU without rewrites one compiled network serves every
    checkpoint of the same arch and classes (a folded network, fold_bn, cannot take other weights)."""
    key = (spec.arch, spec.num_classes)
    if cache.get("key") == key and ctx.device_target == "CPU" and not any(rewrites.values()):
        return cache["net"], load_weights(cache["net"], spec.checkpoint, use_ema=cfg.weights.use_ema)
    cache.clear()
    net, report = build_inference_model(spec, use_ema=cfg.weights.use_ema, prepare=rewrites)
    cache.update(key=key, net=net)
    return net, report


def result_record(spec, result, report, precision, device, data, analysis=None):
    """One checkpoint's record in eval_result.json: counts, model, data (``images_listed`` only when it differs
    from the images scored) and the analysis summary (macro P/R/F1, confused pairs, worst mistakes)."""
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
    """Writes the results (standard JSON, atomically) to every one of ``paths``: the one record, or the best
    one's fields with every record, best first, under ``results`` and the ``unreadable`` checkpoints."""
    from src.utils.fileio import write_text_atomic
    from src.utils.paths import json_dumps

    ranked = _best_first(records)
    data = dict(ranked[0])
    if len(records) > 1 or unreadable:
        data.update(pretrained=os.path.abspath(given), results=ranked,
                    unreadable=[{"checkpoint": os.path.abspath(c), "error": e} for c, e in unreadable])
    text = json_dumps(data, indent=2, ensure_ascii=True, allow_nan=False) + "\n"
    return [write_text_atomic(text, path) for path in paths]


def _best_first(records):
    return sorted(records, key=lambda r: (-r["top1"], -r["top5"], r["checkpoint"]))


def _ranking(records):
    ranked = _best_first(records)
    width = max([len("checkpoint")] + [len(os.path.basename(r["checkpoint"])) for r in ranked])
    lines = [f"{'checkpoint':<{width}}  {'top1':>7}  {'top5':>7}  images"]
    return "\n".join(lines + [f"{os.path.basename(r['checkpoint']):<{width}}  {100 * r['top1']:6.2f}%  "
                              f"{100 * r['top5']:6.2f}%  {r['images']}" for r in ranked])


def _calibration_plan(cfg, specs, log):
    """Per checkpoint, before any work: ``{"record": the calibration record applied, "path": its file (or where
    one was looked for), "write": where calibrate writes one (output-guarded), "sha256": the checkpoint's}``."""
    from src.analysis.calibration import calibration_for, calibration_path, is_calibration_file
    from src.utils.fileio import check_output_file, file_sha256

    given = str(cfg.weights.calibration_file or "").strip()
    if given and given.lower() != "none" and len(specs) > 1:
        raise ConfigError(f"calibration_file={given} names one file, but {cfg.weights.ckpt_file} holds {len(specs)} "
                          "checkpoints: leave calibration_file empty (each checkpoint's record is "
                          "<checkpoint>.calibration.json) or score one checkpoint")
    folder = cfg.weights.ckpt_file if os.path.isdir(cfg.weights.ckpt_file) else None
    inputs = tuple(s.checkpoint for s in specs) + tuple(p for p in _inputs(cfg) if p != folder)
    plan = {}
    for spec in specs:
        ckpt = spec.checkpoint
        if cfg.eval.calibrate:
            path = calibration_path(ckpt, given)
            if path is None:
                raise ConfigError("calibrate writes the checkpoint's calibration record and calibration_file=none "
                                  "says there is none: leave calibration_file empty (<checkpoint>.calibration.json) "
                                  "or name the file to write")
            check_output_file(path, "calibration_file", inputs=inputs, ours=is_calibration_file)
            plan[ckpt] = {"record": None, "path": path, "write": path, "sha256": file_sha256(ckpt)}
        else:
            record, path = calibration_for(ckpt, given)
            plan[ckpt] = {"record": record, "path": path, "write": None, "sha256": None}
            if record is not None:
                log.info("calibration record of %s: %s (temperature %.4g)", ckpt, path, record["temperature"])
    return plan


def _calibration_result(spec, result, entry, cfg, ctx, data, log):
    """``(result record fields, calibration record to write or None, stats at the temperature or None)``: ECE
    and NLL at temperature 1, at the recorded temperature, or (``calibrate``) at one fitted over all ranks."""
    import numpy as np

    from src.analysis.calibration import calibration_sums, fit_temperature, record_from_stats, reliability_from_sums
    from src.analysis.metrics import SumAcrossRanks

    stats = result.extra.get("calibration")
    if stats is None:
        if entry["write"]:
            raise CheckpointError(f"{spec.checkpoint}: calibrate needs labels that are classes of the model, and "
                                  f"the data's labels go beyond its {spec.num_classes} classes")
        return {}, None, None
    plain, tta = stats["plain"], cfg.eval.tta
    fields = {"ece": round(plain["ece"], 6), "nll": round(plain["nll"], 6), "calibration_bins": plain["bins"],
              "tta": tta, "calibration": None}
    log.info("probabilities (%d-bin ECE, NLL) at temperature 1: ECE %.4f, NLL %.4f", plain["bins"], plain["ece"],
             plain["nll"])
    record, after, pending = entry["record"], stats["scaled"], None
    if record is not None:
        fields["calibration"] = {"temperature": record["temperature"], "file": entry["path"], "fitted": False,
                                 "ece": round(after["ece"], 6), "nll": round(after["nll"], 6)}
        log.info("at the calibration record's temperature %.4g (%s): ECE %.4f, NLL %.4f", record["temperature"],
                 entry["path"], after["ece"], after["nll"])
        fitted_with = (record.get("data") or {}).get("tta", "none")
        if fitted_with != tta:
            log.warning("the temperature of %s was fitted with tta=%s, this eval runs tta=%s: it may not fit these "
                        "logits", entry["path"], fitted_with, tta)
    elif entry["write"]:
        logits, labels = result.extra["held_out"]
        reduce = SumAcrossRanks() if ctx.group_size > 1 else None
        fit = fit_temperature(logits, labels, reduce=reduce)
        local = calibration_sums(logits, labels, temperature=fit.temperature) if len(labels) else \
            np.zeros(3 * plain["bins"] + 2)
        after = reliability_from_sums(reduce(local) if reduce else local, temperature=fit.temperature)
        pending = record_from_stats(fit, plain, after, checkpoint=spec.checkpoint, checkpoint_sha256=entry["sha256"],
                                    data={"data_dir": data["data_dir"], "data_list": data.get("data_list", ""),
                                          "tta": tta, "image_size": data["image_size"],
                                          "eval_resize": data["eval_resize"], "crop_pct": data["crop_pct"]})
        if fit.hit_bound:  # no finite optimum: a "temperature" there would make every probability 1 (or 1/K)
            pending = None
            fields["calibration_refused"] = (
                f"{spec.checkpoint}: no temperature fits the {plain['images']} scored images (the NLL keeps falling "
                f"towards T={fit.temperature:g}: " + ("every image is right, with room to spare" if fit.hit_bound ==
                                                      "min" else "the logits carry no information about the labels")
                + "); no calibration record written. Calibrate on a held-out split with mistakes (more or harder "
                "images)")
        fields["calibration"] = {"temperature": round(fit.temperature, 6), "file": pending and entry["write"],
                                 "fitted": True, "hit_bound": fit.hit_bound, "ece_before": round(plain["ece"], 6),
                                 "ece_after": round(after["ece"], 6), "nll_before": round(plain["nll"], 6),
                                 "nll_after": round(after["nll"], 6)}
        log.info("temperature fitted on these %d images: T=%.4g%s; ECE %.4f -> %.4f, NLL %.4f -> %.4f",
                 plain["images"], fit.temperature, f" (at the {fit.hit_bound} bound of the search)" if fit.hit_bound
                 else "", plain["ece"], after["ece"], plain["nll"], after["nll"])
    return fields, pending, after


def _reliability_png(plain, after, folder, cfg, log):
    """``reliability.png`` (not with ``no_plots``; a picture never fails the eval): at temperature 1 and after."""
    from src.analysis.calibration import plot_reliability
    from src.analysis.plots import plotting_unavailable_reason

    if cfg.eval.no_plots:
        return None
    reason = plotting_unavailable_reason()
    if reason:
        log.info("reliability.png not drawn: %s", reason)
        return None
    try:
        path = plot_reliability(plain, os.path.join(folder, "reliability.png"), after=after)
        log.info("reliability diagram: %s", path)
        return path
    except Exception as err:  # a picture must never fail the evaluation
        log.info("reliability.png not drawn: %s: %s", type(err).__name__, err)
        return None


def _open_run_folder(cfg, ctx, specs, run_log):
    """``<log_path>/eval_<timestamp>/`` with the rank's log; on rank 0 ``config.yaml`` (the keys eval reads, with
    the values the run uses) and ``run.json``."""
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


def _score(spec, bundle, cfg, ctx, rewrites, cache, log, calibration):
    """Loads and scores one checkpoint (with ``tta``, and ``calibration``'s temperature):
    ``(result, acc, report, precision)``."""
    from src.deploy.tta import wrap_tta
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
    run_net = wrap_tta(run_net, cfg.eval.tta)
    run_net.set_train(False)
    if cfg.eval.tta != "none":
        log.info("test-time augmentation: %s (each image's logits averaged with its mirror image's)", cfg.eval.tta)
    temperature = calibration["record"]["temperature"] if calibration["record"] else None
    result, acc = score_checkpoint(run_net, bundle, spec, ctx, log, cfg.eval.worst_mistakes, temperature=temperature,
                                   keep_logits=calibration["write"] is not None)
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
    calibration = _calibration_plan(cfg, specs, log)
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

    records, cache, to_write = [], {}, []
    for spec in specs:
        try:
            result, acc, report, precision = _score(spec, bundle, cfg, ctx, rewrites, cache, log,
                                                    calibration[spec.checkpoint])
            fields, pending, after = _calibration_result(spec, result, calibration[spec.checkpoint], cfg, ctx, data,
                                                         log)
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
            png = _reliability_png(result.extra["calibration"]["plain"], after, dirs[spec.checkpoint], cfg, log)
            if png:
                analysis["output"].files["reliability_png"] = png
        records.append({**result_record(spec, result, report, precision, ctx.device_target, data, analysis),
                        **fields})
        if pending is not None:
            to_write.append((pending, calibration[spec.checkpoint]["write"]))

    given = cfg.weights.ckpt_file
    refused = [r.pop("calibration_refused") for r in records if "calibration_refused" in r]
    if not records:
        raise CheckpointError(f"none of the {total} checkpoints in {given} could be scored: "
                              + "; ".join(e for _, e in unreadable))
    if len(records) > 1:
        log.info("%d checkpoints in %s, best first:\n%s", len(records), given, _ranking(records))
    if ctx.is_main:
        from src.analysis.calibration import write_calibration

        for record, path in to_write:
            log.info("calibration record (temperature %.4g) written to %s", record["temperature"],
                     write_calibration(record, path))
        paths = [os.path.join(ctx.run_dir, RESULT_NAME)] + ([cfg.eval.result_file] if cfg.eval.result_file else [])
        log.info("results written to %s", ", ".join(write_results(records, unreadable, given, paths)))
    if refused:
        raise DatasetError("; ".join(refused))
    if unreadable:
        raise CheckpointError(f"{len(unreadable)} of {total} checkpoints could not be read or loaded and were not "
                              f"scored (the others were; results in {ctx.run_dir}): "
                              + "; ".join(e for _, e in unreadable))
    return 0
