"""Draw the scalars of a train.py TensorBoard folder as one PNG (what TensorBoard's Scalars tab shows),
read back from the event files with ``src.utils.tensorboard.read_scalars`` (tensorboardX, no TensorBoard).

    python tools/plot_tensorboard.py --logdir tb/<run name> --out tensorboard_scalars.png

Panels: the training loss per step (and per epoch), the learning rate, validation top-1 / top-5 and
images/s, all against the global step. Needs matplotlib.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def plot_scalars(scalars, out, title=None, dpi=90):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("loss", [("train/loss", "per step"), ("epoch/train_loss", "epoch mean")]),
              ("learning rate", [("train/lr", "lr")]),
              ("validation accuracy (%)", [("val/top1", "top-1"), ("val/top5", "top-5")]),
              ("images / s", [("train/img_per_s", "train (log steps)")])]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 2.9), dpi=dpi)
    for ax, (label, series) in zip(axes, panels):
        for tag, name in series:
            points = scalars.get(tag, [])
            if points:
                steps, values = zip(*points)
                ax.plot(steps, values, marker="o" if len(points) <= 30 else None, markersize=3, linewidth=1.2,
                        label=name)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("global step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logdir", required=True, help="a run's TensorBoard folder (or one event file)")
    parser.add_argument("--out", default="tensorboard_scalars.png", help="PNG to write")
    args = parser.parse_args(argv)
    from src.utils.tensorboard import read_scalars

    scalars = read_scalars(args.logdir)
    if not scalars:
        print(f"error: no scalars in {args.logdir}", file=sys.stderr)
        return 2
    title = f"TensorBoard scalars of {os.path.basename(os.path.normpath(args.logdir))}"
    print(plot_scalars(scalars, args.out, title))
    return 0


if __name__ == "__main__":
    sys.exit(main())
