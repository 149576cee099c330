"""Train timm's twin of a project architecture in PyTorch with this project's recipe: the reference side of
README's training-parity table.

    python tools/timm_reference_train.py --arch cspdarknet53 --data_dir D/train --val_data_dir D/val \\
        --image_size 32 --per_batch_size 32 --max_epoch 8 --lr 0.05 --warmup_epochs 1 \\
        --lr_scheduler cosine_annealing --seed 1 --summary timm_seed1.json

The options carry train.py's key names and meanings, so one recipe is written the same way for both sides.
The network is the architecture's like-for-like timm model from the registry (``src.archs``: ``cspdarknet53``
-> timm ``cspdarknet53`` with ``act_layer=mish``; ``cspdarknet53_timm`` -> timm's LeakyReLU ``cspdarknet53``),
with timm's own initialisation. Taken from the project by import, not copied: the learning rate of every step
(``src.lr_generator.get_lr``), the eval preprocessing of the architecture (``src.archs.resolve_preprocess``,
``src.data.transforms.eval_resize_size``) and the mean/std. Written with torchvision to the same parameters as
``src.data.transforms``: train = random-resized crop (area crop_scale_min..1, aspect 0.75..1.333), horizontal
flip, colour jitter (brightness = contrast = saturation = color_jitter); eval = resize, centre crop. SGD with
momentum, weight decay on conv/linear weights only (none on BatchNorm and biases), PyTorch's label smoothing
(the project's ``label_smooth_style=pytorch``), incomplete last batch dropped. RandAugment, random erasing,
mixup, EMA and the zoo's smoothing convention are not offered.

Prints one line per epoch and, last, one JSON line: the summary (arch, timm model, recipe, per-epoch
``val_top1`` / ``val_top5`` / ``train_loss``, ``final_top1``, ``best_top1``). ``--summary FILE`` also writes it
to FILE with ``lr_per_step``, the learning rate the optimizer used at each step. Needs torch, torchvision and
timm (requirements-test.txt). Exit status 0; 2 for a bad option, folder or missing package (one ``error:``
line, before any training).
"""
import argparse
import json
import os
import random
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

TOOL = "timm_reference_train"


class UsageError(Exception):
    """A bad option, folder or environment: printed as one ``error:`` line, exit status 2."""


def build_parser():
    from src.archs import EVAL_RESIZE_MODES
    from src.lr_generator import SCHEDULERS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="cspdarknet53", help="project architecture whose timm twin is trained")
    p.add_argument("--data_dir", required=True, help="training ImageFolder tree (root/<class>/<image>)")
    p.add_argument("--val_data_dir", required=True, help="validation ImageFolder tree, the same class folders")
    p.add_argument("--image_size", default="32", help="train crop and eval size: S or H,W (auto: the arch's)")
    p.add_argument("--per_batch_size", type=int, default=32)
    p.add_argument("--max_epoch", type=int, default=8)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--lr_scheduler", default="cosine_annealing", choices=SCHEDULERS)
    p.add_argument("--warmup_epochs", type=float, default=1.0)
    p.add_argument("--T_max", type=int, default=0, help="cosine_annealing period in epochs; 0: max_epoch")
    p.add_argument("--eta_min", type=float, default=0.0)
    p.add_argument("--lr_epochs", default="30,60,90,120", help="milestones of exponential/multistep")
    p.add_argument("--lr_gamma", type=float, default=0.1)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight_decay", type=float, default=1e-4)
    p.add_argument("--label_smooth_factor", type=float, default=0.1)
    p.add_argument("--crop_scale_min", type=float, default=0.08)
    p.add_argument("--color_jitter", type=float, default=0.4)
    p.add_argument("--eval_resize", default="auto", choices=("auto",) + tuple(EVAL_RESIZE_MODES))
    p.add_argument("--crop_pct", type=float, default=0.0, help="eval centre-crop fraction; 0: the arch's")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: the cores this process may use)")
    p.add_argument("--num_parallel_workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--summary", default="", help="also write the summary JSON (with lr_per_step) to this file")
    return p


