"""Does class_weights / the class-balanced sampler help a rare class? A measured answer on real images.

    python research/imbalance_experiment.py --rare_class 6 --rare_n 10 --epochs 15 --seeds 0 1

Builds a deliberately imbalanced split of the Fashion-MNIST demo slice (``src.data.demo``: 100 training images per
class): class ``--rare_class`` keeps only ``--rare_n`` images, the others keep 100. Trains the small
``cspdarknet_tiny`` at 32 px with the project's pipeline (``src.data.create_dataset``, zoo augmentation),
loss (``CrossEntropySmooth``, label smoothing 0.1), optimizer and train step, three ways:

* ``none``: plain training;
* ``weights``: ``class_weights="balanced"`` (inverse frequency, mean 1) in the loss;
* ``sampler``: the class-balanced sampler (``create_dataset(sampler="class_balanced")``, train.py's
  ``--sampler=class_balanced``) instead of the epoch shuffle (epoch length unchanged);

and scores each on the full, balanced validation slice (50 per class): recall of the rare class, mean recall of
the others, top-1. Prints a table (mean over ``--seeds``) and writes ``--json``.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("GLOG_v", "3")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402


def imbalanced_tree(train_dir, out_dir, rare_class, rare_n):
    classes = sorted(d for d in os.listdir(train_dir) if not d.startswith("."))
    for i, c in enumerate(classes):
        names = sorted(os.listdir(os.path.join(train_dir, c)))
        if i == rare_class:
            names = names[:rare_n]
        os.makedirs(os.path.join(out_dir, c))
        for n in names:
            os.symlink(os.path.join(train_dir, c, n), os.path.join(out_dir, c, n))
    return classes


def run(variant, train_dir, val_dir, epochs, seed, batch=32, lr_peak=0.04, log=print):
    import mindspore as ms
    from src.data import create_dataset
    from src.data.balance import class_weights_from_counts
    from src.image_classification import create_model
    from src.loss import CrossEntropySmooth
    from src.lr_generator import get_lr
    from src.train_step import TrainStep
    from src.utils.optimizers_init import create_optimizer

    from src.utils.seeding import seed_everything, set_augmentation_seed

    seed_everything(seed)
    # the options train.py takes: sampler=class_balanced, class_weights=balanced
    bundle = create_dataset(train_dir, 32, batch, mode="train", seed=seed, crop_scale_min=0.35,
                            num_parallel_workers=2, sampler="class_balanced" if variant == "sampler" else "epoch_shard")
    k = len(bundle.class_to_idx)
    counts = bundle.class_counts
    weights = class_weights_from_counts(counts, k, "balanced" if variant == "weights" else "none")
    net = create_model("cspdarknet_tiny", num_classes=k, seed=seed)
    steps = bundle.steps_per_epoch
    lr = get_lr("cosine_step", lr_peak, steps, epochs, warmup_epochs=1.0, T_max=epochs)
    opt = create_optimizer(net, ms.Tensor(lr), momentum=0.9, weight_decay=1e-4)
    step = TrainStep(net, CrossEntropySmooth(0.1, k, class_weights=weights), opt, loss_scale=1.0)
    step.set_train(True)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        set_augmentation_seed(seed, 0, epoch)
        bundle.set_epoch(epoch)
        losses = [float(step(x, y)[0].asnumpy()) for x, y in bundle.dataset.create_tuple_iterator(num_epochs=1)]
        log(f"  {variant} seed {seed} epoch {epoch + 1}/{epochs}: loss {np.mean(losses):.3f} "
            f"({time.perf_counter() - t0:.0f} s)")
    net.set_train(False)
    val = create_dataset(val_dir, 32, 100, mode="eval", class_to_idx=bundle.class_to_idx)
    preds, ys = [], []
    for x, y in val.dataset.create_tuple_iterator(num_epochs=1):
        preds.append(net(x).asnumpy().argmax(-1))
        ys.append(y.asnumpy())
    preds, ys = np.concatenate(preds), np.concatenate(ys)
    recall = [float((preds[ys == c] == c).mean()) for c in range(k)]
    return {"variant": variant, "seed": seed, "recall": recall, "top1": float((preds == ys).mean()),
            "train_counts": counts.tolist(), "seconds": time.perf_counter() - t0,
            "predicted_as_rare": None}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rare_class", type=int, default=6, help="index of the class made rare (6: shirt)")
    p.add_argument("--rare_n", type=int, default=10)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--variants", nargs="+", default=["none", "weights", "sampler"])
    p.add_argument("--json", default="")
    args = p.parse_args(argv)
    import mindspore as ms
    ms.set_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE)
    from src.data.demo import ensure_demo_dataset
    demo = ensure_demo_dataset()
    tmp = tempfile.mkdtemp(prefix="imbalance_")
    try:
        train_dir = os.path.join(tmp, "train")
        classes = imbalanced_tree(demo.train, train_dir, args.rare_class, args.rare_n)
        print(f"imbalanced split: class {args.rare_class} ({classes[args.rare_class]}) has {args.rare_n} training "
              f"images, the other {len(classes) - 1} classes 100; validation: {demo.val} (balanced)")
        results = []
        for seed in args.seeds:
            for v in args.variants:
                r = run(v, train_dir, demo.val, args.epochs, seed)
                results.append(r)
                rare = r["recall"][args.rare_class]
                others = np.mean([x for i, x in enumerate(r["recall"]) if i != args.rare_class])
                print(f"{v:<8} seed {seed}: rare-class recall {rare:.3f}, other classes {others:.3f}, top-1 "
                      f"{r['top1']:.3f} ({r['seconds']:.0f} s)", flush=True)
        print(f"\n{'variant':<8} {'rare recall':>11} {'others':>8} {'top-1':>7}  (mean over seeds {args.seeds})")
        for v in args.variants:
            rs = [r for r in results if r["variant"] == v]
            rare = np.mean([r["recall"][args.rare_class] for r in rs])
            others = np.mean([np.mean([x for i, x in enumerate(r["recall"]) if i != args.rare_class]) for r in rs])
            print(f"{v:<8} {rare:>11.3f} {others:>8.3f} {np.mean([r['top1'] for r in rs]):>7.3f}")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"args": vars(args), "classes": classes, "results": results}, f, indent=1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
