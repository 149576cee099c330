"""Write the label JSON for the C++ inference flow (postprocess.py reads it).

The image folder must be arranged as an ImageFolder: one sub-folder per class. Sub-folders are sorted
by name and numbered 0, 1, ... (the order the training ImageFolder uses, so for ImageNet the synset
folders n01440764 ... n15075141 give indices 0 ... 999). Every regular file directly inside a class
folder is mapped by its basename to the class index, e.g. {"ILSVRC2012_val_00000001.JPEG": 65, ...},
as the model zoo's script did. Files directly in img_path are ignored (reported). Hidden entries (names
starting with '.', e.g. the data check's ``.cspdarknet53_verified.jsonl`` manifest) are skipped silently, as
the C++ app skips them.

With ``--model_path`` (an exported model with a model record, ``src.deploy.record``) the class folders are
numbered by the model's class names instead: a folder named like a trained class gets that class's index,
so a subset of the classes, or folders sorted differently, still score right. If no folder is a class name
(e.g. ImageNet synset folders against a model whose names are words) the sorted order is kept, with a
warning; if only some are, it is an error naming the others.

Usage: python create_imagenet2012_label.py --img_path=/path/to/val [--output=./imagenet_label.json]
       [--model_path=MODEL]
Exit status: 0 written, 2 bad input (missing or empty folder, duplicate file names, an output that cannot
be written, a bad command line): one ``error:`` line on stderr.
"""
import argparse
import json
import os
import sys
import tempfile

__all__ = ["LabelError", "build_labels", "check_output", "write_labels", "main"]


class LabelError(ValueError):
    """Bad image folder: the message names the path."""


def _visible(names):
    return [n for n in names if not n.startswith(".")]


def build_labels(img_path, class_names=None):
    """Return (labels {basename: class index}, class folder names in index order, stats dict).

    ``class_names``: the model's class names in index order; folders named like them get their index
    (see the module doc; ``stats["by_name"]`` says whether that happened).

    Raises LabelError for a missing folder, a folder without class sub-folders, no image files at
    all, or the same file name in two class folders (its label would be ambiguous).
    """
    if not os.path.exists(img_path):
        raise LabelError(f"image folder not found: {img_path}")
    if not os.path.isdir(img_path):
        raise LabelError(f"not a folder: {img_path}")
    entries = sorted(_visible(os.listdir(img_path)))
    classes = [d for d in entries if os.path.isdir(os.path.join(img_path, d))]
    stray = [f for f in entries if not os.path.isdir(os.path.join(img_path, f))]
    if not classes:
        raise LabelError(f"no class sub-folders in {img_path} (expected <img_path>/<class>/<image>)")
    index_of, by_name = {cls: i for i, cls in enumerate(classes)}, False
    if class_names:
        known = {name: i for i, name in enumerate(class_names)}
        unknown = [c for c in classes if c not in known]
        if not unknown:
            index_of, by_name = {c: known[c] for c in classes}, True
        elif len(unknown) < len(classes):
            raise LabelError(f"{len(unknown)} class folders of {img_path} are not classes of the model: "
                             f"{', '.join(unknown[:10])} (the model's classes: {', '.join(class_names[:10])}"
                             f"{', ...' if len(class_names) > 10 else ''})")
    labels, where, empty = {}, {}, []
    for cls in classes:
        index = index_of[cls]
        folder = os.path.join(img_path, cls)
        files = sorted(f for f in _visible(os.listdir(folder)) if os.path.isfile(os.path.join(folder, f)))
        if not files:
            empty.append(cls)
        for name in files:
            if name in labels:
                raise LabelError(f"file name {name!r} is in two class folders: "
                                 f"{os.path.join(img_path, where[name], name)} and {os.path.join(folder, name)}")
            labels[name] = index
            where[name] = cls
    if not labels:
        raise LabelError(f"no image files in the {len(classes)} class folders of {img_path}")
    # C++ apps name results after the image name: this project's without its last extension
    # (it refuses clashes), the zoo's up to the first '.' (it silently overwrote)
    def clashes(stem_of):
        seen, found = {}, []
        for name in labels:
            stem = stem_of(name)
            if stem in seen:
                found.append((seen[stem], name))
            seen[stem] = name
        return found

    stats = {"num_classes": len(classes), "num_images": len(labels), "empty_classes": empty, "by_name": by_name,
             "stray_files": stray,
             "stem_clashes": clashes(lambda n: os.path.splitext(n)[0]),
             "first_dot_clashes": clashes(lambda n: n.split(".", 1)[0])}
    return labels, classes, stats


