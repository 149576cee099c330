"""Deployment: what an exported model carries and what is done to it after export.

* ``record``: the model record (class names, input size, eval preprocessing, architecture, source checkpoint,
  calibration temperature) written into an ONNX file's metadata or a sidecar JSON beside a MINDIR/AIR file,
  and read back; no onnx package needed.
* ``quantize``: INT8 post-training quantization of an exported ONNX model (onnxruntime's QDQ
  ``quantize_static``, calibrated on training images through the project's eval pipeline), and optionally
  an OpenVINO IR through NNCF.
* ``tta``: test-time augmentation (horizontal flip) as a network wrapper and as a function over logits.

The probability calibration itself (ECE, NLL, temperature, reliability diagram) is pure NumPy and lives in
``src.analysis.calibration``. Nothing here is imported by this package's ``__init__``.
"""
