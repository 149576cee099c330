"""Prediction behind predict.py: top-k classes with names and softmax probabilities for a list of image files,
from a checkpoint (``src.checkpoint.resolve_model``) or an exported model alone (``model_path``: its record gives
classes, preprocessing and temperature). Records are printed and written once at the end, in input order (an
unreadable file in its place, with the reason); non-finite outputs are an error, never a result.
"""
import os

import numpy as np

from src.checkpoint import CheckpointError
from src.errors import ClassNamesError, ConfigError, DatasetError

__all__ = ["list_images", "check_usable", "resolve_class_names", "predict_files", "cam_folder", "predict_job"]


def list_images(image_path):
    """Files named in ``image_path`` (comma separated files/folders; folders searched recursively, sorted)."""
    from src.data import IMAGE_EXTENSIONS

    entries = [p.strip() for p in str(image_path).split(",") if p.strip()]
    if not entries:
        raise ConfigError("no image given: pass --image_path=FILE, a folder, or a comma separated list of them")
    files = []
    for entry in entries:
        if os.path.isdir(entry):
            found = []
            for root, dirs, names in os.walk(entry):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found += [os.path.join(root, n) for n in names
                          if not n.startswith(".") and os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS]
            if not found:
                raise ConfigError(f"image folder {entry!r} holds no image files "
                                  f"({', '.join(IMAGE_EXTENSIONS[:5])}, ...)")
            files += sorted(found)
        elif os.path.isfile(entry):
            files.append(entry)
        else:
            raise ConfigError(f"image_path: {entry!r} does not exist")
    return [os.path.abspath(f) for f in files]


def check_usable(files, image_path):
    """``DatasetError`` before any device work when no file is a decodable image (unusable ones among usable
    ones are skipped later)."""
    from src.data.checks import SKIP, scan_files

    results = scan_files(files)
    if all(status == SKIP for status, _ in results):
        shown = "; ".join(f"{path} ({reason})" for path, (_, reason) in list(zip(files, results))[:5])
        more = f"; ... and {len(files) - 5} more" if len(files) > 5 else ""
        raise DatasetError(f"image_path={image_path!r}: none of its {len(files)} file(s) is a readable image: "
                           f"{shown}{more}")


def resolve_class_names(class_names_file, spec):
    """``(names, source)``, first match wins: ``class_names_file``; the classes the checkpoint was trained on
    (ImageNet's readable names for synset folders); ImageNet's names for a 1000-class model; ``class_<i>``."""
    from src.data.class_names import IMAGENET_CLASSES_TSV, load_class_names, load_imagenet_synsets

    k = spec.num_classes
    if class_names_file:
        if not os.path.exists(class_names_file):
            raise ClassNamesError(f"class_names_file {class_names_file!r} does not exist")
        return load_class_names(class_names_file, k), class_names_file
    names = spec.class_names
    if names:
        if k == 1000 and names == load_imagenet_synsets():
            return load_class_names(None, 1000), IMAGENET_CLASSES_TSV  # readable names for synset folders
        return list(names) + [f"class_{i}" for i in range(len(names), k)], spec.class_names_source
    if k == 1000:
        return load_class_names(None, 1000), IMAGENET_CLASSES_TSV
    return [f"class_{i}" for i in range(k)], "generic (class_<i>)"


def _compare_names(names, source, spec, log):
    """Warns, naming the classes that differ, when a class-names file disagrees with the trained classes."""
    from src.utils.paths import display_name

    trained = spec.class_names
    if not trained or source == spec.class_names_source or names[:len(trained)] == list(trained):
        return
    differ = [(i, t, n) for i, (t, n) in enumerate(zip(trained, names)) if t != n]
    if not differ:
        return
    shown = ", ".join(f"{i}: {display_name(t)!r} vs {display_name(n)!r}" for i, t, n in differ[:5])
    log.warning("class names from %s differ from the classes the checkpoint was trained on (%s) at %d of %d "
                "indices (%s%s); the names from %s are shown", source, spec.class_names_source, len(differ),
                len(trained), shown, ", ..." if len(differ) > 5 else "", source)


def _numpy_runner(net):
    """``net`` as a function of a NumPy NCHW float32 batch (an ``ExportedModel.logits`` already is one)."""
    import mindspore as ms

    if isinstance(net, ms.nn.Cell):
        return lambda images: net(ms.Tensor(images)).asnumpy()
    return net


