"""The model record (src/deploy/record.py): built from a checkpoint, written into ONNX metadata (without the
onnx package) or a sidecar JSON, read back, and checked."""
import json
import os

import numpy as np
import pytest

from src.deploy import record as rec
from src.errors import ModelRecordError

NAMES = ["sandal", "caf\udce9", "shirt"]   # one name that is not UTF-8 (a Latin-1 folder name)


def _tiny_onnx(path, metadata=None):
    """A one-node ONNX model (Identity) written with the onnx package, optionally with metadata."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Flatten", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 12])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    for k, v in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    """A cspdarknet_tiny checkpoint whose metadata (the training writer) records 3 class names, 40 px, shorter
    resize at crop_pct 0.9."""
    from src.checkpoint import save_checkpoint_atomic
    from src.image_classification import create_model
    from src.checkpoint import checkpoint_metadata

    net = create_model("cspdarknet_tiny", num_classes=3, seed=0)
    meta = checkpoint_metadata(net, {"image_size": "40,40", "eval_resize": "shorter", "crop_pct": 0.9},
                               {n: i for i, n in enumerate(NAMES)})
    path = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    save_checkpoint_atomic(net, str(path), metadata=meta)
    return path


def _record(ckpt, shape=(1, 3, 40, 40), **kw):
    from src.checkpoint import checkpoint_model_info
    info = checkpoint_model_info(str(ckpt))
    return rec.build_model_record(str(ckpt), info["arch"], info["num_classes"], list(shape), info=info, **kw)


def test_record_from_checkpoint_carries_names_size_and_eval_resize(tiny_ckpt):
    from src.data.transforms import IMAGENET_MEAN, eval_resize_size

    r = _record(tiny_ckpt, file_format="ONNX")
    assert (r["arch"], r["num_classes"], r["class_names"]) == ("cspdarknet_tiny", 3, NAMES)
    pre = r["preprocess"]
    assert (pre["image_size"], pre["eval_resize"], pre["crop_pct"]) == ([40, 40], "shorter", 0.9)
    assert pre["resize"] == [eval_resize_size((40, 40), "shorter", 0.9)] == [44]   # floor(40 / 0.9)
    np.testing.assert_allclose(pre["mean"], IMAGENET_MEAN, rtol=1e-6)
    assert r["input"]["shape"] == [1, 3, 40, 40] and r["output"]["dtype"] == "float32"
    assert r["source_checkpoint"]["sha256"] == rec.file_sha256(tiny_ckpt)
    # exported at another size than trained: the record follows the export, the resize rule the training run
    r = _record(tiny_ckpt, shape=(1, 3, 64, 48))
    assert r["preprocess"]["image_size"] == [64, 48] and r["preprocess"]["resize"] == [71, 53]
    # the preprocessing resolve_model settled on (the user's eval_resize over the checkpoint's) is the record's
    from src.checkpoint import checkpoint_model_info
    info = dict(checkpoint_model_info(str(tiny_ckpt)), preprocess={"eval_resize": "squash", "crop_pct": 0.9})
    r = rec.build_model_record(str(tiny_ckpt), "cspdarknet_tiny", 3, [1, 3, 40, 40], info=info)
    assert r["preprocess"]["resize"] == [44, 44]


def test_onnx_metadata_round_trip_is_what_onnx_and_onnxruntime_see(tmp_path, tiny_ckpt):
    import onnx
    import onnxruntime as ort

    path = _tiny_onnx(tmp_path / "m.onnx", {"author": "someone"})
    r = _record(tiny_ckpt, file_format="ONNX")
    assert rec.write_model_record(path, r) == str(path)
    back, where = rec.read_model_record(path)
    assert back == r and "ONNX metadata" in where and back["class_names"][1] == "caf\udce9"
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    props = {p.key: p.value for p in model.metadata_props}
    assert props["author"] == "someone" and json.loads(props[rec.RECORD_KEY]) == r
    meta = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta()
    assert json.loads(meta.custom_metadata_map[rec.RECORD_KEY])["num_classes"] == 3
    # a second write replaces the entry (one record, the newest), other metadata stays; the model still runs
    r2 = dict(r, num_classes=3, arch="changed")
    rec.write_model_record(path, r2)
    model = onnx.load(str(path))
    assert [p.key for p in model.metadata_props].count(rec.RECORD_KEY) == 1
    assert rec.read_model_record(path)[0]["arch"] == "changed" and rec.onnx_metadata(path)["author"] == "someone"
    out = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"x": np.arange(12, dtype=np.float32).reshape(1, 3, 2, 2)})[0]
    np.testing.assert_array_equal(out, np.arange(12, dtype=np.float32)[None])


def test_sidecar_round_trip_for_mindir_and_air(tmp_path, tiny_ckpt):
    r = _record(tiny_ckpt, file_format="MINDIR")
    for name in ("net.mindir", "net.air"):
        model = tmp_path / name
        model.write_bytes(b"not read")
        side = rec.write_model_record(model, r)
        assert side == str(model) + ".json" == rec.sidecar_path(model)
        back, where = rec.read_model_record(model)
        assert back == r and where == side
    # an ONNX file without an embedded record falls back to its sidecar; none at all: (None, None) or an error
    onnx_path = _tiny_onnx(tmp_path / "bare.onnx")
    assert rec.read_model_record(onnx_path) == (None, None)
    with pytest.raises(ModelRecordError, match="no model record"):
        rec.read_model_record(onnx_path, required=True)
    (tmp_path / "bare.onnx.json").write_text(json.dumps(r))
    assert rec.read_model_record(onnx_path)[0] == r


@pytest.mark.parametrize("change,match", [
    (lambda r: r.update(version=2), "version 2"),
    (lambda r: r.update(format="other"), "format"),
    (lambda r: r.update(class_names=["a"]), "class_names"),
    (lambda r: r.update(num_classes=0), "num_classes"),
    (lambda r: r["preprocess"].update(resize=[10]), "smaller than the crop"),
    (lambda r: r["preprocess"].update(std=[1, 0, 1]), "std"),
    (lambda r: r["input"].update(shape=[1, 3, 32, 32]), "does not match"),
    (lambda r: r.update(calibration={"format": "cspdarknet53-calibration", "version": 1, "temperature": -1}),
     "temperature"),
])
def test_malformed_records_are_refused_naming_the_file(tmp_path, tiny_ckpt, change, match):
    r = json.loads(json.dumps(_record(tiny_ckpt)))
    change(r)
    model = tmp_path / "net.mindir"
    model.write_bytes(b"x")
    (tmp_path / "net.mindir.json").write_text(json.dumps(r))
    with pytest.raises(ModelRecordError, match=match) as err:
        rec.read_model_record(model)
    assert "net.mindir.json" in str(err.value)


def test_not_an_onnx_file_is_refused_and_left_alone(tmp_path):
    bad = tmp_path / "fake.onnx"
    bad.write_bytes(b"\xff\xff\xff garbage")
    with pytest.raises(ModelRecordError, match="not an ONNX model"):
        rec.set_onnx_metadata(bad, {"k": "v"})
    assert bad.read_bytes() == b"\xff\xff\xff garbage"
    assert sorted(os.listdir(tmp_path)) == ["fake.onnx"]   # no temporary file left


def test_thousand_class_checkpoint_without_names_gets_the_imagenet_table(tmp_path):
    from src.checkpoint import save_checkpoint_atomic
    from src.data.class_names import load_imagenet_class_names
    from src.image_classification import create_model

    net = create_model("cspdarknet_tiny", num_classes=1000, seed=0)
    path = tmp_path / "bare.ckpt"
    save_checkpoint_atomic(net, str(path), metadata={"arch": "cspdarknet_tiny", "num_classes": 1000})
    r = _record(path, shape=(1, 3, 64, 64))
    assert r["class_names"] == load_imagenet_class_names() and "ImageNet" in r["class_names_source"]
    assert r["preprocess"]["resize"] == [73, 73]   # the arch's squash at 0.875: round(64 / 0.875)


def test_calibration_is_embedded(tiny_ckpt):
    from src.analysis.calibration import calibration_record

    rng = np.random.default_rng(0)
    cal = calibration_record(rng.normal(size=(50, 3)) * 3, rng.integers(0, 3, 50))
    r = rec.with_calibration(_record(tiny_ckpt), cal)
    assert r["calibration"]["temperature"] == cal["temperature"]
    assert "temperature" in rec.describe_record(r)


def test_exported_model_predicts_with_the_records_preprocessing_names_and_temperature(tmp_path):
    """src.deploy.exported.ExportedModel: no flags; the record's eval preprocessing, class names, temperature."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from PIL import Image

    from src.analysis.calibration import softmax
    from src.data.transforms import eval_transforms
    from src.deploy.exported import ExportedModel

    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 3 * 8 * 8)).astype(np.float32)   # a linear classifier on the 8x8 input's pixels
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("Gemm", ["f", "w"], ["y"], transB=1)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "lin.onnx"
    onnx.save(model, str(path))
    record = {"format": rec.RECORD_FORMAT, "version": 1, "arch": "cspdarknet_tiny", "num_classes": 3,
              "class_names": ["a", "b", "c"], "input": {"shape": [1, 3, 8, 8]},
              "preprocess": {"image_size": [8, 8], "eval_resize": "shorter", "crop_pct": 0.8, "resize": [10],
                             "mean": [120.0, 110.0, 100.0], "std": [50.0, 60.0, 70.0]},
              "output": {"dtype": "float32"},
              "calibration": {"format": "cspdarknet53-calibration", "version": 1, "temperature": 2.0}}
    rec.write_model_record(path, record)
    image = tmp_path / "img.png"
    Image.fromarray(rng.integers(0, 255, (17, 23, 3), dtype=np.uint8)).save(image)

    exported = ExportedModel(path)
    x = np.fromfile(str(image), dtype=np.uint8)
    for op in eval_transforms(8, eval_resize="shorter", crop_pct=0.8)[:-2]:   # decode, resize, crop
        x = op(x)
    x = ((np.asarray(x, np.float32) - [120.0, 110.0, 100.0]) / [50.0, 60.0, 70.0]).transpose(2, 0, 1)
    np.testing.assert_allclose(exported.preprocess(image), x, rtol=1e-5, atol=1e-5)   # the record's mean/std
    logits = (w @ np.asarray(x, np.float32).reshape(-1))[None]
    (pred,) = exported.predict([image], topk=3)
    expected = softmax(logits, 2.0)[0]
    assert [c for c, _, _ in pred["top"]] == list(np.argsort(-expected))
    assert [n for _, n, _ in pred["top"]] == [["a", "b", "c"][c] for c in np.argsort(-expected)]
    np.testing.assert_allclose([p for _, _, p in pred["top"]], np.sort(expected)[::-1], rtol=1e-4)
    flipped = (w @ np.ascontiguousarray(np.asarray(x)[..., ::-1]).reshape(-1))[None]
    (tta,) = exported.predict([image], topk=1, tta="flip")
    assert tta["top"][0][2] == pytest.approx(float(softmax((logits + flipped) / 2, 2.0).max()), rel=1e-4)
