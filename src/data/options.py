"""The data options: the config's data section (``src.config.DataConfig``), checked by the config's own rules.

    opts = data_options(per_batch_size=32, mixup_alpha=0.2)   # defaults + these, checked: ConfigError naming the key
    opts = data_options(cfg.data, verify_manifest="none")     # a loaded config's section with one key changed

The one place data options are checked: the pipeline, transforms and readers take the result as it is, so a new
option is one field in ``DataConfig`` (and its default in ``default_config.yaml``) plus the code that reads it.
"""
from __future__ import annotations

import dataclasses


def data_options(base=None, **keys):
    """``base`` (a ``DataConfig``; None: the defaults) with ``keys`` set, checked as if they were given on
    the command line (``ConfigError`` naming the key). A key that is no data option is a ``TypeError``."""
    from src.config import DataConfig, load_config

    fields = {f.name for f in dataclasses.fields(DataConfig)}
    unknown = sorted(set(keys) - fields)
    if unknown:
        raise TypeError(f"not a data option: {', '.join(unknown)} (the options are the keys of the config's data "
                        "section)")
    if base is not None:
        keys = {k: v for k, v in keys.items() if getattr(base, k) != v}
        if not keys:
            return base
        keys = {**dataclasses.asdict(base), **keys}

    def text(v):
        return str(v).lower() if isinstance(v, bool) else "" if v is None else str(v)
    return load_config([f"--{k}={text(v)}" for k, v in keys.items()]).data
