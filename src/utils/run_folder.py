"""Run folders that cannot be clobbered: ``<root>/<name>/``, claimed by one job, locked while a process trains.

Name: ``$CSPDARKNET53_RUN_NAME`` (set by the launch scripts so that every rank writes one folder; one folder name,
never ``..`` or a path) or the zoo's timestamp, created with ``os.mkdir`` (``_1``, ``_2`` ... when taken). Claim:
the job's token goes into ``.run_id`` by ``os.link`` of a complete file (exactly one writer wins); the ranks of a
job agree on the token (one all-reduce), anyone else is refused, and a folder holding an older version's run
outputs counts as claimed. Lock: ``.lock_rank<r>`` held with ``flock`` while a process trains (released by the
kernel however the process ends), so two ``--resume`` of one run are refused with the holder's pid.
"""
import datetime
import errno
import fcntl
import os
import secrets

from src.errors import ConfigError

RUN_NAME_ENV = "CSPDARKNET53_RUN_NAME"
CLAIM_FILE = ".run_id"
#: what a run folder of an older version (no CLAIM_FILE) holds once training started
RUN_MARKERS = ("config.yaml", "run.json", "metrics.csv")


def run_name_from_env(environ=None):
    """``$CSPDARKNET53_RUN_NAME`` (None when unset or empty); ``ConfigError`` unless it is one folder name."""
    name = (os.environ if environ is None else environ).get(RUN_NAME_ENV) or None
    if name is None:
        return None
    seps = {os.sep, os.altsep} - {None}
    if name in (".", "..") or any(s in name for s in seps) or "\0" in name or name != name.strip():
        raise ConfigError(f"environment variable {RUN_NAME_ENV}={name!r}: a run name is one folder name inside "
                          "ckpt_path (no path separator, not '.' or '..', no surrounding spaces)")
    return name


def holds_run(path):
    """Whether the folder ``path`` already belongs to a run: claimed, or holding a run's outputs."""
    if not os.path.isdir(path):
        return False
    names = os.listdir(path)
    return CLAIM_FILE in names or any(n in RUN_MARKERS or n.startswith("ckpt_") for n in names)


def _claimed_by(path):
    try:
        with open(os.path.join(path, CLAIM_FILE), encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return None


def job_token():
    """A random token shared by every rank of this job: rank 0's, sent to the others with one all-reduce when
    MindSpore's collective communication is initialised with more than one rank."""
    parts = [secrets.randbelow(2 ** 20) for _ in range(3)]  # float32 holds integers below 2**24 exactly
    try:
        from mindspore.communication import GlobalComm, get_group_size, get_rank
        distributed = GlobalComm.INITED and get_group_size() > 1
    except (ImportError, RuntimeError):
        distributed = False
    if distributed:
        import numpy as np

        import mindspore as ms
        from mindspore import nn, ops

        class _Sum(nn.Cell):
            def __init__(self):
                super().__init__()
                self.all_reduce = ops.AllReduce(ops.ReduceOp.SUM)

            def construct(self, x):
                return self.all_reduce(x)

        mine = np.asarray(parts if get_rank() == 0 else [0, 0, 0], np.float32)
        parts = [int(v) for v in _Sum()(ms.Tensor(mine)).asnumpy()]
    return "-".join(f"{p:05x}" for p in parts)


def _taken(path, key):
    hint = (f"unset {RUN_NAME_ENV} (a leftover from an earlier job?) or set a new name; "
            if os.environ.get(RUN_NAME_ENV) else "")
    return ConfigError(f"{key}: the run folder {path} already holds another run; {hint}to continue that run use "
                       f"--resume={path}")


def check_run_name(root, single=True, key="ckpt_path"):
    """Checks ``$CSPDARKNET53_RUN_NAME`` before any work: one folder name, and for one process (``single``) not
    a folder holding a run (a distributed job's ranks share it; ``new_run_dir`` tells them from another job)."""
    name = run_name_from_env()
    path = os.path.join(os.path.abspath(root), name) if name else None
    if path and single and holds_run(path):
        raise _taken(path, key)


def claim_run_dir(path, token, key="ckpt_path"):
    """Claims the existing folder ``path`` for the job with ``token`` (``.run_id``); ``ConfigError`` when it
    belongs to another run (claimed with another token, or holding an older run's outputs)."""
    owner = _claimed_by(path)
    if owner is None and not holds_run(path):
        tmp = os.path.join(path, f".run_id.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(token + "\n")
        try:
            os.link(tmp, os.path.join(path, CLAIM_FILE))  # fails if it exists: exactly one claim wins
            return path
        except FileExistsError:
            owner = _claimed_by(path)
        finally:
            os.remove(tmp)
    if owner == token:
        return path
    raise _taken(path, key)


def new_run_dir(root, token=None, key="ckpt_path", prefix=""):
    """Creates and claims a new run folder under ``root`` (every rank calls it); returns its absolute path.
    ``prefix`` goes before the timestamp (eval: ``eval_``, never taken for a training run)."""
    token = token or job_token()
    root = os.path.abspath(root)
    shared = run_name_from_env()
    if shared:
        path = os.path.join(root, shared)
        os.makedirs(path, exist_ok=True)  # the launch scripts create it before the job starts
        return claim_run_dir(path, token, key)
    os.makedirs(root, exist_ok=True)
    base = os.path.join(root, prefix + datetime.datetime.now().strftime("%Y-%m-%d_time_%H_%M_%S"))
    for n in range(10000):
        path = base if n == 0 else f"{base}_{n}"
        try:
            os.mkdir(path)
        except FileExistsError:
            continue
        return claim_run_dir(path, token, key)
    raise ConfigError(f"{key}={root!r}: no free run folder name {base}_<n> left")


def _lock_path(run_dir, rank):
    return os.path.join(run_dir, f".lock_rank{int(rank)}")


def _lock(fd, exclusive, key, value, run_dir):
    """``flock`` of ``fd`` without waiting; ``ConfigError`` naming the holder's pid (``fd`` closed) when held."""
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except OSError as err:
        os.lseek(fd, 0, os.SEEK_SET)
        pid = os.read(fd, 64).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        if err.errno not in (errno.EAGAIN, errno.EACCES):
            raise
        raise ConfigError(f"{key}={value!r}: the run folder {run_dir} is in use: process {pid} is training into "
                          "it; wait for it to end or stop it (SIGTERM saves a checkpoint to resume from)") from None


def check_not_locked(run_dir, rank=0, key="resume", value=None):
    """``ConfigError`` when a process holds ``run_dir``'s lock of ``rank``; creates nothing."""
    try:
        fd = os.open(_lock_path(run_dir, rank), os.O_RDONLY)
    except OSError:
        return
    _lock(fd, False, key, run_dir if value is None else value, run_dir)
    os.close(fd)  # also releases the probe's shared lock


class RunLock:
    """The lock of ``run_dir`` for ``rank``, held from ``acquire()`` to ``release()`` or the process's end."""

    def __init__(self, run_dir, rank=0, key="resume", value=None):
        self.run_dir, self.path, self.fd = run_dir, _lock_path(run_dir, rank), None
        self.key, self.value = key, run_dir if value is None else value

    def acquire(self):
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        _lock(fd, True, self.key, self.value, self.run_dir)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def release(self):
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the flock
            self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
