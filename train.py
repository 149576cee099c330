"""Train CSPDarkNet53 (GRAPH mode; single device, or data parallel under msrun / an HCCL rank table).

    python train.py                                  # the embedded Fashion-MNIST demo (configs/demo.yaml)
    python train.py --data_dir=/data/imagenet/train  # the model zoo's ImageNet recipe
    python train.py --resume=outputs/<run>           # continue a run from its newest checkpoint

Outputs go to ``<ckpt_path>/<run>/``: ``log.txt``, ``config.yaml`` (the resolved config), ``run.json``,
``class_index.json``, ``metrics.csv``, ``curves.png`` (with matplotlib) and ``ckpt_<rank>/``.
The loop is ``src.trainer.fit``. Exit status: 0 done, 2 bad input (the message says which file, key or
value), 3 non-finite loss.
"""
import sys

from model_utils.entry import run_entry


def check_outputs(cfg):
    """Fails fast (before any device work, nothing created) when the run's folder cannot be written, or
    a checkpoint to start from does not exist: the run folder of ``resume``, else ``ckpt_path``."""
    import os

    from src.checkpoint import CheckpointError, find_resume_checkpoint, run_folder_of
    from src.utils.fileio import check_output_dir

    if cfg.weights.pretrained and not os.path.exists(cfg.weights.pretrained):
        raise CheckpointError(f"pretrained={cfg.weights.pretrained!r}: no such checkpoint file")
    run_dir = run_folder_of(find_resume_checkpoint(cfg.train.resume)) if cfg.train.resume else None
    if run_dir:
        check_output_dir(run_dir, "resume")
    else:
        check_output_dir(cfg.train.ckpt_path, "ckpt_path")


def train(cfg, run_log):
    from src.data.demo import with_demo_data
    from src.trainer import NonFiniteLoss, check_data_paths, fit
    from src.utils.runtime import start_context

    note = None
    if not cfg.data.data_dir and not cfg.data.data_list:
        cfg, note = with_demo_data(cfg, "train")
    check_outputs(cfg)  # before any device work
    check_data_paths(cfg)
    ctx, rewrites = start_context(cfg.device, "train")
    run_log.set_rank(ctx.rank)
    if note:
        ctx.notes.append(note)
    try:
        return fit(cfg, ctx, run_log, rewrites)
    except NonFiniteLoss as err:
        print(f"error: {err}", file=sys.stderr)
        run_log.log.error("error: %s", err)
        return 3


def main(argv=None):
    return run_entry(train, argv, log_name="train")


if __name__ == "__main__":
    sys.exit(main())
