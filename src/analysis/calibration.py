"""Calibrated probabilities in NumPy: reliability statistics and the expected calibration error of the top-1
confidences (Guo et al., 2017: 15 equal-width bins ``(lo, hi]``), temperature scaling fitted on held-out logits,
and the calibration record (its own JSON file, default ``<checkpoint>.calibration.json``). Non-finite logits are
refused (``ValueError``): a NaN would otherwise become a confident prediction.
"""
import json
import math
import os
from dataclasses import dataclass

import numpy as np

from src.errors import ModelRecordError

DEFAULT_BINS = 15
CALIBRATION_FORMAT = "cspdarknet53-calibration"
CALIBRATION_VERSION = 1
#: the search range of the temperature: beyond it a fit says it hit the bound
T_MIN, T_MAX = 1e-3, 1e4


def _check(logits, labels=None):
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2 or z.shape[0] == 0 or z.shape[1] < 2:
        raise ValueError(f"logits must be [N, K] with N >= 1 and K >= 2, got shape {z.shape}")
    bad = ~np.isfinite(z).all(axis=1)
    if bad.any():
        raise ValueError(f"{int(bad.sum())} of {len(z)} rows of logits are not finite (NaN or inf), "
                         f"first at row {int(np.argmax(bad))}; no probabilities are computed from them")
    if labels is None:
        return z, None
    y = np.asarray(labels).reshape(-1)
    if y.shape[0] != z.shape[0]:
        raise ValueError(f"{z.shape[0]} rows of logits but {y.shape[0]} labels")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers, got {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= z.shape[1]):
        raise ValueError(f"labels must be in [0, {z.shape[1]}), got {int(y.min())}..{int(y.max())}")
    return z, y.astype(np.int64)


def _check_temperature(temperature):
    t = float(temperature)
    if not (math.isfinite(t) and t > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    return t


def log_softmax(logits, temperature=1.0):
    """``log softmax(logits / T)`` along the last axis, float64."""
    z, _ = _check(logits)
    z = z / _check_temperature(temperature)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def softmax(logits, temperature=1.0):
    """``softmax(logits / T)`` along the last axis, float64 rows that sum to 1."""
    return np.exp(log_softmax(logits, temperature))


def nll(logits, labels, temperature=1.0):
    """Mean negative log-likelihood of ``labels`` under ``softmax(logits / T)``."""
    z, y = _check(logits, labels)
    lp = log_softmax(z, temperature)
    return float(-lp[np.arange(len(y)), y].mean())


def reliability(logits, labels, bins=DEFAULT_BINS, temperature=1.0):
    """Reliability statistics of the top-1 predictions over ``bins`` equal-width bins (per-bin count, accuracy,
    confidence; NaN where empty), with ECE, NLL, top-1 accuracy and mean confidence."""
    return reliability_from_sums(calibration_sums(logits, labels, bins, temperature), bins, temperature)


def calibration_sums(logits, labels, bins=DEFAULT_BINS, temperature=1.0):
    """Additive statistics of a batch, ``float64 [3 * bins + 2]``: per bin the image count, the sums of the
    top-1 confidences and of the top-1 hits, then the summed NLL and the image count. Summed over batches and
    ranks, ``reliability_from_sums`` turns them into ``reliability``'s dict."""
    z, y = _check(logits, labels)
    bins = int(bins)
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    lp = log_softmax(z, temperature)
    p = np.exp(lp)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # bin b holds confidences in (edges[b], edges[b+1]]; a confidence is > 0, and 1.0 falls in the last bin
    index = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)
    return np.concatenate([np.bincount(index, minlength=bins), np.bincount(index, weights=conf, minlength=bins),
                           np.bincount(index, weights=correct, minlength=bins),
                           [-lp[np.arange(len(y)), y].sum(), len(y)]]).astype(np.float64)


def reliability_from_sums(sums, bins=DEFAULT_BINS, temperature=1.0):
    """``reliability``'s dict from summed ``calibration_sums``."""
    sums = np.asarray(sums, dtype=np.float64)
    bins = int(bins)
    if sums.shape != (3 * bins + 2,):
        raise ValueError(f"expected {3 * bins + 2} sums for {bins} bins, got shape {sums.shape}")
    count, conf_sum, hit_sum = sums[:bins], sums[bins:2 * bins], sums[2 * bins:3 * bins]
    n = sums[-1]
    if n <= 0:
        raise ValueError("no images in the calibration sums")
    with np.errstate(invalid="ignore", divide="ignore"):
        acc, mean_conf = hit_sum / count, conf_sum / count
    filled = count > 0
    ece = float(np.sum(count[filled] / n * np.abs(acc[filled] - mean_conf[filled])))
    return {"bins": bins, "edges": np.linspace(0.0, 1.0, bins + 1).tolist(), "count": count.astype(np.int64).tolist(),
            "accuracy": acc.tolist(), "confidence": mean_conf.tolist(), "ece": ece, "nll": float(sums[-2] / n),
            "accuracy_top1": float(hit_sum.sum() / n), "mean_confidence": float(conf_sum.sum() / n),
            "temperature": float(temperature), "images": int(n)}


