"""Evaluate CSPDarkNet53 checkpoints: top-1 / top-5 over every image of an ImageFolder (GRAPH mode).

    python eval.py --ckpt_file=CKPT --data_dir=/data/imagenet/val [--per_batch_size=64]
    python eval.py --ckpt_file=outputs/<run>/ckpt_0/          # every checkpoint in a folder, best first
    python eval.py --ckpt_file=CKPT --data_dir=ROOT --data_list=val.txt   # "relative/path label" lines
    python eval.py --ckpt_file=CKPT                           # no data_dir: the embedded demo val slice
    python eval.py --ckpt_file=CKPT --data_dir=val2 --class_map=map.json    # folders named otherwise
    python eval.py --ckpt_file=CKPT --dataset_format=mindrecord --data_dir=/fast/val.mindrecord

Labels are checked first: the class folders of ``data_dir`` (a MindRecord dataset's stored classes) against the
classes the checkpoint was trained on (recorded in it by train.py, else the run folder's ``class_index.json``); a
folder that is not a trained class is an error naming it unless ``class_map`` maps it, a subset is said, and
the labels are the trained indices. Every file is decoded once in an isolated worker before scoring
(``verify_files``; cached in the manifest), unusable ones named and skipped.

``ckpt_file`` (``--pretrained``: the zoo's name) is required: a checkpoint file in any format ``src.checkpoint``
reads, or a folder of ``*.ckpt`` / ``*.safetensors`` files. A checkpoint that records its ``arch`` / ``num_classes`` and its
training preprocessing is built and fed with them unless the command line says otherwise (then the
architecture's defaults fill what is left). Precision follows the device as in the model zoo (Ascend
float16, GPU float16 with float32 BatchNorm, CPU float32); ``use_ema=1`` scores EMA weights.
Distributed (msrun / rank table, ``is_distributed``): every rank scores its own disjoint shard and the
counts are summed; rank 0 writes the results.

Outputs: the model zoo's lines ``top1_correct=N, tot=M, acc=XX.XX%(TOP1)``, the TOP5 line and
``Inference Performance: X.XX img/sec``; ``<log_path>/<run>/eval_result.json`` (and ``result_file`` when
given); the log ``<log_path>/<run>/eval_rank<R>.log``, the resolved ``config.yaml`` and ``run.json``.
Beside the JSON (in ``<run>/<checkpoint stem>/`` when several checkpoints are scored), from the counts of
all ranks (``src.analysis``): ``per_class.csv``, ``confusion_matrix.csv`` (rows = true class, columns =
predicted, raw counts), ``confusion_matrix.png`` (needs matplotlib; without it the log says so) and
``worst_mistakes.png`` (the ``worst_mistakes`` most confident wrong predictions); ``no_plots`` skips the
PNGs. The JSON gains macro precision / recall / F1, the 10 most confused pairs and the worst mistakes' files.
Exit status: 0 done, 2 bad input (the message names the file, key or value); a folder with unreadable
checkpoints scores the others, writes their results and then exits 2 naming the unreadable ones.
"""
import os
import sys

from model_utils.entry import run_entry

RESULT_NAME = "eval_result.json"


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


def _class_names(bundle, num_classes, imagenet_labels, data_list, info):
    """Names of the ``num_classes`` rows of the confusion matrix (the labels scored): ImageNet's when the labels
    are ImageNet indices (``imagenet_labels``: synset folders, or a 1000-class model without recorded names
    whose classes are ImageNet's or that reads a ``data_list``); else the names the checkpoint records; else
    the data's class folders (not with a ``data_list``: its labels are indices, not names); gaps ``class_<i>``."""
    from src.data.class_names import load_class_names, load_imagenet_synsets

    generic = [f"class_{i}" for i in range(num_classes)]
    recorded = info.get("class_names") or []
    folders = {} if data_list else {i: name for name, i in bundle.class_to_idx.items() if 0 <= i < num_classes}
    if num_classes == 1000 and (imagenet_labels or recorded == load_imagenet_synsets() or (not recorded and (
            data_list or [folders.get(i) for i in range(1000)] == load_imagenet_synsets()))):
        return load_class_names(None, 1000)
    if recorded:
        return list(recorded[:num_classes]) + generic[len(recorded):]
    return [folders.get(i, generic[i]) for i in range(num_classes)]


def _abs_or_none(path):
    return os.path.abspath(path) if path else None


