"""Export a trained CSPDarkNet53 to MINDIR (default), ONNX or AIR, then check the file against the network.

    python export.py --ckpt_file=CKPT [--file_format=MINDIR|ONNX|AIR] [--file_name=cspdarknet53]
                     [--export_batch_size=1] [--height=224] [--width=224] [--fp16_head=1]
    python export.py --ckpt_file=CKPT --file_format=ONNX --quantize=int8 --calib_data_dir=/data/train

``ckpt_file`` (or the model zoo's ``pretrained``): any checkpoint ``src.checkpoint`` reads; its recorded
``arch`` / ``num_classes`` are used unless given on the command line, and weights that are not finite are
refused. The input is ``[export_batch_size, 3, height, width]`` float32 (the model zoo had width before
height); ``height`` / ``width`` 0 take the checkpoint's training size, else the architecture's; sizes are
bounded (the config's bounds, and on CPU the memory the check run needs). ``fp16_head=1``
makes the graph emit float16 logits, as the model zoo's export did for its Ascend 310 flow. AIR needs an
Ascend device. ``file_name`` (the format's extension is added) is never the checkpoint.

The file is run on a random input and compared with the network's own logits before it is moved into place:
MINDIR through ``mindspore.load`` + ``nn.GraphCell`` (against the Cell), ONNX through onnxruntime when
installed (against the Cell with an accurate-tanh Mish, since MindSpore's CPU Tanh is approximate; the
difference to the Cell itself is printed too). Tolerance: 1e-4 of the largest logit (float32 logits) or
one float16 step at the largest logit (fp16 head).
Every exported model carries its record (``src.deploy.record``): class names (the training run's folders),
input size, resize mode, crop_pct, mean/std, architecture, the source checkpoint and its SHA-256, and the
temperature of the checkpoint's calibration record when it has one (``calibration_file``: empty =
``<checkpoint>.calibration.json`` when it exists, ``none`` = off; a record fitted for another checkpoint is
refused). ONNX: in the file's metadata (``model_record``); MINDIR / AIR: the sidecar ``<file>.json`` (replaced
only if it is a record). predict.py ``--model_path``, postprocess.py and the C++ app read it, so they need no size
or name flags.

``quantize=int8`` (ONNX only; needs onnx and onnxruntime) then writes ``<file_name>.int8.onnx``: onnxruntime's
static QDQ quantization (int8 weights per channel, uint8 activations) calibrated on ``calib_images`` (300)
images of ``calib_data_dir`` taken in turn from its classes (``calib_seed``) through the eval preprocessing,
its record copied with a ``quantization`` entry; up to 100 other images of that folder then compare it with the
FP32 file (top-1 agreement, largest logit difference, and top-1 when the folders are the model's classes).
``tools/quantize_int8.py`` has the expert options (calibration method, float32 nodes, OpenVINO).
Exit status: 0 written and verified, 1 written but verification failed, 2 bad arguments or checkpoint,
143 / 130 stopped by SIGTERM / SIGINT (no file written). The job: ``src/export_job.py``.
"""
import sys

from model_utils.entry import run_entry
from src.export_job import export_job
from src.export_utils import ExportError


def main(argv=None):
    return run_entry(export_job, argv, log_name="export", uses_data=False, extra_errors=(ExportError,), quiet=True)


if __name__ == "__main__":
    sys.exit(main())