@dataclass
class TemperatureFit:
    temperature: float
    nll_before: float
    nll_after: float
    hit_bound: str = None    # None, "min" or "max": the optimum lies at or beyond that bound
    iterations: int = 0


def _nll_slope_sum(z, y, b):
    """Sum over images of d NLL_i / d b at inverse temperature b: E_p[z] - z_y, p = softmax(b z)."""
    if len(y) == 0:
        return 0.0
    s = b * z
    s = s - s.max(axis=1, keepdims=True)
    p = np.exp(s)
    p /= p.sum(axis=1, keepdims=True)
    return float(np.sum((p * z).sum(axis=1) - z[np.arange(len(y)), y]))


def _nll_sum(z, y, t):
    return nll(z, y, t) * len(y) if len(y) else 0.0


def fit_temperature(logits, labels, t_min=T_MIN, t_max=T_MAX, tol=1e-7, max_iter=200, reduce=None):
    """The ``TemperatureFit`` of the T in [t_min, t_max] minimising ``nll(logits, labels, T)`` (bisection on the
    slope over log 1/T). ``reduce``: sums a small vector over all processes (``SumAcrossRanks``), so that every
    process, calling with its own share (possibly none), gets the fit of all the images."""
    if reduce is not None and len(logits) == 0:
        z, y = np.zeros((0, 2)), np.zeros((0,), np.int64)
    else:
        z, y = _check(logits, labels)

    def total(*values):  # sums over every process's images: (sum..., count)
        out = np.asarray(reduce([*values, len(y)]) if reduce is not None else [*values, len(y)], dtype=np.float64)
        if out[-1] <= 0:
            raise ValueError("no images to fit a temperature on")
        return out[:-1] / out[-1]

    def slope(log_b):
        return total(_nll_slope_sum(z, y, math.exp(log_b)))[0]

    lo, hi = math.log(1.0 / t_max), math.log(1.0 / t_min)   # over log b, b = 1/T
    before = total(_nll_sum(z, y, 1.0))[0]
    hit, it = None, 0
    if slope(lo) >= 0:
        log_b, hit, it = lo, "max", 0
    elif slope(hi) <= 0:
        log_b, hit, it = hi, "min", 0
    else:
        while hi - lo > tol and it < max_iter:
            mid = 0.5 * (lo + hi)
            if slope(mid) > 0:
                hi = mid
            else:
                lo = mid
            it += 1
        log_b = 0.5 * (lo + hi)
    t = 1.0 / math.exp(log_b)
    return TemperatureFit(t, before, total(_nll_sum(z, y, t))[0], hit, it)


def calibration_record(logits, labels, fit=None, bins=DEFAULT_BINS, checkpoint=None, data=None, checkpoint_sha256=None):
    """The calibration record of held-out ``logits``/``labels``: the fitted temperature (``fit``, or fitted
    here) with NLL and ECE before and after, the bin count, the checkpoint it belongs to and the data."""
    if fit is None:
        fit = fit_temperature(logits, labels)
    return record_from_stats(fit, reliability(logits, labels, bins, 1.0),
                             reliability(logits, labels, bins, fit.temperature), checkpoint=checkpoint, data=data,
                             checkpoint_sha256=checkpoint_sha256)


def record_from_stats(fit, before, after, checkpoint=None, data=None, checkpoint_sha256=None):
    """The calibration record of a ``TemperatureFit`` and the ``reliability`` stats of the same images at
    temperature 1 (``before``) and at the fitted one (``after``)."""
    record = {"format": CALIBRATION_FORMAT, "version": CALIBRATION_VERSION, "method": "temperature scaling",
              "temperature": float(fit.temperature), "hit_bound": fit.hit_bound, "bins": int(before["bins"]),
              "images": int(before["images"]), "accuracy_top1": before["accuracy_top1"],
              "nll_before": before["nll"], "nll_after": after["nll"],
              "ece_before": before["ece"], "ece_after": after["ece"],
              "checkpoint": None if checkpoint is None else os.path.abspath(os.fspath(checkpoint)),
              "checkpoint_sha256": checkpoint_sha256, "data": data}
    validate_calibration(record, "the new calibration record")
    return record


def validate_calibration(record, where):
    """Raises ``ModelRecordError`` naming ``where`` unless ``record`` is a calibration record with a usable
    temperature."""
    if not isinstance(record, dict) or record.get("format") != CALIBRATION_FORMAT:
        raise ModelRecordError(f"{where}: not a calibration record (format {CALIBRATION_FORMAT!r} expected)")
    if record.get("version") != CALIBRATION_VERSION:
        raise ModelRecordError(f"{where}: calibration record version {record.get('version')!r}; this code reads "
                               f"version {CALIBRATION_VERSION}")
    t = record.get("temperature")
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
        raise ModelRecordError(f"{where}: temperature={t!r} is not a finite number > 0")
    return record


