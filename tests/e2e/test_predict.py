"""predict.py end to end: top-5 with ImageNet names on a real photo, a training run's class index and
preprocessing, the same pixels as eval, JSON output. (Its user errors: tests/unit/test_entry_errors.py.)"""
import json
import re

import numpy as np
import pytest
import mindspore as ms
from PIL import Image

from src.checkpoint import load_weights, network_metadata, save_checkpoint_atomic
from src.data import create_dataset
from src.image_classification import create_model

LINE = re.compile(r"^\s+(\d)\. ([01]\.\d{4})  (.+)  \((\d+)\)$")


def _run(run_script, args, cwd, timeout=600):
    proc = run_script("predict.py", args, cwd=cwd, timeout=timeout)
    return proc.returncode, proc.output


def _photo(path):
    """scikit-image's chelsea (a cat photo, CC0); a synthetic picture when scikit-image is not installed."""
    try:
        from skimage import data
        pixels = data.chelsea()
    except ImportError:
        yy, xx = np.mgrid[0:300, 0:451]
        pixels = np.stack([(xx * 255 // 450), (yy * 255 // 299), ((xx + yy) % 256)], -1).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=92)
    return path


def _blocks(out):
    """{image path: [(rank, probability, name, class)]} from predict's printed blocks."""
    blocks, current = {}, None
    for line in out.splitlines():
        if line.startswith("/"):
            current = line.strip()
            blocks[current] = []
        elif current and LINE.match(line):
            r, p, name, c = LINE.match(line).groups()
            blocks[current].append((int(r), float(p), name, int(c)))
    return blocks


def test_predict_real_photo_imagenet_names(tmp_path, randomize, run_script):
    net = randomize(create_model("cspdarknet_tiny", num_classes=1000), seed=0, shift=None, variance=None, head=1.0)
    ckpt = tmp_path / "tiny1000.ckpt"
    save_checkpoint_atomic(net, ckpt, metadata=network_metadata(net))
    photo = _photo(tmp_path / "chelsea.jpg")
    code, out = _run(run_script, [f"--ckpt_file={ckpt}", f"--image_path={photo}", "--image_size=64,64",
                                  "--result_file=pred.json"], tmp_path)
    assert code == 0, out
    rows = _blocks(out)[str(photo)]
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5]
    probs = [r[1] for r in rows]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0 + 1e-6
    from src.data.class_names import load_imagenet_class_names
    names = load_imagenet_class_names()
    assert all(name == names[c] for _, _, name, c in rows)  # names from the shipped ImageNet table

    with open(tmp_path / "pred.json") as f:
        data = json.load(f)
    top = data["predictions"][0]["topk"]
    assert data["num_classes"] == 1000 and data["predictions"][0]["image"] == str(photo)
    assert [t["class"] for t in top] == [r[3] for r in rows]

    # The probabilities are the softmax of the logits of eval's preprocessing of the same file.
    bundle = create_dataset("", "64,64", 1, mode="eval", data_list=_list(tmp_path, [photo]), num_classes=1000)
    images, _ = next(bundle.dataset.create_tuple_iterator(output_numpy=True, num_epochs=1))
    fresh = create_model("cspdarknet_tiny", num_classes=1000)
    load_weights(fresh, ckpt)
    fresh.set_train(False)
    logits = fresh(ms.Tensor(images)).asnumpy()[0].astype(np.float64)
    p = np.exp(logits - logits.max())
    p /= p.sum()
    assert [t["class"] for t in top] == list(np.argsort(-p, kind="stable")[:5])
    np.testing.assert_allclose([t["probability"] for t in top], np.sort(p)[::-1][:5], rtol=1e-4)


def _list(folder, files):
    path = folder / "list.txt"
    path.write_text("".join(f"{f} 0\n" for f in files))
    return str(path)


def test_predict_run_folder_class_index_and_preprocessing(tmp_path, randomize, run_script):
    """A checkpoint at <run>/ckpt_0/: class names from <run>/class_index.json, image_size from config.yaml."""
    run = tmp_path / "outputs" / "run1"
    net = randomize(create_model("cspdarknet_tiny", num_classes=3), seed=1, shift=None, variance=None, head=1.0)
    save_checkpoint_atomic(net, run / "ckpt_0" / "cspdarknet_tiny-1_2.ckpt", metadata=network_metadata(net))
    (run / "class_index.json").write_text(json.dumps({"daisy": 0, "rose": 1, "tulip": 2}))
    (run / "config.yaml").write_text("image_size: 32,48\neval_resize: squash\ncrop_pct: 0.875\n")
    photos = tmp_path / "photos"
    photos.mkdir()
    _photo(photos / "a.jpg")
    Image.fromarray(np.full((20, 30, 3), 120, np.uint8)).save(photos / "b.png")
    (photos / "broken.jpg").write_bytes(b"not an image")
    code, out = _run(run_script, [f"--pretrained={run / 'ckpt_0' / 'cspdarknet_tiny-1_2.ckpt'}",
                                  f"--image_path={photos}", "--topk=5"], tmp_path)
    assert code == 0, out
    assert "input 32,48 (squash resize" in out and "class names: " + str(run / "class_index.json") in out
    blocks = _blocks(out)
    assert set(blocks) == {str(photos / "a.jpg"), str(photos / "b.png"), str(photos / "broken.jpg")}
    for name in ("a.jpg", "b.png"):
        rows = blocks[str(photos / name)]
        assert len(rows) == 3  # topk is capped at the number of classes
        assert {r[2] for r in rows} == {"daisy", "rose", "tulip"}
        assert sum(r[1] for r in rows) == pytest.approx(1.0, abs=2e-4)
    assert "skipped:" in out.split(str(photos / "broken.jpg"))[1]
