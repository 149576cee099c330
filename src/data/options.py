"""The one place data options are checked: ``data_options(base, **keys)`` is the config's data section
(``src.config.DataConfig``) with ``keys`` set, by the config's own rules; a new option is one ``DataConfig`` field.
"""
from __future__ import annotations

import dataclasses

from src.config import DataConfig, load_config


def data_options(base=None, **keys):
    """``base`` (None: the defaults) with ``keys`` checked as command-line keys (``ConfigError``, or TypeError)."""
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
