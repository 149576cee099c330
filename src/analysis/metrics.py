"""Per-class metrics, the confusion matrix and the most confident mistakes of a classifier, batch by batch.

``EvalAccumulator`` keeps the ``K x K`` confusion matrix (rows = true class), per-class top-k hits (ranked as
``src.evaluation.topk_correct``) and a bounded heap of the ``worst_n`` most confident mistakes; ranks sum one
flat vector (exact in float32 below 2**24). Undefined ratios: recall is NaN for a class without images;
precision of a class never predicted is 0.0 if it has images (scikit-learn's ``zero_division=0``), else NaN.
Macro averages are over the classes with images. CSV files: UTF-8, atomic, names through ``display_name``.
"""
import csv
import heapq
import io
import math
from dataclasses import dataclass

import numpy as np

PER_CLASS_FIELDS = ("class_index", "class_name", "images", "top1_correct", "precision", "recall", "f1",
                    "top5_recall")
_NO_MISTAKE = -1.0  # confidence marking an empty row of a mistakes vector


def display_name(name):
    """A class name as one line of valid UTF-8 (``src.utils.paths.display_name`` with control characters
    escaped)."""
    from src.utils.paths import display_name as shown

    return shown(name, escape_controls=True)


def class_names_or_default(class_names, num_classes):
    """``class_names`` through ``display_name`` (checked: one per class), or ``class_<i>`` when None."""
    if class_names is None:
        return [f"class_{i}" for i in range(int(num_classes))]
    names = [display_name(n) for n in class_names]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names given for {num_classes} classes")
    return names


def _labels(labels, num_classes):
    arr = np.asarray(labels)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise ValueError(f"labels must be class indices of shape [B] (got shape {arr.shape}; soft labels "
                         "cannot fill a confusion matrix)")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.equal(np.mod(arr, 1), 0)):
            raise ValueError("labels must be integer class indices")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
        bad = arr[(arr < 0) | (arr >= num_classes)][0]
        raise ValueError(f"label {bad} is outside 0..{num_classes - 1}")
    return arr


class SumAcrossRanks:
    """Sums a small float vector across ranks (an ``ops.AllReduce`` in a graph-mode Cell)."""

    def __init__(self):
        from mindspore import nn, ops

        class _AllReduceSum(nn.Cell):
            def __init__(self):
                super().__init__()
                self.all_reduce = ops.AllReduce(ops.ReduceOp.SUM)

            def construct(self, x):
                return self.all_reduce(x)

        self.cell = _AllReduceSum()

    def __call__(self, values):
        import mindspore as ms
        out = self.cell(ms.Tensor(np.asarray(values, dtype=np.float32)))
        return out.asnumpy().astype(np.float64)


@dataclass(frozen=True)
class Mistake:
    confidence: float  # softmax probability of the predicted class
    true: int
    predicted: int
    index: int         # sample index (see EvalAccumulator's index_offset / index_stride)