def check_output(output):
    """Raises LabelError when the label JSON cannot be written at ``output`` (before the folder is scanned)."""
    full = os.path.abspath(output)
    if os.path.isdir(full):
        raise LabelError(f"--output {output} is a folder; expected a file name such as {output}/imagenet_label.json")
    base = os.path.dirname(full)
    while not os.path.lexists(base) and os.path.dirname(base) != base:
        base = os.path.dirname(base)
    if not os.path.isdir(base):
        raise LabelError(f"--output {output}: cannot create its folder: {base} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".write_probe.", dir=base)
        os.close(fd)
        os.remove(probe)
    except OSError as err:
        raise LabelError(f"--output {output}: cannot write in {base}: {err.strerror or err}") from None


def write_labels(labels, output):
    """Write the label JSON atomically (temporary file, then rename); LabelError when it cannot be written."""
    folder = os.path.dirname(os.path.abspath(output))
    tmp = None
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(output) + ".", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(labels, f)
        os.replace(tmp, output)
    except OSError as err:
        if tmp and os.path.exists(tmp):
            os.remove(tmp)
        raise LabelError(f"cannot write --output {output}: {err.strerror or err}") from None


class _ArgumentParser(argparse.ArgumentParser):
    """Bad command lines raise LabelError (one ``error:`` line, exit 2) instead of printing the usage."""

    def error(self, message):
        raise LabelError(f"{message} (see --help)")


def _printable(name):
    """A file name as it can be printed whatever its bytes (non-UTF-8 names are shown with escapes)."""
    return name.encode("utf-8", "backslashreplace").decode("utf-8") if isinstance(name, str) else str(name)


def main(argv=None):
    try:
        parser = _ArgumentParser(description="Create the image-name -> class-index JSON for postprocess.py")
        parser.add_argument("--img_path", required=True, help="ImageFolder root: <img_path>/<class>/<image>")
        parser.add_argument("--output", default="./imagenet_label.json",
                            help="JSON to write (default: %(default)s)")
        parser.add_argument("--model_path", default="",
                            help="exported model whose record's class names number the folders")
        args = parser.parse_args(argv)
        check_output(args.output)
        names = None
        if args.model_path:
            from src.deploy.record import read_model_record
            from src.errors import ModelRecordError
            try:
                record, _ = read_model_record(args.model_path, required=True)
            except ModelRecordError as err:
                raise LabelError(str(err)) from None
            names = record.get("class_names")
        else:
            print("[WARNING] Create imagenet label. Currently only use for Imagenet2012!")
        labels, classes, stats = build_labels(args.img_path, names)
        write_labels(labels, args.output)
    except LabelError as err:
        print(f"error: {_printable(str(err))}", file=sys.stderr)
        return 2
    except OSError as err:  # a folder that cannot be listed
        print(f"error: {_printable(str(err.filename or ''))}{': ' if err.filename else ''}{err.strerror or err}",
              file=sys.stderr)
        return 2
    if stats["stray_files"]:
        print(f"[WARNING] {len(stats['stray_files'])} files directly in {args.img_path} ignored "
              f"(not in a class folder): {', '.join(map(_printable, stats['stray_files'][:10]))}", file=sys.stderr)
    if stats["empty_classes"]:
        print(f"[WARNING] {len(stats['empty_classes'])} class folders hold no file: "
              f"{', '.join(map(_printable, stats['empty_classes'][:10]))}", file=sys.stderr)
    if stats["stem_clashes"]:
        a, b = stats["stem_clashes"][0]
        print(f"[WARNING] {len(stats['stem_clashes'])} file names differ only in their extension "
              f"(e.g. {_printable(a)} and {_printable(b)}); the C++ app cannot write a result file for each",
              file=sys.stderr)
    elif stats["first_dot_clashes"]:
        a, b = stats["first_dot_clashes"][0]
        print(f"[WARNING] {len(stats['first_dot_clashes'])} file names share the part before the first '.' "
              f"(e.g. {_printable(a)} and {_printable(b)}); the zoo's C++ app would write both to one result file",
              file=sys.stderr)
    if names and not stats["by_name"]:
        print(f"[WARNING] no class folder of {args.img_path} is named like a class of the model; labels follow "
              "the sorted folder order", file=sys.stderr)
    elif names:
        print(f"[INFO] class folders numbered by the model's class names ({args.model_path})")
    print(f"[INFO] {len(classes)} classes, label file {args.output}")
    print(f"[INFO] Completed! Total {len(labels)} data.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
