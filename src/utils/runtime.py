"""Run-time setup shared by the entry scripts: device, graph mode, distributed init, run folder, logging.

Nothing happens at import; each entry script calls these in order:
``setup_device`` -> ``init_distributed`` -> ``create_run_dir`` -> ``setup_logger``.
Modern MindSpore 2.x APIs only (``mindspore.set_device``, ``mindspore.communication``).
"""
import datetime
import logging
import os
import sys

LOG_FORMAT = "%(asctime)s:%(levelname)s:%(message)s"  # the zoo's log-file format
DEVICE_PREFERENCE = ("Ascend", "GPU", "CPU")


def resolve_device_target(value):
    """``auto`` -> Ascend if present, else GPU, else CPU; a named target must be available."""
    import mindspore as ms

    if value in (None, "", "auto"):
        for target in DEVICE_PREFERENCE:
            if ms.hal.is_available(target):
                return target
        return "CPU"
    if value not in DEVICE_PREFERENCE:
        raise ValueError(f"device_target={value!r}: expected auto, Ascend, GPU or CPU")
    if not ms.hal.is_available(value):
        raise ValueError(f"device_target={value}: this MindSpore installation has no usable {value} backend "
                         f"(available: {[t for t in DEVICE_PREFERENCE if ms.hal.is_available(t)]})")
    return value


def setup_device(device_target="auto", device_id=None, graph_mode=True):
    """Selects the device (``DEVICE_ID`` env when ``device_id`` is None) and graph mode; returns the target."""
    import mindspore as ms

    target = resolve_device_target(device_target)
    if target == "CPU":
        ms.set_device("CPU")
    else:
        if device_id is None:
            device_id = int(os.environ.get("DEVICE_ID", "0"))
        ms.set_device(target, device_id)
    ms.set_context(mode=ms.GRAPH_MODE if graph_mode else ms.PYNATIVE_MODE)
    return target


def init_distributed(enabled):
    """Initialises collective communication for data parallelism; returns ``(rank, group_size)``.

    Under msrun (GPU, CPU) or an HCCL rank table (Ascend) ``init()`` picks the backend itself.
    Gradients are averaged across ranks (``gradients_mean``), as the zoo does; BatchNorm
    statistics stay per rank.
    """
    if not enabled:
        return 0, 1
    import mindspore as ms
    from mindspore.communication import get_group_size, get_rank, init

    try:
        init()
    except RuntimeError as err:
        raise RuntimeError("distributed init failed: launch with msrun (GPU/CPU) or scripts/run_distribute_train.sh "
                           f"(Ascend rank table), or set is_distributed=0. MindSpore said: {err}") from None
    group_size = get_group_size()
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True,
                                 device_num=group_size)
    return get_rank(), group_size


def create_run_dir(root, name=None):
    """``<root>/<name>``; the name defaults to ``$CSPDARKNET53_RUN_NAME`` (set by the launch scripts so
    every rank shares one folder) or the zoo's timestamp ``%Y-%m-%d_time_%H_%M_%S``."""
    name = name or os.environ.get("CSPDARKNET53_RUN_NAME") or \
        datetime.datetime.now().strftime("%Y-%m-%d_time_%H_%M_%S")
    path = os.path.abspath(os.path.join(root, name))
    os.makedirs(path, exist_ok=True)
    return path


def setup_logger(name, log_file=None, rank=0, to_stdout=True, level=logging.INFO):
    """A logger writing the zoo's line format to ``log_file`` and, on rank 0, to stdout.

    Replaces handlers from an earlier call in the same process (tests run several jobs).
    """
    log = logging.getLogger(name)
    log.setLevel(level)
    log.propagate = False
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    formatter = logging.Formatter(LOG_FORMAT)
    if to_stdout and rank == 0:
        stream = logging.StreamHandler(sys.stdout)
        stream.setFormatter(formatter)
        log.addHandler(stream)
    if log_file:
        os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
        file_handler = logging.FileHandler(log_file)
        file_handler.setFormatter(formatter)
        log.addHandler(file_handler)
    return log


def important_info(log, msg):
    """The zoo's banner around a milestone message."""
    line = "*" * 70
    log.info("\n".join([line, line, "**", "**", "**        " + msg, "**", "**", line, line]))


def user_error_exit(err, log=None):
    """Prints a user-facing error (no traceback) and returns exit status 2."""
    message = f"error: {err}"
    if log is not None and log.handlers:
        log.error(message)
    else:
        print(message, file=sys.stderr)
    return 2