class EvalAccumulator:
    """Confusion matrix, per-class top-k hits and the ``worst_n`` most confident mistakes, fed batch by batch.
    The i-th image fed has the sample index ``index_offset + i * index_stride`` (``(rank, group_size)``: the global
    index in ``src.data``'s interleaved eval shards)."""

    def __init__(self, num_classes, topk=5, worst_n=0, index_offset=0, index_stride=1):
        self.num_classes = int(num_classes)
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes!r}")
        self.topk = int(topk)
        self.worst_n = max(int(worst_n), 0)
        self.index_offset = int(index_offset)
        self.index_stride = int(index_stride)
        self.matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        self.topk_hits = np.zeros(self.num_classes, dtype=np.int64)
        self.seen = 0  # images fed to this accumulator (not counting loaded ones)
        self._heap = []  # min-heap of (confidence, -index, true, predicted)

    def update(self, logits, labels):
        """One batch of logits ``[B, K]`` and integer labels ``[B]``."""
        logits = np.asarray(logits)
        if logits.ndim != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(f"logits must be [B, {self.num_classes}], got {logits.shape}")
        top = np.argsort(-logits.astype(np.float32), axis=1, kind="stable")[:, :self.topk]
        confidences = None
        if self.worst_n:  # the softmax probability of the top-1 class
            x = logits.astype(np.float64)
            x = x - x.max(axis=1, keepdims=True)
            confidences = np.exp(x[np.arange(len(x)), top[:, 0]] - np.log(np.exp(x).sum(axis=1)))
        self.update_topk(labels, top, confidences)

    def update_topk(self, labels, topk, confidences=None):
        """One batch of top-k predicted indices ``[B, k]`` best first (``[B]``: top-1 only); ``confidences``
        ``[B]`` (the top-1's probability) feeds the mistakes heap, without it no mistake is kept."""
        labels = _labels(labels, self.num_classes)
        topk = np.asarray(topk)
        if topk.ndim == 1:
            topk = topk[:, None]
        if topk.ndim != 2 or topk.shape[0] != labels.shape[0]:
            raise ValueError(f"top-k indices {topk.shape} and labels {labels.shape} do not match")
        topk = topk[:, :self.topk].astype(np.int64)
        if topk.size and (topk.min() < 0 or topk.max() >= self.num_classes):
            raise ValueError(f"predicted class outside 0..{self.num_classes - 1}")
        n = labels.shape[0]
        indices = self.index_offset + np.arange(self.seen, self.seen + n, dtype=np.int64) * self.index_stride
        pred = topk[:, 0]
        np.add.at(self.matrix, (labels, pred), 1)
        hit = np.any(topk == labels[:, None], axis=1)
        np.add.at(self.topk_hits, labels[hit], 1)
        self.seen += n
        if self.worst_n and confidences is not None and n:
            self._push_mistakes(np.asarray(confidences, dtype=np.float64).reshape(-1), labels, pred, indices)

    def _push_mistakes(self, conf, labels, pred, indices):
        wrong = np.flatnonzero(pred != labels)
        if not wrong.size:
            return
        if wrong.size > self.worst_n:  # only this batch's best candidates can enter the heap
            order = np.lexsort((indices[wrong], -conf[wrong]))[:self.worst_n]
            wrong = wrong[order]
        for i in wrong:
            self._push((float(conf[i]), -int(indices[i]), int(labels[i]), int(pred[i])))

    def _push(self, item):
        if len(self._heap) < self.worst_n:
            heapq.heappush(self._heap, item)
        elif item > self._heap[0]:  # more confident, or as confident with a lower index
            heapq.heapreplace(self._heap, item)

    def counts_vector(self, dtype=np.float64):
        """``[matrix.ravel(), topk_hits]`` as one flat vector (``K*K + K``) to sum across ranks."""
        return np.concatenate([self.matrix.ravel(), self.topk_hits]).astype(dtype)

    def load_counts_vector(self, vector):
        """Replaces the counts with a (summed) ``counts_vector``; the values must be whole numbers >= 0."""
        vec = np.asarray(vector, dtype=np.float64).reshape(-1)
        k = self.num_classes
        if vec.size != k * k + k:
            raise ValueError(f"counts vector of {vec.size} values, expected {k * k + k} "
                             f"for {k} classes")
        rounded = np.rint(vec)
        if np.any(rounded < 0) or np.max(np.abs(vec - rounded), initial=0.0) > 1e-3:
            raise ValueError("counts vector holds negative or fractional counts")
        rounded = rounded.astype(np.int64)
        self.matrix = rounded[:k * k].reshape(k, k).copy()
        self.topk_hits = rounded[k * k:].copy()
        return self

    def mistakes_vector(self, slot=0, slots=1, dtype=np.float64):
        """The kept mistakes as a flat ``slots * worst_n * 4`` vector of ``(confidence, true, predicted, index)``,
        filled only in ``slot`` (zeros elsewhere, confidence -1 in empty rows): a sum across ranks is a gather."""
        if not 0 <= slot < slots:
            raise ValueError(f"slot {slot} outside 0..{slots - 1}")
        out = np.zeros((slots, self.worst_n, 4), dtype=np.float64)
        out[slot, :, 0] = _NO_MISTAKE
        for row, m in enumerate(self.worst_mistakes()):
            out[slot, row] = (m.confidence, m.true, m.predicted, m.index)
        return out.reshape(-1).astype(dtype)

    def load_mistakes_vector(self, vector):
        """Replaces the kept mistakes with the ``worst_n`` best of a (summed) ``mistakes_vector``."""
        rows = np.asarray(vector, dtype=np.float64).reshape(-1, 4)
        self._heap = []
        for conf, true, pred, index in rows:
            if conf >= 0:
                self._push((float(conf), -int(round(index)), int(round(true)), int(round(pred))))
        return self

    def all_reduce(self, rank, group_size, reducer=None):
        """Replaces this rank's counts and mistakes by those of all ranks (every rank must call it): one sum of
        ``counts_vector`` + ``mistakes_vector`` through ``reducer`` (default ``SumAcrossRanks``). Returns self."""
        if group_size <= 1:
            return self
        if reducer is None:
            reducer = SumAcrossRanks()
        counts = self.counts_vector(np.float64)
        mistakes = self.mistakes_vector(slot=rank, slots=group_size, dtype=np.float64)
        summed = np.asarray(reducer(np.concatenate([counts, mistakes])), dtype=np.float64)
        if summed.size != counts.size + mistakes.size:
            raise ValueError(f"the reducer returned {summed.size} values for {counts.size + mistakes.size}")
        if np.max(summed, initial=0.0) >= 2 ** 24:
            raise ValueError("a count or sample index reached 2**24: a float32 AllReduce is no longer exact")
        self.load_counts_vector(summed[:counts.size])
        self.load_mistakes_vector(summed[counts.size:])
        return self

    @property
    def total(self):
        return int(self.matrix.sum())

    @property
    def top1_correct(self):
        return int(np.trace(self.matrix))

    @property
    def topk_correct(self):
        return int(self.topk_hits.sum())

    def worst_mistakes(self):
        """The kept mistakes, most confident first (ties: lower sample index first)."""
        return [Mistake(confidence=c, true=t, predicted=p, index=-neg)
                for c, neg, t, p in sorted(self._heap, reverse=True)]

    def per_class(self, class_names=None):
        return per_class_metrics(self.matrix, self.topk_hits, class_names)

    def summary(self, class_names=None, top_pairs=10):
        """For eval_result.json: counts, macro P/R/F1/top-k recall and the ``top_pairs`` most confused pairs."""
        names = class_names_or_default(class_names, self.num_classes)
        macro = macro_averages(self.per_class(names))
        return {
            "images": self.total,
            "top1_correct": self.top1_correct,
            f"top{self.topk}_correct": self.topk_correct,
            "classes_with_images": macro["classes"],
            "macro_precision": macro["precision"],
            "macro_recall": macro["recall"],
            "macro_f1": macro["f1"],
            f"macro_top{self.topk}_recall": macro["top5_recall"],
            "top_confused_pairs": top_confused_pairs(self.matrix, top_pairs, names),
        }