def _analysis_dirs(ckpts, run_dir):
    """Where each checkpoint's analysis files go: the run folder for one, ``<run>/<checkpoint stem>/`` for several."""
    if len(ckpts) == 1:
        return {ckpts[0]: run_dir}
    stems = [os.path.splitext(os.path.basename(c))[0] for c in ckpts]
    return {c: os.path.join(run_dir, stem if stems.count(stem) == 1 else os.path.basename(c))
            for c, stem in zip(ckpts, stems)}


def _label_check(cfg, ckpts, infos, num_classes, data_dir, log):
    """The labels to score with: ``(class_to_idx or None, record for the result JSON)``.

    The class index the model was trained with (``checkpoint_model_info``: recorded in the checkpoint, else
    the run folder's ``class_index.json``) is compared with the data's class folders (a MindRecord dataset's
    stored classes): a folder that is no trained class is an error naming it (``ClassIndexError``, exit 2)
    unless ``class_map`` maps it; a subset of the classes is fine and logged; the labels are then the
    trained indices. Without recorded class names: ImageNet synset folders get their ImageNet indices for a
    1000-class model, anything else is scored in sorted folder order with a warning that it is unchecked."""
    from src.checkpoint import CheckpointError
    from src.data.class_check import compare_class_index, load_class_mapping, trained_class_index

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
    named = [c for c in ckpts if infos[c].get("class_names")]
    names = infos[named[0]]["class_names"] if named else None
    other = [c for c in named if infos[c]["class_names"] != names]
    if other:
        raise CheckpointError(f"{other[0]} was trained on other classes than {named[0]} "
                              f"({infos[other[0]]['class_names_source']} vs {infos[named[0]]['class_names_source']});"
                              " score them separately")
    mapping = load_class_mapping(cfg.eval.class_map) if cfg.eval.class_map else None
    if names is None and mapping is None:
        synsets = _imagenet_class_index(data_dir, num_classes) if cfg.data.dataset_format == "folder" else None
        if synsets is not None:
            log.info("%s holds %d ImageNet synset folders: labels are their ImageNet-1k indices", data_dir,
                     len(synsets))
            return synsets, {"kind": "imagenet synsets"}
        log.warning("%s records no class names and has no class_index.json beside it: the labels are the sorted "
                    "order of the %d class folders of %s, unchecked (give class_map to map them explicitly)",
                    ckpts[0], len(folders), data_dir)
        return None, {"kind": "not checked (no class names in the checkpoint)"}
    if names is None:  # a mapping onto class indices only
        names, source = [str(i) for i in range(num_classes)], "class indices (the checkpoint records no names)"
    else:
        source = infos[named[0]]["class_names_source"]
    res = compare_class_index(trained_class_index(names), folders, mapping, where=data_dir, source=source)
    if not res.ok:
        raise res.error()
    log.info("class check: %s", res.message)
    return res.class_to_idx, {"kind": res.kind, "message": res.message, "trained_classes": len(names),
                              "missing_classes": len(res.missing)}


def _read_checkpoints(cfg):
    """Every checkpoint to score and what each records; unreadable ones are returned apart."""
    from src.errors import ConfigError
    from src.checkpoint import CheckpointError, checkpoint_files, checkpoint_model_info

    if not cfg.weights.ckpt_file:
        raise ConfigError("no checkpoint given: pass --ckpt_file=PATH (or --pretrained=PATH), a checkpoint file "
                          "(.ckpt, .safetensors, timm .pth) or a folder of .ckpt/.safetensors files; eval never "
                          "scores random weights")
    ckpts = checkpoint_files(cfg.weights.ckpt_file)
    infos, unreadable = {}, []
    for ckpt in ckpts:
        try:
            infos[ckpt] = checkpoint_model_info(ckpt)
        except CheckpointError as err:
            if len(ckpts) == 1:
                raise
            unreadable.append((ckpt, str(err)))
    if not infos:
        raise CheckpointError(f"no readable checkpoint in {cfg.weights.ckpt_file}: " +
                              "; ".join(e for _, e in unreadable))
    return [c for c in ckpts if c in infos], infos, unreadable


