"""Top-k classes, with names and softmax probabilities, for images from any CSPDarkNet53 checkpoint.

    python predict.py --ckpt_file=CKPT --image_path=cat.jpg
    python predict.py --ckpt_file=outputs/<run>/ckpt_0/best.ckpt --image_path=photos/,extra.png --topk=3
    python predict.py --ckpt_file=CKPT --image_path=photos --result_file=predictions.json

``image_path``: image files and/or folders (searched recursively), comma separated. Preprocessing is
eval's exactly (``src.data``'s eval pipeline: decode, resize, center crop, normalize). Every file is first
decoded once in an isolated worker process (``src.data.verify``; no manifest), so a file that would crash the
decoder is reported and skipped like any unreadable one. File names that are not UTF-8 are printed as
``\\xNN`` and written to the JSON exactly (plus ``image_bytes``, the raw name in hex).

Class names, first match wins: ``class_names_file`` (a TSV/TXT list or a class index JSON, see
``src.data.class_names``; a warning says when it disagrees with the checkpoint's classes); the names the
checkpoint records (its training run's classes; for older
checkpoints the run folder's ``class_index.json``); the shipped ImageNet-1k names for a 1000-class
model; else ``class_<i>``. Images are preprocessed at the checkpoint's training ``image_size`` /
``eval_resize`` / ``crop_pct`` unless they are given (then the architecture's defaults fill the rest).
``cam=1`` also saves, per image, the input and its Grad-CAM heatmap (``src.analysis.gradcam``: the
last stage's feature map weighted by the gradient of the predicted class's score, or ``cam_class``'s) as
``<index>_<name>_cam.png`` in ``cam_dir`` (default: beside ``result_file``, else ``./cam``); the JSON
record of the image names it under ``"cam"`` (and the explained class under ``"cam_class"``).
Exit status: 0 done, 2 bad input (the message names the file, key or value).
"""
import os
import sys
import tempfile

import numpy as np

from src.errors import ConfigError
from model_utils.entry import run_entry
from src.data import DatasetError
from src.data.class_names import ClassNamesError


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
    """Raises ``DatasetError`` naming the user's files when none of them is an image that can be decoded
    (before any device work); the unusable ones among usable ones are reported later and skipped."""
    from src.data.checks import SKIP, scan_files

    results = scan_files(files)
    if all(status == SKIP for status, _ in results):
        shown = "; ".join(f"{path} ({reason})" for path, (_, reason) in list(zip(files, results))[:5])
        more = f"; ... and {len(files) - 5} more" if len(files) > 5 else ""
        raise DatasetError(f"image_path={image_path!r}: none of its {len(files)} file(s) is a readable image: "
                           f"{shown}{more}")


def resolve_class_names(cfg, info, num_classes):
    """Returns ``(names, source)``; see the module doc for the order."""
    from src.data.class_names import IMAGENET_CLASSES_TSV, load_class_names, load_imagenet_synsets

    if cfg.predict.class_names_file:
        if not os.path.exists(cfg.predict.class_names_file):
            raise ClassNamesError(f"class_names_file {cfg.predict.class_names_file!r} does not exist")
        return load_class_names(cfg.predict.class_names_file, num_classes), cfg.predict.class_names_file
    names = info.get("class_names")
    if names:
        if num_classes == 1000 and names == load_imagenet_synsets():
            return load_class_names(None, 1000), IMAGENET_CLASSES_TSV  # readable names for synset folders
        names = list(names) + [f"class_{i}" for i in range(len(names), num_classes)]
        return names, info.get("class_names_source") or "the checkpoint's training classes"
    if num_classes == 1000:
        return load_class_names(None, 1000), IMAGENET_CLASSES_TSV
    return [f"class_{i}" for i in range(num_classes)], "generic (class_<i>)"


