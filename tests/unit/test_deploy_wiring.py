"""The rules that tie the deployment library to eval, export and predict (issue 23), in process: the config's
cross-key rules of INT8 export, which calibration record applies to a checkpoint (and that one fitted for
another checkpoint is refused), the temperature fit over ranks, and predict's refusals of an exported model
(model_path) before any work. End to end: tests/e2e/test_deploy_e2e.py."""
import json
import threading

import numpy as np
import pytest

from src.config import ConfigError, load_config
from src.errors import ModelRecordError


# ------------------------------------------------------------------------------------------------ config rules
@pytest.mark.parametrize("argv, message", [
    (["--quantize=int8", "--calib_data_dir=train"], "quantize=int8 needs file_format=ONNX"),
    (["--quantize=int8", "--file_format=AIR", "--calib_data_dir=train"], "quantize=int8 needs file_format=ONNX"),
    (["--quantize=int8", "--file_format=ONNX"], "quantize=int8 needs calib_data_dir"),
    (["--file_format=ONNX", "--calib_data_dir=train"], "only read with quantize=int8"),
    (["--quantize=int4"], "invalid choice"),
    (["--file_format=ONNX", "--quantize=int8", "--calib_data_dir=t", "--calib_images=0"], "calib_images: must be >= 1"),
])
def test_int8_export_options_are_refused_at_load(argv, message):
    with pytest.raises(ConfigError, match=message):
        load_config(argv, script="export")


def test_int8_export_options_load_together():
    cfg = load_config(["--file_format=onnx", "--quantize=int8", "--calib_data_dir=train"], script="export")
    assert (cfg.export.quantize, cfg.export.calib_images, cfg.export.calib_seed) == ("int8", 300, 0)


def test_each_script_takes_its_deploy_keys():
    assert load_config(["--calibrate", "--tta=flip"], script="eval").eval.calibrate
    assert load_config(["--tta=flip", "--model_path=m.onnx"], script="predict").predict.model_path == "m.onnx"
    for script in ("eval", "export", "predict"):
        assert load_config(["--calibration_file=none"], script=script).weights.calibration_file == "none"
    with pytest.raises(ConfigError, match="is not an option of predict.py"):
        load_config(["--calibrate"], script="predict")
    with pytest.raises(ConfigError, match="is not an option of eval.py"):
        load_config(["--quantize=int8"], script="eval")
    with pytest.raises(ConfigError, match="invalid choice"):
        load_config(["--tta=vflip"], script="eval")


# ------------------------------------------------------------------------------------------------ which record
def _record(tmp_path, ckpt_bytes=b"weights", name="m.ckpt"):
    """A checkpoint file (any bytes: only its SHA-256 matters here) and a calibration record fitted for it."""
    from src.analysis.calibration import calibration_record, default_calibration_path, write_calibration
    from src.utils.fileio import file_sha256

    ckpt = tmp_path / name
    ckpt.write_bytes(ckpt_bytes)
    rng = np.random.default_rng(0)
    logits, labels = rng.normal(size=(40, 4)) * 3, rng.integers(0, 4, 40)
    record = calibration_record(logits, labels, checkpoint=ckpt, checkpoint_sha256=file_sha256(ckpt))
    write_calibration(record, default_calibration_path(ckpt))
    return ckpt, record


def test_the_record_beside_the_checkpoint_applies_none_turns_it_off_a_named_one_must_exist(tmp_path):
    from src.analysis.calibration import calibration_for

    ckpt, record = _record(tmp_path)
    found, path = calibration_for(ckpt, "")
    assert found["temperature"] == record["temperature"] and path == str(ckpt) + ".calibration.json"
    assert calibration_for(ckpt, "none") == (None, None)
    assert calibration_for(ckpt, "NONE") == (None, None)
    other = tmp_path / "other.ckpt"
    other.write_bytes(b"x")
    assert calibration_for(other, "") == (None, str(other) + ".calibration.json")   # none beside it: no record
    with pytest.raises(ModelRecordError, match="calibration file not found"):
        calibration_for(other, str(tmp_path / "missing.json"))


def test_a_record_fitted_for_another_checkpoint_is_refused(tmp_path):
    from src.analysis.calibration import calibration_for

    ckpt, _ = _record(tmp_path)
    retrained = tmp_path / "retrained.ckpt"
    retrained.write_bytes(b"other weights")
    with pytest.raises(ModelRecordError, match="was fitted for checkpoint .*m.ckpt.*not this one"):
        calibration_for(retrained, str(ckpt) + ".calibration.json")
    # the same bytes under another name are the same checkpoint
    copy = tmp_path / "copy.ckpt"
    copy.write_bytes(ckpt.read_bytes())
    assert calibration_for(copy, str(ckpt) + ".calibration.json")[0] is not None
    # a checkpoint rewritten in place after its calibration no longer matches its own record
    ckpt.write_bytes(b"fine-tuned weights")
    with pytest.raises(ModelRecordError, match="fit it again"):
        calibration_for(ckpt, "")