def per_class_metrics(matrix, topk_hits=None, class_names=None):
    """One dict per class with ``PER_CLASS_FIELDS`` (plus ``predicted``), NaN where undefined (module doc)."""
    matrix = np.asarray(matrix, dtype=np.int64)
    k = matrix.shape[0]
    if matrix.shape != (k, k):
        raise ValueError(f"confusion matrix must be square, got {matrix.shape}")
    names = class_names_or_default(class_names, k)
    images = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    correct = np.diag(matrix)
    hits = np.full(k, -1, dtype=np.int64) if topk_hits is None else np.asarray(topk_hits, dtype=np.int64)
    rows = []
    for i in range(k):
        n, p, c = int(images[i]), int(predicted[i]), int(correct[i])
        recall = c / n if n else math.nan
        precision = c / p if p else 0.0 if n else math.nan
        if math.isnan(recall) or math.isnan(precision):
            f1 = math.nan
        elif precision + recall == 0:
            f1 = 0.0
        else:
            f1 = 2 * precision * recall / (precision + recall)
        top5 = hits[i] / n if n and hits[i] >= 0 else math.nan
        rows.append({"class_index": i, "class_name": names[i], "images": n, "top1_correct": c,
                     "predicted": p, "precision": precision, "recall": recall, "f1": f1,
                     "top5_recall": float(top5)})
    return rows