def check_args(a):
    """Every option and folder checked before torch is imported; returns the resolved recipe parts."""
    from src.archs import get_arch_spec, resolve_preprocess
    from src.data.transforms import parse_image_size

    try:
        spec = get_arch_spec(a.arch)
    except ValueError as err:
        raise UsageError(f"--arch: {err}") from None
    if not spec.timm_model:
        raise UsageError(f"--arch {a.arch!r} has no timm twin in src.archs")
    for key in ("data_dir", "val_data_dir"):
        folder = getattr(a, key)
        if not os.path.isdir(folder):
            raise UsageError(f"--{key} {folder!r}: not a folder")
    positive = {"per_batch_size": a.per_batch_size, "max_epoch": a.max_epoch}
    for key, value in positive.items():
        if value < 1:
            raise UsageError(f"--{key} must be >= 1, got {value}")
    ranges = {"crop_scale_min": (a.crop_scale_min, 0.0, 1.0), "crop_pct": (a.crop_pct, 0.0, 1.0),
              "momentum": (a.momentum, 0.0, 1.0), "label_smooth_factor": (a.label_smooth_factor, 0.0, 1.0)}
    for key, (value, low, high) in ranges.items():
        if not low <= value <= high:
            raise UsageError(f"--{key} must be in [{low}, {high}], got {value}")
    if a.crop_scale_min == 0:
        raise UsageError("--crop_scale_min must be > 0")
    if a.color_jitter < 0 or a.weight_decay < 0 or a.threads < 0 or a.num_parallel_workers < 0:
        raise UsageError("--color_jitter, --weight_decay, --threads and --num_parallel_workers must be >= 0")
    try:
        size = a.image_size if a.image_size == "auto" else "%d,%d" % parse_image_size(a.image_size)
        pre = resolve_preprocess(a.arch, size, a.eval_resize, a.crop_pct)
    except ValueError as err:
        raise UsageError(f"--image_size / --eval_resize / --crop_pct: {err}") from None
    if a.summary:
        from src.utils.fileio import check_output_file
        try:
            check_output_file(a.summary, "--summary", inputs=(a.data_dir, a.val_data_dir), ours=written_by_tool)
        except ValueError as err:
            raise UsageError(str(err)) from None
    return spec, pre


def written_by_tool(path):
    """Whether ``path`` is a summary this tool wrote (the only existing file --summary replaces)."""
    try:
        with open(path) as f:
            return json.load(f).get("tool") == TOOL
    except (OSError, ValueError, AttributeError):
        return False


def import_torch():
    try:
        import timm
        import torch
        import torchvision  # noqa: F401  (the transforms and ImageFolder)
    except ImportError as err:
        raise UsageError(f"needs torch, torchvision and timm (pip install -r requirements-test.txt): {err}") from None
    return torch, timm


def make_loaders(a, pre, torch):
    """(train loader, val loader, class names) with the project's augmentation and eval preprocessing."""
    import torchvision.transforms as T
    from torchvision.datasets import ImageFolder

    from src.data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_resize_size

    h, w = (int(v) for v in pre["image_size"].split(","))
    normalize = T.Normalize([m / 255.0 for m in IMAGENET_MEAN], [s / 255.0 for s in IMAGENET_STD])
    train_ops = [T.RandomResizedCrop((h, w), scale=(a.crop_scale_min, 1.0), ratio=(0.75, 1.333)),
                 T.RandomHorizontalFlip(0.5)]
    if a.color_jitter > 0:
        train_ops.append(T.ColorJitter(a.color_jitter, a.color_jitter, a.color_jitter))
    train_ops += [T.ToTensor(), normalize]
    resize = eval_resize_size((h, w), pre["eval_resize"], pre["crop_pct"])
    eval_ops = [T.Resize(resize), T.CenterCrop((h, w)), T.ToTensor(), normalize]
    try:
        train = ImageFolder(a.data_dir, T.Compose(train_ops))
        val = ImageFolder(a.val_data_dir, T.Compose(eval_ops))
    except (FileNotFoundError, RuntimeError) as err:
        raise UsageError(f"{err}") from None
    if train.classes != val.classes:
        only = sorted(set(train.classes) ^ set(val.classes))
        raise UsageError(f"--data_dir and --val_data_dir have different class folders (not in both: {only[:5]})")
    if len(train) < a.per_batch_size:
        raise UsageError(f"--per_batch_size {a.per_batch_size} is more than the {len(train)} training images "
                         f"of {a.data_dir} (the incomplete batch is dropped: no step would run)")
    # The epoch order and the augmentation draw from torch's global generator, seeded by --seed.
    train_loader = torch.utils.data.DataLoader(train, batch_size=a.per_batch_size, shuffle=True, drop_last=True,
                                               num_workers=a.num_parallel_workers)
    val_loader = torch.utils.data.DataLoader(val, batch_size=max(a.per_batch_size, 64),
                                             num_workers=a.num_parallel_workers)
    return train_loader, val_loader, train.classes