def predict_files(net, files, cfg, spec, on_batch=None, tta="none", temperature=1.0):
    """``(softmax(logits / temperature) of the readable files, {skipped file: reason})`` with eval's preprocessing;
    ``net``: a cell or a NumPy batch function; ``on_batch(images, files, start)``: a hook (Grad-CAM)."""
    from src.analysis.calibration import softmax
    from src.data import create_dataset
    from src.deploy.tta import tta_logits
    from src.utils import signals

    pre = spec.preprocess
    # every file is decoded once in an isolated worker first (no manifest: a few files, anywhere)
    bundle = create_dataset("", pre["image_size"], min(cfg.data.per_batch_size, len(files)), mode="eval",
                            files=files, num_classes=spec.num_classes, eval_resize=pre["eval_resize"],
                            crop_pct=pre["crop_pct"], num_parallel_workers=cfg.data.num_parallel_workers,
                            where=f"image_path={cfg.predict.image_path}", verify_files=cfg.data.verify_files,
                            verify_manifest="none")
    skipped = dict(bundle.skipped)
    readable = [p for p in files if p not in skipped]
    run, outputs = _numpy_runner(net), []
    for images, _ in signals.guarded(bundle.dataset.create_tuple_iterator(output_numpy=True, num_epochs=1)):
        start = sum(len(o) for o in outputs)
        outputs.append(np.asarray(tta_logits(run, np.ascontiguousarray(images, dtype=np.float32), tta),
                                  dtype=np.float32))
        signals.install()  # the network's first call (graph compilation) installs MindSpore's SIGINT handler
        if on_batch is not None:
            on_batch(images, readable[start:start + images.shape[0]], start)
    logits = np.concatenate(outputs) if outputs else np.zeros((0, spec.num_classes), np.float32)
    bundle.account(logits.shape[0], "prediction")  # none: DatasetError; dropped ones: a warning naming them
    if logits.shape[0] != len(readable):
        raise DatasetError(f"{len(readable)} readable image(s) but the data pipeline gave {logits.shape[0]} (can the "
                           f"decoder produce image_size={pre['image_size']}? see the warnings above); nothing is "
                           "written")
    bad = [p for p, row in zip(readable, logits) if not np.isfinite(row).all()]
    if bad:
        raise CheckpointError(f"{spec.checkpoint}: the network's outputs are NaN or infinite for {len(bad)} of "
                              f"{len(readable)} images (e.g. {bad[0]}): its precision on this device, or broken "
                              "weights; nothing is written")
    return softmax(logits, temperature), skipped


def cam_folder(cfg):
    """Where the Grad-CAM PNGs go: ``cam_dir``; else beside ``result_file``; else ``./cam``."""
    if cfg.predict.cam_dir:
        return os.path.abspath(cfg.predict.cam_dir)
    if cfg.eval.result_file:
        return os.path.dirname(os.path.abspath(cfg.eval.result_file))
    return os.path.abspath("cam")


def _cam_writer(net, cfg, names, saved):
    """A ``predict_files`` hook saving each image's Grad-CAM for ``cam_class`` (-1: the predicted class) beside the
    input as ``<cam folder>/<index>_<file stem>_cam.png``; ``saved[index]`` gets the PNG and the class."""
    from src.analysis.gradcam import GradCAM, denormalize, save_cam_overlay

    cam = GradCAM(net)
    folder = cam_folder(cfg)
    chosen = None if cfg.predict.cam_class < 0 else cfg.predict.cam_class

    def on_batch(images, batch_files, start):
        result = cam(images, chosen)
        probs = result.probabilities
        for j, path in enumerate(batch_files):
            c = int(result.classes[j])
            top = int(np.argsort(-probs[j], kind="stable")[0])
            caption = f"Grad-CAM of {names[c]} (p={probs[j, c]:.2f})"
            if c != top:
                caption += f"; predicted {names[top]} (p={probs[j, top]:.2f})"
            if result.raw[j].size == 1:
                caption += "; 1x1 feature map at this input size: no localisation"
            elif not result.cams[j].any():
                caption += "; no location speaks for this class"
            stem = os.path.splitext(os.path.basename(path))[0]
            png = save_cam_overlay(denormalize(images[j]), result.cams[j],
                                   os.path.join(folder, f"{start + j:04d}_{stem}_cam.png"), caption=caption,
                                   side_by_side=True)
            saved[start + j] = {"cam": png, "cam_class": c, "cam_class_name": names[c]}

    return on_batch


