"""Training augmentation, ours (MindSpore, ``src/data/transforms.train_transforms``) vs the timm reference trainer's
(torchvision: RandomResizedCrop, flip, ColorJitter), on the same image files: summary statistics of the augmented,
normalized tensors (docs/convergence.md section 3). A reference measurement: needs torch and torchvision
(requirements-test.txt), never used at run time.

    python research/augmentation_parity.py DIR [--size 32] [--per_image 30] [--files 200] [--jitter B,C,S]

DIR: an ImageFolder tree (class folders of images). ``--jitter``: colour-jitter strengths (brightness, contrast,
saturation) on both sides, default 0.4,0.4,0.4 (the zoo's); 0,0,0 compares the crops and flips alone.
"""
import argparse
import glob
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def _ours(files, size, per_image, jitter, crop_scale_min):
    import mindspore as ms
    import mindspore.dataset as ds
    import mindspore.dataset.vision as V
    from src.data.transforms import train_transforms

    ms.set_seed(0)
    ds.config.set_seed(0)
    raw = [np.fromfile(f, np.uint8) for f in files]

    def rows():
        for _ in range(per_image):
            for i, data in enumerate(raw):
                yield data, np.int32(i)

    ops = train_transforms((size, size), color_jitter=0, crop_scale_min=crop_scale_min)
    if any(jitter):  # the pipeline's RandomColorAdjust, with separate strengths, where it puts it: after the flip
        after_flip = 1 + next(i for i, op in enumerate(ops) if isinstance(op, V.RandomHorizontalFlip))
        ops.insert(after_flip, V.RandomColorAdjust(brightness=jitter[0], contrast=jitter[1], saturation=jitter[2]))
    out = np.zeros((len(files), per_image, 3, size, size), np.float32)
    count = np.zeros(len(files), int)
    dataset = ds.GeneratorDataset(rows, ["image", "idx"], shuffle=False).map(ops, "image")
    for image, i in dataset.create_tuple_iterator(output_numpy=True):
        out[i, count[i]] = image
        count[i] += 1
    return out


def _torchvision(files, size, per_image, jitter, crop_scale_min):
    import torch
    import torchvision.transforms as T
    from PIL import Image

    torch.manual_seed(0)
    tf = T.Compose([T.RandomResizedCrop(size, scale=(crop_scale_min, 1.0), ratio=(0.75, 1.333)),
                    T.RandomHorizontalFlip()] + ([T.ColorJitter(*jitter)] if any(jitter) else []) +
                   [T.ToTensor(), T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    images = [Image.open(f).convert("RGB") for f in files]
    return np.stack([np.stack([tf(im).numpy() for _ in range(per_image)]) for im in images])


def statistics(batch):
    """Summary of augmented tensors [files, samples, 3, H, W] (normalized units)."""
    first = batch[:, :, 0]
    return {"mean": first.mean(), "std": first.std(), "per_sample_std": first.std(axis=(2, 3)).mean(),
            "fraction_above_0.5": (first > 0.5).mean(), "mean_abs_dx": np.abs(np.diff(first, axis=-1)).mean(),
            "var_of_mean_image": batch.mean(1).var(axis=0).mean()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data_dir")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--per_image", type=int, default=30)
    p.add_argument("--files", type=int, default=200)
    p.add_argument("--jitter", default="0.4,0.4,0.4")
    p.add_argument("--crop_scale_min", type=float, default=0.08)
    a = p.parse_args(argv)
    files = sorted(glob.glob(os.path.join(a.data_dir, "*", "*")))
    if not files:
        sys.exit(f"error: {a.data_dir}: no class folders with images")
    files = files[::max(1, len(files) // a.files)][:a.files]
    jitter = tuple(float(v) for v in a.jitter.split(","))
    if len(jitter) != 3:
        sys.exit(f"error: --jitter {a.jitter!r}: expected three numbers B,C,S")
    ours = statistics(_ours(files, a.size, a.per_image, jitter, a.crop_scale_min))
    ref = statistics(_torchvision(files, a.size, a.per_image, jitter, a.crop_scale_min))
    print(f"{len(files)} files x {a.per_image} samples, {a.size} px, jitter {a.jitter}")
    for key in ours:
        print(f"{key:20s} ours {ours[key]:+.4f}  torchvision {ref[key]:+.4f}  difference {ours[key] - ref[key]:+.4f}")


if __name__ == "__main__":
    main()