def lr_array(a, steps_per_epoch):
    """The project's per-step learning rates for this recipe (``T_max`` 0 means ``max_epoch``, as train.py)."""
    from src.lr_generator import get_lr

    try:
        return get_lr(lr_scheduler=a.lr_scheduler, lr=a.lr, steps_per_epoch=steps_per_epoch, max_epoch=a.max_epoch,
                      warmup_epochs=a.warmup_epochs, lr_epochs=a.lr_epochs, lr_gamma=a.lr_gamma,
                      eta_min=a.eta_min, T_max=a.T_max or a.max_epoch)
    except ValueError as err:
        raise UsageError(f"learning-rate options: {err}") from None


def evaluate(model, loader, torch):
    """(top-1 %, top-5 %, images) of ``model`` on ``loader``."""
    model.eval()
    top1 = top5 = total = 0
    with torch.no_grad():
        for x, y in loader:
            logits = model(x)
            k = min(5, logits.shape[1])
            best = logits.topk(k, dim=1).indices
            top1 += (best[:, 0] == y).sum().item()
            top5 += (best == y[:, None]).any(dim=1).sum().item()
            total += len(y)
    return 100.0 * top1 / total, 100.0 * top5 / total, total


def train(a, spec, pre):
    torch, timm = import_torch()
    random.seed(a.seed)
    np.random.seed(a.seed)
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads or len(os.sched_getaffinity(0)))
    train_loader, val_loader, classes = make_loaders(a, pre, torch)
    steps_per_epoch = len(train_loader)
    lrs = lr_array(a, steps_per_epoch)

    kwargs = dict(spec.timm_kwargs)
    model = timm.create_model(spec.timm_model, num_classes=len(classes), **kwargs)
    decay = [q for q in model.parameters() if q.ndim > 1]
    no_decay = [q for q in model.parameters() if q.ndim <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": a.weight_decay},
                           {"params": no_decay, "weight_decay": 0.0}], lr=float(lrs[0]), momentum=a.momentum)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=a.label_smooth_factor)

    summary = {"tool": TOOL, "arch": a.arch, "timm_model": spec.timm_model, "timm_kwargs": kwargs,
               "image_size": pre["image_size"], "eval_resize": pre["eval_resize"], "crop_pct": pre["crop_pct"],
               "per_batch_size": a.per_batch_size, "max_epoch": a.max_epoch, "steps_per_epoch": steps_per_epoch,
               "lr": a.lr, "lr_scheduler": a.lr_scheduler, "warmup_epochs": a.warmup_epochs, "seed": a.seed,
               "num_classes": len(classes), "train_images": len(train_loader.dataset),
               "val_images": len(val_loader.dataset), "torch": torch.__version__, "timm": timm.__version__,
               "val_top1": [], "val_top5": [], "train_loss": []}
    used_lr = []
    step, t0 = 0, time.time()
    for epoch in range(a.max_epoch):
        model.train()
        losses = []
        for x, y in train_loader:
            for group in opt.param_groups:
                group["lr"] = float(lrs[step])
            loss = loss_fn(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            used_lr.append(opt.param_groups[0]["lr"])
            losses.append(loss.item())
            step += 1
        top1, top5, n = evaluate(model, val_loader, torch)
        summary["val_top1"].append(round(top1, 2))
        summary["val_top5"].append(round(top5, 2))
        summary["train_loss"].append(round(float(np.mean(losses)), 4))
        print(f"epoch {epoch + 1}/{a.max_epoch}: train loss {np.mean(losses):.4f}, lr {used_lr[-1]:.5g}, "
              f"val top-1 {top1:.2f}% top-5 {top5:.2f}% of {n}, {time.time() - t0:.0f} s", flush=True)
    summary["final_top1"] = summary["val_top1"][-1]
    summary["best_top1"] = max(summary["val_top1"])
    summary["wall_s"] = round(time.time() - t0, 1)
    return summary, used_lr


def main(argv=None):
    a = build_parser().parse_args(argv)
    try:
        spec, pre = check_args(a)
        summary, used_lr = train(a, spec, pre)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(summary), flush=True)
    if a.summary:
        from src.utils.fileio import write_json_atomic
        write_json_atomic(dict(summary, lr_per_step=used_lr), a.summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
