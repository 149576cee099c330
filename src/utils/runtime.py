"""Run-time setup shared by the jobs: device, graph mode, distributed init, the run's log and context."""
import datetime
import json
import logging
import logging.handlers
import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from typing import List

from src.errors import DeviceError, DistributedInitError
from src.utils import signals

LOG_FORMAT = "%(asctime)s:%(levelname)s:%(message)s"  # the zoo's log-file format
DEVICE_PREFERENCE = ("Ascend", "GPU", "CPU")
PROJECT_LOGGER = "src"  # every library module logs under src.*: the run log gets their warnings too


@dataclass
class RunContext:
    """What a run learns about itself at start-up: the device, its rank and the run folder."""

    device_target: str
    rank: int = 0
    group_size: int = 1
    run_dir: str = ""
    settings: dict = field(default_factory=dict)   # performance settings applied (for the log)
    notes: List[str] = field(default_factory=list)  # what the program decided for the user (demo data ...)

    @property
    def is_main(self):
        return self.rank == 0

    def save(self, path, cfg=None, resumed_from=None):
        """Writes the context, versions and command line as JSON (``run.json``). A resumed run (``resumed_from``:
        the checkpoint) keeps the file and adds ``{started, argv, checkpoint}`` to its ``resumes`` list."""
        from src.utils.fileio import write_json_atomic

        started = datetime.datetime.now().isoformat(timespec="seconds")
        data = dict(asdict(self), python=platform.python_version(), argv=sys.argv, started=started)
        if resumed_from:
            try:
                with open(path, encoding="utf-8") as f:
                    data = dict(json.load(f))
            except (OSError, ValueError, TypeError):  # missing or unreadable: the resumed process's own record
                pass
            data.setdefault("resumes", []).append(dict(started=started, argv=sys.argv, checkpoint=resumed_from))
            return write_json_atomic(data, path)
        import mindspore

        data["mindspore"] = mindspore.__version__
        if cfg is not None:
            data.update(profile=cfg.profile, config_path=cfg.config_path, explicit_keys=sorted(cfg.explicit))
        return write_json_atomic(data, path)


def resolve_device_target(value):
    """``auto`` -> Ascend if present, else GPU, else CPU; a named target must be available."""
    import mindspore as ms

    if value == "auto":
        return next((target for target in DEVICE_PREFERENCE if ms.hal.is_available(target)), "CPU")
    if value not in DEVICE_PREFERENCE:
        raise DeviceError(f"device_target={value!r}: expected auto, Ascend, GPU or CPU")
    if not ms.hal.is_available(value):
        raise DeviceError(f"device_target={value}: this MindSpore installation has no usable {value} backend "
                          f"(available: {[t for t in DEVICE_PREFERENCE if ms.hal.is_available(t)]})")
    return value


def setup_device(device_target="auto", device_id=None, graph_mode=True):
    """Selects the device (``DEVICE_ID`` env when ``device_id`` is None) and graph mode; returns the target."""
    import mindspore as ms

    from src.config import launch_env

    target = resolve_device_target(device_target)
    if target == "CPU":
        ms.set_device("CPU")
    else:
        ms.set_device(target, launch_env().get("DEVICE_ID", 0) if device_id is None else device_id)
    ms.set_context(mode=ms.GRAPH_MODE if graph_mode else ms.PYNATIVE_MODE)
    return target


def init_distributed(enabled):
    """Initialises data parallelism (msrun on GPU/CPU, an HCCL rank table on Ascend; gradients averaged as
    the zoo's, BatchNorm statistics per rank); returns ``(rank, group_size)``."""
    if not enabled:
        return 0, 1
    import mindspore as ms
    from mindspore.communication import get_group_size, get_rank, init

    try:
        init()
    except RuntimeError as err:
        raise DistributedInitError("distributed init failed: launch with msrun (GPU/CPU) or "
                                   "scripts/run_distribute_train.sh (Ascend rank table), or set is_distributed=0. "
                                   f"MindSpore said: {str(err).strip().splitlines()[0] if str(err).strip() else err}"
                                   ) from None
    group_size = get_group_size()
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True,
                                 device_num=group_size)
    return get_rank(), group_size