def _compare_names(names, source, info, log):
    """A class-names file that disagrees with the classes the checkpoint was trained on is said (a warning
    naming the classes that differ): the names shown would be wrong."""
    from src.utils.paths import display_name

    trained = info.get("class_names")
    if not trained or source == info.get("class_names_source") or names[:len(trained)] == list(trained):
        return
    differ = [(i, t, n) for i, (t, n) in enumerate(zip(trained, names)) if t != n]
    if not differ:
        return
    shown = ", ".join(f"{i}: {display_name(t)!r} vs {display_name(n)!r}" for i, t, n in differ[:5])
    log.warning("class names from %s differ from the classes the checkpoint was trained on (%s) at %d of %d "
                "indices (%s%s); the names from %s are shown", source, info.get("class_names_source"),
                len(differ), len(trained), shown, ", ..." if len(differ) > 5 else "", source)


def _softmax(logits):
    x = np.asarray(logits, dtype=np.float64)
    x = x - x.max(axis=1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=1, keepdims=True)


def predict_files(net, files, cfg, num_classes, pre, on_batch=None):
    """Runs eval's preprocessing (``pre``: image_size, eval_resize, crop_pct) and the network over ``files``;
    returns ``(probabilities [N, K], kept files, skipped [(file, reason)])``. The images go through
    ``src.data.create_dataset`` in list mode, so the pixels are exactly what eval would feed.
    ``on_batch(images, files, start)``: called with each batch's network inputs, their files and the index
    of the first one among the kept files (Grad-CAM)."""
    import mindspore as ms

    from src.data import create_dataset

    from src.utils.paths import write_lines

    fd, list_path = tempfile.mkstemp(prefix="predict_list.", suffix=".txt")
    try:
        os.close(fd)
        write_lines(list_path, [f"{path} 0" for path in files])  # names that are not UTF-8 kept as bytes
        # every file is decoded once in an isolated worker first (no manifest: a few files, anywhere)
        bundle = create_dataset("", pre["image_size"], min(cfg.data.per_batch_size, len(files)), mode="eval",
                                data_list=list_path, num_classes=num_classes, eval_resize=pre["eval_resize"],
                                crop_pct=pre["crop_pct"], num_parallel_workers=cfg.data.num_parallel_workers,
                                where=f"image_path={cfg.predict.image_path}",
                                verify_files=cfg.data.verify_files, verify_manifest="none")
        outputs = []
        bad = {p for p, _ in bundle.skipped}
        listed = [p for p in files if p not in bad]
        done = 0
        for images, _ in bundle.dataset.create_tuple_iterator(output_numpy=True, num_epochs=1):
            logits = net(ms.Tensor(np.ascontiguousarray(images, dtype=np.float32))).asnumpy()
            outputs.append(logits.astype(np.float32))
            if on_batch is not None:
                on_batch(images, listed[done:done + images.shape[0]], done)
            done += images.shape[0]
    finally:
        os.remove(list_path)
    skipped = list(bundle.skipped)
    bad = {p for p, _ in skipped}
    kept = [p for p in files if p not in bad]
    probs = _softmax(np.concatenate(outputs)) if outputs else np.zeros((0, num_classes))
    if probs.shape[0] != len(kept):
        raise DatasetError(f"{len(kept)} images listed but {probs.shape[0]} decoded; see the warnings above")
    return probs, kept, skipped


def cam_folder(cfg):
    """Where the Grad-CAM PNGs go: ``cam_dir``; else beside ``result_file``; else ``./cam``."""
    if cfg.predict.cam_dir:
        return os.path.abspath(cfg.predict.cam_dir)
    if cfg.eval.result_file:
        return os.path.dirname(os.path.abspath(cfg.eval.result_file))
    return os.path.abspath("cam")


def _cam_writer(net, cfg, names, saved):
    """A ``predict_files`` batch hook: Grad-CAM of each image for ``cam_class`` (-1: the predicted class),
    saved as ``<cam folder>/<index>_<file stem>_cam.png`` (the index among the readable images, as in the
    JSON), the input and its overlay side by side; ``saved[index] = {"cam": png path, "cam_class": c, ...}``."""
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
    """``{"image": path}`` (a name that is not UTF-8 is written as lossless ``\\udcXX`` escapes), plus
    ``"image_bytes"``, the raw name in hex, for other tools when the name is not UTF-8."""
    from src.utils.paths import is_utf8_name

    out = {"image": path}
    if not is_utf8_name(path):
        out["image_bytes"] = os.fsencode(path).hex()
    return out


