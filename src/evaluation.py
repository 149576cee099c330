"""Scoring a classifier: top-1/top-5 counts over a dataset, and the eval precision of each device.

``evaluate`` is the project's one scoring loop (eval.py, train.py's validation). Deviations from the zoo's loop:
a smaller last batch is scored as it is; images/s (data wait plus network) counts only batches of an already
compiled shape; with ``group_size > 1`` the counts of the (disjoint) rank shards are summed with an AllReduce.
"""
import time
from dataclasses import dataclass, field

import numpy as np

from src.analysis.metrics import SumAcrossRanks
from src.errors import DatasetError
from src.utils import signals

__all__ = ["EvalResult", "evaluate", "topk_correct", "apply_eval_precision"]


@dataclass
class EvalResult:
    top1_correct: int
    top5_correct: int
    total: int
    images_per_sec: float
    seconds: float
    steps: int = 0
    group_size: int = 1
    extra: dict = field(default_factory=dict)

    @property
    def top1(self):
        return self.top1_correct / self.total if self.total else 0.0

    @property
    def top5(self):
        return self.top5_correct / self.total if self.total else 0.0

    def zoo_lines(self):
        """The model zoo's three result lines."""
        return [f"top1_correct={self.top1_correct}, tot={self.total}, acc={100.0 * self.top1:.2f}%(TOP1)",
                f"top5_correct={self.top5_correct}, tot={self.total}, acc={100.0 * self.top5:.2f}%(TOP5)",
                f"Inference Performance: {self.images_per_sec:.2f} img/sec"]


def topk_correct(logits, labels, k=5):
    """``(top-1 hits, top-k hits)`` of ``logits`` [N, K]; ties go to the lower class index (stable sort)."""
    logits = np.asarray(logits, dtype=np.float32)
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    if logits.ndim != 2 or logits.shape[0] != labels.shape[0]:
        raise ValueError(f"logits {logits.shape} and labels {labels.shape} do not match")
    order = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    top1 = int(np.sum(order[:, 0] == labels))
    topk = int(np.sum(np.any(order == labels[:, None], axis=1)))
    return top1, topk


def evaluate(net, dataset, rank=0, group_size=1, limit=None, on_batch=None):
    """The ``EvalResult`` of ``net`` (eval mode) on every image of ``dataset`` (a bundle or ``(image, label)`` rows),
    summed over ranks; ``limit``: count only the first samples; ``on_batch(logits, labels)``: a hook."""
    import mindspore as ms

    ds = getattr(dataset, "dataset", dataset)
    if limit is None and getattr(dataset, "mode", None) == "eval":
        limit = getattr(dataset, "num_images", None)
    top1 = top5 = total = steps = 0
    timed_images, timed_seconds = 0, 0.0
    seen_shapes = set()
    start = previous_end = time.perf_counter()
    for images, labels in signals.guarded(ds.create_tuple_iterator(output_numpy=True, num_epochs=1)):
        if limit is not None and total >= limit:
            continue  # padding at the end of a shard: iterate to the end, count nothing
        logits = net(ms.Tensor(np.ascontiguousarray(images, dtype=np.float32))).asnumpy().astype(np.float32)
        # End to end, as the zoo measured: the wait for the batch from the data pipeline plus the network.
        now = time.perf_counter()
        batch_seconds, previous_end = now - previous_end, now
        labels = np.asarray(labels).reshape(-1)
        n = labels.shape[0]
        if limit is not None and total + n > limit:
            n = limit - total
            logits, labels = logits[:n], labels[:n]
        shape = tuple(images.shape)
        if shape in seen_shapes:  # already compiled: a steady-state step
            timed_images += n
            timed_seconds += batch_seconds
        seen_shapes.add(shape)
        if on_batch is not None:
            on_batch(logits, labels)
        c1, c5 = topk_correct(logits, labels)
        top1 += c1
        top5 += c5
        total += n
        steps += 1
    seconds = time.perf_counter() - start
    if timed_images and timed_seconds > 0:
        ips = timed_images / timed_seconds
    else:  # a single batch shape seen once: only the compile-inclusive rate exists
        ips = total / seconds if seconds > 0 else 0.0
    extra = {"compiled_shapes": len(seen_shapes), "timed_images": timed_images}
    collective = group_size > 1
    if hasattr(dataset, "account"):  # a DatasetBundle: fewer samples than it holds is a warning naming them
        dataset.account(total, "evaluation", zero_is_error=not collective)
    if collective:
        summed = SumAcrossRanks()([top1, top5, total, ips])
        top1, top5, total = (int(round(v)) for v in summed[:3])
        ips = float(summed[3])  # ranks run in parallel: the aggregate rate is the sum
    if total == 0:
        raise DatasetError("evaluation: no sample came out of the data pipeline (see the warnings above); check "
                           "image_size and the data")
    return EvalResult(top1_correct=int(top1), top5_correct=int(top5), total=int(total), images_per_sec=float(ips),
                      seconds=float(seconds), steps=steps, group_size=int(group_size), extra=extra)


def apply_eval_precision(net, device_target):
    """``(net, description)`` at the zoo's eval precision: Ascend all float16, GPU float16 with float32 BatchNorm
    (amp O2), CPU float32. Load the weights first."""
    import mindspore as ms

    if device_target == "Ascend":
        net.to_float(ms.float16)
        return net, "float16"
    if device_target == "GPU":
        from mindspore import amp
        return amp.auto_mixed_precision(net, "O2"), "float16 (BatchNorm float32, amp O2)"
    return net, "float32"
