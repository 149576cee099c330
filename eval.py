"""Evaluate CSPDarkNet53 checkpoints: top-1 / top-5 over every image of an ImageFolder (GRAPH mode).

    python eval.py --ckpt_file=CKPT --data_dir=/data/imagenet/val [--per_batch_size=64]
    python eval.py --ckpt_file=outputs/<run>/ckpt_0/           # every checkpoint in a folder, best first
    python eval.py --ckpt_file=CKPT --data_dir=ROOT --data_list=val.txt   # "relative/path label" lines
    python eval.py --ckpt_file=CKPT                            # no data_dir: the embedded demo val slice
    python eval.py --ckpt_file=CKPT --data_dir=val2 --class_map=map.json    # folders named otherwise
    python eval.py --ckpt_file=CKPT --dataset_format=mindrecord --data_dir=/fast/val.mindrecord
    python eval.py --ckpt_file=CKPT --data_dir=held_out --calibrate   # fit a temperature: CKPT.calibration.json
    python eval.py --ckpt_file=CKPT --data_dir=/data/val --tta=flip   # horizontal-flip test-time augmentation

``ckpt_file`` (or the model zoo's ``pretrained``) is required: a checkpoint file in any format
``src.checkpoint`` reads, or a folder of ``*.ckpt`` / ``*.safetensors`` files. A checkpoint that records its
``arch`` / ``num_classes``, its training preprocessing and its classes is built, fed and labelled with them
unless the command line says otherwise; weights that are not finite are refused. Labels are checked first:
the class folders of ``data_dir`` (a MindRecord dataset's stored classes) against the classes the checkpoint
was trained on (recorded in it, else a ``class_index.json`` beside it); a folder that is not a trained class
is an error naming it unless ``class_map`` maps it. Every file is decoded once in an isolated worker before
scoring, unusable ones named and skipped. Precision follows the device as in the model zoo (Ascend float16,
GPU float16 with float32 BatchNorm, CPU float32); ``use_ema=1`` scores EMA weights. Distributed (msrun /
rank table): every rank scores its own disjoint shard, the counts are summed, rank 0 writes.

Calibration: every eval reports the expected calibration error (15 equal-width confidence bins) and the NLL
of ``softmax(logits)`` (summed over ranks like the confusion matrix), and the same at the temperature of the
checkpoint's calibration record when it has one (``calibration_file``: empty = ``<checkpoint>.calibration.json``
when it exists, ``none`` = off; a record fitted for another checkpoint is refused). ``calibrate=1`` fits a
temperature on the scored images and writes that record (never the checkpoint): score a held-out split for it
(e.g. half of the validation images, then eval the other half), not the test set whose figures you report; when
no temperature fits (every image right with room to spare) no record is written and eval exits 2 after its
results. ``tta=flip`` averages each image's logits with its mirror image's.

Outputs, in ``<log_path>/eval_<timestamp>/``: the model zoo's lines ``top1_correct=N, tot=M, acc=XX.XX%(TOP1)``,
the TOP5 line and ``Inference Performance: X.XX img/sec``; ``eval_result.json`` (and ``result_file`` when
given), written once at the end; ``eval_rank<R>.log``, ``config.yaml`` (the keys eval reads) and ``run.json``;
beside the JSON (in ``<checkpoint stem>/`` when several are scored) ``per_class.csv``, ``confusion_matrix.csv``,
``confusion_matrix.png`` (needs matplotlib), ``worst_mistakes.png`` and ``reliability.png`` (the reliability
diagram, at temperature 1 and at the checkpoint's or the fitted temperature; ``no_plots`` skips the PNGs).
Exit status: 0 done; 2 bad input (the message names the file, key or value), also when no image could be
scored or the network's outputs are not finite; a folder with unusable checkpoints scores the others, writes
their results and then exits 2 naming them; 143 / 130 stopped by SIGTERM / SIGINT (no result written).
The job: ``src/eval_job.py``.
"""
import sys

from model_utils.entry import run_entry
from src.eval_job import evaluate_job


def main(argv=None):
    return run_entry(evaluate_job, argv, log_name="eval")


if __name__ == "__main__":
    sys.exit(main())
