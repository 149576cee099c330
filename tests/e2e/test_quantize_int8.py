"""INT8 post-training quantization end to end: train.py trains the tiny network on a learnable tiny
set; one command, ``export.py --file_format=ONNX --quantize=int8 --calib_data_dir=<train>``, writes the FP32
ONNX and its QDQ model ``<file_name>.int8.onnx`` (calibrated on the training images through the eval
preprocessing, checked against FP32 on training images the calibration did not use); the INT8 model's top-1 on
the held-out split stays within a tolerance of the FP32 model's, and its predictions agree with them.
tools/quantize_int8.py (the expert options) quantizes an ONNX file exported before records existed. Heavy
measurements (full networks, real data, speed): docs, not here (research/int8_deploy.py)."""
import glob
import json
import os
import re
import shutil

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from tests.e2e.conftest import FLOWER_NAMES  # noqa: E402

#: top-1 points INT8 may lose against FP32 on the held-out split (12 of 36 images would be 33 points)
MAX_DROP = 0.06
MIN_AGREEMENT = 0.9


@pytest.fixture(scope="module")
def trained(flowers_run, run_script, tmp_path_factory):
    """(data root with train/ and val/, the FP32 ONNX and its INT8 model, the checkpoint, export.py's output) of
    cspdarknet_tiny trained 4 epochs at 32 px (tests/e2e/conftest.py flowers_run: its epoch-4 checkpoint, copied
    here so that no other test's calibration record sits beside it), exported with --quantize=int8."""
    data, run = flowers_run
    out = tmp_path_factory.mktemp("int8")
    (ckpt,) = glob.glob(os.path.join(run, "ckpt_0", "*-4_*.ckpt"))
    ckpt = shutil.copy(ckpt, out)
    result = run_script("export.py", [f"--ckpt_file={ckpt}", "--file_format=ONNX", f"--file_name={out / 'tiny'}",
                                      "--quantize=int8", f"--calib_data_dir={data / 'train'}", "--calib_images=30"],
                        cwd=out)
    assert result.returncode == 0, result.output[-3000:]
    return data, out / "tiny.onnx", out / "tiny.int8.onnx", ckpt, result


def _val(data, record):
    from src.data.pipeline import create_dataset
    from src.deploy.record import record_preprocess

    size, mode, pct = record_preprocess(record)
    bundle = create_dataset(str(data / "val"), size, 6, mode="eval", eval_resize=mode, crop_pct=pct,
                            num_parallel_workers=1)
    xs, ys = zip(*bundle.dataset.create_tuple_iterator(num_epochs=1, output_numpy=True))
    x = np.concatenate(xs)
    return [x[i:i + 1] for i in range(len(x))], np.concatenate(ys)


def test_int8_export_keeps_the_accuracy_of_fp32(trained):
    from src.deploy.quantize import run_onnx_batches
    from src.deploy.record import read_model_record

    data, fp32, int8, _, result = trained
    assert "INT8 calibration: 30 images" in result.stdout
    # the check on the 42 training images the calibration did not use, printed by export.py
    check = re.search(r"INT8 vs FP32 on (\d+) images .* top-1 agreement ([0-9.]+)%", result.stdout)
    assert check and int(check.group(1)) == 72 - 30 and float(check.group(2)) >= 100 * MIN_AGREEMENT, result.stdout
    record, _ = read_model_record(int8)
    assert record["quantization"]["calibration_images"] == 30 and record["class_names"] == sorted(FLOWER_NAMES)
    assert record["quantization"]["check"]["images"] == 42
    fp32_record = read_model_record(fp32)[0]
    assert fp32_record["quantization"] is None and fp32_record["preprocess"]["image_size"] == [32, 32]
    assert {k: v for k, v in record.items() if k != "quantization"} == \
        {k: v for k, v in fp32_record.items() if k != "quantization"}
    # a QDQ model: int8 weights, much smaller than the float32 one
    assert os.path.getsize(int8) < 0.5 * os.path.getsize(fp32)
    batches, labels = _val(data, record)
    a, q = run_onnx_batches(fp32, batches), run_onnx_batches(int8, batches)
    top1_fp32, top1_int8 = float((a.argmax(1) == labels).mean()), float((q.argmax(1) == labels).mean())
    agreement = float((a.argmax(1) == q.argmax(1)).mean())
    print(f"\nFP32 top-1 {top1_fp32:.3f}, INT8 {top1_int8:.3f}, agreement {agreement:.3f}, "
          f"max |logit diff| {np.abs(a - q).max():.3g}")
    assert top1_fp32 >= 0.8, "the tiny network did not learn the tiny set; the comparison would mean nothing"
    assert top1_int8 >= top1_fp32 - MAX_DROP
    assert agreement >= MIN_AGREEMENT
    assert not np.allclose(a, q)   # it is another model, not a copy of the float one


