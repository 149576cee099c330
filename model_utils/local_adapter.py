"""Device/rank information for local (non-ModelArts) runs, read from environment variables.

DEVICE_ID (default 0), RANK_SIZE (default 1, the number of devices) and RANK_ID (default 0) are the
variables the Ascend launch scripts set. Under msrun or mpirun the communication layer is the real
source of the rank; these readers are what the scripts can know before ``init()``.
"""

import os

from src.errors import ConfigError

__all__ = ["env_int", "get_device_id", "get_device_num", "get_rank_id", "get_job_id"]


def env_int(name, default, environ=None):
    """Integer value of environment variable ``name``; ``default`` when unset or empty."""
    env = os.environ if environ is None else environ
    raw = env.get(name)
    if raw is None or str(raw).strip() == "":
        return default
    try:
        return int(str(raw).strip())
    except ValueError:
        raise ConfigError("environment variable %s=%r is not an integer" % (name, raw)) from None


def get_device_id(environ=None):
    return env_int("DEVICE_ID", 0, environ)


def get_device_num(environ=None):
    return env_int("RANK_SIZE", 1, environ)


def get_rank_id(environ=None):
    return env_int("RANK_ID", 0, environ)


def get_job_id(environ=None):
    return "Local Job"