def test_a_malformed_record_is_one_error_naming_the_file(tmp_path):
    from src.analysis.calibration import calibration_for

    ckpt = tmp_path / "m.ckpt"
    ckpt.write_bytes(b"w")
    (tmp_path / "m.ckpt.calibration.json").write_text(json.dumps({"format": "cspdarknet53-calibration",
                                                                  "version": 1, "temperature": -2}))
    with pytest.raises(ModelRecordError, match=r"m.ckpt.calibration.json: temperature=-2"):
        calibration_for(ckpt, "")


# ------------------------------------------------------------------------------------------------ over ranks
def test_the_temperature_fitted_over_ranks_is_the_one_of_all_images():
    """Distributed eval: each rank holds a share of the logits; the fit reduces its sums over ranks (here two
    threads and a summing barrier standing in for AllReduce) and every rank gets the fit of all the images."""
    from src.analysis.calibration import fit_temperature

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 5, 301)
    logits = rng.normal(size=(301, 5)) + 2.5 * np.eye(5)[labels] + 0.8 * rng.normal(size=(301, 5))
    whole = fit_temperature(logits * 0.4, labels)
    shares = [(logits[r::2] * 0.4, labels[r::2]) for r in range(2)]
    barrier, slots, fits = threading.Barrier(2), [None, None], [None, None]

    def reducer(rank):
        def reduce(values):
            slots[rank] = np.asarray(values, dtype=np.float64)
            barrier.wait()
            total = slots[0] + slots[1]
            barrier.wait()
            return total
        return reduce

    def rank_main(rank):
        fits[rank] = fit_temperature(*shares[rank], reduce=reducer(rank))

    threads = [threading.Thread(target=rank_main, args=(r,)) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for fit in fits:
        assert fit.temperature == pytest.approx(whole.temperature, rel=1e-6)
        assert fit.nll_after == pytest.approx(whole.nll_after, rel=1e-9)
        assert fit.nll_before == pytest.approx(whole.nll_before, rel=1e-9)
    assert whole.temperature < 1 and whole.nll_after < whole.nll_before   # logits scaled down: under-confident
    # one share alone fits another temperature: the reduction is what makes them equal
    assert fit_temperature(*shares[0]).temperature != pytest.approx(whole.temperature, rel=1e-6)


# ------------------------------------------------------------------------------------------------ predict
@pytest.mark.parametrize("extra, message", [
    (["--ckpt_file=m.ckpt"], "give one model"),
    (["--cam"], "cam needs the network"),
    (["--image_size=64,64"], "its model record fixes image_size"),
    (["--crop_pct=0.9", "--eval_resize=shorter"], "its model record fixes eval_resize, crop_pct"),
])
def test_predict_from_an_exported_model_refuses_what_its_record_fixes(tmp_path, capsys, extra, message):
    import predict

    image = tmp_path / "a.jpg"
    from PIL import Image
    Image.new("RGB", (8, 8)).save(image)
    code = predict.main([f"--model_path={tmp_path / 'm.onnx'}", f"--image_path={image}"] + extra)
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("error:") == 1


# ------------------------------------------------------------------------------------------------ eval --calibrate
def _fit(logits, labels):
    """eval's calibration step (``src.eval_job._calibration_result``) on given held-out logits, one rank."""
    import logging
    from types import SimpleNamespace

    from src.analysis.calibration import reliability
    from src.eval_job import _calibration_result

    result = SimpleNamespace(extra={"calibration": {"plain": reliability(logits, labels), "scaled": None},
                                    "held_out": (logits, labels)})
    entry = {"record": None, "path": "m.ckpt.calibration.json", "write": "m.ckpt.calibration.json", "sha256": "ab12"}
    cfg = SimpleNamespace(eval=SimpleNamespace(tta="none"))
    data = {"data_dir": "/d", "image_size": "32,32", "eval_resize": "squash", "crop_pct": 0.875}
    return _calibration_result(SimpleNamespace(checkpoint="m.ckpt", num_classes=logits.shape[1]), result, entry, cfg,
                               SimpleNamespace(group_size=1), data, logging.getLogger("t"))


def test_calibrate_fits_a_record_bound_to_the_checkpoint_that_lowers_the_nll():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 4, 200)
    logits = 0.3 * (rng.normal(size=(200, 4)) + 2.0 * np.eye(4)[labels])   # right mostly, under-confident
    fields, record, after = _fit(logits, labels)
    assert record["checkpoint_sha256"] == "ab12" and record["data"]["tta"] == "none"
    assert record["nll_after"] < record["nll_before"] and record["temperature"] < 1
    assert fields["calibration"]["fitted"] and fields["calibration"]["file"] == "m.ckpt.calibration.json"
    assert fields["nll"] == pytest.approx(record["nll_before"], abs=1e-6) and after["nll"] == record["nll_after"]
    assert "calibration_refused" not in fields


def test_calibrate_writes_no_record_when_no_temperature_fits():
    """Every image right with room to spare: the NLL falls towards T -> 0, where every probability would be 1;
    no record (eval writes its results, then exits 2 with the reason)."""
    labels = np.arange(30) % 3
    logits = 5.0 * np.eye(3)[labels]
    fields, record, _ = _fit(logits, labels)
    assert record is None and fields["calibration"]["file"] is None
    assert "every image is right" in fields["calibration_refused"]