def _drop_unfitting(cfg, ckpts, infos, unreadable):
    """Checkpoints that hold no CSPDarkNet53 weights, or whose recorded arch / num_classes contradict an
    explicit ``--arch`` / ``--num_classes``, cannot be loaded: found here from what
    ``checkpoint_model_info`` read, before any device work or run folder. A single checkpoint (or when
    none is left) is an error; else they join ``unreadable``."""
    from src.checkpoint import CheckpointError

    fitting = []
    for ckpt in ckpts:
        info = infos[ckpt]
        problem = info.get("problem")
        if not problem and cfg.is_explicit("arch") and info.get("arch") and info["arch"] != cfg.model.arch:
            problem = f"holds weights for arch {info['arch']!r} but --arch={cfg.model.arch}"
        if not problem and cfg.is_explicit("num_classes") and info.get("num_classes") \
                and int(info["num_classes"]) != cfg.model.num_classes:
            problem = (f"has a {int(info['num_classes'])}-class head but --num_classes={cfg.model.num_classes} "
                       "(leave num_classes out to use the checkpoint's)")
        if not problem:
            fitting.append(ckpt)
        elif len(ckpts) + len(unreadable) == 1:
            raise CheckpointError(f"{ckpt}: {problem}")
        else:
            unreadable.append((ckpt, f"{ckpt}: {problem}"))
    if not fitting:
        raise CheckpointError(f"no checkpoint in {cfg.weights.ckpt_file} fits the network asked for: " +
                              "; ".join(e for _, e in unreadable))
    return fitting


