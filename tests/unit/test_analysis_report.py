"""src.analysis.report end to end on the project's own pipeline: an ImageFolder through src.data's eval
pipeline and src.evaluation.evaluate, the accumulator fed batch by batch from the same logits, then every
file eval.py will write. The counts agree with evaluate's, and each worst mistake's sample index maps to a
file of its true class folder (the index <-> file contract eval.py relies on)."""
import csv
import os
import sys

import numpy as np
import pytest
import mindspore as ms
from PIL import Image

from src.analysis.metrics import EvalAccumulator, read_confusion_matrix_csv
from src.analysis.report import FILE_NAMES, JSON_KEYS, write_eval_analysis
from src.data import create_dataset
from src.evaluation import evaluate
from src.image_classification import create_model

CLASSES = ["circle, round", "square", "stripe"]  # a comma: quoted in the CSV files


def _folder(write_images, root, per_class=7):
    for c, name in enumerate(CLASSES):  # grey levels 60 apart, broad noise: some mistakes
        write_images(root / name, per_class, 100 + 60 * c, seed=c, ext="png", noise=23)
    return root


def _evaluate(tmp_path, write_images, worst_n=6):
    data = _folder(write_images, tmp_path / "val")
    bundle = create_dataset(str(data), 32, 5, mode="eval", num_classes=3, num_parallel_workers=1)
    net = create_model("cspdarknet_tiny", num_classes=3, seed=1)
    rng = np.random.RandomState(2)
    w = net.head.fc.weight
    w.set_data(ms.Tensor(rng.uniform(-2, 2, w.shape).astype(np.float32)))  # confident, often wrong
    net.set_train(False)
    acc = EvalAccumulator(3, worst_n=worst_n)
    seen = []
    result = evaluate(net, bundle, on_batch=lambda lg, lb: (acc.update(lg, lb), seen.append(lb)))  # as eval.py
    result.extra["labels"] = np.concatenate(seen)
    return bundle, result, acc


def test_eval_files_from_the_real_pipeline(tmp_path, graph_mode, write_images):
    bundle, result, acc = _evaluate(tmp_path, write_images)
    assert acc.total == result.total == 21
    assert acc.top1_correct == result.top1_correct and acc.topk_correct == result.top5_correct
    out = write_eval_analysis(acc, tmp_path / "run", CLASSES, image_for_index=bundle.source.table.__getitem__)
    assert set(out.files) == set(FILE_NAMES), out.notes
    for key, name in FILE_NAMES.items():
        assert out.files[key] == str(tmp_path / "run" / name) and os.path.getsize(out.files[key]) > 0
    matrix, names = read_confusion_matrix_csv(out.files["confusion_csv"])
    assert names == CLASSES and np.array_equal(matrix, acc.matrix)
    with open(out.files["per_class"], encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["class_name"] for r in rows] == CLASSES
    assert [int(r["images"]) for r in rows] == [7, 7, 7]
    fields = out.summary
    assert set(JSON_KEYS) <= set(fields)
    assert fields["macro_recall"] == pytest.approx(np.mean(np.diag(acc.matrix) / 7))
    assert sum(p["count"] for p in fields["top_confused_pairs"]) == acc.total - acc.top1_correct
    # Each kept mistake's index is the file's position in the eval list: its folder is the true class.
    mistakes = acc.worst_mistakes()
    assert mistakes and all(m.true != m.predicted for m in mistakes)
    for m in mistakes:
        folder = os.path.basename(os.path.dirname(bundle.source.table[m.index]))
        assert bundle.class_to_idx[folder] == m.true
        assert int(result.extra["labels"][m.index]) == m.true
    with Image.open(out.files["worst_mistakes"]) as im:
        assert im.width == min(len(mistakes), 8) * (160 + 12)


def test_no_plots_and_no_matplotlib(tmp_path, graph_mode, monkeypatch, write_images):
    bundle, _, acc = _evaluate(tmp_path, write_images)
    lines = []

    class Log:
        def info(self, msg, *args):
            lines.append(msg % args if args else msg)

    out = write_eval_analysis(acc, tmp_path / "a", CLASSES, image_for_index=bundle.source.table.__getitem__,
                              plots=False, log=Log())
    assert set(out.files) == {"per_class", "confusion_csv"} and "no_plots" in lines[0]
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    lines.clear()
    out = write_eval_analysis(acc, tmp_path / "b", CLASSES, image_for_index=bundle.source.table.__getitem__,
                              log=Log())
    # CSVs and the PIL-only contact sheet are written; the log says why there is no confusion_matrix.png.
    assert set(out.files) == {"per_class", "confusion_csv", "worst_mistakes"}
    assert any("matplotlib is not installed" in line and "confusion_matrix.png" in line for line in lines)
    assert not (tmp_path / "b" / "confusion_matrix.png").exists()


def test_missing_pictures_are_notes_not_errors(tmp_path):
    acc = EvalAccumulator(2, worst_n=4)
    acc.update(np.array([[2.0, 0.0], [0.0, 1.0]]), [0, 1])  # all right
    out = write_eval_analysis(acc, tmp_path, None, image_for_index=lambda i: "unused")
    assert "worst_mistakes" not in out.files and any("no wrong prediction" in n for n in out.notes)
    acc.update(np.array([[2.0, 0.0]]), [1])
    out = write_eval_analysis(acc, tmp_path, None)
    assert any("no image lookup" in n for n in out.notes)

    def broken(index):
        raise KeyError(index)

    out = write_eval_analysis(acc, tmp_path, None, image_for_index=broken)
    assert any(n.startswith("worst_mistakes.png not drawn: KeyError") for n in out.notes)
    assert "per_class" in out.files
