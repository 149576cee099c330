"""Export a trained CSPDarkNet53 to MINDIR (default), ONNX or AIR, then check the file against the network.

    python export.py --ckpt_file=CKPT [--file_format=MINDIR|ONNX|AIR] [--file_name=cspdarknet53]
                     [--export_batch_size=1] [--height=224] [--width=224] [--fp16_head=1]
    python export.py --ckpt_file=CKPT --file_format=ONNX --quantize=int8 --calib_data_dir=/data/train

The input is ``[export_batch_size, 3, height, width]`` float32 (the zoo had width before height; 0 takes the
checkpoint's training size). The file is run and compared with the network's logits before it is moved into
place, and carries its model record (``src.deploy.record``); README "Evaluation, export, prediction" and
"Deployment" describe the check, the record and ``quantize=int8``.
Exit status: 0 written and verified, 1 written but verification failed, 2 bad arguments or checkpoint,
143 / 130 stopped by SIGTERM / SIGINT (no file written). The job: ``src/export_job.py``.
"""
import sys

from model_utils.entry import run_entry
from src.export_job import export_job


def main(argv=None):
    return run_entry(export_job, argv, log_name="export", uses_data=False, quiet=True)


if __name__ == "__main__":
    sys.exit(main())
