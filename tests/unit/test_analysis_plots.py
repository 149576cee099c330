"""src.analysis.plots: confusion matrices at 10 and 1000 classes (decodable PNGs, sizes, render time), the
contact sheet from every kind of image file, and the behaviour without matplotlib."""
import os
import sys
import time

import numpy as np
import pytest
from PIL import Image, ImageDraw

from src.analysis.metrics import top_confused_pairs
from src.analysis import plots
from src.analysis.plots import (PlottingUnavailable, contact_sheet, load_rgb, mistake_caption,
                                plot_confusion_matrix, plotting_unavailable_reason, shorten)

pytest.importorskip("matplotlib")

FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def _matrix(k, per_class, seed=0):
    """~70% right, ~15% taken for the next class, the rest for one of 20 random classes (ImageNet-like)."""
    rng = np.random.RandomState(seed)
    labels = np.repeat(np.arange(k), per_class)
    u = rng.rand(labels.size)
    pred = np.where(u < 0.7, labels,
                    np.where(u < 0.85, (labels + 1) % k, (labels + rng.randint(1, 21, labels.size)) % k))
    return np.bincount(labels * k + pred, minlength=k * k).reshape(k, k)


def _png(path):
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        im.load()
        return im.size


def test_confusion_matrix_10_classes(tmp_path):
    matrix = _matrix(10, 50)
    pairs = top_confused_pairs(matrix, 10, FASHION)
    start = time.perf_counter()
    path = plot_confusion_matrix(matrix, FASHION, tmp_path / "sub" / "confusion_matrix.png", top_pairs=pairs)
    seconds = time.perf_counter() - start
    w, h = _png(path)
    size = os.path.getsize(path)
    print(f"10 classes: {seconds:.2f} s, {size / 1024:.0f} KB, {w}x{h}")
    assert 400 <= w <= 2000 and 300 <= h <= 1500
    assert size < 200 * 1024  # (the time is printed, not asserted: it depends on the machine's load)
    assert not [p for p in os.listdir(tmp_path / "sub") if p.startswith(".")]  # no temporary file left


def test_confusion_matrix_1000_classes(tmp_path):
    from src.data.class_names import load_imagenet_class_names

    names = load_imagenet_class_names()
    matrix = _matrix(1000, 50)
    start = time.perf_counter()
    path = plot_confusion_matrix(matrix, names, tmp_path / "cm1000.png")  # pairs computed inside
    seconds = time.perf_counter() - start
    w, h = _png(path)
    size = os.path.getsize(path)
    print(f"1000 classes: {seconds:.2f} s, {size / 1024:.0f} KB, {w}x{h}")
    assert size < 1024 * 1024
    assert 1000 <= w <= 2200 and 800 <= h <= 1500


def test_awkward_names_and_empty_rows(tmp_path):
    names = ["$5 bill", "cost $ 3 $", "猫", "line\nbreak", "caf\udce9", "x" * 80]
    matrix = np.array([[3, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0], [1, 0, 2, 0, 0, 0],
                       [0, 0, 0, 4, 0, 1], [0, 0, 0, 0, 0, 0], [0, 2, 0, 0, 0, 5]])  # rows 1, 4: no image
    _png(plot_confusion_matrix(matrix, names, tmp_path / "a.png"))
    _png(plot_confusion_matrix(np.zeros((3, 3), int), None, tmp_path / "empty.png"))  # nothing confused
    _png(plot_confusion_matrix(np.array([[7]]), ["only"], tmp_path / "one.png"))
    _png(plot_confusion_matrix(np.eye(60, dtype=int) * 3, [f"c{i}" for i in range(60)], tmp_path / "ticks.png"))
    with pytest.raises(ValueError, match="square"):
        plot_confusion_matrix(np.zeros((2, 3)), None, tmp_path / "bad.png")


def test_shorten():
    assert shorten("abc", 5) == "abc"
    assert shorten("a long class name number 22", 12) == "a long class name number 22"[:11] + "\u2026"
    middle = shorten("a long class name number 22", 12, middle=True)
    assert len(middle) == 12 and middle.endswith(" 22") and middle.startswith("a long")


