"""Build the small, offline convergence benchmark sets as ImageFolder trees (root/{train,val}/<class>/*.png).

Used by docs/convergence.md to compare this project's training with timm's (tools/timm_reference_train.py)
on real data that ships with ordinary packages, no download from a hub:

* ``digits``  -- scikit-learn's bundled 8x8 handwritten digits (``sklearn.datasets.load_digits``, 1,797 images,
  10 classes; needs ``pip install scikit-learn``). Pixels 0..16 are scaled to 0..255, upscaled to 32x32
  (bilinear), written as grey->RGB PNG. Fixed stratified split (``train_test_split(test_size=397,
  stratify=y, random_state=0)``): 1,400 train / 397 val.
* ``fmnist``  -- a Fashion-MNIST subset from the Debian package ``dataset-fashion-mnist``
  (``apt-get install dataset-fashion-mnist``; IDX files under /usr/share/datasets/fashion-mnist). For each
  class, images ``[100, 300)`` of the training file (2,000 train) and ``[50, 100)`` of the test file (500 val),
  in file order: disjoint from the embedded demo slice (first 100 / 50 per class). 28x28 grey->RGB PNG.
* ``demo``    -- the embedded demo slice (data/fashion_mnist/slice.npz), materialised by
  ``src.data.demo.ensure_demo_dataset`` (JPEG, 1,000 train / 500 val); a symlink to it is made.

Everything is deterministic: the same packages always give byte-identical trees.

    python research/make_small_benchmark_sets.py --out DIR            # all three
    python research/make_small_benchmark_sets.py --out DIR --sets digits fmnist
"""
import argparse
import os
import shutil
import sys

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

DIGIT_CLASSES = [f"{d}" for d in range(10)]
FMNIST_FOLDERS = ["00_tshirt_top", "01_trouser", "02_pullover", "03_dress", "04_coat",
                  "05_sandal", "06_shirt", "07_sneaker", "08_bag", "09_ankle_boot"]


def _write_tree(root, split, images, labels, folders, size=None):
    """images: uint8 (N, H, W) grey; writes root/split/<folder>/<index>.png (RGB)."""
    counts = {}
    for i, (img, lab) in enumerate(zip(images, labels)):
        d = os.path.join(root, split, folders[int(lab)])
        os.makedirs(d, exist_ok=True)
        pil = Image.fromarray(img, mode="L")
        if size is not None and pil.size != (size, size):
            pil = pil.resize((size, size), Image.BILINEAR)
        pil.convert("RGB").save(os.path.join(d, f"{i:05d}.png"), optimize=False)
        counts[int(lab)] = counts.get(int(lab), 0) + 1
    return counts


def make_digits(out):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = np.clip(np.round(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)  # (1797, 8, 8)
    y = d.target.astype(np.int64)
    idx = np.arange(len(y))
    tr, va = train_test_split(idx, test_size=397, stratify=y, random_state=0)
    tr, va = np.sort(tr), np.sort(va)
    root = os.path.join(out, "digits")
    shutil.rmtree(root, ignore_errors=True)
    ctr = _write_tree(root, "train", x[tr], y[tr], DIGIT_CLASSES, size=32)
    cva = _write_tree(root, "val", x[va], y[va], DIGIT_CLASSES, size=32)
    return root, sum(ctr.values()), sum(cva.values())


def make_fmnist(out, source="/usr/share/datasets/fashion-mnist", train_range=(100, 300), val_range=(50, 100)):
    from tools.make_fashion_mnist_slice import load_split

    root = os.path.join(out, "fmnist")
    shutil.rmtree(root, ignore_errors=True)
    sizes = []
    for split, (lo, hi) in (("train", train_range), ("val", val_range)):
        x, y, _ = load_split(source, "train" if split == "train" else "val")
        pick = []
        for c in range(10):
            pick.extend(np.flatnonzero(y == c)[lo:hi].tolist())
        pick = np.sort(np.array(pick))
        counts = _write_tree(root, split, x[pick], y[pick], FMNIST_FOLDERS)
        sizes.append(sum(counts.values()))
    return root, sizes[0], sizes[1]


def make_demo(out):
    from src.data.demo import ensure_demo_dataset

    demo = ensure_demo_dataset()
    link = os.path.join(out, "demo")
    if os.path.islink(link) or os.path.exists(link):
        if os.path.islink(link):
            os.remove(link)
        else:
            shutil.rmtree(link)
    os.symlink(os.path.dirname(demo.train), link)
    n = lambda p: sum(len(f) for _, _, f in os.walk(p))  # noqa: E731
    return link, n(demo.train), n(demo.val)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output folder (one sub-folder per set)")
    p.add_argument("--sets", nargs="+", default=["digits", "fmnist", "demo"], choices=["digits", "fmnist", "demo"])
    p.add_argument("--fmnist_source", default="/usr/share/datasets/fashion-mnist")
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    for name in a.sets:
        if name == "digits":
            root, ntr, nva = make_digits(a.out)
        elif name == "fmnist":
            root, ntr, nva = make_fmnist(a.out, a.fmnist_source)
        else:
            root, ntr, nva = make_demo(a.out)
        print(f"{name}: {root}/train ({ntr} images), {root}/val ({nva} images)")


if __name__ == "__main__":
    main()