def _image_fields(path):
    """``{"image": path}``, plus ``"image_bytes"`` (the raw name in hex) when the name is not UTF-8."""
    from src.utils.paths import is_utf8_name

    out = {"image": path}
    if not is_utf8_name(path):
        out["image_bytes"] = os.fsencode(path).hex()
    return out


def _records(files, probs, skipped, names, topk, cams):
    """One record per input file, in input order: its top-k (and Grad-CAM), or the reason it was skipped."""
    records, row = [], 0
    for path in files:
        if path in skipped:
            records.append({**_image_fields(path), "error": skipped[path]})
            continue
        p = probs[row]
        order = np.argsort(-p, kind="stable")[:topk]
        records.append({**_image_fields(path), "topk": [{"class": int(c), "name": names[c],
                                                         "probability": float(p[c])} for c in order]})
        records[-1].update(cams.get(row, {}))
        row += 1
    return records


def _print(records):
    from src.utils.paths import display_name

    for rec in records:
        print(f"\n{display_name(rec['image'])}")
        if "error" in rec:
            print(f"  skipped: {rec['error']}")
            continue
        for rank, t in enumerate(rec["topk"], 1):
            print(f"  {rank}. {t['probability']:.4f}  {display_name(t['name'])}  ({t['class']})")
        if "cam" in rec:
            print(f"  Grad-CAM ({rec['cam_class_name']}): {rec['cam']}")


#: what an exported model's record fixes: predict --model_path refuses these keys on the command line
_RECORD_KEYS = ("image_size", "eval_resize", "crop_pct", "arch", "num_classes", "use_ema")


def _exported(cfg):
    """``(ExportedModel, ModelSpec of it, temperature, where the temperature comes from)`` for ``model_path``."""
    from src.analysis.calibration import read_calibration
    from src.checkpoint import ModelSpec
    from src.data.transforms import IMAGENET_MEAN, IMAGENET_STD
    from src.deploy.exported import ExportedModel
    from src.deploy.record import record_preprocess
    from src.errors import ModelRecordError

    path = os.path.abspath(cfg.predict.model_path)
    model = ExportedModel(path)
    record = model.record
    pre = record["preprocess"]
    if not (np.allclose(pre["mean"], IMAGENET_MEAN, atol=1e-3) and np.allclose(pre["std"], IMAGENET_STD, atol=1e-3)):
        raise ModelRecordError(f"{model.record_source}: preprocess mean={pre['mean']} std={pre['std']} are not the "
                               "ImageNet values this project's pipeline normalizes with")
    size, mode, pct = record_preprocess(record)
    spec = ModelSpec(checkpoint=path, arch=record["arch"], num_classes=record["num_classes"],
                     preprocess={"image_size": size, "eval_resize": mode, "crop_pct": pct},
                     class_names=record.get("class_names"), class_names_source=f"the model record of {path}",
                     layout="exported")
    given = str(cfg.weights.calibration_file or "").strip()
    if given.lower() == "none":
        return model, spec, 1.0, "calibration_file=none"
    if given:
        sha = (record.get("source_checkpoint") or {}).get("sha256")
        cal = read_calibration(os.path.abspath(given), sha)
        return model, spec, float(cal["temperature"]), os.path.abspath(given)
    cal = record.get("calibration")
    if cal is None:
        return model, spec, 1.0, f"none in the model record of {path}"
    return model, spec, float(cal["temperature"]), f"the model record of {path}"


def _model_path_checks(cfg):
    if cfg.weights.ckpt_file:
        raise ConfigError(f"give one model: ckpt_file={cfg.weights.ckpt_file} or model_path={cfg.predict.model_path} "
                          "(an exported model predicts alone, from its own record)")
    if cfg.predict.cam:
        raise ConfigError("cam needs the network's layers, which an exported model (model_path) does not expose: "
                          "predict from the checkpoint (ckpt_file) for Grad-CAM")
    fixed = [k for k in _RECORD_KEYS if cfg.is_explicit(k)]
    if fixed:
        raise ConfigError(f"model_path={cfg.predict.model_path}: its model record fixes {', '.join(fixed)}; leave "
                          f"--{fixed[0]} out")


