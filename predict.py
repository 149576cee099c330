"""Top-k classes, with names and softmax probabilities, for images from any CSPDarkNet53 checkpoint.

    python predict.py --ckpt_file=CKPT --image_path=cat.jpg
    python predict.py --pretrained=outputs/<run>/ckpt_0/best.ckpt --image_path=photos/,extra.png --topk=3
    python predict.py --ckpt_file=CKPT --image_path=photos --result_file=predictions.json

``image_path``: image files and/or folders (searched recursively), comma separated. Preprocessing is
eval's exactly (``src.dataset``'s eval pipeline: decode, resize, center crop, normalize). Unreadable
files are reported and skipped.

Class names, first match wins: ``class_names_file`` (a TSV/TXT list or a class index JSON, see
``src.class_names``); the class index a training run saved beside the checkpoint
(``<run>/class_index.json`` for ``<run>/ckpt_<rank>/x.ckpt``); the shipped ImageNet-1k names for a
1000-class model; else ``class_<i>``. A checkpoint inside a training run folder is also preprocessed
at the run's ``image_size`` / ``eval_resize`` / ``crop_pct`` unless they are given.
Exit status: 0 done, 2 bad input (the message names the file, key or value).
"""
import json
import os
import sys
import tempfile

os.environ.setdefault("GLOG_v", "3")

import numpy as np  # noqa: E402

from model_utils.config import ConfigError, load_config  # noqa: E402
from src.checkpoint import CheckpointError  # noqa: E402
from src.class_names import ClassNamesError  # noqa: E402
from src.dataset import DatasetError  # noqa: E402

USER_ERRORS = (ConfigError, CheckpointError, DatasetError, ClassNamesError)
PREPROCESS_KEYS = ("image_size", "eval_resize", "crop_pct")


def list_images(image_path):
    """Files named in ``image_path`` (comma separated files/folders; folders searched recursively, sorted)."""
    from src.dataset import IMAGE_EXTENSIONS

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


def run_folder_of(ckpt):
    """``<run>/ckpt_<rank>/x.ckpt`` -> ``<run>`` (where training saved class_index.json and config.yaml)."""
    parent = os.path.dirname(os.path.abspath(ckpt))
    if os.path.basename(parent).startswith("ckpt_"):
        return os.path.dirname(parent)
    return None


def _run_preprocessing(cfg, run_dir, notes):
    """Takes image_size / eval_resize / crop_pct from the training run's config.yaml when not given."""
    path = os.path.join(run_dir, "config.yaml") if run_dir else None
    if not path or not os.path.isfile(path):
        return
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            saved = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError):
        return
    changed = []
    for key in PREPROCESS_KEYS:
        if key in saved and not cfg.is_explicit(key) and saved[key] != getattr(cfg, key):
            setattr(cfg, key, type(getattr(cfg, key))(saved[key]))
            changed.append(f"{key}={saved[key]}")
    if changed:
        notes.append(f"preprocessing as in the training run {run_dir}: " + ", ".join(changed))


def resolve_class_names(cfg, ckpt, num_classes):
    """Returns ``(names, source)``; see the module doc for the order."""
    from src.class_names import CLASS_INDEX_FILES, IMAGENET_CLASSES_TSV, load_class_names, load_imagenet_synsets

    if cfg.class_names_file:
        if not os.path.exists(cfg.class_names_file):
            raise ClassNamesError(f"class_names_file {cfg.class_names_file!r} does not exist")
        return load_class_names(cfg.class_names_file, num_classes), cfg.class_names_file
    run_dir = run_folder_of(ckpt)
    candidates = [os.path.dirname(os.path.abspath(ckpt))] + ([run_dir] if run_dir else [])
    for folder in candidates:
        for name in CLASS_INDEX_FILES:
            path = os.path.join(folder, name)
            if not os.path.isfile(path):
                continue
            names = load_class_names(path, None)
            if len(names) != num_classes:
                continue  # belongs to another model; ignored
            if num_classes == 1000 and names == load_imagenet_synsets():
                return load_class_names(None, 1000), IMAGENET_CLASSES_TSV  # readable names for synset folders
            return names, path
    if num_classes == 1000:
        return load_class_names(None, 1000), IMAGENET_CLASSES_TSV
    return [f"class_{i}" for i in range(num_classes)], "generic (class_<i>)"


def _softmax(logits):
    x = np.asarray(logits, dtype=np.float64)
    x = x - x.max(axis=1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=1, keepdims=True)


