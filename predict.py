"""Top-k classes, with names and softmax probabilities, for images from any CSPDarkNet53 checkpoint.

    python predict.py --ckpt_file=CKPT --image_path=cat.jpg
    python predict.py --ckpt_file=outputs/<run>/ckpt_0/best.ckpt --image_path=photos/,extra.png --topk=3
    python predict.py --ckpt_file=CKPT --image_path=photos --result_file=predictions.json
    python predict.py --model_path=net.onnx --image_path=photos      # an exported model alone (also .int8.onnx, .mindir)
    python predict.py --ckpt_file=CKPT --image_path=cat.jpg --tta=flip

``ckpt_file`` (or the model zoo's ``pretrained``): any checkpoint ``src.checkpoint`` reads; weights that are
not finite are refused. ``image_path``: image files and/or folders (searched recursively), comma separated.
Preprocessing is eval's exactly (decode, resize, center crop, normalize), at the checkpoint's training
``image_size`` / ``eval_resize`` / ``crop_pct`` unless they are given. Every file is first decoded once in an
isolated worker process, so a file that would crash the decoder is reported and skipped like any unreadable
one. Results are printed and written in input order, a skipped file in its place with the reason. File names
that are not UTF-8 are printed as ``\\xNN`` and written to the JSON exactly (plus ``image_bytes``, the raw
name in hex).

Probabilities are ``softmax(logits / T)``: T is the temperature of the checkpoint's calibration record
(eval.py ``--calibrate``; ``calibration_file``: empty = ``<checkpoint>.calibration.json`` when it exists,
``none`` = 1, a record of another checkpoint is refused), else 1; the output and the JSON say which T and where
it came from. ``tta=flip`` averages each image's logits with its mirror image's. ``model_path``: an exported model
(ONNX, run by onnxruntime; MINDIR with its sidecar ``<model>.json``, run by MindSpore) predicts alone, from its
own record: class names, preprocessing, temperature (``calibration_file=none``: 1; a file: that one, if it was
fitted for the model's source checkpoint); no checkpoint is read, and the keys its record fixes
(``image_size``, ``eval_resize``, ``crop_pct``, ``arch``, ``num_classes``) and ``cam`` are refused.

Class names, first match wins: ``class_names_file`` (a TSV/TXT list or a class index JSON, see
``src.data.class_names``; a warning says when it disagrees with the checkpoint's classes); the classes the
checkpoint was trained on (recorded in it, else a ``class_index.json`` beside it); the shipped ImageNet-1k
names for a 1000-class model; else ``class_<i>``. ``cam=1`` also saves, per image, the input and its Grad-CAM
heatmap (``src.analysis.gradcam``) as ``<index>_<name>_cam.png`` in ``cam_dir`` (default: beside
``result_file``, else ``./cam``); the image's JSON record names it under ``"cam"`` (and the explained class
under ``"cam_class"``). ``result_file`` and ``cam_dir`` are never one of the inputs.
Exit status: 0 done; 2 bad input (the message names the file, key or value), also when the network's outputs
are not finite; 143 / 130 stopped by SIGTERM / SIGINT (nothing written). The job: ``src/predict_job.py``.
"""
import sys

from model_utils.entry import run_entry
from src.predict_job import predict_job


def main(argv=None):
    return run_entry(predict_job, argv, log_name="predict", uses_data=False, quiet=True)


if __name__ == "__main__":
    sys.exit(main())
