"""The pure parts of src/deploy/quantize.py: which calibration images are taken, and the errors a user sees
when onnx/onnxruntime are missing or an option is wrong. (End to end: tests/e2e/test_quantize_int8.py.)"""
import sys
from collections import Counter

import pytest

from src.deploy import quantize
from src.errors import DatasetError, ExportError


def _select(root, n, seed=0):
    ((paths, labels),), class_to_idx = quantize.select_images(root, [n], seed)
    return paths, labels, class_to_idx


def test_calibration_images_spread_over_the_classes(make_tiny_data):
    root = make_tiny_data(classes=3, per_class=10, size=8)
    paths, labels, class_to_idx = _select(root, 7, seed=0)
    assert len(paths) == 7 and len(set(paths)) == 7
    assert sorted(Counter(labels).values()) == [2, 2, 3]      # in turn from each class
    assert all(p.startswith(f"class{lb}/") for p, lb in zip(paths, labels))
    assert _select(root, 7, seed=0)[0] == paths        # seeded
    assert _select(root, 7, seed=1)[0] != paths
    assert len(_select(root, 100, seed=0)[0]) == 30    # fewer images than asked: all
    with pytest.raises(DatasetError, match="calib_images"):
        _select(root, 0)


def test_missing_onnx_tools_say_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)      # import onnxruntime -> ImportError
    with pytest.raises(ExportError, match="pip install onnxruntime"):
        quantize.require_onnx_tools()


def test_bad_options_are_refused_before_work(tmp_path):
    with pytest.raises(ExportError, match="calibrate_method"):
        quantize.quantize_onnx(tmp_path / "m.onnx", tmp_path / "q.onnx", [object()], calibrate_method="magic")
    with pytest.raises(ExportError, match="no calibration images"):
        quantize.quantize_onnx(tmp_path / "m.onnx", tmp_path / "q.onnx", [])