def predict_files(net, files, cfg, num_classes):
    """Runs eval's preprocessing and the network over ``files``; returns ``(probabilities [N, K], kept files,
    skipped [(file, reason)])``. The images go through ``src.dataset.create_dataset`` in list mode, so the
    pixels are exactly what eval would feed."""
    import mindspore as ms

    from src.dataset import create_dataset

    fd, list_path = tempfile.mkstemp(prefix="predict_list.", suffix=".txt")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for path in files:
                f.write(f"{path} 0\n")
        bundle = create_dataset("", cfg.image_size, min(cfg.per_batch_size, len(files)), mode="eval",
                                data_list=list_path, num_classes=num_classes, eval_resize=cfg.eval_resize,
                                crop_pct=cfg.crop_pct, num_parallel_workers=cfg.num_parallel_workers)
        outputs = []
        for images, _ in bundle.dataset.create_tuple_iterator(output_numpy=True, num_epochs=1):
            logits = net(ms.Tensor(np.ascontiguousarray(images, dtype=np.float32))).asnumpy()
            outputs.append(logits.astype(np.float32))
    finally:
        os.remove(list_path)
    skipped = list(bundle.skipped)
    bad = {p for p, _ in skipped}
    kept = [p for p in files if p not in bad]
    probs = _softmax(np.concatenate(outputs)) if outputs else np.zeros((0, num_classes))
    if probs.shape[0] != len(kept):
        raise DatasetError(f"{len(kept)} images listed but {probs.shape[0]} decoded; see the warnings above")
    return probs, kept, skipped


def run(cfg):
    from src.evaluation import apply_eval_precision, build_inference_model, inference_performance_settings
    from src.utils.runtime import setup_device

    ckpt = cfg.ckpt_file or cfg.pretrained
    if not ckpt:
        raise ConfigError("no checkpoint given: pass --ckpt_file=PATH (or --pretrained=PATH), a .ckpt, "
                          ".safetensors or timm .pth file")
    if not os.path.exists(ckpt):
        raise CheckpointError(f"checkpoint file {ckpt!r} does not exist")
    files = list_images(cfg.image_path)
    notes = []
    _run_preprocessing(cfg, run_folder_of(ckpt), notes)
    try:
        target = setup_device(cfg.device_target)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    _, rewrites = inference_performance_settings(target)
    net, report, info = build_inference_model(
        ckpt, cfg.arch, cfg.num_classes, num_classes_explicit=cfg.is_explicit("num_classes"),
        arch_explicit=cfg.is_explicit("arch"), use_ema=cfg.use_ema, prepare=rewrites)
    num_classes = info["num_classes"]
    names, names_source = resolve_class_names(cfg, ckpt, num_classes)
    net, precision = apply_eval_precision(net, target)
    net.set_train(False)
    for line in notes:
        print(line)
    print(f"model: {info['arch']}, {num_classes} classes, from {ckpt} ({report.layout} layout"
          f"{', EMA weights' if report.used_ema else ''}); {precision} on {target}; input {cfg.image_size} "
          f"({cfg.eval_resize} resize, crop_pct {cfg.crop_pct}); class names: {names_source}")

    probs, kept, skipped = predict_files(net, files, cfg, num_classes)
    k = max(1, min(cfg.topk, num_classes))
    records = []
    for path, p in zip(kept, probs):
        order = np.argsort(-p, kind="stable")[:k]
        top = [{"class": int(c), "name": names[c], "probability": float(p[c])} for c in order]
        records.append({"image": path, "topk": top})
        print(f"\n{path}")
        for rank, t in enumerate(top, 1):
            print(f"  {rank}. {t['probability']:.4f}  {t['name']}  ({t['class']})")
    for path, reason in skipped:
        print(f"\n{path}\n  skipped: {reason}")
        records.append({"image": os.path.abspath(path), "error": reason})
    if cfg.result_file:
        out = os.path.abspath(cfg.result_file)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with open(out, "w", encoding="utf-8") as f:
            json.dump({"checkpoint": os.path.abspath(ckpt), "arch": info["arch"], "num_classes": num_classes,
                       "class_names": names_source, "image_size": cfg.image_size, "predictions": records},
                      f, indent=2, ensure_ascii=False)
            f.write("\n")
        print(f"\npredictions written to {out}")
    return 0


def main(argv=None):
    from src.utils.runtime import user_error_exit

    try:
        cfg = load_config(argv)
        return run(cfg)
    except USER_ERRORS as err:
        return user_error_exit(err)


if __name__ == "__main__":
    sys.exit(main())
