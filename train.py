"""Train CSPDarkNet53 (GRAPH mode; single device, or data parallel under msrun / an HCCL rank table).

    python train.py                                  # the embedded Fashion-MNIST demo (configs/demo.yaml)
    python train.py --data_dir=/data/imagenet/train  # the model zoo's ImageNet recipe
    python train.py --resume=outputs/<run>           # continue a run (its own config) from its newest checkpoint

Outputs: ``<ckpt_path>/<run>/`` (log, config, metrics, curves, ``ckpt_<rank>/``); the loop is ``src.trainer.fit``.
Exit status: 0 done, 2 bad input, 3 non-finite loss, 143 / 130 stopped by SIGTERM / SIGINT (position saved).
"""
import sys

from model_utils.entry import run_entry


def train(cfg, run_log):
    from src.data.demo import with_demo_data
    from src.resume import nothing_left, resume_config
    from src.errors import NonFiniteLoss
    from src.trainer import check_data_paths, check_outputs, fit
    from src.utils.runtime import start_context

    notes = []
    if cfg.train.resume:
        cfg, notes = resume_config(cfg)  # the run's own config; changes that alter the run are refused
        done = nothing_left(cfg)
        if done:
            run_log.log.info(done)
            return 0
    if not cfg.data.data_dir and not cfg.data.data_list:
        cfg, note = with_demo_data(cfg, "train")
        notes.append(note)
    check_outputs(cfg)  # before any device work
    check_data_paths(cfg)
    ctx, rewrites = start_context(cfg.device, "train")
    run_log.set_rank(ctx.rank)
    ctx.notes.extend(notes)
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
