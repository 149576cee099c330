"""Top-k classes, with names and softmax probabilities, for images from any CSPDarkNet53 checkpoint.

    python predict.py --ckpt_file=CKPT --image_path=cat.jpg
    python predict.py --ckpt_file=outputs/<run>/ckpt_0/best.ckpt --image_path=photos/,extra.png --topk=3
    python predict.py --ckpt_file=CKPT --image_path=photos --result_file=predictions.json
    python predict.py --model_path=net.onnx --image_path=photos      # an exported model alone (also .int8.onnx, .mindir)
    python predict.py --ckpt_file=CKPT --image_path=cat.jpg --tta=flip --cam=1

Eval's preprocessing at the checkpoint's training size; results printed and written in input order, an
unreadable file in its place with the reason; probabilities at the temperature of the checkpoint's calibration
record (README "Evaluation, export, prediction" and "Deployment" say where names and temperature come from).
Exit status: 0 done; 2 bad input (one ``error:`` line), also when the network's outputs are not finite;
143 / 130 stopped by SIGTERM / SIGINT (nothing written). The job: ``src/predict_job.py``.
"""
import sys

from model_utils.entry import run_entry
from src.predict_job import predict_job


def main(argv=None):
    return run_entry(predict_job, argv, log_name="predict", uses_data=False, quiet=True)


if __name__ == "__main__":
    sys.exit(main())
