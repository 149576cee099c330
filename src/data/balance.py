"""Class imbalance: per-class loss weights and a class-balanced epoch sampler.

``class_weights``: ``none``; ``balanced`` (``1 / n_c``, mean 1 over the classes present, 1 for an empty class); or a
file: one weight per line (``#`` comments), a JSON list of K numbers, or ``{"class name": weight}`` (others get 1).
``ClassBalancedOrder`` keeps ``src.data.sampler``'s contract; each class gets a share of the epoch by
``n_c ** power`` (0: equal), split by largest remainders, drawn without replacement from fresh permutations.
"""
from __future__ import annotations

import math
import os
from typing import Dict, Mapping, Optional, Sequence

import numpy as np

from src.data.listing import read_table_file
from src.data.sampler import EpochOrder
from src.errors import BalanceError


def balanced_weights(counts: Sequence[int]) -> np.ndarray:
    """1 / n_c normalised to mean 1 over the classes with n_c > 0; 1 for empty classes."""
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    if not present.any():
        raise BalanceError("no class has any image: cannot compute balanced class weights")
    w = np.ones_like(counts)
    inv = 1.0 / counts[present]
    w[present] = inv / inv.mean()
    return w.astype(np.float32)


def load_weights_file(path: str, num_classes: int,
                      class_to_idx: Optional[Mapping[str, int]] = None) -> np.ndarray:
    data, lines = read_table_file(path, "class_weights file", BalanceError)
    if data is not None:
        if isinstance(data, dict):
            if class_to_idx is None:
                raise BalanceError(f"class_weights file {path} maps class names, but no class index is known")
            w = np.ones(num_classes, np.float64)
            unknown = [k for k in data if k not in class_to_idx]
            if unknown:
                raise BalanceError(f"class_weights file {path} names classes that are not in the data: "
                                   f"{', '.join(map(str, unknown[:10]))}")
            for k, v in data.items():
                w[int(class_to_idx[k])] = _number(v, path, k)
        else:
            w = np.array([_number(v, path, i) for i, v in enumerate(data)], np.float64)
    else:
        cut = ((n, line.split("#", 1)[0].strip()) for n, line in lines)
        w = np.array([_number(line, path, f"line {n}") for n, line in cut if line], np.float64)
    if w.shape != (num_classes,):
        raise BalanceError(f"class_weights file {path} has {w.size} weights, expected one per class "
                           f"({num_classes})")
    if not np.all(np.isfinite(w)) or (w < 0).any() or not (w > 0).any():
        raise BalanceError(f"class_weights file {path}: weights must be finite, >= 0 and not all 0")
    return w.astype(np.float32)


def _number(v, path, where) -> float:
    try:
        if isinstance(v, bool):
            raise ValueError
        return float(v)
    except (TypeError, ValueError):
        raise BalanceError(f"class_weights file {path}: {where}: {v!r} is not a number") from None


def class_weights_from_counts(counts: Optional[Sequence[int]], num_classes: int, mode: str = "none",
                              class_to_idx: Optional[Mapping[str, int]] = None) -> Optional[np.ndarray]:
    """Per-class loss weights (float32 [K], None for none) for ``mode`` none | balanced | a file, from the image
    counts of all rank shards (``DatasetBundle.class_counts``: every rank gets the same weights)."""
    mode = str(mode or "none").strip()
    if mode.lower() == "none":
        return None
    if mode.lower() == "balanced":
        if counts is None:
            raise BalanceError("class_weights=balanced needs the class counts of the training data")
        c = np.zeros(num_classes, np.int64)
        given = np.asarray(counts, np.int64)[:num_classes]
        c[:given.size] = given
        return balanced_weights(c)
    if os.path.isfile(mode):
        return load_weights_file(mode, num_classes, class_to_idx)
    raise BalanceError(f"class_weights must be none, balanced or a weights file; {mode!r} is neither and no "
                       f"such file exists")


def _largest_remainder(shares: np.ndarray, total: int) -> np.ndarray:
    raw = shares / shares.sum() * total
    q = np.floor(raw).astype(np.int64)
    q[np.argsort(-(raw - q), kind="stable")[:total - int(q.sum())]] += 1  # ties: the lower class index first
    return q


class ClassBalancedOrder(EpochOrder):
    """Epoch orders that give each class a share of the epoch by ``counts ** power`` (see the module doc)."""

    def __init__(self, labels: Sequence[int], rank: int = 0, group_size: int = 1, seed: int = 0, power: float = 0.0):
        labels = np.asarray(labels, dtype=np.int64)
        if labels.ndim != 1 or labels.size == 0:
            raise BalanceError("the class-balanced sampler needs a non-empty 1-D list of labels")
        if not 0 <= int(rank) < int(group_size):
            raise BalanceError(f"rank {rank} is not in [0, group_size={group_size})")
        super().__init__(labels.size, rank, group_size, seed)
        self.members = [np.flatnonzero(labels == c) for c in np.unique(labels)]
        self.shares = np.array([m.size for m in self.members], np.float64) ** float(power)

    def epoch_indices(self, epoch: int) -> np.ndarray:
        rng = self.rng(epoch, 0xBA1A)
        quota = _largest_remainder(self.shares, self.per_shard * self.group_size)
        parts = [np.concatenate([rng.permutation(m) for _ in range(math.ceil(q / m.size))])[:q]
                 for m, q in zip(self.members, quota) if q > 0]
        order = np.concatenate(parts)
        return order[rng.permutation(order.size)]


def describe_counts(counts: Sequence[int], class_names: Optional[Dict[int, str]] = None, limit: int = 5) -> str:
    """One line for the log: the imbalance ratio and the rarest classes."""
    counts = np.asarray(counts, np.int64)
    present = counts[counts > 0]
    if present.size == 0:
        return "no labels"
    order = np.argsort(counts, kind="stable")
    rare = [i for i in order if counts[i] > 0][:limit]
    names = ", ".join(f"{class_names.get(i, i) if class_names else i}: {counts[i]}" for i in rare)
    return (f"{present.size} classes, {int(present.min())}..{int(present.max())} images per class "
            f"(ratio {present.max() / present.min():.1f}); rarest: {names}")
