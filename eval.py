"""Evaluate CSPDarkNet53 checkpoints: top-1 / top-5 over every image of an ImageFolder (GRAPH mode).

    python eval.py --ckpt_file=CKPT --data_dir=/data/imagenet/val [--per_batch_size=64]
    python eval.py --ckpt_file=outputs/<run>/ckpt_0/           # every checkpoint in a folder, best first
    python eval.py --ckpt_file=CKPT --data_dir=ROOT --data_list=val.txt   # "relative/path label" lines
    python eval.py --ckpt_file=CKPT                            # no data_dir: the embedded demo val slice
    python eval.py --ckpt_file=CKPT --data_dir=val2 --class_map=map.json    # folders named otherwise
    python eval.py --ckpt_file=CKPT --dataset_format=mindrecord --data_dir=/fast/val.mindrecord
    python eval.py --ckpt_file=CKPT --data_dir=held_out --calibrate   # fit a temperature: CKPT.calibration.json
    python eval.py --ckpt_file=CKPT --data_dir=/data/val --tta=flip   # horizontal-flip test-time augmentation

Prints the model zoo's TOP1 / TOP5 / img/sec lines and writes ``<log_path>/eval_<timestamp>/`` (eval_result.json,
the per-class analysis, the reliability diagram); README "Evaluate" describes labels, calibration and outputs.
Exit status: 0 done; 2 bad input (one ``error:`` line), also when nothing could be scored or some checkpoints
of a folder could not (the others' results are written); 143 / 130 stopped by SIGTERM / SIGINT.
The job: ``src/eval_job.py``.
"""
import sys

from model_utils.entry import run_entry
from src.eval_job import evaluate_job


def main(argv=None):
    return run_entry(evaluate_job, argv, log_name="eval")


if __name__ == "__main__":
    sys.exit(main())