def predict_job(cfg, run_log):
    from src.analysis.calibration import calibration_for
    from src.checkpoint import build_inference_model, resolve_model
    from src.deploy.record import sidecar_path
    from src.evaluation import apply_eval_precision
    from src.utils.fileio import check_output_dir, check_output_file, write_text_atomic
    from src.utils.paths import display_name, json_dumps
    from src.utils.runtime import start_context

    ckpt, exported = cfg.weights.ckpt_file, cfg.predict.model_path
    if exported:
        _model_path_checks(cfg)
        if not os.path.isfile(exported):
            raise ConfigError(f"model_path={exported}: no such file (an exported .onnx or .mindir model)")
    elif not ckpt:
        raise ConfigError("no checkpoint given: pass --ckpt_file=PATH (or --pretrained=PATH), a .ckpt, .safetensors or "
                          "timm .pth file (or --model_path=M.onnx, a model exported by export.py)")
    elif not os.path.exists(ckpt):
        raise CheckpointError(f"checkpoint file {ckpt!r} does not exist")
    files = list_images(cfg.predict.image_path)
    model_files = [exported, sidecar_path(exported)] if exported else [ckpt]
    inputs = model_files + [cfg.predict.class_names_file, cfg.config_path, cfg.weights.calibration_file] + \
        [p.strip() for p in str(cfg.predict.image_path).split(",")]
    inputs = [p for p in inputs if p and p.lower() != "none"]
    if cfg.eval.result_file:
        check_output_file(cfg.eval.result_file, "result_file", inputs=inputs)
    if cfg.predict.cam:
        check_output_dir(cam_folder(cfg), "cam_dir", inputs=inputs)
    check_usable(files, cfg.predict.image_path)
    if exported:
        start_context(cfg.device, "infer", network=False)  # process settings (a MINDIR model runs in MindSpore)
        model, spec, temperature, t_source = _exported(cfg)
        net, model_line = model.logits, f"model: {spec.arch}, {spec.num_classes} classes, exported model {exported}"
    else:
        spec = resolve_model(cfg, ckpt, log=run_log.log)
        calibration, where = calibration_for(ckpt, cfg.weights.calibration_file)
        temperature = float(calibration["temperature"]) if calibration else 1.0
        t_source = where if calibration else "calibration_file=none" if where is None else f"no calibration record at {where}"
    names, names_source = resolve_class_names(cfg.predict.class_names_file, spec)
    if cfg.predict.cam and cfg.predict.cam_class >= spec.num_classes:
        raise ConfigError(f"cam_class={cfg.predict.cam_class} is outside the model's classes "
                          f"0..{spec.num_classes - 1} (-1: each image's predicted class)")
    _compare_names(names, names_source, spec, run_log.log)
    cam_net = None
    if not exported:
        ctx, rewrites = start_context(cfg.device, "infer")
        net, report = build_inference_model(spec, use_ema=cfg.weights.use_ema, prepare=rewrites)
        cam_net = net  # the classifier itself (forward_features / forward_head), before any precision wrapper
        net, precision = apply_eval_precision(net, ctx.device_target)
        net.set_train(False)
        model_line = (f"model: {spec.arch}, {spec.num_classes} classes, from {ckpt} ({report.layout} layout"
                      f"{', EMA weights' if report.used_ema else ''}); {precision} on {ctx.device_target}")
    pre = spec.preprocess
    print(display_name(f"{model_line}; input {pre['image_size']} ({pre['eval_resize']} resize, crop_pct "
                       f"{pre['crop_pct']}); class names: {names_source}"))
    print(display_name(f"probabilities: softmax(logits / T), T={temperature:.4g} ({t_source})"
                       + (f"; test-time augmentation: {cfg.eval.tta}" if cfg.eval.tta != "none" else "")))
    cams = {}
    on_batch = _cam_writer(cam_net, cfg, names, cams) if cfg.predict.cam else None
    probs, skipped = predict_files(net, files, cfg, spec, on_batch=on_batch, tta=cfg.eval.tta, temperature=temperature)
    records = _records(files, probs, skipped, names, max(1, min(cfg.predict.topk, spec.num_classes)), cams)
    _print(records)
    if cfg.eval.result_file:
        doc = {"checkpoint": os.path.abspath(ckpt) if ckpt else None, "arch": spec.arch,
               "num_classes": spec.num_classes, "class_names": names_source, "image_size": pre["image_size"],
               "temperature": temperature, "temperature_source": t_source, "tta": cfg.eval.tta,
               "predictions": records}
        if exported:
            source = model.record.get("source_checkpoint") or {}
            doc.update(model=os.path.abspath(exported), checkpoint=source.get("path"))
        out = write_text_atomic(json_dumps(doc, indent=2, allow_nan=False) + "\n", cfg.eval.result_file)
        print(f"\npredictions written to {display_name(out)}")
    return 0
