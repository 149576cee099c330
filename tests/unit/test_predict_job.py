"""Prediction (src/predict_job.py) in process: results in input order with skipped files in their place, images
the pipeline drops and outputs that are not finite are errors (never a result), and through predict.py's main
the refusals before any device work: ``result_file`` / ``cam_dir`` that are inputs. (End to end, with weights
that are not finite and stop signals: tests/e2e/test_inference_refusals_and_stops.py; the CLI: tests/e2e/test_predict.py.)"""
import json

import numpy as np
import pytest
import mindspore as ms
from PIL import Image

from src.archs import resolve_preprocess
from src.checkpoint import CheckpointError, ModelSpec
from src.config import load_config
from src.errors import DatasetError
from src.image_classification import create_model
from src.predict_job import _records, predict_files


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.RandomState(0)
    for name in ("a.jpg", "c.png"):
        Image.fromarray((rng.rand(40, 30, 3) * 255).astype(np.uint8)).save(folder / name)
    (folder / "b.jpg").write_bytes(b"not an image")
    return folder


def _files(photos):
    return [str(photos / n) for n in ("a.jpg", "b.jpg", "c.png")]


def _spec(image_size="32,32"):
    return ModelSpec("m.ckpt", "cspdarknet_tiny", 3, resolve_preprocess("cspdarknet_tiny", image_size), None, None,
                     "own")


def _net(randomize, head=None):
    """A tiny 3-class net whose features carry signal (the zoo initialisation alone gives logits ~1e-8 apart)."""
    net = randomize(create_model("cspdarknet_tiny", num_classes=3, seed=0), 1, shift=0.3, head=0.5)
    if head is not None:
        weight = net.parameters_dict()["head.fc.weight"]
        weight.set_data(ms.Tensor(np.full(weight.shape, head, np.float32)))
    net.set_train(False)
    return net


def test_records_keep_the_input_order_with_skipped_files_in_place(photos, randomize):
    cfg = load_config([f"--image_path={photos}", "--num_parallel_workers=1"])
    files = _files(photos)
    probs, skipped = predict_files(_net(randomize), files, cfg, _spec())
    assert list(skipped) == [files[1]] and probs.shape == (2, 3)
    records = _records(files, probs, skipped, ["x", "y", "z"], 2, {1: {"cam": "c.png"}})
    assert [r["image"] for r in records] == files
    assert "error" in records[1] and [len(records[i]["topk"]) for i in (0, 2)] == [2, 2]
    assert records[2]["cam"] == "c.png" and "cam" not in records[0]  # Grad-CAM indices count readable images
    assert records[2]["topk"][0]["probability"] == pytest.approx(float(probs[1].max()))


def test_images_the_pipeline_drops_are_an_error(photos, randomize):
    cfg = load_config([f"--image_path={photos}", "--num_parallel_workers=1"])
    with pytest.raises(DatasetError):
        predict_files(_net(randomize), _files(photos), cfg, _spec("40000,40000"))


def test_outputs_that_are_not_finite_are_an_error(photos, randomize):
    """Before: ``nan`` probabilities printed and a JSON file with NaN tokens."""
    cfg = load_config([f"--image_path={photos}", "--num_parallel_workers=1"])
    with pytest.raises(CheckpointError, match="NaN or infinite for 2 of 2 images"):
        predict_files(_net(randomize, head=3e38), _files(photos), cfg, _spec())


def _predict(args, capsys):
    import predict

    code = predict.main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.parametrize("where", ["an_image", "in_an_image_folder", "the_checkpoint", "class_names_file"])
def test_result_file_is_never_an_input(tmp_path, photos, capsys, save_trained, randomize, where):
    ckpt = save_trained(_net(randomize), tmp_path / "m.ckpt")
    names = tmp_path / "names.txt"
    names.write_text("x\ny\nz\n")
    target = {"an_image": photos / "a.jpg", "in_an_image_folder": photos / "p.json", "the_checkpoint": ckpt,
              "class_names_file": names}[where]
    before = target.read_bytes() if target.exists() else None
    code, out = _predict([f"--ckpt_file={ckpt}", f"--image_path={photos}", f"--class_names_file={names}",
                          f"--result_file={target}"], capsys)
    assert code == 2 and "result_file=" in out and "Traceback" not in out, out
    assert (target.read_bytes() if target.exists() else None) == before


def test_cam_dir_is_never_an_input_folder(tmp_path, photos, capsys, save_trained, randomize):
    ckpt = save_trained(_net(randomize), tmp_path / "m.ckpt")
    for args in ([f"--cam_dir={photos / 'cams'}"], [f"--result_file={photos / 'sub' / 'p.json'}"]):
        code, out = _predict([f"--ckpt_file={ckpt}", f"--image_path={photos}", "--cam=1"] + args, capsys)
        assert code == 2 and "inside the input folder" in out, out
    assert not (photos / "cams").exists() and not (photos / "sub").exists()
    assert json.loads(json.dumps(sorted(p.name for p in photos.iterdir()))) == ["a.jpg", "b.jpg", "c.png"]