def macro_averages(rows):
    """Means of precision, recall, F1 and top-5 recall over the classes with images; None when there are none."""
    present = [r for r in rows if r["images"] > 0]
    out = {"classes": len(present)}
    for key in ("precision", "recall", "f1", "top5_recall"):
        values = [r[key] for r in present if not math.isnan(r[key])]
        out[key] = float(np.mean(values)) if values else None
    return out


def top_confused_pairs(matrix, n=10, class_names=None):
    """The ``n`` largest off-diagonal cells: ``[{true, true_name, predicted, predicted_name, count, fraction}]``."""
    matrix = np.asarray(matrix, dtype=np.int64)
    k = matrix.shape[0]
    names = class_names_or_default(class_names, k)
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    t, p = np.nonzero(off)
    if not t.size or n <= 0:
        return []
    counts = off[t, p]
    order = np.lexsort((p, t, -counts))[:n]
    images = matrix.sum(axis=1)
    return [{"true": int(t[i]), "true_name": names[t[i]], "predicted": int(p[i]), "predicted_name": names[p[i]],
             "count": int(counts[i]), "fraction": round(float(counts[i] / images[t[i]]), 6)} for i in order]


def _fmt(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6f}"
    return value


def _write_csv(rows, path):
    from src.utils.fileio import write_text_atomic

    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return write_text_atomic(buf.getvalue(), path, newline="")


def write_per_class_csv(rows, path):
    """``per_class.csv``: a header of ``PER_CLASS_FIELDS`` and one row per class; returns the absolute path."""
    return _write_csv([PER_CLASS_FIELDS] + [[_fmt(display_name(r[k]) if k == "class_name" else r[k])
                                             for k in PER_CLASS_FIELDS] for r in rows], path)


def write_confusion_matrix_csv(matrix, class_names, path):
    """``confusion_matrix.csv``: header ``true_index,true_name,<predicted name 0>,...``, then one row per true
    class ``i,name_i,count_i0,...`` (raw counts). Returns the absolute path."""
    matrix = np.asarray(matrix, dtype=np.int64)
    names = class_names_or_default(class_names, matrix.shape[0])
    return _write_csv([["true_index", "true_name"] + names] +
                      [[i, name] + matrix[i].tolist() for i, name in enumerate(names)], path)


def read_per_class_csv(path):
    """Rows of ``per_class.csv`` with numbers parsed (empty cells -> NaN)."""
    out = []
    with open(path, encoding="utf-8", newline="") as f:
        for r in csv.DictReader(f):
            row = {"class_index": int(r["class_index"]), "class_name": r["class_name"],
                   "images": int(r["images"]), "top1_correct": int(r["top1_correct"])}
            for key in ("precision", "recall", "f1", "top5_recall"):
                row[key] = float(r[key]) if r[key] != "" else math.nan
            out.append(row)
    return out


def read_confusion_matrix_csv(path):
    """``(matrix int64 K x K, names)`` from ``confusion_matrix.csv``."""
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    names = [r[1] for r in rows[1:]]
    matrix = np.asarray([[int(v) for v in r[2:]] for r in rows[1:]], dtype=np.int64).reshape(len(names), -1)
    return matrix, names