def start_context(device_cfg, mode, network=True):
    """Device, CPU performance settings (``mode``: "train" or "infer"), distributed init, in that order;
    returns ``(RunContext, network_rewrites)`` (for ``src.utils.perf.prepare_network``)."""
    from src.config import resolve_is_distributed
    from src.utils.perf import apply_recommended_settings

    target = setup_device(device_cfg.device_target)
    applied, rewrites = apply_recommended_settings(target, mode, network=network)
    rank, group_size = init_distributed(resolve_is_distributed(device_cfg.is_distributed))
    signals.install()  # the device and communication set-up may have installed their own handlers
    settings = {**applied, **{k: v for k, v in rewrites.items() if v}}
    return RunContext(device_target=target, rank=rank, group_size=group_size, settings=settings), rewrites


class RunLog:
    """The run's log on the ``src`` logger (library warnings reach it), in the zoo's format: stdout (rank 0) and a
    file named by ``attach_file`` once the run starts (earlier lines buffered; a refused run writes no file)."""

    def __init__(self, name="run", console_level=logging.INFO):
        self.root = logging.getLogger(PROJECT_LOGGER)
        self.root.setLevel(logging.INFO)
        for handler in list(self.root.handlers):
            self.root.removeHandler(handler)
            handler.close()
        from src.utils.paths import SafeFormatter
        self.formatter = SafeFormatter(fmt=LOG_FORMAT)  # a file name that is not UTF-8 never loses a line
        # info lines to stdout; a program that prints its own results shows only warnings, on stderr
        self.stream = logging.StreamHandler(sys.stdout if console_level <= logging.INFO else sys.stderr)
        self.stream.setLevel(console_level)
        self.stream.setFormatter(self.formatter)
        self.root.addHandler(self.stream)
        self.buffer = logging.handlers.BufferingHandler(capacity=float("inf"))  # until the file is known
        self.root.addHandler(self.buffer)
        self.path = None
        self.file_handler = None
        self.log = logging.getLogger(f"{PROJECT_LOGGER}.{name}")

    def set_rank(self, rank):
        """Only rank 0 writes to stdout (every rank has its own log file)."""
        if rank != 0 and self.stream is not None:
            self.root.removeHandler(self.stream)
            self.stream = None

    def attach_file(self, path):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8", errors="backslashreplace")
        handler.setFormatter(self.formatter)
        for record in self.buffer.buffer:
            handler.emit(record)
        self.root.removeHandler(self.buffer)
        self.buffer.buffer = []
        self.root.addHandler(handler)
        self.path, self.file_handler = path, handler
        return path

    def file_only(self, level, message):
        """Writes one line to the log file alone (e.g. the error line that also goes to stderr)."""
        if self.file_handler is not None:
            self.file_handler.emit(self.log.makeRecord(self.log.name, level, "", 0, message, None, None))


def important_info(log, msg):
    """The zoo's banner around a milestone message."""
    line = "*" * 70
    log.info("\n".join([line, line, "**", "**", "**        " + msg, "**", "**", line, line]))


MAX_ERROR_LINE = 2000  # characters of an error line; longer messages keep their start and end


def user_error_exit(err, run_log=None):
    """Prints one ``error:`` line (at most ``MAX_ERROR_LINE`` characters) to stderr and the run's log file;
    returns exit status 2."""
    message = f"error: {err}"
    if len(message) > MAX_ERROR_LINE:
        head, tail = MAX_ERROR_LINE * 3 // 4, MAX_ERROR_LINE // 4 - 40
        message = f"{message[:head]} ...[{len(message) - head - tail} characters cut]... {message[-tail:]}"
    print(message, file=sys.stderr, flush=True)
    if run_log is not None:
        run_log.file_only(logging.ERROR, message)
    return 2
