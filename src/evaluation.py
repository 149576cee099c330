"""Scoring a classifier: top-1/top-5 counts over a dataset, and building an inference model from a checkpoint.

``evaluate(net, dataset)`` is the one scoring loop of the project (eval.py, and train.py's validation
while training). It runs the network over every batch of a ``DatasetBundle`` (or a bare MindSpore
dataset yielding ``(image, label)``), counts the images whose label is the top-1 / among the top-5
logits in NumPy, and measures throughput. Differences from the model zoo's eval loop:

* every image is scored: a smaller last batch is run as it is (graph mode recompiles once for it);
* images/s (end to end: data pipeline wait plus network) is measured over the batches whose shape had
  already been compiled, so neither the first compilation nor the recompile of a smaller last batch
  is in the figure (the zoo subtracted one batch of images but kept the first batch's compile time);
  with too few batches for that, it falls back to the whole loop's rate (``extra["timed_images"]`` 0);
* with ``group_size > 1`` the counts of every rank are summed with an AllReduce. The shards must not
  overlap: ``src.data``'s eval shards are disjoint; for a dataset sharded with MindSpore's own
  distributed sampler (which repeats samples so every shard has the same length) pass
  ``limit=shard_sample_count(N, rank, group_size)`` so the repeats are not counted.

Nothing here parses config or sets up the device.
"""
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from src.analysis.metrics import SumAcrossRanks
from src.errors import DatasetError
from src.utils import signals

__all__ = ["EvalResult", "evaluate", "topk_correct", "shard_sample_count", "apply_eval_precision"]


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
        """Top-1 accuracy as a fraction (0 when no image was scored)."""
        return self.top1_correct / self.total if self.total else 0.0

    @property
    def top5(self):
        return self.top5_correct / self.total if self.total else 0.0

    def to_dict(self):
        out = asdict(self)
        out.update(top1=self.top1, top5=self.top5)
        return out

    def zoo_lines(self):
        """The model zoo's three result lines."""
        return [f"top1_correct={self.top1_correct}, tot={self.total}, acc={100.0 * self.top1:.2f}%(TOP1)",
                f"top5_correct={self.top5_correct}, tot={self.total}, acc={100.0 * self.top5:.2f}%(TOP5)",
                f"Inference Performance: {self.images_per_sec:.2f} img/sec"]


def topk_correct(logits, labels, k=5):
    """Number of rows of ``logits`` whose ``labels`` entry is the top-1 and among the top-``k`` classes.

    Ties are broken towards the lower class index (a stable sort of the negated logits), so the
    answer does not depend on the sorting algorithm. With fewer than ``k`` classes every label is
    within the top-k.
    """
    logits = np.asarray(logits, dtype=np.float32)
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    if logits.ndim != 2 or logits.shape[0] != labels.shape[0]:
        raise ValueError(f"logits {logits.shape} and labels {labels.shape} do not match")
    order = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    top1 = int(np.sum(order[:, 0] == labels))
    topk = int(np.sum(np.any(order == labels[:, None], axis=1)))
    return top1, topk


def shard_sample_count(num_images, rank, group_size):
    """Real (non-padding) samples on shard ``rank`` of ``group_size`` for MindSpore's interleaved sharding:
    shard r holds samples r, r+G, r+2G, ... and is padded with repeats up to ceil(N/G)."""
    if group_size <= 1:
        return int(num_images)
    return len(range(rank, int(num_images), group_size))


def _dataset_and_limit(dataset, limit):
    """Unwraps a DatasetBundle; the number of real samples to count (None: all).

    An eval ``DatasetBundle`` knows its shard's real image count (``num_images``; eval shards of
    ``src.data`` are disjoint and unpadded), which caps the count as a guard against padding.
    """
    ds = getattr(dataset, "dataset", dataset)
    if limit is None and getattr(dataset, "mode", None) == "eval":
        limit = getattr(dataset, "num_images", None)
    return ds, limit