def _files(tmp_path):
    rng = np.random.RandomState(0)
    half = np.zeros((40, 40, 3), np.uint8)
    half[:, :20] = (255, 0, 0)
    half[:, 20:] = (0, 0, 255)
    Image.fromarray(half).save(tmp_path / "halves.png")
    Image.fromarray(rng.randint(0, 255, (28, 28), np.uint8)).save(tmp_path / "grey.png")
    rgba = np.zeros((30, 30, 4), np.uint8)
    rgba[..., 1] = 255  # green, fully transparent: composited onto white
    Image.fromarray(rgba).save(tmp_path / "clear.png")
    Image.fromarray(np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)).save(tmp_path / "deep.png")
    Image.fromarray(rng.randint(0, 255, (300, 451, 3), np.uint8)).save(tmp_path / "photo.jpg")
    Image.fromarray(rng.randint(0, 255, (30, 30, 3), np.uint8)).convert("P").save(tmp_path / "palette.gif")
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    return [str(tmp_path / n) for n in ("halves.png", "grey.png", "clear.png", "deep.png", "photo.jpg",
                                        "palette.gif", "broken.jpg")]


def test_contact_sheet(tmp_path):
    items = _files(tmp_path) + [np.random.RandomState(1).rand(20, 20), np.zeros((10, 30, 3), np.uint8)]
    captions = [mistake_caption("Ankle boot", "Sneaker with a much longer name than fits", 0.934)] * len(items)
    start = time.perf_counter()
    path = contact_sheet(items, captions, tmp_path / "out" / "worst_mistakes.png", thumb_size=128, columns=3,
                         title="9 most confident mistakes")
    seconds = time.perf_counter() - start
    print(f"contact sheet: {seconds:.2f} s")
    w, h = _png(path)
    cell = 160 + 12  # caption_width 160 (wider than the 128 px thumbnail) + 6 px margins
    assert w == 3 * cell and h > 3 * cell
    assert os.path.getsize(path) < 200 * 1024
    with Image.open(path) as im:
        sheet = np.asarray(im.convert("RGB"))
    top = h - 3 * (128 + 6 + 2 * 14 + 6)  # title height (captions: 2 lines of font 10 + 4)
    x = 6 + (160 - 128) // 2  # the thumbnail is centred in its cell
    tile = sheet[top + 6:top + 6 + 128, x:x + 128]  # first thumbnail: 40 px enlarged to 128, red | blue
    assert tuple(tile[64, 5]) == (255, 0, 0) and tuple(tile[64, 122]) == (0, 0, 255)
    clear = sheet[top + 6:top + 6 + 128, 2 * cell + x:2 * cell + x + 128]  # third: transparent -> white
    assert np.all(clear[5:-5, 5:-5] == 255)
    # Small thumbnails keep captions readable: cells stay caption_width wide.
    w_small, _ = _png(contact_sheet(items[:4], captions[:4], tmp_path / "small.png", thumb_size=48))
    assert w_small == 4 * cell
    with pytest.raises(ValueError, match="captions"):
        contact_sheet(items, captions[:2], tmp_path / "x.png")


def test_caption_keeps_probability():
    draw = ImageDraw.Draw(Image.new("RGB", (10, 10)))
    font = plots._font(10)
    line = mistake_caption("a", "a very long predicted class name indeed", 0.93).split("\n")[1]
    fitted = plots._fit(draw, line, font, 120)
    assert fitted.endswith("\u2026 (p=0.93)") and draw.textlength(fitted, font=font) <= 120


def test_load_rgb_modes(tmp_path):
    files = _files(tmp_path)
    assert load_rgb(files[1]).mode == "RGB" and load_rgb(files[1]).size == (28, 28)
    deep = np.asarray(load_rgb(files[3]))
    assert deep[0, 0, 0] == 0 and deep[-1, -1, 0] == 255
    assert np.asarray(load_rgb(np.ones((4, 4)))).max() == 255  # float in [0, 1]
    with pytest.raises(ValueError):
        load_rgb(np.zeros((4, 4, 2)))
    with pytest.raises(OSError):
        load_rgb(files[-1])


def test_without_matplotlib(tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    reason = plotting_unavailable_reason()
    assert reason and "matplotlib" in reason and "pip install" in reason
    with pytest.raises(PlottingUnavailable, match="matplotlib is not installed"):
        plot_confusion_matrix(np.eye(3, dtype=int), None, tmp_path / "cm.png")
    assert not (tmp_path / "cm.png").exists()
    assert isinstance(PlottingUnavailable("x"), ImportError)
    # The contact sheet needs PIL only (and falls back to PIL's own font).
    _png(contact_sheet(_files(tmp_path)[:2], ["a", "b"], tmp_path / "sheet.png"))
