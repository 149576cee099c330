"""Issue 23's "done when", end to end: a model trained on its own class folders is calibrated by eval.py
(``--calibrate``, a record beside the checkpoint), exported once with no extra flags, and then predicts those
class names with calibrated probabilities in Python (predict.py ``--model_path``, the exported model alone;
``--ckpt_file``) and in the C++ app. Also: flip TTA in eval and predict against a reference average of the
exported model's logits, a calibration record of another checkpoint refused by export, a MINDIR model with its
sidecar record, and the refusals of eval ``--calibrate`` before any work. (eval ``--calibrate`` on two msrun ranks:
tests/e2e/test_analysis_e2e.py, with the analysis files of the same run.)

Each reference is computed here independently: onnxruntime on the eval transforms' pixels, NumPy's softmax.
INT8 export end to end: tests/e2e/test_quantize_int8.py."""
import glob
import hashlib
import json
import os
import re
import shutil

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from tests.e2e.test_cpp_infer import app_build  # noqa: E402,F401 (the C++ app's cached ORT_CPU build)

from tests.e2e.conftest import FLOWER_NAMES as NAMES  # noqa: E402 (class c of make_tiny_data gets NAMES[c])


def _sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _softmax(z, t=1.0):
    z = np.asarray(z, np.float64) / t
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def flowers(flowers_run):
    """train/ and val/ with the user's class names; held/: val with one image of each class filed under the next
    class (label noise: on a split the model gets all right, no finite temperature exists)."""
    return flowers_run[0]


@pytest.fixture(scope="module")
def trained(flowers_run, tmp_path_factory):
    """(the epoch-4 checkpoint, the epoch-3 one, the epoch-4 one's SHA-256 before anything read it), copied
    from the shared run (tests/e2e/conftest.py flowers_run) into this module's folder."""
    folder = tmp_path_factory.mktemp("deploy_run")
    (ckpt,) = glob.glob(os.path.join(flowers_run[1], "ckpt_0", "*-4_*.ckpt"))
    (before,) = glob.glob(os.path.join(flowers_run[1], "ckpt_0", "*-3_*.ckpt"))
    ckpt, before = shutil.copy(ckpt, folder), shutil.copy(before, folder)
    return ckpt, before, _sha(ckpt)


def _eval(run_script, ckpt, data, logs, *extra):
    result = run_script("eval.py", [f"--ckpt_file={ckpt}", f"--data_dir={data}", f"--log_path={logs}",
                                    "--num_parallel_workers=1", *extra])
    runs = sorted(glob.glob(str(logs / "eval_*" / "eval_result.json")))
    return result, (json.loads(open(runs[-1]).read()) if runs else None)


@pytest.fixture(scope="module")
def calibrated(trained, flowers, run_script, tmp_path_factory):
    """eval.py --calibrate on the held-out split: (result, eval_result.json, the calibration record)."""
    ckpt, _, _ = trained
    result, doc = _eval(run_script, ckpt, flowers / "held", tmp_path_factory.mktemp("cal_logs"), "--calibrate")
    assert result.returncode == 0, result.output[-3000:]
    return result, doc, json.loads(open(ckpt + ".calibration.json").read())


def test_calibrate_writes_a_record_bound_to_the_checkpoint_that_lowers_the_nll_of_its_split(
        trained, calibrated, flowers, run_script, tmp_path):
    ckpt, _, sha = trained
    _, doc, record = calibrated
    assert _sha(ckpt) == sha                                  # the checkpoint is never rewritten
    assert record["checkpoint_sha256"] == sha and record["images"] == 36 and record["data"]["tta"] == "none"
    assert record["nll_after"] < record["nll_before"] and record["temperature"] != pytest.approx(1.0, abs=1e-3)
    # eval's own report: ECE and NLL at temperature 1 in eval_result.json, the fit, the reliability diagram
    assert doc["nll"] == pytest.approx(record["nll_before"], abs=1e-5)
    assert doc["ece"] == pytest.approx(record["ece_before"], abs=1e-5) and 0 <= doc["ece"] <= 1
    assert doc["calibration"]["fitted"] and doc["calibration"]["file"] == ckpt + ".calibration.json"
    assert glob.glob(str(doc["analysis_dir"]) + "/reliability.png")
    # a later eval of the same split applies the record: its NLL at the temperature is the fit's, and lower
    result, again = _eval(run_script, ckpt, flowers / "held", tmp_path / "logs", "--no_plots")
    assert result.returncode == 0, result.output[-3000:]
    assert again["nll"] == pytest.approx(doc["nll"], abs=1e-5)
    applied = again["calibration"]
    assert not applied["fitted"] and applied["temperature"] == pytest.approx(record["temperature"])
    assert applied["nll"] == pytest.approx(record["nll_after"], abs=1e-5) and applied["nll"] < again["nll"]
    assert not glob.glob(str(tmp_path / "logs" / "eval_*" / "reliability.png"))   # no_plots