def evaluate(net, dataset, rank=0, group_size=1, limit=None, topk=5, reduce=True, log=None, log_interval=0,
             collect_logits=False, on_batch=None):
    """Scores ``net`` on every image of ``dataset`` and returns an ``EvalResult``.

    dataset: a ``DatasetBundle`` (its ``.dataset``) or a MindSpore dataset whose rows are
    ``(image NCHW float32, label int)``; it is iterated once, in its own order.
    rank, group_size: this process's shard; with ``group_size > 1`` and ``reduce`` the counts and the
    throughput are summed over ranks (every rank must call this), so every rank returns the totals.
    limit: count only the first ``limit`` samples (a shard's real samples, for a sharded dataset whose
    sampler pads; an eval bundle's ``num_images`` by default, see ``shard_sample_count`` for MindSpore's
    padding sampler). ``collect_logits`` keeps this rank's float32 logits and labels in
    ``result.extra`` (tests, analysis). ``on_batch(logits, labels)`` is called with every batch's float32
    logits and labels as counted (padding trimmed), e.g. ``src.analysis.metrics.EvalAccumulator.update``.
    The network must already be in eval mode (``set_train(False)``) and at the wanted precision.
    """
    import mindspore as ms

    ds, limit = _dataset_and_limit(dataset, limit)
    top1 = top5 = total = steps = 0
    timed_images, timed_seconds = 0, 0.0
    seen_shapes = set()
    all_logits, all_labels = [], []
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
        c1, c5 = topk_correct(logits, labels, topk)
        top1 += c1
        top5 += c5
        total += n
        steps += 1
        if collect_logits:
            all_logits.append(logits)
            all_labels.append(labels)
        if log is not None and log_interval and steps % log_interval == 0:
            log.info("eval step %d: %d images, top1 %.4f", steps, total, top1 / max(total, 1))
    seconds = time.perf_counter() - start
    if timed_images and timed_seconds > 0:
        ips = timed_images / timed_seconds
    else:  # a single batch shape seen once: only the compile-inclusive rate exists
        ips = total / seconds if seconds > 0 else 0.0
    extra = {"compiled_shapes": len(seen_shapes), "timed_images": timed_images}
    if collect_logits:
        extra["logits"] = np.concatenate(all_logits) if all_logits else np.zeros((0, 0), np.float32)
        extra["labels"] = np.concatenate(all_labels) if all_labels else np.zeros((0,), np.int64)
    collective = group_size > 1 and reduce
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


# ----------------------------------------------------------------------------------------------
# Precision
# ----------------------------------------------------------------------------------------------

def apply_eval_precision(net, device_target):
    """Eval precision by device, as the model zoo: Ascend runs the whole network in float16 (BatchNorm
    included, ``to_float``); GPU runs float16 with BatchNorm in float32 (``auto_mixed_precision`` O2);
    CPU stays float32. Returns ``(net, description)``; load the weights before calling this."""
    import mindspore as ms

    if device_target == "Ascend":
        net.to_float(ms.float16)
        return net, "float16"
    if device_target == "GPU":
        from mindspore import amp
        return amp.auto_mixed_precision(net, "O2"), "float16 (BatchNorm float32, amp O2)"
    return net, "float32"


# ----------------------------------------------------------------------------------------------
# Scoring checkpoints (eval.py)
# ----------------------------------------------------------------------------------------------

def result_record(ckpt, info, result, report, precision, device, data_desc):
    """One checkpoint's result as eval_result.json holds it."""
    import os

    rec = {"arch": info["arch"], "checkpoint": os.path.abspath(ckpt), "images": result.total,
           "top1": round(result.top1, 6), "top5": round(result.top5, 6), "top1_correct": result.top1_correct,
           "top5_correct": result.top5_correct, "images_per_sec": round(result.images_per_sec, 3),
           "seconds": round(result.seconds, 3), "num_classes": info["num_classes"], "device_target": device,
           "precision": precision, "use_ema": bool(report.used_ema), "checkpoint_layout": report.layout,
           "group_size": result.group_size}
    rec.update(result.extra.get("analysis") or {})
    rec.update(data_desc)
    return rec