def test_the_tool_quantizes_an_onnx_file_exported_without_a_record(trained, run_script, tmp_path):
    """tools/quantize_int8.py --ckpt_file: the record is built from the checkpoint, written into both files."""
    from src.deploy.record import RECORD_KEY, onnx_metadata, read_model_record

    data, fp32, _, ckpt, _ = trained
    bare = tmp_path / "bare.onnx"
    import onnx
    model = onnx.load(str(fp32))
    del model.metadata_props[:]
    onnx.save(model, str(bare))
    assert RECORD_KEY not in onnx_metadata(bare)
    result = run_script("tools/quantize_int8.py", [f"--model={bare}", f"--calib_data_dir={data / 'train'}",
                                                   "--calib_images=12", f"--ckpt_file={ckpt}"])
    assert result.returncode == 0, result.output[-3000:]
    assert "INT8 calibration: 12 images" in result.stdout and "INT8 vs FP32 on 60 images" in result.stdout
    assert read_model_record(bare)[0]["class_names"] == sorted(FLOWER_NAMES)
    assert read_model_record(tmp_path / "bare.int8.onnx")[0]["quantization"]["calibration_images"] == 12


def test_int8_export_errors(trained, run_script, tmp_path, monkeypatch):
    """Refused before any work, one error line, nothing written: a format other than ONNX; no calib_data_dir;
    a calib_data_dir that is no folder or has no class folders; onnx/onnxruntime missing (names what to
    install)."""
    data, _, _, ckpt, _ = trained
    base = [f"--ckpt_file={ckpt}", f"--file_name={tmp_path / 'm'}"]
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [(["--quantize=int8", f"--calib_data_dir={data / 'train'}"], "needs file_format=ONNX", {}),
             (["--file_format=ONNX", "--quantize=int8"], "needs calib_data_dir", {}),
             (["--file_format=ONNX", "--quantize=int8", f"--calib_data_dir={tmp_path / 'none'}"], "no such folder",
              {}),
             (["--file_format=ONNX", "--quantize=int8", f"--calib_data_dir={empty}"], str(empty), {}),
             (["--file_format=ONNX", "--quantize=int8", f"--calib_data_dir={data / 'train'}"],
              "pip install onnxruntime", {"PYTHONPATH": str(_no_onnx(tmp_path))})]
    for args, message, env in cases:
        result = run_script("export.py", base + args, env=env or None)
        assert result.returncode == 2 and message in result.stderr, result.output[-2000:]
        assert result.stderr.count("error:") == 1 and "Traceback" not in result.output
        assert not list(tmp_path.glob("m.*")), list(tmp_path.glob("m.*"))


def _no_onnx(tmp_path):
    """A PYTHONPATH (the repository first) on which ``import onnx`` fails, as where it is not installed."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    shadow = tmp_path / "no_onnx"
    (shadow / "onnx").mkdir(parents=True)
    (shadow / "onnx" / "__init__.py").write_text("raise ImportError('No module named onnx')\n")
    return f"{root}{os.pathsep}{shadow}"


def test_quantize_tool_errors(trained, run_script, tmp_path):
    data, fp32, _, _, _ = trained
    bare = tmp_path / "bare.onnx"
    from src.deploy.record import RECORD_KEY, onnx_metadata, set_onnx_metadata
    bare.write_bytes(fp32.read_bytes())
    set_onnx_metadata(bare, {RECORD_KEY: json.dumps({"format": "other"})})
    result = run_script("tools/quantize_int8.py", [f"--model={bare}", f"--calib_data_dir={data / 'train'}"])
    assert result.returncode == 2 and "error:" in result.stderr and "format" in result.stderr
    assert RECORD_KEY in onnx_metadata(bare)
    result = run_script("tools/quantize_int8.py", [f"--model={fp32}", f"--calib_data_dir={tmp_path / 'none'}"])
    assert result.returncode == 2 and "no such folder" in result.stderr
    result = run_script("tools/quantize_int8.py", [f"--model={fp32}", f"--calib_data_dir={data / 'train'}",
                                                   "--calib_method=magic"])
    assert result.returncode == 2 and "calibrate_method" in result.stderr