def test_calibrate_refuses_an_output_that_is_not_its_own_before_any_work(trained, flowers, run_script, tmp_path):
    ckpt, _, sha = trained
    notes = tmp_path / "notes.json"
    notes.write_text('{"mine": 1}')
    for target, message in ((notes, "was not written by this project"), (ckpt, "is one of this run's inputs")):
        result, doc = _eval(run_script, ckpt, flowers / "held", tmp_path / "logs", "--calibrate",
                            f"--calibration_file={target}")
        assert result.returncode == 2 and message in result.stderr and result.stderr.count("error:") == 1, \
            result.output[-2000:]
        assert doc is None
    assert notes.read_text() == '{"mine": 1}' and _sha(ckpt) == sha
    result, _ = _eval(run_script, ckpt, flowers / "held", tmp_path / "logs", "--calibrate", "--calibration_file=none")
    assert result.returncode == 2 and "calibration_file=none" in result.stderr


@pytest.fixture(scope="module")
def exported(trained, calibrated, run_script, tmp_path_factory):
    """export.py with no extra flags: (the ONNX file, its record, the temperature of the checkpoint's record)."""
    from src.deploy.record import read_model_record

    ckpt, _, _ = trained
    out = tmp_path_factory.mktemp("export")
    result = run_script("export.py", [f"--ckpt_file={ckpt}", "--file_format=ONNX", f"--file_name={out / 'flowers'}"])
    assert result.returncode == 0, result.output[-3000:]
    record, _ = read_model_record(out / "flowers.onnx")
    return out / "flowers.onnx", record, calibrated[2]["temperature"]


def _reference(model, files, record, tta="none"):
    """Logits of the ONNX model on the eval transforms' pixels of ``files`` (mirrored and averaged for flip)."""
    import onnxruntime as ort

    from src.data.transforms import eval_transforms
    from src.deploy.record import record_preprocess

    size, mode, pct = record_preprocess(record)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name, out = session.get_inputs()[0].name, []
    for path in files:
        x = np.fromfile(str(path), dtype=np.uint8)
        for op in eval_transforms(size, eval_resize=mode, crop_pct=pct):
            x = op(x)
        x = np.asarray(x, np.float32)[None]
        logits = session.run(None, {name: x})[0][0]
        if tta == "flip":
            logits = (logits + session.run(None, {name: np.ascontiguousarray(x[..., ::-1])})[0][0]) / 2
        out.append(logits)
    return np.stack(out)


def _images(flowers):
    return sorted(glob.glob(str(flowers / "val" / "*" / "img00[1-3].JPEG")))


def _predict(run_script, tmp_path, *args):
    result = run_script("predict.py", [*args, f"--result_file={tmp_path / 'p.json'}", "--topk=3"])
    assert result.returncode == 0, result.output[-3000:]
    doc = json.loads((tmp_path / "p.json").read_text())
    return result, doc, np.stack([[t["probability"] for t in sorted(p["topk"], key=lambda t: t["class"])]
                                  for p in doc["predictions"]])


def test_the_exported_model_carries_the_class_folders_and_the_checkpoints_temperature(exported, trained):
    _, record, temperature = exported
    assert record["class_names"] == sorted(NAMES)
    assert record["calibration"]["temperature"] == temperature
    assert record["source_checkpoint"]["sha256"] == trained[2]
    assert record["preprocess"]["image_size"] == [32, 32] and record["input"]["shape"] == [1, 3, 32, 32]


def test_python_predicts_the_class_names_with_calibrated_probabilities_from_the_exported_model_alone(
        exported, flowers, trained, run_script, tmp_path):
    model, record, t = exported
    files = _images(flowers)
    result, doc, probs = _predict(run_script, tmp_path, f"--model_path={model}",
                                  f"--image_path={','.join(files)}")
    expected = _softmax(_reference(model, files, record), t)
    np.testing.assert_allclose(probs, expected, atol=2e-5)
    assert not np.allclose(probs, _softmax(_reference(model, files, record)), atol=1e-3)   # T is applied
    for path, prediction in zip(files, doc["predictions"]):
        top = prediction["topk"][0]
        assert top["name"] == sorted(NAMES)[top["class"]] and top["name"] in result.stdout
        assert top["name"] == path.split("/")[-2]            # the learnable set: each image's own folder
    assert doc["temperature"] == pytest.approx(t) and doc["checkpoint"] == trained[0]
    # from the checkpoint: the same names and, through its calibration record, the same probabilities
    _, doc2, probs2 = _predict(run_script, tmp_path, f"--ckpt_file={trained[0]}", f"--image_path={','.join(files)}")
    np.testing.assert_allclose(probs2, probs, atol=1e-4)
    assert doc2["temperature_source"] == trained[0] + ".calibration.json"


def test_predict_flip_tta_averages_each_images_logits_with_its_mirror_images(exported, flowers, run_script,
                                                                             tmp_path):
    model, record, t = exported
    files = _images(flowers)
    _, doc, probs = _predict(run_script, tmp_path, f"--model_path={model}", f"--image_path={','.join(files)}",
                             "--tta=flip")
    np.testing.assert_allclose(probs, _softmax(_reference(model, files, record, "flip"), t), atol=2e-5)
    assert not np.allclose(probs, _softmax(_reference(model, files, record), t), atol=1e-4)
    assert doc["tta"] == "flip"


