"""Top-1 / top-5 accuracy of the C++ inference app's result files.

    python postprocess.py --result_path=result_Files --label_path=imagenet_label.json [--model_path=MODEL]

Result files are ``<name>_0.bin``: raw little-endian logits ``[B, K]`` (float16 or float32). A label key (from
create_imagenet2012_label.py) matches ``<key>_0.bin``, else the key without its last extension (this project's
app), else the key up to its first '.' (the zoo's); its value is a class index, or one per row of a batch.
K and the dtype come from the model record (``--model_path``, then also per-class lines with the class names),
else from the file sizes (``resolve_layout``). Non-finite logits are refused. Exit status: 0 done; 1 with
``--strict`` and unmatched entries; 2 bad input or command line (one ``error:`` line).
"""
import argparse
import json
import os
import sys
from dataclasses import dataclass, field

import numpy as np

RESULT_SUFFIX = "_0.bin"
DTYPES = {"float16": np.dtype("<f2"), "float32": np.dtype("<f4")}
MAX_LISTED = 20


class PostprocessError(ValueError):
    """Malformed or inconsistent input; the message names the file."""


@dataclass
class PostprocessResult:
    total: int
    top1: int
    top5: int
    dtype: str
    num_classes: int
    results_without_label: list = field(default_factory=list)   # result file names
    labels_without_result: list = field(default_factory=list)   # label keys
    ignored_files: list = field(default_factory=list)           # files not named *_0.bin
    nonfinite_rows: int = 0
    per_class: dict = field(default_factory=dict)               # label -> [images, top-1 hits]

    @property
    def top1_accuracy(self):
        return self.top1 / self.total if self.total else 0.0

    @property
    def top5_accuracy(self):
        return self.top5 / self.total if self.total else 0.0


def collect_result_files(result_path):
    """Return ({name: path} for every regular ``<name>_0.bin`` file, [other file names])."""
    if not os.path.exists(result_path):
        raise PostprocessError(f"result folder not found: {result_path}")
    if not os.path.isdir(result_path):
        raise PostprocessError(f"--result_path {result_path} is a file; expected the folder of <name>_0.bin files")
    results, ignored = {}, []
    for fname in sorted(os.listdir(result_path)):
        path = os.path.join(result_path, fname)
        if not os.path.isfile(path):
            continue
        if fname.endswith(RESULT_SUFFIX) and len(fname) > len(RESULT_SUFFIX):
            results[fname[:-len(RESULT_SUFFIX)]] = path
        else:
            ignored.append(fname)
    return results, ignored


def load_labels(label_path):
    """``{label key: [class indices]}`` from the label JSON (an int value becomes a 1-element list)."""
    try:
        with open(label_path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise PostprocessError(f"label file not found: {label_path}") from None
    except IsADirectoryError:
        raise PostprocessError(f"--label_path {label_path} is a folder; expected the label JSON file") from None
    except (OSError, ValueError) as err:  # ValueError: bad JSON, or not UTF-8 (UnicodeDecodeError)
        raise PostprocessError(f"cannot read label file {label_path}: {err}") from None
    if not isinstance(data, dict):
        raise PostprocessError(f"label file {label_path}: expected a JSON object {{image name: class index}}")
    labels = {}
    for key, value in data.items():
        values = value if isinstance(value, list) else [value]
        if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in values):
            raise PostprocessError(f"label file {label_path}: {key!r} must map to a class index >= 0 or a "
                                   f"non-empty list of them, got {value!r}")
        labels[key] = values
    return labels


def result_name_candidates(key):
    """Result names a label key may have been written under, most specific first (module doc)."""
    return list(dict.fromkeys(c for c in (key, os.path.splitext(key)[0], key.split(".", 1)[0]) if c))


def match_labels(results, labels, label_path=""):
    """``({result name: label key}, [keys without a result])``; two keys claiming one file is an error."""
    claimed, without_result = {}, []
    for key in sorted(labels):
        name = next((c for c in result_name_candidates(key) if c in results), None)
        if name is None:
            without_result.append(key)
        elif name in claimed:
            raise PostprocessError(f"label file {label_path}: {claimed[name]!r} and {key!r} both map to "
                                   f"result file {name}{RESULT_SUFFIX}")
        else:
            claimed[name] = key
    return claimed, without_result


