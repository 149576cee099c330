"""Per-step learning-rate arrays (one float32 value per training step).

Schedulers (``lr_scheduler``):

* ``cosine_annealing`` (zoo default): after warmup,
  ``lr_i = eta_min + (lr - eta_min) * (1 + cos(pi * e / T_max)) / 2`` with ``e = floor(i / steps_per_epoch)``,
  the *absolute* epoch index. It is a per-epoch staircase that is not shifted by the warmup, so the
  first post-warmup epoch starts below ``lr`` and, with ``T_max == max_epoch``, the last epoch stays
  above ``eta_min`` (1.0966e-5 for the zoo recipe). Kept exactly for reproducibility.
* ``exponential`` (the zoo's name, kept for config compatibility) and its alias ``multistep``: a
  multi-step decay. After warmup, ``lr_i = lr * gamma ** n_i`` where ``n_i`` is the number of milestone
  epochs ``m`` in ``lr_epochs`` with ``int(m * steps_per_epoch) <= i``. For milestones after the warmup this
  equals the zoo; a milestone that falls inside the warmup is still counted once the warmup ends
  (the zoo silently dropped it).
* ``cosine_step``: a smooth per-step cosine from ``lr`` at the first post-warmup step down to exactly
  ``eta_min`` at the last step (``T_max`` is not used).

Warmup (all schedulers): ``lr_i = lr * (i + 1) / warmup_steps`` for ``i < warmup_steps``, with
``warmup_steps = int(warmup_epochs * steps_per_epoch)``; ``warmup_epochs`` may be fractional.
"""
import math

import numpy as np

__all__ = ["SCHEDULERS", "get_lr", "get_lr_from_config"]

SCHEDULERS = ("cosine_annealing", "exponential", "multistep", "cosine_step")


def _parse_epochs(lr_epochs):
    if lr_epochs is None:
        return []
    if isinstance(lr_epochs, str):
        parts = [p.strip() for p in lr_epochs.replace(";", ",").split(",") if p.strip()]
        try:
            return [float(p) for p in parts]
        except ValueError:
            raise ValueError(f"lr_epochs must be a list of numbers, got {lr_epochs!r}") from None
    if isinstance(lr_epochs, (int, float)):
        return [float(lr_epochs)]
    return [float(m) for m in lr_epochs]


def _warmup(lr, warmup_steps, total_steps):
    n = min(warmup_steps, total_steps)
    if n <= 0:
        return np.zeros(0, np.float64)
    return lr * (np.arange(n, dtype=np.float64) + 1.0) / warmup_steps


def get_lr(lr_scheduler, lr, steps_per_epoch, max_epoch, warmup_epochs=0,
           lr_epochs=(30, 60, 90, 120), lr_gamma=0.1, eta_min=0.0, T_max=None):
    """Return the per-step learning rates, ``np.float32`` of length ``max_epoch * steps_per_epoch``.

    Raises:
        ValueError: unknown scheduler (the message lists the valid ones) or an invalid argument.
    """
    name = str(lr_scheduler).strip().lower()
    if name not in SCHEDULERS:
        raise ValueError(f"unknown lr_scheduler {lr_scheduler!r}; valid: {', '.join(SCHEDULERS)}")
    lr = float(lr)
    eta_min = float(eta_min)
    warmup_epochs = float(warmup_epochs)
    if int(steps_per_epoch) != steps_per_epoch or steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be a positive integer, got {steps_per_epoch!r}")
    if int(max_epoch) != max_epoch or max_epoch < 1:
        raise ValueError(f"max_epoch must be a positive integer, got {max_epoch!r}")
    if lr < 0 or not math.isfinite(lr):
        raise ValueError(f"lr must be a finite number >= 0, got {lr!r}")
    if warmup_epochs < 0 or not math.isfinite(warmup_epochs):
        raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs!r}")
    steps_per_epoch, max_epoch = int(steps_per_epoch), int(max_epoch)

    total = max_epoch * steps_per_epoch
    warmup_steps = int(warmup_epochs * steps_per_epoch)
    head = _warmup(lr, warmup_steps, total)
    steps = np.arange(len(head), total, dtype=np.int64)

    if name == "cosine_annealing":
        t_max = float(max_epoch if T_max is None else T_max)
        if t_max <= 0:
            raise ValueError(f"T_max must be > 0, got {T_max!r}")
        epoch = (steps // steps_per_epoch).astype(np.float64)
        tail = eta_min + (lr - eta_min) * (1.0 + np.cos(math.pi * epoch / t_max)) / 2.0
    elif name in ("exponential", "multistep"):
        gamma = float(lr_gamma)
        milestones = np.array(sorted(int(m * steps_per_epoch) for m in _parse_epochs(lr_epochs)),
                              dtype=np.int64)
        n_passed = np.searchsorted(milestones, steps, side="right")
        tail = lr * np.power(gamma, n_passed.astype(np.float64))
    else:  # cosine_step
        span = total - 1 - warmup_steps
        if span > 0:
            progress = (steps - warmup_steps).astype(np.float64) / span
        else:
            progress = np.ones(len(steps), np.float64)
        tail = eta_min + (lr - eta_min) * (1.0 + np.cos(math.pi * progress)) / 2.0

    return np.concatenate([head, tail]).astype(np.float32)


def get_lr_from_config(optim, steps_per_epoch):
    """``get_lr`` with the config's optim section (``src.config.OptimConfig``); ``T_max`` 0 means
    ``max_epoch``, so a shortened run still decays to its end."""
    return get_lr(lr_scheduler=optim.lr_scheduler, lr=optim.lr, steps_per_epoch=steps_per_epoch,
                  max_epoch=optim.max_epoch, warmup_epochs=optim.warmup_epochs, lr_epochs=optim.lr_epochs,
                  lr_gamma=optim.lr_gamma, eta_min=optim.eta_min, T_max=optim.T_max or optim.max_epoch)
