"""An exported model run the way its record says (preprocessing, class names, temperature from the file):

    ExportedModel("net.onnx").predict(["cat.jpg"], topk=5, tta="flip")   # [{"file", "top": [(i, name, p), ...]}]

ONNX runs in onnxruntime, MINDIR in MindSpore (record in the sidecar); images go through MindSpore's eval
transforms one by one, as eval.py and the C++ app do.
"""
import os

import numpy as np

from src.errors import ExportError, ModelRecordError

__all__ = ["ExportedModel", "onnx_runner", "mindir_runner"]


def onnx_runner(path, threads=0):
    """``batch -> first output`` of an ONNX file in onnxruntime on the CPU."""
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise ExportError(f"running {path} needs onnxruntime ({err}): pip install onnxruntime==1.32.0") from None
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = int(threads)
    try:
        session = ort.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime's own error types: a file it cannot load
        raise ModelRecordError(f"onnxruntime cannot load {path}: {str(err).splitlines()[0][:300]}") from None
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: np.ascontiguousarray(batch)})[0]


def mindir_runner(path):
    """``batch -> first output`` of a MINDIR file (``mindspore.load`` + ``nn.GraphCell``), as NumPy."""
    import mindspore as ms
    from mindspore import nn

    try:
        cell = nn.GraphCell(ms.load(os.fspath(path)))
    except (RuntimeError, ValueError) as err:
        raise ModelRecordError(f"MindSpore cannot load {path}: {str(err).splitlines()[0][:300]}") from None

    def run(batch):
        out = cell(ms.Tensor(np.ascontiguousarray(batch)))
        return (out[0] if isinstance(out, (tuple, list)) else out).asnumpy()
    return run

class ExportedModel:
    def __init__(self, path):
        from src.deploy.record import read_model_record

        path = os.fspath(path)
        kind = os.path.splitext(path)[1].lower()
        if kind not in (".onnx", ".mindir"):
            raise ExportError(f"{path}: expected an exported .onnx or .mindir model (AIR files run on Ascend only, "
                              "in the C++ app)")
        self.record, self.record_source = read_model_record(path, required=True)  # a missing file: ModelRecordError
        self._run = onnx_runner(path) if kind == ".onnx" else mindir_runner(path)
        self.batch = self.record["input"]["shape"][0]
        self.path = path
        cal = self.record.get("calibration")
        self.temperature = float(cal["temperature"]) if cal else 1.0
        self._ops = None

    def preprocess(self, image_path):
        """CHW float32 input of one image file, as the record says (eval transforms with its mean/std)."""
        if self._ops is None:
            import mindspore.dataset.vision as vision

            from src.data.transforms import eval_transforms
            from src.deploy.record import record_preprocess

            size, mode, pct = record_preprocess(self.record)
            pre = self.record["preprocess"]
            self._ops = [vision.Normalize(mean=pre["mean"], std=pre["std"]) if type(op).__name__ == "Normalize"
                         else op for op in eval_transforms(size, eval_resize=mode, crop_pct=pct)]
        x = np.fromfile(os.fspath(image_path), dtype=np.uint8)
        for op in self._ops:
            x = op(x)
        return np.asarray(x, dtype=np.float32)

    def logits(self, images):
        """Logits of an NCHW float32 array (any count: fed in the model's fixed batch, the last one padded)."""
        images = np.asarray(images, dtype=np.float32)
        n, out = len(images), []
        for i in range(0, n, self.batch):
            chunk = images[i:i + self.batch]
            pad = self.batch - len(chunk)
            if pad:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
            out.append(np.asarray(self._run(np.ascontiguousarray(chunk)))[:self.batch - pad])
        return np.concatenate(out).astype(np.float32)

    def predict(self, image_paths, topk=5, tta="none"):
        """Top-k ``(class index, name or None, probability at the record's temperature)`` per image."""
        from src.analysis.calibration import softmax
        from src.deploy.tta import tta_logits

        if not image_paths:
            return []
        images = np.stack([self.preprocess(p) for p in image_paths])
        logits = tta_logits(self.logits, images, tta)
        if not np.isfinite(logits).all():
            raise ModelRecordError(f"{self.path} gives non-finite logits; no prediction")
        probs = softmax(logits, self.temperature)
        names = self.record.get("class_names")
        out = []
        for path, row in zip(image_paths, probs):
            order = np.argsort(-row, kind="stable")[:int(topk)]
            out.append({"file": os.fspath(path),
                        "top": [(int(c), names[c] if names else None, float(row[c])) for c in order]})
        return out
