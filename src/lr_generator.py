"""Per-step learning-rate arrays (float32, one per step); warmup for all: ``lr * (i + 1) / warmup_steps``.

* ``cosine_annealing`` (zoo default): ``eta_min + (lr - eta_min) * (1 + cos(pi * e / T_max)) / 2`` with ``e`` the
  absolute epoch of step i: a per-epoch staircase not shifted by the warmup, kept exactly as the zoo's.
* ``exponential`` (the zoo's name) / ``multistep``: ``lr * gamma ** n_i``, n_i the milestones of ``lr_epochs``
  passed; a milestone inside the warmup still counts once it ends (the zoo dropped it).
* ``cosine_step``: a per-step cosine from ``lr`` after the warmup to exactly ``eta_min`` at the last step.
"""
import math

import numpy as np


SCHEDULERS = ("cosine_annealing", "exponential", "multistep", "cosine_step")


def _parse_epochs(lr_epochs):
    """"30,60" (the config's form), a number or a list -> floats."""
    if isinstance(lr_epochs, str):
        return [float(p) for p in lr_epochs.replace(";", ",").split(",") if p.strip()]
    return [float(m) for m in np.atleast_1d(lr_epochs if lr_epochs is not None else [])]


def get_lr(lr_scheduler, lr, steps_per_epoch, max_epoch, warmup_epochs=0,
           lr_epochs=(30, 60, 90, 120), lr_gamma=0.1, eta_min=0.0, T_max=None):
    """``max_epoch * steps_per_epoch`` learning rates (float32); ``ValueError`` on an unknown scheduler or bad value."""
    name = str(lr_scheduler).strip().lower()
    if name not in SCHEDULERS:
        raise ValueError(f"unknown lr_scheduler {lr_scheduler!r}; valid: {', '.join(SCHEDULERS)}")
    lr, eta_min, warmup_epochs = float(lr), float(eta_min), float(warmup_epochs)
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
    head = lr * np.arange(1, min(warmup_steps, total) + 1) / max(warmup_steps, 1)
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
        progress = (steps - warmup_steps) / span if span > 0 else np.ones(len(steps))
        tail = eta_min + (lr - eta_min) * (1.0 + np.cos(math.pi * progress)) / 2.0

    return np.concatenate([head, tail]).astype(np.float32)


def get_lr_from_config(optim, steps_per_epoch):
    """``get_lr`` with the config's optim section; ``T_max`` 0 means ``max_epoch`` (a shortened run still decays)."""
    return get_lr(lr_scheduler=optim.lr_scheduler, lr=optim.lr, steps_per_epoch=steps_per_epoch,
                  max_epoch=optim.max_epoch, warmup_epochs=optim.warmup_epochs, lr_epochs=optim.lr_epochs,
                  lr_gamma=optim.lr_gamma, eta_min=optim.eta_min, T_max=optim.T_max or optim.max_epoch)
