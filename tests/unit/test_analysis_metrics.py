"""src.analysis.metrics: a hand-computed example, a brute-force reference on random data, summing
"ranks" through flat float32 vectors (as the AllReduce does), and the CSV files."""
import csv
import math

import numpy as np
import pytest

from src.analysis.metrics import (PER_CLASS_FIELDS, EvalAccumulator, display_name,
                                  per_class_metrics, read_confusion_matrix_csv, read_per_class_csv,
                                  top_confused_pairs, write_confusion_matrix_csv, write_per_class_csv)
from src.evaluation import topk_correct


def _hand_example():
    # 5 classes: 3 has no image and is never predicted, 4 has no image but is predicted once.
    labels = [0, 0, 0, 1, 1, 2, 2]
    top2 = [[0, 1], [1, 0], [0, 2], [1, 0], [1, 2], [1, 0], [4, 2]]
    acc = EvalAccumulator(5, topk=2)
    acc.update_topk(labels[:4], top2[:4])
    acc.update_topk(labels[4:], top2[4:])
    return acc


def test_hand_computed_example():
    acc = _hand_example()
    assert acc.matrix.tolist() == [[2, 1, 0, 0, 0], [0, 2, 0, 0, 0], [0, 1, 0, 0, 1], [0] * 5, [0] * 5]
    assert acc.topk_hits.tolist() == [3, 2, 1, 0, 0]
    assert (acc.total, acc.top1_correct, acc.topk_correct) == (7, 4, 6)
    rows = {r["class_index"]: r for r in acc.per_class(["a", "b", "c", "d", "e"])}
    expect = {  # precision, recall, f1, top-2 recall
        0: (1.0, 2 / 3, 0.8, 1.0),
        1: (0.5, 1.0, 2 / 3, 1.0),
        2: (0.0, 0.0, 0.0, 0.5),          # never predicted but has images: precision 0, F1 0
        3: (math.nan,) * 4,               # no image, never predicted: all undefined
        4: (0.0, math.nan, math.nan, math.nan),  # no image, predicted once: precision 0/1
    }
    for i, values in expect.items():
        got = (rows[i]["precision"], rows[i]["recall"], rows[i]["f1"], rows[i]["top5_recall"])
        np.testing.assert_allclose(got, values, equal_nan=True, err_msg=f"class {i}")
    assert [rows[i]["images"] for i in range(5)] == [3, 2, 2, 0, 0]
    assert [rows[i]["predicted"] for i in range(5)] == [2, 4, 0, 0, 1]
    s = acc.summary(["a", "b", "c", "d", "e"], top_pairs=10)
    assert s["classes_with_images"] == 3
    assert s["macro_precision"] == pytest.approx(0.5)
    assert s["macro_recall"] == pytest.approx(5 / 9)
    assert s["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 3)
    assert s["macro_top2_recall"] == pytest.approx(2.5 / 3)
    assert [(p["true"], p["predicted"], p["count"], p["fraction"]) for p in s["top_confused_pairs"]] == \
        [(0, 1, 1, round(1 / 3, 6)), (2, 1, 1, 0.5), (2, 4, 1, 0.5)]
    assert s["top_confused_pairs"][0]["true_name"] == "a" and s["top_confused_pairs"][0]["predicted_name"] == "b"
    assert len(top_confused_pairs(acc.matrix, 2)) == 2


def test_empty_and_errors():
    acc = EvalAccumulator(3)
    s = acc.summary()
    assert s["images"] == 0 and s["macro_f1"] is None and s["top_confused_pairs"] == []
    with pytest.raises(ValueError, match="outside 0..2"):
        acc.update(np.zeros((1, 3)), [3])
    with pytest.raises(ValueError, match=r"\[B, 3\]"):
        acc.update(np.zeros((2, 4)), [0, 1])
    with pytest.raises(ValueError, match="soft labels"):
        acc.update(np.zeros((2, 3)), np.eye(3)[:2])
    with pytest.raises(ValueError, match="2 class names"):
        acc.per_class(["x", "y"])
    top1_only = EvalAccumulator(3)
    top1_only.update_topk([0, 2, 2], [0, 0, 2])
    assert top1_only.matrix.tolist() == [[1, 0, 0], [0, 0, 0], [1, 0, 1]]


def _softmax(x):
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _reference(logits, labels, k, n_worst):
    """Python loops, written independently of the module."""
    n, K = logits.shape
    m = np.zeros((K, K), np.int64)
    hits = np.zeros(K, np.int64)
    probs = _softmax(logits.astype(np.float64))
    wrong = []
    for i in range(n):
        order = sorted(range(K), key=lambda c: (-float(logits[i, c]), c))
        m[labels[i], order[0]] += 1
        hits[labels[i]] += labels[i] in order[:k]
        if order[0] != labels[i]:
            wrong.append((-probs[i, order[0]], i, labels[i], order[0]))
    rows = []
    for c in range(K):
        tp, n_c, p_c = m[c, c], m[c].sum(), m[:, c].sum()
        rec = tp / n_c if n_c else math.nan
        prec = tp / p_c if p_c else (0.0 if n_c else math.nan)
        f1 = math.nan if math.isnan(rec) else (0.0 if prec + rec == 0 else 2 * prec * rec / (prec + rec))
        rows.append((prec, rec, f1, hits[c] / n_c if n_c else math.nan))
    worst = [(-c, i, t, p) for c, i, t, p in sorted(wrong)[:n_worst]]
    return m, hits, rows, worst


@pytest.mark.parametrize("seed", [0, 1])
def test_random_against_brute_force_and_topk_correct(seed):
    rng = np.random.RandomState(seed)
    K, n = 7, 403
    logits = np.round(rng.randn(n, K) * 1.5, 1).astype(np.float32)  # rounded: plenty of ties
    labels = rng.randint(0, K - 1, n)  # the last class never appears as a label
    logits[np.arange(n), labels] += 0.8  # better than chance
    m, hits, rows, worst = _reference(logits, labels, 5, 12)
    acc = EvalAccumulator(K, topk=5, worst_n=12)
    for start in range(0, n, 64):  # uneven last batch
        acc.update(logits[start:start + 64], labels[start:start + 64])
    np.testing.assert_array_equal(acc.matrix, m)
    np.testing.assert_array_equal(acc.topk_hits, hits)
    assert (acc.top1_correct, acc.topk_correct) == topk_correct(logits, labels, 5)
    got = [(r["precision"], r["recall"], r["f1"], r["top5_recall"]) for r in acc.per_class()]
    np.testing.assert_allclose(got, rows, equal_nan=True, rtol=1e-12)
    got_worst = [(w.confidence, w.index, w.true, w.predicted) for w in acc.worst_mistakes()]
    assert [g[1:] for g in got_worst] == [w[1:] for w in worst]
    np.testing.assert_allclose([g[0] for g in got_worst], [w[0] for w in worst], rtol=1e-12)
    # fed top-k indices + confidences instead of logits: the same counts and mistakes
    top = np.argsort(-logits, axis=1, kind="stable")[:, :5]
    conf = _softmax(logits.astype(np.float64))[np.arange(n), top[:, 0]]
    two = EvalAccumulator(K, worst_n=12)
    two.update_topk(labels, top, conf)
    np.testing.assert_array_equal(two.topk_hits, hits)
    assert [w.index for w in two.worst_mistakes()] == [w[1] for w in worst]


def test_rank_vectors_sum_to_one_process():
    """Three 'ranks' holding src.data's interleaved eval shards (rank r: samples r, r+3, ...)."""
    rng = np.random.RandomState(3)
    K, n, G = 6, 250, 3
    logits = rng.randn(n, K).astype(np.float32)
    labels = rng.randint(0, K, n)
    whole = EvalAccumulator(K, worst_n=10)
    for s in range(0, n, 32):
        whole.update(logits[s:s + 32], labels[s:s + 32])
    ranks = []
    for r in range(G):
        acc = EvalAccumulator(K, worst_n=10, index_offset=r, index_stride=G)
        idx = np.arange(r, n, G)
        for s in range(0, idx.size, 16):
            acc.update(logits[idx[s:s + 16]], labels[idx[s:s + 16]])
        ranks.append(acc)

    # Through flat float32 vectors, as SumAcrossRanks would sum them.
    counts = sum(a.counts_vector(np.float32) for a in ranks)
    mistakes = sum(a.mistakes_vector(slot=r, slots=G, dtype=np.float32) for r, a in enumerate(ranks))
    assert counts.dtype == np.float32 and counts.size == K * K + K
    assert mistakes.size == G * 10 * 4
    target = EvalAccumulator(K, worst_n=10).load_counts_vector(counts).load_mistakes_vector(mistakes)
    np.testing.assert_array_equal(target.matrix, whole.matrix)
    np.testing.assert_array_equal(target.topk_hits, whole.topk_hits)
    got, want = target.worst_mistakes(), whole.worst_mistakes()
    assert [(m.true, m.predicted, m.index) for m in got] == [(m.true, m.predicted, m.index) for m in want]
    np.testing.assert_allclose([m.confidence for m in got], [m.confidence for m in want], rtol=1e-6)
    with pytest.raises(ValueError, match="fractional"):
        EvalAccumulator(K).load_counts_vector(counts + 0.5)
    with pytest.raises(ValueError, match="expected"):
        EvalAccumulator(K + 1).load_counts_vector(counts)


def test_fewer_mistakes_than_slots_and_no_worst():
    acc = EvalAccumulator(3, worst_n=4)
    acc.update(np.array([[0.0, 2.0, 0.0], [3.0, 0.0, 0.0]]), [0, 0])  # one mistake
    v = acc.mistakes_vector()
    assert v.reshape(4, 4)[1:, 0].tolist() == [-1.0] * 3
    back = EvalAccumulator(3, worst_n=4).load_mistakes_vector(v)
    assert [(m.true, m.predicted, m.index) for m in back.worst_mistakes()] == [(0, 1, 0)]
    off = EvalAccumulator(3)  # worst_n=0: no heap, no softmax
    off.update(np.array([[0.0, 2.0, 0.0]]), [0])
    assert off.worst_mistakes() == [] and off.matrix[0, 1] == 1


NAMES = ["tench, Tinca tinca", 'say "hi"', "line\nbreak\ttab", "caf\udce9", "猫", b"\xffraw"]


def test_display_name():
    shown = [display_name(n) for n in NAMES]
    assert shown[:2] == NAMES[:2] and shown[4] == "猫"
    assert shown[2] == "line\\nbreak\\ttab"
    assert shown[3] == "caf\\xe9" and shown[5] == "\\xffraw"
    assert all(s.encode("utf-8") for s in shown)
    assert [display_name(s) for s in shown] == shown  # idempotent


def test_csv_files_round_trip(tmp_path):
    rng = np.random.RandomState(5)
    K = len(NAMES)
    labels = rng.randint(0, K - 1, 60)  # the last class has no image: empty cells
    logits = rng.randn(60, K)
    acc = EvalAccumulator(K)
    acc.update(logits, labels)
    rows = acc.per_class(NAMES)
    path = write_per_class_csv(rows, tmp_path / "out" / "per_class.csv")
    with open(path, encoding="utf-8", newline="") as f:
        raw = list(csv.reader(f))
    assert tuple(raw[0]) == PER_CLASS_FIELDS and len(raw) == K + 1
    assert raw[1][1] == "tench, Tinca tinca" and raw[3][1] == "line\\nbreak\\ttab" and raw[4][1] == "caf\\xe9"
    assert raw[-1][2] == "0" and raw[-1][5:] == ["", "", ""]  # no image: recall, F1, top-5 undefined
    assert raw[-1][4] in ("", "0.000000")  # precision: 0 if it was predicted, undefined if never
    back = read_per_class_csv(path)
    for r, b in zip(rows, back):
        assert (b["class_index"], b["images"], b["top1_correct"]) == (r["class_index"], r["images"],
                                                                      r["top1_correct"])
        np.testing.assert_allclose([b[k] for k in ("precision", "recall", "f1", "top5_recall")],
                                   [r[k] for k in ("precision", "recall", "f1", "top5_recall")],
                                   atol=1e-6, equal_nan=True)
    cm_path = write_confusion_matrix_csv(acc.matrix, NAMES, tmp_path / "confusion_matrix.csv")
    matrix, names = read_confusion_matrix_csv(cm_path)
    np.testing.assert_array_equal(matrix, acc.matrix)
    assert names == [display_name(n) for n in NAMES]
    with open(cm_path, encoding="utf-8", newline="") as f:
        header = next(csv.reader(f))
    assert header[:3] == ["true_index", "true_name", "tench, Tinca tinca"]
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary file


def test_per_class_metrics_without_topk():
    rows = per_class_metrics(np.array([[1, 1], [0, 2]]))
    assert rows[0]["class_name"] == "class_0" and math.isnan(rows[0]["top5_recall"])


def test_thousand_classes_memory_bounded():
    """1000 classes, batches of 250: the accumulator holds the matrix, hits and the heap only."""
    rng = np.random.RandomState(0)
    acc = EvalAccumulator(1000, worst_n=16)
    for _ in range(8):
        labels = rng.randint(0, 1000, 250)
        logits = rng.randn(250, 1000).astype(np.float32)
        logits[np.arange(250), labels] += 3.0
        acc.update(logits, labels)
    assert acc.total == 2000 and len(acc.worst_mistakes()) == 16
    conf = [m.confidence for m in acc.worst_mistakes()]
    assert conf == sorted(conf, reverse=True)
    assert acc.counts_vector().size == 1000 * 1000 + 1000