def evaluate_job(cfg, run_log):
    from src.config import save_config
    from src.archs import resolve_preprocess
    from src.checkpoint import CheckpointError, resolve_model_info
    from src.data import DatasetError
    from src.data.demo import with_demo_data
    from src.data.pipeline import create_dataset_from_config
    from src.analysis.report import write_eval_analysis
    from src.evaluation import result_record, score_checkpoints
    from src.utils.fileio import check_output_dir, check_output_file, write_json_atomic
    from src.utils.runtime import new_run_dir, start_context

    log = run_log.log
    ckpts, infos, unreadable = _read_checkpoints(cfg)  # before any device work: a wrong path fails fast
    ckpts = _drop_unfitting(cfg, ckpts, infos, unreadable)
    check_output_dir(cfg.eval.log_path, "log_path")
    if cfg.eval.result_file:
        check_output_file(cfg.eval.result_file, "result_file")
    note = None
    if not cfg.data.data_dir and not cfg.data.data_list:
        cfg, note = with_demo_data(cfg, "val")
    elif cfg.data.dataset_format == "mindrecord":
        from src.data.mindrecord import read_meta
        read_meta(cfg.data.data_dir)  # a DatasetError naming what is missing
    elif cfg.data.data_dir and not os.path.isdir(cfg.data.data_dir):
        raise DatasetError(f"dataset folder not found: {cfg.data.data_dir} (data_dir: an ImageFolder root, "
                           "root/<class>/<image>; leave it empty to evaluate the embedded demo data)")
    # the network and preprocessing come from the first checkpoint that records (or implies) its arch
    first = next((infos[c] for c in ckpts if infos[c].get("arch")), infos[ckpts[0]])
    arch, num_classes = resolve_model_info(first, cfg.model.arch, cfg.model.num_classes, cfg.is_explicit("arch"),
                                           cfg.is_explicit("num_classes"))
    given = {k for k in ("image_size", "eval_resize", "crop_pct") if cfg.is_explicit(k)}
    pre = resolve_preprocess(arch, cfg.data.image_size, cfg.data.eval_resize, cfg.data.crop_pct,
                             recorded=first["preprocess"], given=given)

    data_dir = cfg.data.data_dir
    class_to_idx, class_check = _label_check(cfg, ckpts, infos, num_classes, data_dir, log)  # before device work
    ctx, rewrites = start_context(cfg.device, "infer")
    run_log.set_rank(ctx.rank)
    if note:
        log.info(note)
    bundle = create_dataset_from_config(cfg.data, "eval", seed=cfg.device.seed, num_classes=num_classes,
                                        rank=ctx.rank, group_size=ctx.group_size, class_to_idx=class_to_idx,
                                        **pre)
    if num_classes < len(bundle.class_to_idx) and class_to_idx is None:
        raise CheckpointError(f"{cfg.weights.ckpt_file}: the model has {num_classes} classes but {data_dir} has "
                              f"{len(bundle.class_to_idx)} class folders")

    ctx.run_dir = new_run_dir(cfg.eval.log_path)
    run_log.attach_file(os.path.join(ctx.run_dir, f"eval_rank{ctx.rank}.log"))
    if ctx.is_main:
        save_config(cfg, os.path.join(ctx.run_dir, "config.yaml"))
        ctx.save(os.path.join(ctx.run_dir, "run.json"), cfg)
    log.info("run folder: %s (rank %d of %d, device %s); %d checkpoint(s) to score", ctx.run_dir, ctx.rank,
             ctx.group_size, ctx.device_target, len(ckpts))
    if ctx.settings:
        log.info("CPU settings: %s", ", ".join(f"{k}={v}" for k, v in ctx.settings.items()))
    images_total = bundle.total_images or bundle.num_images
    log.info("eval data: %s, %d images in %d classes (%d on this rank, %d batches of up to %d), %s px, %s resize, "
             "crop_pct %g%s", f"{cfg.data.data_list} (root {data_dir or '.'})" if cfg.data.data_list else data_dir,
             images_total, len(bundle.class_to_idx), bundle.num_images, bundle.steps_per_epoch,
             cfg.data.per_batch_size, pre["image_size"], pre["eval_resize"], pre["crop_pct"],
             f"; {len(bundle.skipped)} unreadable file(s) skipped" if bundle.skipped else "")

    desc = {"data_dir": os.path.abspath(data_dir) if data_dir else "", "per_batch_size": cfg.data.per_batch_size,
            **pre, "class_check": class_check}
    if cfg.data.data_list:
        desc["data_list"] = os.path.abspath(cfg.data.data_list)
    dirs = _analysis_dirs(ckpts, ctx.run_dir)

    def analyze(ckpt, acc):  # every rank, after the counts of all ranks were summed; rank 0 writes
        if not ctx.is_main:
            return None
        names = _class_names(bundle, acc.num_classes, class_check.get("kind") == "imagenet synsets", cfg.data.data_list,
                             infos[ckpt])
        out = write_eval_analysis(acc, dirs[ckpt], names, image_for_index=bundle.path_of,
                                  plots=not cfg.eval.no_plots, log=log)
        log.info("analysis: %s", ", ".join(out.files[k] for k in out.files))
        fields = dict(out.json_fields)
        fields["worst_mistakes"] = [{"image": _abs_or_none(bundle.path_of(m.index)), "true": m.true,
                                     "true_name": names[m.true], "predicted": m.predicted,
                                     "predicted_name": names[m.predicted], "confidence": round(m.confidence, 6)}
                                    for m in acc.worst_mistakes()]
        fields["analysis_dir"] = os.path.abspath(dirs[ckpt])
        return fields

    not_loaded = []
    scored = score_checkpoints(ckpts, infos, bundle, cfg, ctx, log, rewrites, analyze=analyze,
                               failed=not_loaded if len(ckpts) + len(unreadable) > 1 else None)
    unreadable += not_loaded
    total_ckpts = len(ckpts) + len(unreadable) - len(not_loaded)
    if not scored:
        raise CheckpointError(f"none of the {total_ckpts} checkpoints in {cfg.weights.ckpt_file} could be "
                              f"scored: " + "; ".join(e for _, e in unreadable))
    records = [result_record(ckpt, info, result, report, precision, ctx.device_target, desc)
               for ckpt, info, result, report, precision in scored]
    for rec in records:
        if rec["images"] != images_total:
            rec["images_listed"] = images_total
    ranked = sorted(records, key=lambda r: (-r["top1"], -r["top5"], r["checkpoint"]))
    if len(records) > 1:
        width = max([len("checkpoint")] + [len(os.path.basename(r["checkpoint"])) for r in ranked])
        lines = [f"{'checkpoint':<{width}}  {'top1':>7}  {'top5':>7}  images"]
        lines += [f"{os.path.basename(r['checkpoint']):<{width}}  {100 * r['top1']:6.2f}%  {100 * r['top5']:6.2f}%  "
                  f"{r['images']}" for r in ranked]
        log.info("%d checkpoints in %s, best first:\n%s", len(records), cfg.weights.ckpt_file, "\n".join(lines))
    if ctx.is_main:
        data = dict(records[0]) if len(records) == 1 and not unreadable else dict(ranked[0])
        if len(records) > 1 or unreadable:  # the best checkpoint's fields at the top, every one under "results"
            data.update(pretrained=os.path.abspath(cfg.weights.ckpt_file), results=ranked,
                        unreadable=[{"checkpoint": os.path.abspath(c), "error": e} for c, e in unreadable])
        paths = [write_json_atomic(data, os.path.join(ctx.run_dir, RESULT_NAME))]
        if cfg.eval.result_file:
            paths.append(write_json_atomic(data, cfg.eval.result_file))
        log.info("results written to %s", ", ".join(paths))
    if unreadable:
        raise CheckpointError(f"{len(unreadable)} of {total_ckpts} checkpoints could not be read or loaded "
                              f"and were not scored (the others were; results in {ctx.run_dir}): "
                              + "; ".join(e for _, e in unreadable))
    return 0


def main(argv=None):
    return run_entry(evaluate_job, argv, log_name="eval")


if __name__ == "__main__":
    sys.exit(main())