def default_calibration_path(checkpoint):
    """``<checkpoint>.calibration.json``: where eval writes a calibration and export looks for it."""
    return os.fspath(checkpoint) + ".calibration.json"


def write_calibration(record, path):
    from src.utils.fileio import write_json_atomic

    validate_calibration(record, os.fspath(path))
    return write_json_atomic(record, path, ensure_ascii=False)


def read_calibration(path, checkpoint_sha256=None):
    """The calibration record at ``path``. With ``checkpoint_sha256``, a record fitted for another checkpoint
    is refused (the temperature belongs to the logits it was fitted on)."""
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except FileNotFoundError:
        raise ModelRecordError(f"calibration file not found: {path}") from None
    except (OSError, ValueError) as err:
        raise ModelRecordError(f"cannot read calibration file {path}: {getattr(err, 'strerror', None) or err}") \
            from None
    validate_calibration(record, path)
    recorded = record.get("checkpoint_sha256")
    if checkpoint_sha256 and recorded and recorded != checkpoint_sha256:
        raise ModelRecordError(f"{path} was fitted for checkpoint {record.get('checkpoint')} (sha256 "
                               f"{recorded[:12]}...), not this one ({checkpoint_sha256[:12]}...): fit it again "
                               "with eval.py --calibrate on this checkpoint")
    return record


def json_format(path):
    """The ``format`` of the JSON object at ``path``, else None: the output guard's test before replacing a file."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f).get("format")
    except (OSError, ValueError, AttributeError):
        return None


def is_calibration_file(path):
    return json_format(path) == CALIBRATION_FORMAT


def calibration_path(checkpoint, calibration_file):
    """Where the calibration record of ``checkpoint`` is, by the ``calibration_file`` setting: "" = beside the
    checkpoint (``default_calibration_path``), "none" = nowhere (None), else that path."""
    value = str(calibration_file or "").strip()
    if value.lower() == "none":
        return None
    return os.path.abspath(os.path.expanduser(value)) if value else os.path.abspath(default_calibration_path(checkpoint))


def calibration_for(checkpoint, calibration_file, checkpoint_sha256=None):
    """``(record or None, path or None)`` by the ``calibration_file`` setting: "" = ``<checkpoint>.calibration.json``
    when it exists, "none" = ``(None, None)``, else a file that must exist. A record fitted for another checkpoint
    (by SHA-256, computed only when a record is found) is a ``ModelRecordError``."""
    path = calibration_path(checkpoint, calibration_file)
    if path is None or (not str(calibration_file or "").strip() and not os.path.exists(path)):
        return None, path
    if checkpoint_sha256 is None:
        from src.utils.fileio import file_sha256
        checkpoint_sha256 = file_sha256(checkpoint)
    return read_calibration(path, checkpoint_sha256), path


def plot_reliability(stats, path, after=None, title=None, dpi=100):
    """Draws the reliability diagram of ``reliability`` stats (and ``after``, at another temperature) to ``path``;
    returns the absolute path. ``PlottingUnavailable`` without matplotlib."""
    from src.analysis.plots import _matplotlib
    from src.utils.fileio import atomic_path

    _, Figure, FigureCanvasAgg = _matplotlib()
    series = [("T = 1", stats, "#4472c4")]
    if after is not None:
        series.append((f"T = {after['temperature']:.3g}", after, "#ed7d31"))
    edges = np.asarray(stats["edges"])
    width = np.diff(edges)
    fig = Figure(figsize=(5.2, 6.2))
    FigureCanvasAgg(fig)
    ax, axc = fig.add_axes([0.13, 0.36, 0.82, 0.56]), fig.add_axes([0.13, 0.08, 0.82, 0.18])
    ax.plot([0, 1], [0, 1], color="#777777", linestyle="--", linewidth=1, label="perfect calibration")
    bar_w = width / len(series)
    for i, (label, s, colour) in enumerate(series):
        acc = np.nan_to_num(np.asarray(s["accuracy"], dtype=float))
        conf = np.asarray(s["confidence"], dtype=float)
        left = edges[:-1] + i * bar_w
        ax.bar(left, acc, width=bar_w, align="edge", color=colour, alpha=0.8, edgecolor="white",
               label=f"{label}: ECE {s['ece']:.3f}, NLL {s['nll']:.3f}")
        filled = ~np.isnan(conf)
        ax.scatter(left[filled] + bar_w[filled] / 2, conf[filled], color="black", s=8, zorder=3)
        axc.bar(left, s["count"], width=bar_w, align="edge", color=colour, alpha=0.8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xticks(edges[::3])
    ax.set_ylabel("accuracy (bars), mean confidence (dots)")
    ax.set_title(title or f"reliability, {stats['images']} images, {stats['bins']} bins", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    axc.set_xlim(0, 1)
    axc.set_xticks(edges[::3])
    axc.set_xlabel("top-1 confidence")
    axc.set_ylabel("images")
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    return os.path.abspath(os.fspath(path))
