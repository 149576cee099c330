"""Deployment: the model record of an exported model (``record``), INT8 quantization (``quantize``), running an
exported model from its record (``exported``) and flip test-time augmentation (``tta``). Calibration lives in
``src.analysis.calibration``.
"""