def test_eval_flip_tta_scores_the_averaged_logits(exported, flowers, trained, run_script, tmp_path):
    """eval --tta=flip: its NLL (temperature 1) is the one of the reference's averaged logits."""
    model, record, _ = exported
    files = sorted(glob.glob(str(flowers / "val" / "*" / "*.JPEG")))
    labels = np.asarray([sorted(NAMES).index(f.split("/")[-2]) for f in files])

    def nll(logits):
        return float(-np.log(_softmax(logits)[np.arange(len(labels)), labels]).mean())

    result, doc = _eval(run_script, trained[0], flowers / "val", tmp_path / "logs", "--tta=flip", "--no_plots",
                        "--calibration_file=none")
    assert result.returncode == 0, result.output[-3000:]
    assert doc["tta"] == "flip" and doc["calibration"] is None
    plain, flipped = nll(_reference(model, files, record)), nll(_reference(model, files, record, "flip"))
    # MindSpore's eval and onnxruntime agree to ~1e-7 in this NLL (eval_result.json rounds it to 6 decimals); the
    # mirror images of this set move it by ~1e-4: eval's is the average's, not the plain logits'
    assert doc["nll"] == pytest.approx(flipped, abs=5e-6)
    assert abs(doc["nll"] - flipped) < abs(doc["nll"] - plain) / 10


def test_export_refuses_a_calibration_record_of_another_checkpoint(trained, calibrated, run_script, tmp_path):
    ckpt, earlier, _ = trained
    record = ckpt + ".calibration.json"
    shutil.copy(record, earlier + ".calibration.json")  # beside the epoch-3 checkpoint, where export looks
    try:
        for extra in ([], [f"--calibration_file={record}"]):
            result = run_script("export.py", [f"--ckpt_file={earlier}", "--file_format=ONNX",
                                              f"--file_name={tmp_path / 'm'}", *extra])
            assert result.returncode == 2 and "was fitted for checkpoint" in result.stderr, result.output[-2000:]
            assert result.stderr.count("error:") == 1 and not (tmp_path / "m.onnx").exists()
    finally:
        os.remove(earlier + ".calibration.json")


def test_a_mindir_model_predicts_from_its_sidecar_record_and_none_turns_calibration_off(
        trained, calibrated, flowers, run_script, tmp_path):
    import mindspore as ms

    from src.data.transforms import eval_transforms

    ckpt = trained[0]
    result = run_script("export.py", [f"--ckpt_file={ckpt}", f"--file_name={tmp_path / 'm'}",
                                      "--calibration_file=none"])
    assert result.returncode == 0, result.output[-3000:]
    record = json.loads((tmp_path / "m.mindir.json").read_text())
    assert record["calibration"] is None and record["class_names"] == sorted(NAMES)
    files = _images(flowers)
    _, doc, probs = _predict(run_script, tmp_path, f"--model_path={tmp_path / 'm.mindir'}",
                             f"--image_path={','.join(files)}")
    cell = ms.nn.GraphCell(ms.load(str(tmp_path / "m.mindir")))
    logits = []
    for path in files:
        x = np.fromfile(path, dtype=np.uint8)
        for op in eval_transforms("32,32", eval_resize=record["preprocess"]["eval_resize"],
                                  crop_pct=record["preprocess"]["crop_pct"]):
            x = op(x)
        logits.append(cell(ms.Tensor(np.asarray(x, np.float32)[None])).asnumpy()[0])
    np.testing.assert_allclose(probs, _softmax(np.stack(logits)), atol=2e-5)
    assert doc["temperature"] == 1.0 and [p["topk"][0]["name"] for p in doc["predictions"]] == \
        [f.split("/")[-2] for f in files]


def test_the_cpp_app_prints_the_class_names_with_calibrated_probabilities_with_no_flags(app_build, exported, flowers,
                                                                                       tmp_path, run_script):
    _, binary = app_build
    model, record, t = exported
    data = tmp_path / "images"   # the app names its output files by image stem: one folder, unique names
    for path in glob.glob(str(flowers / "val" / "*" / "*.JPEG")):
        (data / path.split("/")[-2]).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, data / path.split("/")[-2] / f"{path.split('/')[-2]}_{path.split('/')[-1]}")
    result = run_script.cmd([binary, f"--model_path={model}", f"--dataset_path={data}",
                             f"--result_path={tmp_path / 'res'}", "--threads=1"], cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    lines = re.findall(r"^Start predict input files:(\S+)\n  top-1: (\d+) (\S+) \(p=([0-9.]+)(, calibrated)?\)$",
                       result.stdout, flags=re.M)
    files = sorted(glob.glob(str(data / "*" / "*.JPEG")))
    assert sorted(f for f, *_ in lines) == files
    by_file = {f: rest for f, *rest in lines}
    expected = _softmax(_reference(model, files, record), t)
    for path, p in zip(files, expected):
        index, name, prob, calibrated = by_file[path]
        assert calibrated and name == sorted(NAMES)[int(index)] == path.split("/")[-2]
        assert float(prob) == pytest.approx(float(p.max()), abs=1e-4)