def score_checkpoints(ckpts, infos, bundle, cfg, ctx, log, rewrites, analyze=None, failed=None):
    """Scores every checkpoint of ``ckpts`` (``infos``: ``checkpoint_model_info`` of each) on ``bundle`` and
    returns ``[(ckpt, info, EvalResult, LoadReport, precision)]``.

    ``failed``: a list; a checkpoint that cannot be loaded into its network (``CheckpointError``) is
    appended to it as ``(ckpt, message)`` and the others are still scored. Without it, the error is raised.

    On CPU without network rewrites one compiled graph serves every checkpoint of the same shape; a
    folded network (fold_bn) cannot take other weights, so each checkpoint gets its own.
    Each checkpoint's confusion matrix, per-class top-5 hits and ``cfg.eval.worst_mistakes`` most confident
    mistakes are accumulated (``src.analysis.metrics.EvalAccumulator``, sample indices global across ranks)
    and summed across ranks; ``analyze(ckpt, accumulator)`` is then called on every rank and what it
    returns (a dict of result fields, or None) is kept in ``result.extra["analysis"]``.
    """
    from src.analysis.metrics import EvalAccumulator
    from src.checkpoint import CheckpointError, build_inference_model, load_weights, resolve_model_info
    from src.utils.runtime import important_info

    reuse = ctx.device_target == "CPU" and not any(rewrites.values())
    net, net_key, out = None, None, []
    for ckpt in ckpts:
        try:
            arch, nc = resolve_model_info(infos[ckpt], cfg.model.arch, cfg.model.num_classes,
                                          cfg.is_explicit("arch"), cfg.is_explicit("num_classes"))
            important_info(log, f"evaluating {ckpt}")
            if reuse and net is not None and net_key == (arch, nc):
                report = load_weights(net, ckpt, use_ema=cfg.weights.use_ema)
            else:
                net, net_key = None, None
                net, report, _ = build_inference_model(ckpt, arch, nc, num_classes_explicit=True,
                                                       arch_explicit=True, use_ema=cfg.weights.use_ema,
                                                       info=infos[ckpt], prepare=rewrites)
                net_key = (arch, nc)
        except CheckpointError as err:
            if failed is None:
                raise
            log.warning("not scored: %s", err)
            failed.append((ckpt, str(err)))
            continue
        log.info("loaded %s (%s layout%s): %s, %d classes", ckpt, report.layout,
                 ", EMA weights" if report.used_ema else "", arch, nc)
        if report.has_ema and not report.used_ema:  # train.py validated (and picked best.ckpt) with them
            log.info("%s also holds EMA weights (training validated with them when ema was on); these are the "
                     "raw weights: use_ema=1 scores the EMA ones", ckpt)
        run_net, precision = apply_eval_precision(net, ctx.device_target)
        run_net.set_train(False)
        acc = None
        if max(bundle.class_to_idx.values(), default=-1) < nc:  # every label fits this model's matrix
            acc = EvalAccumulator(nc, worst_n=cfg.eval.worst_mistakes, index_offset=ctx.rank,
                                  index_stride=ctx.group_size)
        else:
            log.warning("%s has %d classes, fewer than the data's labels: no per-class analysis for it", ckpt, nc)
        result = evaluate(run_net, bundle, rank=ctx.rank, group_size=ctx.group_size,
                          on_batch=None if acc is None else acc.update)
        if acc is not None:
            acc.all_reduce(ctx.rank, ctx.group_size)  # every rank: the totals of all shards
        for line in result.zoo_lines():
            log.info(line)
        log.info("scored %d images in %.1f s (%s)%s", result.total, result.seconds, precision,
                 "" if result.extra.get("timed_images") else "; too few batches to time without graph "
                 "compilation, so images/s includes it")
        if analyze is not None and acc is not None:
            result.extra["analysis"] = analyze(ckpt, acc)
        out.append((ckpt, {"arch": arch, "num_classes": nc}, result, report, precision))
    return out
