"""Device/rank/job information, from ModelArts or from the local environment.

Every function takes the config explicitly (nothing is read at import time): when
``config.enable_modelarts`` is true the ModelArts adapter answers, otherwise the local one.
``config`` may be None (local).
"""

from model_utils import local_adapter, moxing_adapter

__all__ = ["get_adapter", "get_device_id", "get_device_num", "get_rank_id", "get_job_id"]


def get_adapter(config=None):
    """The adapter module for ``config``: moxing_adapter on ModelArts, else local_adapter."""
    if config is not None and config.modelarts.enable_modelarts:
        return moxing_adapter
    return local_adapter


def get_device_id(config=None):
    return get_adapter(config).get_device_id()


def get_device_num(config=None):
    return get_adapter(config).get_device_num()


def get_rank_id(config=None):
    return get_adapter(config).get_rank_id()


def get_job_id(config=None):
    return get_adapter(config).get_job_id()