def predict_job(cfg, run_log):
    from src.archs import resolve_preprocess
    from src.checkpoint import (CheckpointError, build_inference_model, checkpoint_model_info,
                                resolve_model_info)
    from src.evaluation import apply_eval_precision
    from src.utils.fileio import check_output_file, write_json_atomic
    from src.utils.paths import display_name
    from src.utils.runtime import start_context

    ckpt = cfg.weights.ckpt_file
    if not ckpt:
        raise ConfigError("no checkpoint given: pass --ckpt_file=PATH (or --pretrained=PATH), a .ckpt, "
                          ".safetensors or timm .pth file")
    if not os.path.exists(ckpt):
        raise CheckpointError(f"checkpoint file {ckpt!r} does not exist")
    files = list_images(cfg.predict.image_path)
    check_usable(files, cfg.predict.image_path)
    if cfg.eval.result_file:
        check_output_file(cfg.eval.result_file, "result_file")
    info = checkpoint_model_info(ckpt)
    arch, num_classes = resolve_model_info(info, cfg.model.arch, cfg.model.num_classes, cfg.is_explicit("arch"),
                                           cfg.is_explicit("num_classes"))
    given = {k for k in ("image_size", "eval_resize", "crop_pct") if cfg.is_explicit(k)}
    pre = resolve_preprocess(arch, cfg.data.image_size, cfg.data.eval_resize, cfg.data.crop_pct,
                             recorded=info["preprocess"], given=given)
    names, names_source = resolve_class_names(cfg, info, num_classes)
    if cfg.predict.cam and cfg.predict.cam_class >= num_classes:
        raise ConfigError(f"cam_class={cfg.predict.cam_class} is outside the model's classes 0..{num_classes - 1} "
                          "(-1: each image's predicted class)")
    _compare_names(names, names_source, info, run_log.log)
    ctx, rewrites = start_context(cfg.device, "infer")
    net, report, info = build_inference_model(ckpt, arch, num_classes, num_classes_explicit=True, arch_explicit=True,
                                              use_ema=cfg.weights.use_ema, info=info, prepare=rewrites)
    cam_net = net  # the classifier itself (forward_features / forward_head), before any precision wrapper
    net, precision = apply_eval_precision(net, ctx.device_target)
    net.set_train(False)
    print(display_name(f"model: {arch}, {num_classes} classes, from {ckpt} ({report.layout} layout"
          f"{', EMA weights' if report.used_ema else ''}); {precision} on {ctx.device_target}; input "
          f"{pre['image_size']} ({pre['eval_resize']} resize, crop_pct {pre['crop_pct']}); class names: "
          f"{names_source}"))

    cams = {}
    on_batch = _cam_writer(cam_net, cfg, names, cams) if cfg.predict.cam else None
    probs, kept, skipped = predict_files(net, files, cfg, num_classes, pre, on_batch=on_batch)
    k = max(1, min(cfg.predict.topk, num_classes))
    records = []
    for i, (path, p) in enumerate(zip(kept, probs)):
        order = np.argsort(-p, kind="stable")[:k]
        top = [{"class": int(c), "name": names[c], "probability": float(p[c])} for c in order]
        records.append({**_image_fields(path), "topk": top})
        print(f"\n{display_name(path)}")
        for rank, t in enumerate(top, 1):
            print(f"  {rank}. {t['probability']:.4f}  {display_name(t['name'])}  ({t['class']})")
        if i in cams:
            records[-1].update(cams[i])
            print(f"  Grad-CAM ({cams[i]['cam_class_name']}): {cams[i]['cam']}")
    for path, reason in skipped:
        print(f"\n{display_name(path)}\n  skipped: {reason}")
        records.append({**_image_fields(os.path.abspath(path)), "error": reason})
    if cfg.eval.result_file:
        out = write_json_atomic({"checkpoint": os.path.abspath(ckpt), "arch": arch, "num_classes": num_classes,
                                 "class_names": names_source, "image_size": pre["image_size"],
                                 "predictions": records}, cfg.eval.result_file, ensure_ascii=False)
        print(f"\npredictions written to {display_name(out)}")
    return 0


def main(argv=None):
    return run_entry(predict_job, argv, log_name="predict", uses_data=False, quiet=True)


if __name__ == "__main__":
    sys.exit(main())