def resolve_layout(row_bytes, max_label, dtype="auto", num_classes=0, where=""):
    """``(dtype name, K)`` of rows of ``row_bytes`` bytes, from the dtype or K when given; else the candidate with
    K > the largest label (float32 before float16), ``K == largest label + 1`` deciding between two."""
    if dtype not in ("auto", "float16", "float32"):
        raise PostprocessError(f"--dtype must be auto, float16 or float32, got {dtype!r}")
    num_classes = int(num_classes or 0)
    if dtype != "auto":
        itemsize = DTYPES[dtype].itemsize
        if num_classes:
            if row_bytes != num_classes * itemsize:
                raise PostprocessError(f"{where}: {row_bytes} bytes per image, expected {num_classes} x "
                                       f"{dtype} = {num_classes * itemsize}")
            return dtype, num_classes
        if row_bytes % itemsize:
            raise PostprocessError(f"{where}: {row_bytes} bytes per image is not a whole number of {dtype}")
        return dtype, row_bytes // itemsize
    if num_classes:
        for name in ("float32", "float16"):
            if row_bytes == num_classes * DTYPES[name].itemsize:
                return name, num_classes
        raise PostprocessError(f"{where}: {row_bytes} bytes per image fits neither float16 nor float32 "
                               f"with {num_classes} classes")
    candidates = [(name, row_bytes // DTYPES[name].itemsize) for name in ("float32", "float16")
                  if row_bytes % DTYPES[name].itemsize == 0 and row_bytes // DTYPES[name].itemsize > max_label]
    if len(candidates) == 2:
        exact = [c for c in candidates if c[1] == max_label + 1]
        if len(exact) == 1:
            return exact[0]
        raise PostprocessError(f"{where}: {row_bytes} bytes per image is float32 x {candidates[0][1]} or "
                               f"float16 x {candidates[1][1]} classes (largest label {max_label}); "
                               "pass --dtype or --num_classes")
    if len(candidates) == 1:
        return candidates[0]
    raise PostprocessError(f"{where}: {row_bytes} bytes per image cannot hold logits for a largest label of "
                           f"{max_label} (not float16 or float32 rows with K > {max_label})")


def score_file(path, dtype, num_classes, labels, per_class=None):
    """``(top-1 hits, top-5 hits, non-finite rows)`` of one result file (a non-finite row is a miss);
    ``per_class`` ``{label: [images, top-1 hits]}`` is updated in place."""
    raw = np.fromfile(path, dtype=DTYPES[dtype])
    rows = len(labels)
    if raw.size != rows * num_classes:
        raise PostprocessError(f"{path}: {raw.size} {dtype} values, expected {rows} x {num_classes}")
    logits = raw.reshape(rows, num_classes).astype(np.float32)
    target = np.asarray(labels, dtype=np.int64)
    if target.max() >= num_classes:
        raise PostprocessError(f"{path}: label {int(target.max())} is out of range for {num_classes} classes")
    finite = np.all(np.isfinite(logits), axis=1)
    order = np.argsort(-logits, axis=1, kind="stable")   # ties: the lower class index first
    hit1 = (order[:, 0] == target) & finite
    top1 = int(np.sum(hit1))
    top5 = int(np.sum(np.any(order[:, :5] == target[:, None], axis=1) & finite))
    if per_class is not None:
        for label, hit in zip(target.tolist(), hit1.tolist()):
            entry = per_class.setdefault(label, [0, 0])
            entry[0] += 1
            entry[1] += int(hit)
    return top1, top5, int(np.sum(~finite))


def evaluate(result_path, label_path, dtype="auto", num_classes=0, allow_nonfinite=False):
    """Scores every labelled ``<name>_0.bin`` of ``result_path``; non-finite logits raise ``PostprocessError``
    unless ``allow_nonfinite`` (then they are counted misses)."""
    results, ignored = collect_result_files(result_path)
    all_labels = load_labels(label_path)
    pairs, without_result = match_labels(results, all_labels, label_path)
    matched = sorted(pairs)
    labels = {name: all_labels[key] for name, key in pairs.items()}
    without_label = [os.path.basename(results[n]) for n in sorted(set(results) - set(pairs))]
    if not matched:
        raise PostprocessError(f"no result file in {result_path} has a label in {label_path} "
                               f"({len(results)} result files, {len(all_labels)} labels)")
    row_bytes, first = None, None
    for name in matched:
        path = results[name]
        size = os.path.getsize(path)
        rows = len(labels[name])
        if size == 0 or size % rows:
            raise PostprocessError(f"{path}: {size} bytes cannot hold {rows} equal rows of logits")
        if row_bytes is None:
            row_bytes, first = size // rows, path
        elif size // rows != row_bytes:
            raise PostprocessError(f"{path}: {size // rows} bytes per image, but {first} has {row_bytes}")
    max_label = max(max(labels[n]) for n in matched)
    dtype, num_classes = resolve_layout(row_bytes, max_label, dtype, num_classes, where=first)
    total = top1 = top5 = nonfinite = 0
    per_class, first_bad = {}, None
    for name in matched:
        hit1, hit5, bad = score_file(results[name], dtype, num_classes, labels[name], per_class)
        total += len(labels[name])
        top1 += hit1
        top5 += hit5
        nonfinite += bad
        if bad and first_bad is None:
            first_bad = results[name]
    result = PostprocessResult(total=total, top1=top1, top5=top5, dtype=dtype, num_classes=num_classes,
                               results_without_label=without_label, labels_without_result=without_result,
                               ignored_files=ignored, nonfinite_rows=nonfinite, per_class=per_class)
    if nonfinite and not allow_nonfinite:
        raise PostprocessError(f"{nonfinite} of {total} images have non-finite logits (NaN or inf; first: "
                               f"{first_bad}): the model's output is broken (or overflows {dtype}), so no accuracy "
                               "is reported")
    return result


def read_record(model_path):
    """``(num_classes, dtype, class names or None, description)`` from an exported model's record."""
    from src.deploy.record import describe_record, read_model_record

    record, where = read_model_record(model_path, required=True)
    dtype = record["output"]["dtype"]
    if dtype not in DTYPES:
        raise PostprocessError(f"{where}: output dtype {dtype!r} is not float16 or float32")
    return record["num_classes"], dtype, record.get("class_names"), f"{where}: {describe_record(record)}"


def format_per_class(result, names):
    """``class I NAME: N images, top1 X`` for every label present, in label order."""
    lines = []
    for label in sorted(result.per_class):
        n, hits = result.per_class[label]
        name = names[label] if names and label < len(names) else "?"
        lines.append(f"class {label} {name}: {n} images, top1 {hits / n:.4f}")
    return lines


def format_summary(result):
    return (f"Total data: {result.total}, top1 accuracy: {result.top1_accuracy}, "
            f"top5 accuracy: {result.top5_accuracy}")


def _report(items, what, stream):
    if not items:
        return
    shown = ", ".join(items[:MAX_LISTED])
    more = f" ... and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
    print(f"[WARNING] {len(items)} {what}: {shown}{more}", file=stream)


class _ArgumentParser(argparse.ArgumentParser):
    """Bad command lines raise PostprocessError (one ``error:`` line, exit 2) instead of printing the usage."""

    def error(self, message):
        raise PostprocessError(f"{message} (see --help)")


def main(argv=None):
    from src.errors import UserError

    try:
        return _main(argv)
    except (PostprocessError, UserError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a file that vanished or cannot be read while scoring
        print(f"error: {err.filename or ''}{': ' if err.filename else ''}{err.strerror or err}", file=sys.stderr)
        return 2


def _main(argv):
    parser = _ArgumentParser(description="Top-1/top-5 accuracy of C++ inference result files")
    parser.add_argument("--result_path", required=True, help="folder of <name>_0.bin result files")
    parser.add_argument("--label_path", required=True, help="label JSON from create_imagenet2012_label.py")
    parser.add_argument("--dtype", default="auto", choices=("auto", "float16", "float32"),
                        help="logit type in the result files (default: detect from the file size)")
    parser.add_argument("--num_classes", type=int, default=0, help="classes per row (default 0: infer)")
    parser.add_argument("--model_path", default="",
                        help="the exported model (.onnx, or MINDIR/AIR with its <model>.json sidecar): its model "
                             "record gives the classes, the logits' dtype and the class names")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 when a result has no label or a label has no result")
    args = parser.parse_args(argv)
    if args.num_classes < 0:
        parser.error(f"--num_classes must be >= 0, got {args.num_classes}")
    names = None
    if args.model_path:
        k, dtype, names, description = read_record(args.model_path)
        if args.num_classes and args.num_classes != k:
            parser.error(f"--num_classes={args.num_classes} but the model record of {args.model_path} says {k}")
        if args.dtype != "auto" and args.dtype != dtype:
            parser.error(f"--dtype={args.dtype} but the model record of {args.model_path} says {dtype}")
        args.num_classes, args.dtype = k, dtype
        print(f"[INFO] model {description}", file=sys.stderr)
    result = evaluate(args.result_path, args.label_path, args.dtype, args.num_classes)
    print(f"[INFO] {result.dtype} logits, {result.num_classes} classes", file=sys.stderr)
    _report(result.results_without_label, "result files have no label", sys.stderr)
    _report(result.labels_without_result, "labels have no result file", sys.stderr)
    if result.ignored_files:
        print(f"[INFO] {len(result.ignored_files)} files in {args.result_path} ignored (not *{RESULT_SUFFIX})",
              file=sys.stderr)
    print(format_summary(result))
    if names:
        print("\n".join(format_per_class(result, names)))
    unmatched = bool(result.results_without_label or result.labels_without_result)
    return 1 if (args.strict and unmatched) else 0


if __name__ == "__main__":
    sys.exit(main())
