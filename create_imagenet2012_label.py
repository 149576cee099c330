"""Write the label JSON of the C++ inference flow (postprocess.py reads it): ``{image file name: class index}``.

    python create_imagenet2012_label.py --img_path=/path/to/val [--output=./imagenet_label.json] [--model_path=M]

Class sub-folders of ``img_path``, sorted, are numbered 0, 1, ... as in the zoo's script (hidden entries skipped);
with ``--model_path``, folders named like the model record's classes get those indices (some but not all: an
error). Exit status: 0 written; 2 bad input (one ``error:`` line).
"""
import argparse
import os
import sys


class LabelError(ValueError):
    """Bad image folder: the message names the path."""


def _visible(names):
    return [n for n in names if not n.startswith(".")]


def build_labels(img_path, class_names=None):
    """``(labels {basename: class index}, class folders, stats)``; ``class_names``: the model's, in index order.
    ``LabelError`` for a missing folder, no class folders or images, or one file name in two class folders."""
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


class _ArgumentParser(argparse.ArgumentParser):
    """Bad command lines raise LabelError (one ``error:`` line, exit 2) instead of printing the usage."""

    def error(self, message):
        raise LabelError(f"{message} (see --help)")


def main(argv=None):
    from src.errors import UserError
    from src.utils.fileio import check_output_file, write_json_atomic
    from src.utils.paths import display_name as shown

    try:
        parser = _ArgumentParser(description="Create the image-name -> class-index JSON for postprocess.py")
        parser.add_argument("--img_path", required=True, help="ImageFolder root: <img_path>/<class>/<image>")
        parser.add_argument("--output", default="./imagenet_label.json",
                            help="JSON to write (default: %(default)s)")
        parser.add_argument("--model_path", default="",
                            help="exported model whose record's class names number the folders")
        args = parser.parse_args(argv)
        if os.path.isdir(args.output):
            raise LabelError(f"--output {args.output} is a folder; expected a file name such as "
                             f"{args.output}/imagenet_label.json")
        check_output_file(args.output, "--output")
        names = None
        if args.model_path:
            from src.deploy.record import read_model_record
            names = read_model_record(args.model_path, required=True)[0].get("class_names")
        else:
            print("[WARNING] Create imagenet label. Currently only use for Imagenet2012!")
        labels, classes, stats = build_labels(args.img_path, names)
        write_json_atomic(labels, args.output, indent=None)
    except (LabelError, UserError) as err:
        print(f"error: {shown(str(err))}", file=sys.stderr)
        return 2
    except OSError as err:  # a folder that cannot be listed, an output that cannot be written
        print(f"error: {shown(err.filename or '')}{': ' if err.filename else ''}{err.strerror or err}",
              file=sys.stderr)
        return 2
    if stats["stray_files"]:
        print(f"[WARNING] {len(stats['stray_files'])} files directly in {args.img_path} ignored "
              f"(not in a class folder): {', '.join(map(shown, stats['stray_files'][:10]))}", file=sys.stderr)
    if stats["empty_classes"]:
        print(f"[WARNING] {len(stats['empty_classes'])} class folders hold no file: "
              f"{', '.join(map(shown, stats['empty_classes'][:10]))}", file=sys.stderr)
    if stats["stem_clashes"]:
        a, b = stats["stem_clashes"][0]
        print(f"[WARNING] {len(stats['stem_clashes'])} file names differ only in their extension "
              f"(e.g. {shown(a)} and {shown(b)}); the C++ app cannot write a result file for each",
              file=sys.stderr)
    elif stats["first_dot_clashes"]:
        a, b = stats["first_dot_clashes"][0]
        print(f"[WARNING] {len(stats['first_dot_clashes'])} file names share the part before the first '.' "
              f"(e.g. {shown(a)} and {shown(b)}); the zoo's C++ app would write both to one result file",
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
