"""Regenerate the committed Fashion-MNIST slice, or write the full set as an ImageFolder tree.

The source is the Debian package ``dataset-fashion-mnist`` (``apt-get install dataset-fashion-mnist``),
which installs the original IDX files under /usr/share/datasets/fashion-mnist/ (MIT licence,
Copyright 2017 Zalando SE).

    python tools/make_fashion_mnist_slice.py                     # -> data/fashion_mnist/slice.npz
    python tools/make_fashion_mnist_slice.py --full ~/fmnist     # -> ~/fmnist/{train,val}/<class>/*.jpg

The slice takes, for each class, the first ``--train_per_class`` images of the training file and the
first ``--val_per_class`` images of the test file, in file order: no randomness, so the same package
always gives the same slice.
"""
import argparse
import gzip
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from src.data.demo import CLASS_NAMES, write_image_folder  # noqa: E402
from src.utils.fileio import file_sha256 as sha256  # noqa: E402

DEFAULT_SOURCE = "/usr/share/datasets/fashion-mnist"
FILES = {
    "train_images": "train-images-idx3-ubyte.gz", "train_labels": "train-labels-idx1-ubyte.gz",
    "val_images": "t10k-images-idx3-ubyte.gz", "val_labels": "t10k-labels-idx1-ubyte.gz",
}


def read_idx(path: str) -> np.ndarray:
    """Read a (gzipped) IDX file of unsigned bytes: magic 2049 (labels) or 2051 (images)."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    if magic not in (2049, 2051):
        raise SystemExit(f"{path}: not an IDX ubyte file (magic {magic})")
    ndim = magic & 0xFF
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise SystemExit(f"{path}: expected {dims} bytes of data, found {arr.size}")
    return arr.reshape(dims)


def load_split(source: str, split: str):
    paths = [os.path.join(source, FILES[f"{split}_{k}"]) for k in ("images", "labels")]
    for p in paths:
        if not os.path.isfile(p):
            raise SystemExit(f"{p} not found: install the Debian package dataset-fashion-mnist "
                             "(apt-get install dataset-fashion-mnist) or pass --source_dir")
    x, y = read_idx(paths[0]), read_idx(paths[1])
    if len(x) != len(y):
        raise SystemExit(f"{paths[0]} has {len(x)} images but {paths[1]} has {len(y)} labels")
    return x, y, paths


def first_per_class(y: np.ndarray, per_class: int) -> np.ndarray:
    idx = []
    for c in range(10):
        found = np.flatnonzero(y == c)[:per_class]
        if len(found) < per_class:
            raise SystemExit(f"class {c} has only {len(found)} images, {per_class} requested")
        idx.append(found)
    return np.sort(np.concatenate(idx))


def make_slice(source: str, out: str, train_per_class: int, val_per_class: int) -> None:
    xt, yt, pt = load_split(source, "train")
    xv, yv, pv = load_split(source, "val")
    it, iv = first_per_class(yt, train_per_class), first_per_class(yv, val_per_class)
    provenance = "; ".join(f"{os.path.basename(p)} sha256={sha256(p)}" for p in pt + pv)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = out + ".tmp.npz"
    np.savez_compressed(
        tmp, x_train=xt[it], y_train=yt[it].astype(np.uint8), x_val=xv[iv], y_val=yv[iv].astype(np.uint8),
        train_index=it.astype(np.int32), val_index=iv.astype(np.int32),
        class_names=np.array(CLASS_NAMES), source=np.array(provenance))
    os.replace(tmp, out)
    print(f"wrote {out}: {len(it)} train + {len(iv)} val images, {os.path.getsize(out)} bytes, "
          f"sha256 {sha256(out)}")


def write_full(source: str, out_dir: str) -> None:
    for split, sub in (("train", "train"), ("val", "val")):
        x, y, _ = load_split(source, split)
        n = write_image_folder(os.path.join(out_dir, sub), x, y)
        print(f"wrote {n} images to {os.path.join(out_dir, sub)}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source_dir", default=DEFAULT_SOURCE, help="folder with the four IDX .gz files")
    p.add_argument("--out", default=os.path.join(ROOT, "data", "fashion_mnist", "slice.npz"))
    p.add_argument("--train_per_class", type=int, default=100)
    p.add_argument("--val_per_class", type=int, default=50)
    p.add_argument("--full", metavar="OUT_DIR", help="write all 70,000 images as OUT_DIR/{train,val}/<class>/")
    args = p.parse_args(argv)
    if args.full:
        write_full(args.source_dir, args.full)
    else:
        make_slice(args.source_dir, args.out, args.train_per_class, args.val_per_class)


if __name__ == "__main__":
    main()
