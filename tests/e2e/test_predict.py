"""predict.py end to end: top-5 with ImageNet names on a real photo, a training run's class index and
preprocessing, the same pixels as eval, JSON output. (Its user errors: tests/unit/test_entry_errors.py.)"""
import json
import re

import numpy as np
import pytest
import mindspore as ms
from PIL import Image

from src.checkpoint import load_weights
from src.archs import resolve_preprocess
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


def test_predict_real_photo_imagenet_names(tmp_path, randomize, run_script, save_trained):
    from src.data.class_names import load_imagenet_synsets

    net = randomize(create_model("cspdarknet_tiny", num_classes=1000), seed=0, shift=None, variance=None, head=1.0)
    ckpt = tmp_path / "tiny1000.ckpt"
    save_trained(net, ckpt, class_names=load_imagenet_synsets())  # trained on ImageNet's synset folders
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
    bundle = create_dataset("", "64,64", 1, mode="eval", data_list=_list(tmp_path, [photo]), num_classes=1000,
                            **{k: v for k, v in resolve_preprocess("cspdarknet_tiny").items() if k != "image_size"})
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


def test_predict_run_folder_names_preprocessing_and_input_order(tmp_path, randomize, run_script, save_trained):
    """A checkpoint copied out of its run: class names and preprocessing from its own metadata; the results in
    input order, an unreadable file in its place."""
    net = randomize(create_model("cspdarknet_tiny", num_classes=3), seed=1, shift=None, variance=None, head=1.0)
    ckpt = save_trained(net, tmp_path / "copied" / "model.ckpt", class_names=["daisy", "rose", "tulip"],
                        image_size="32,48", eval_resize="squash")
    photos = tmp_path / "photos"
    photos.mkdir()
    _photo(photos / "a.jpg")
    (photos / "b_broken.jpg").write_bytes(b"not an image")
    Image.fromarray(np.full((20, 30, 3), 120, np.uint8)).save(photos / "c.png")
    code, out = _run(run_script, [f"--pretrained={ckpt}", f"--image_path={photos}", "--topk=5",
                                  "--result_file=p.json"], tmp_path)
    assert code == 0, out
    assert "input 32,48 (squash resize" in out and f"class names: recorded in {ckpt}" in out
    blocks = _blocks(out)
    order = [str(photos / n) for n in ("a.jpg", "b_broken.jpg", "c.png")]
    assert list(blocks) == order  # printed in input order, the skipped file in its place
    for name in ("a.jpg", "c.png"):
        rows = blocks[str(photos / name)]
        assert len(rows) == 3  # topk is capped at the number of classes
        assert {r[2] for r in rows} == {"daisy", "rose", "tulip"}
        assert sum(r[1] for r in rows) == pytest.approx(1.0, abs=2e-4)
    assert "skipped:" in out.split(order[1])[1].split(order[2])[0]
    with open(tmp_path / "p.json") as f:
        predictions = json.load(f)["predictions"]
    assert [p["image"] for p in predictions] == order and "error" in predictions[1] and "topk" in predictions[2]
