#!/usr/bin/env python
"""Regenerate data/imagenet/imagenet1k_classes.tsv from the timm package's ImageNet metadata.

Sources (shipped inside timm, Apache-2.0; the lemmas come from WordNet 3.0):
  timm/data/_info/imagenet_synsets.txt           the 1000 ImageNet-1k synset ids, sorted (class index order)
  timm/data/_info/imagenet_synset_to_lemma.txt   synset id <TAB> WordNet lemmas ("tench, Tinca tinca")

Output: 1000 lines "synset_id<TAB>name", where name is the full lemma string (what timm's
ImageNetInfo.label_descriptions() returns). Line i is class index i.

Usage:
  python tools/make_imagenet_class_names.py [--info-dir DIR] [--output FILE] [--check]
--check compares the freshly built table with the existing file and exits 1 if they differ.
timm itself is not imported (that would import torch): only its package folder is located.
"""
import argparse
import importlib.util
import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUTPUT = os.path.join(REPO_ROOT, "data", "imagenet", "imagenet1k_classes.tsv")
SYNSETS_FILE = "imagenet_synsets.txt"
LEMMA_FILE = "imagenet_synset_to_lemma.txt"


def find_timm_info_dir():
    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("timm is not installed; pass --info-dir with the folder holding "
                                f"{SYNSETS_FILE} and {LEMMA_FILE}")
    return os.path.join(list(spec.submodule_search_locations)[0], "data", "_info")


def build_rows(info_dir):
    """Return [(synset, name)] for ImageNet-1k, validated (1000 unique sorted ids, every id named)."""
    syn_path = os.path.join(info_dir, SYNSETS_FILE)
    lemma_path = os.path.join(info_dir, LEMMA_FILE)
    for path in (syn_path, lemma_path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"missing {path}")
    with open(syn_path, encoding="utf-8") as f:
        synsets = [line.strip() for line in f if line.strip()]
    lemmas = {}
    with open(lemma_path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line:
                continue
            key, sep, value = line.partition("\t")
            if not sep:
                raise ValueError(f"{lemma_path}:{lineno}: expected 'synset<TAB>lemmas'")
            lemmas[key] = value.strip()
    if len(synsets) != 1000 or len(set(synsets)) != 1000:
        raise ValueError(f"{syn_path}: expected 1000 unique synsets, got {len(synsets)} "
                         f"({len(set(synsets))} unique)")
    if synsets != sorted(synsets):
        raise ValueError(f"{syn_path}: synsets are not in sorted order")
    missing = [s for s in synsets if not lemmas.get(s)]
    if missing:
        raise ValueError(f"{lemma_path}: no lemma for {len(missing)} synsets, e.g. {missing[:5]}")
    return [(s, lemmas[s]) for s in synsets]


def render(rows):
    return "".join(f"{s}\t{name}\n" for s, name in rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--info-dir", default=None, help="folder with timm's _info files (default: timm's own)")
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help="TSV to write (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="only compare with the existing file")
    args = parser.parse_args(argv)
    try:
        info_dir = args.info_dir or find_timm_info_dir()
        text = render(build_rows(info_dir))
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.check:
        try:
            with open(args.output, encoding="utf-8") as f:
                same = f.read() == text
        except OSError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(f"{args.output}: {'up to date' if same else 'DIFFERS from ' + info_dir}")
        return 0 if same else 1
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    tmp = args.output + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    os.replace(tmp, args.output)
    print(f"wrote {args.output} (1000 classes) from {info_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
