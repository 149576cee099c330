"""Full decode check of image files, once, in isolated worker processes, cached in a manifest.

    results = verify_images(paths, workers=2, manifest="DATA/.cspdarknet53_verified.jsonl", root="DATA")
    # -> [VerifyResult(path, status, reason)], status "ok" | "convert" | "skip", in the order of ``paths``

Why: the cheap up-front check (``check_image_file``: first bytes, end marker) passes a JPEG whose entropy
data is corrupt, and MindSpore's C++ decoder can then crash the whole process (segfault, SIGFPE) or raise deep
inside the pipeline. Here every file is decoded in full by the decoder the pipeline uses (MindSpore's
``vision.Decode``; ``decoder="pil"`` uses PIL instead) in worker processes that may crash or hang without
taking the caller with them:

* workers are forked from a zygote process that imported the decoder once and never decodes anything
  itself, so a replacement after a crash starts in milliseconds with a fresh decoder state (a zygote that
  fails makes the rest start as new processes); idle clean workers serve the next call of the process for
  ``IDLE_KEEP_S`` seconds;
* each worker decodes one file at a time and answers over a pipe, so when a worker dies (signal, abort,
  ``exit``) the file it was decoding is the culprit: it is reported as ``skip`` with the signal and the last
  lines the decoder printed, the worker is restarted and the run carries on;
* a file that takes longer than ``timeout_s`` (a hang, or a decompression bomb) gets its worker killed and is
  reported the same way;
* anything the decoder prints to stderr while decoding a file (libjpeg's "Corrupt JPEG data: ..." warnings)
  is captured per file and kept in the reason of a file that still decodes (status stays ``ok``: the
  engine decodes it the same way in training).

Results are cached in a manifest (JSON lines: a header, then ``[key, size, mtime_ns, status, reason]`` per
file, the key being the path relative to ``root``) so that a later run, or another rank, only re-checks files
whose size or mtime changed. The manifest is written atomically (temporary file + ``os.replace``) and merged
with what is on disk just before each write, and it is saved every ``flush_every_s`` seconds during a long
check, so a killed check resumes where it stopped. Entries made by another decoder or check version are
ignored.

Several ranks (``rank``, ``group_size``): each rank checks its share of the files the manifest does not
cover (the share is a hash of the key, so it does not depend on what each rank found in the manifest),
writes it to ``<manifest>.rank<r>`` and waits until the manifest and the part files together cover every
file; rank 0 then merges them into the manifest and removes the parts. Every rank therefore ends with the
same results (the same list of usable files, which keeps the rank shards aligned), and the check uses the
cores of every host. Each rank announces itself (``<manifest>.live<r>``) before it checks; the share of a
rank that has not announced itself a few seconds after this rank finished its own is checked here (one
process that builds every rank's dataset in turn waits seconds, not minutes). A rank that waits longer than
``wait_timeout_s`` (a peer died, or the part files are
not on a shared file system) checks the rest itself.
"""
from __future__ import annotations

import atexit
import errno
import json
import logging
import math
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import deque
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

from src.utils.host import available_cpus

logger = logging.getLogger(__name__)

OK = "ok"
CONVERT = "convert"
SKIP = "skip"

MANIFEST_FORMAT = "cspdarknet53-verify-manifest"
MANIFEST_VERSION = 1
#: bumped whenever the check itself changes, so that older manifest entries are checked again
CHECK_VERSION = 1
DEFAULT_MANIFEST_NAME = ".cspdarknet53_verified.jsonl"  # hidden: the folder listing ignores it

#: with ``workers=0``, one more decoder process per this many files to check (a start costs ~1.3 CPU-s, the
#: decoding of ~600 files)
FILES_PER_WORKER = 500
#: workers are forked from a zygote process that imported the decoder once (a restart after a crash costs
#: milliseconds instead of a MindSpore import); False, or a zygote that fails, starts each worker as a new
#: process
USE_ZYGOTE = True
ZYGOTE_START_TIMEOUT_S = 300.0
FORK_READY_TIMEOUT_S = 30.0
#: ranks: how long (plus this rank's own check time) a rank waits for its peers to announce themselves, and
#: how old an announcement may be (from before this rank started) to count
ANNOUNCE_GRACE_S = 5.0
ANNOUNCE_FRESH_S = 600.0
AUTO_PROGRESS_FILES = 2000

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_MAX_WARNING_CHARS = 300


class VerifyError(RuntimeError):
    """The check itself cannot run (the decoder worker does not start); names the decoder and its output."""


class VerifyResult(NamedTuple):
    path: str
    status: str   # OK | CONVERT | SKIP
    reason: str


# ---------------------------------------------------------------------------------------------------
# checks run inside a worker
# ---------------------------------------------------------------------------------------------------
def _cheap_check(path: str) -> Tuple[str, str]:
    from src.data.checks import check_image_file
    return check_image_file(path)


_NOISE = re.compile(r"\[ ?(?:WARN|INFO|ERROR):[^\]]*\] global \S+ \S+ ")  # OpenCV's log prefix


def _first_line(exc: BaseException) -> str:
    """MindSpore's errors wrap the message in banners and a C++ call stack; keep the message."""
    text = str(exc)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith(("[ERROR]", "[Internal ERROR]")):
            ln = ln.split("]", 1)[1].strip()
            ln = ln.split(" Dump the abnormal image")[0].strip()
            return ln[:_MAX_WARNING_CHARS]
    return (lines[0] if lines else type(exc).__name__)[:_MAX_WARNING_CHARS]


def _clean_said(text: str) -> str:
    lines = [_NOISE.sub("", ln).strip() for ln in text.splitlines()]
    return " | ".join(ln for ln in lines if ln)[:_MAX_WARNING_CHARS]


def _make_mindspore_check() -> Callable[[str], Tuple[str, str]]:
    import numpy as np
    import mindspore.dataset.vision as V

    decode = V.Decode()

    def check(path):
        status, reason = _cheap_check(path)
        if status != OK:
            return status, reason  # SKIP: cheap reason is enough; CONVERT: PIL decoded it in full already
        try:
            data = np.fromfile(path, dtype=np.uint8)
        except OSError as exc:
            return SKIP, f"cannot read: {exc}"
        try:
            img = decode(data)
        except Exception as exc:  # RuntimeError from the C++ decoder
            return SKIP, f"{reason}: the decoder fails: {_first_line(exc)}"
        shape = getattr(img, "shape", ())
        if len(shape) != 3 or shape[2] != 3 or shape[0] < 1 or shape[1] < 1:
            return SKIP, f"{reason}: the decoder gives an image of shape {tuple(shape)}"
        return OK, reason

    return check


def _make_pil_check() -> Callable[[str], Tuple[str, str]]:
    from PIL import Image

    def check(path):
        status, reason = _cheap_check(path)
        if status != OK:
            return status, reason
        try:
            with Image.open(path) as im:
                im.load()
        except Exception as exc:
            return SKIP, f"{reason}: PIL cannot decode it: {type(exc).__name__}: {exc}"[:_MAX_WARNING_CHARS * 2]
        return OK, reason

    return check


def _make_check(decoder: str) -> Callable[[str], Tuple[str, str]]:
    if decoder == "mindspore":
        return _make_mindspore_check()
    if decoder == "pil":
        return _make_pil_check()
    if decoder == "cheap":
        return _cheap_check
    if ":" in decoder:  # "package.module:function" returning (status, reason) for a path (tests, experiments)
        import importlib
        mod, fn = decoder.split(":", 1)
        return getattr(importlib.import_module(mod), fn)
    raise ValueError(f"unknown decoder {decoder!r} (mindspore, pil, cheap or module:function)")


def decoder_id(decoder: str) -> str:
    """What the manifest records about the decoder; entries with another id are checked again."""
    if decoder == "mindspore":
        try:
            from importlib.metadata import version
            v = version("mindspore")
        except Exception:
            v = "?"
        return f"mindspore-{v}/check{CHECK_VERSION}"
    if decoder == "pil":
        import PIL
        return f"pil-{PIL.__version__}/check{CHECK_VERSION}"
    return f"{decoder}/check{CHECK_VERSION}"


def _worker_main(argv: Sequence[str]) -> None:
    """Worker loop: ``argv = [_, decoder, stderr_file, parent pid]``; requests ``<id> <hex path>`` on stdin, answers
    ``<id> <status> <json reason>`` on the original stdout. The decoder's own stdout and stderr output both go
    to ``stderr_file``; what it wrote while decoding a file is attached to that file's reason."""
    decoder, err_path = argv[1], argv[2]
    try:  # die with the parent even when stuck in a decoder (Linux); the parent kills on timeouts itself
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if len(argv) > 3 and os.getppid() != int(argv[3]):
            return  # the parent died before the call
    except Exception:
        pass
    proto = os.fdopen(os.dup(1), "w", buffering=1, encoding="ascii")
    os.dup2(2, 1)  # C-level prints of the decoder must not corrupt the protocol
    check = _make_check(decoder)
    if len(argv) > 4 and argv[4]:  # a known-good file must decode before the worker says it is ready
        status, reason = check(argv[4])
        if status != OK:
            raise VerifyError(f"the decoder fails on a known-good image: {reason}")
    err_reader = open(err_path, "rb")
    proto.write("READY\n")
    for line in sys.stdin.buffer:
        ident, hexpath = line.split()
        path = os.fsdecode(bytes.fromhex(hexpath.decode("ascii")))
        sys.stderr.flush()
        before = os.fstat(2).st_size
        try:
            status, reason = check(path)
        except Exception as exc:  # a bug or an unexpected error: unusable, with the reason
            status, reason = SKIP, f"check failed: {type(exc).__name__}: {exc}"
        sys.stderr.flush()
        after = os.fstat(2).st_size
        if after > before:
            err_reader.seek(before)
            said = _clean_said(err_reader.read(min(after - before, 4096)).decode("utf-8", "backslashreplace"))
            if said:
                reason = f"{reason} (decoder said: {said})"
        proto.write(f"{ident.decode('ascii')} {status} {json.dumps(reason, ensure_ascii=True)}\n")


_BOOT = ("import sys; sys.path.insert(0, {root!r}); "
         "from src.data.verify import _worker_main; _worker_main(sys.argv)")
_ZYGOTE_BOOT = ("import sys; sys.path.insert(0, {root!r}); "
                "from src.data.verify import _zygote_main; _zygote_main(sys.argv)")


def _preload(decoder: str) -> None:
    """What a zygote imports once, so that the workers it forks start in milliseconds."""
    import numpy  # noqa: F401
    if decoder == "mindspore":
        import mindspore.dataset.vision  # noqa: F401
    elif decoder == "pil":
        import PIL.Image  # noqa: F401
    elif ":" in decoder:
        import importlib
        importlib.import_module(decoder.split(":", 1)[0])
    import src.data.checks  # noqa: F401


def _zygote_main(argv: Sequence[str]) -> None:
    """A process that has imported the decoder once and forks fresh workers on request (``argv = [_, decoder,
    socket fd, parent pid]``). Requests on the socket: ``F <hex err path> <hex self-test path>`` with the
    worker's stdin, stdout and stderr as passed file descriptors -> ``P <pid>``; ``W <pid> <0|1>`` (1: do
    not block) -> ``S <status>`` (a Popen-style return code) or ``S R`` while it runs. Each worker is a
    child of the zygote, started by ``fork`` from a process that never decoded anything (a fresh decoder
    state, as a new process has)."""
    import socket

    decoder, fd, parent = argv[1], int(argv[2]), int(argv[3])
    try:
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the caller
        if os.getppid() != parent:
            return
    except Exception:
        pass
    sock = socket.socket(fileno=fd)
    _preload(decoder)
    sock.sendall(b"READY\n")
    while True:
        msg, fds, _, _ = socket.recv_fds(sock, 4096, 3)
        if not msg:
            return
        parts = msg.decode("ascii").split()
        if parts[0] == "F":
            pid = os.fork()
            if pid == 0:  # the worker
                try:
                    sock.close()
                    for target, f in zip((0, 1, 2), fds):
                        os.dup2(f, target)
                    for f in fds:
                        os.close(f)
                    os.setsid()
                    err = os.fsdecode(bytes.fromhex(parts[1]))
                    selftest = os.fsdecode(bytes.fromhex(parts[2])) if len(parts) > 2 else ""
                    _worker_main(["worker", decoder, err, str(os.getppid()), selftest])
                finally:
                    os._exit(0)
            for f in fds:
                os.close(f)
            sock.sendall(b"P %d\n" % pid)
        elif parts[0] == "W":
            pid, nohang = int(parts[1]), parts[2] == "1"
            try:
                got, status = os.waitpid(pid, os.WNOHANG if nohang else 0)
            except ChildProcessError:
                got, status = pid, 0
            if got == 0:
                sock.sendall(b"S R\n")
            else:
                rc = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
                sock.sendall(b"S %d\n" % rc)


# ---------------------------------------------------------------------------------------------------
# worker pool (parent side)
# ---------------------------------------------------------------------------------------------------
def _signal_name(rc: int) -> str:
    if rc is not None and rc < 0:
        try:
            return signal.Signals(-rc).name
        except ValueError:
            return f"signal {-rc}"
    return f"exit status {rc}"


class _Zygote:
    """The parent's end of a zygote process (see ``_zygote_main``); ``broken`` once it fails (then workers are
    started as new processes, the slow way)."""

    def __init__(self, decoder: str, workdir: str, env: Dict[str, str]):
        import socket

        self.decoder, self.broken = decoder, False
        self.lock = threading.Lock()
        ours, theirs = socket.socketpair()
        self.sock = ours
        self.err = open(os.path.join(workdir, f"zygote-{os.getpid()}.err"), "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _ZYGOTE_BOOT.format(root=_ROOT), decoder, str(theirs.fileno()), str(os.getpid())],
            stdin=subprocess.DEVNULL, stdout=self.err, stderr=self.err, cwd=workdir, env=env,
            pass_fds=(theirs.fileno(),), start_new_session=True)
        theirs.close()
        self.sock.settimeout(ZYGOTE_START_TIMEOUT_S)
        try:
            self.broken = self._line() != "READY"
        except OSError:
            self.broken = True
        self.sock.settimeout(30.0)

    def _line(self) -> str:
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = self.sock.recv(256)
            if not chunk:
                raise OSError("the zygote closed its socket")
            buf += chunk
        return buf.decode("ascii").strip()

    def alive(self) -> bool:
        return not self.broken and self.proc.poll() is None

    def fork(self, stdin_r: int, stdout_w: int, stderr_w: int, err_path: str, selftest: str) -> int:
        import socket

        with self.lock:
            msg = b"F %s %s" % (os.fsencode(err_path).hex().encode(), os.fsencode(selftest).hex().encode())
            socket.send_fds(self.sock, [msg], [stdin_r, stdout_w, stderr_w])
            reply = self._line()
        if not reply.startswith("P "):
            raise OSError(f"unexpected zygote reply {reply!r}")
        return int(reply[2:])

    def status(self, pid: int, block: bool) -> Optional[int]:
        with self.lock:
            self.sock.sendall(b"W %d %d" % (pid, 0 if block else 1))
            reply = self._line()
        return None if reply == "S R" else int(reply[2:])

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.err.close()


class _ForkedProc:
    """The few ``Popen`` methods ``_Worker`` uses, for a worker forked by a zygote."""

    def __init__(self, zygote: _Zygote, pid: int, stdin, stdout):
        self.zygote, self.pid, self.stdin, self.stdout = zygote, pid, stdin, stdout
        self.returncode: Optional[int] = None

    def poll(self) -> Optional[int]:
        if self.returncode is None:
            try:
                self.returncode = self.zygote.status(self.pid, block=False)
            except OSError:
                self.returncode = -signal.SIGKILL  # the zygote is gone, and its workers with it
        return self.returncode

    def wait(self, timeout: Optional[float] = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            if deadline is None:
                try:
                    self.returncode = self.zygote.status(self.pid, block=True)
                except OSError:
                    self.returncode = -signal.SIGKILL
            elif self.poll() is None:
                if time.monotonic() > deadline:
                    raise subprocess.TimeoutExpired("worker", timeout)
                time.sleep(0.01)
        return self.returncode

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except OSError:
            pass


class _Worker:
    def __init__(self, decoder: str, workdir: str, serial: int, env: Dict[str, str],
                 zygote: Optional[_Zygote] = None):
        self.decoder = decoder
        self.idle_since = 0.0
        self.err_path = os.path.join(workdir, f"worker{serial}.err")
        self._err = open(self.err_path, "ab")
        self.zygote = None
        selftest = _selftest_image(workdir) if decoder == "mindspore" else ""
        if zygote is not None and zygote.alive():
            stdin_r, stdin_w = os.pipe()
            stdout_r, stdout_w = os.pipe()
            try:
                pid = zygote.fork(stdin_r, stdout_w, self._err.fileno(), self.err_path, selftest)
            except OSError:
                zygote.broken = True
                for f in (stdin_r, stdin_w, stdout_r, stdout_w):
                    os.close(f)
            else:
                os.close(stdin_r)
                os.close(stdout_w)
                self.zygote = zygote
                self.proc = _ForkedProc(zygote, pid, os.fdopen(stdin_w, "wb", 0), os.fdopen(stdout_r, "rb", 0))
        if self.zygote is None:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT.format(root=_ROOT), decoder, self.err_path, str(os.getpid()),
                 selftest], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err, cwd=workdir,
                env=env, bufsize=0, start_new_session=True)
        self.fd = self.proc.stdout.fileno()
        self.buf = b""
        self.ready = False
        self.busy: Optional[Tuple[int, float]] = None  # (index, start time)
        self.err_mark = 0
        self.done = 0  # files answered
        self.dirty = False  # answered a file that failed or made the decoder print something
        self.started = time.monotonic()

    def send(self, index: int, path: str) -> bool:
        try:
            self.err_mark = os.path.getsize(self.err_path)
        except OSError:
            self.err_mark = 0
        try:
            self.proc.stdin.write(b"%d %s\n" % (index, os.fsencode(path).hex().encode("ascii")))
        except (BrokenPipeError, OSError):
            return False
        self.busy = (index, time.monotonic())
        return True

    def err_tail(self, chars: int = _MAX_WARNING_CHARS) -> str:
        """What the worker printed since it was given its current file (or since it started)."""
        try:
            with open(self.err_path, "rb") as f:
                f.seek(self.err_mark)
                text = f.read(16384).decode("utf-8", "backslashreplace")
        except OSError:
            return ""
        return _clean_said(text)[:chars]

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self._err):
            try:
                f.close()
            except OSError:
                pass

    def close(self) -> None:
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.kill()


def _selftest_image(workdir: str) -> str:
    """A tiny good JPEG in ``workdir`` that every MindSpore worker decodes before it says it is ready."""
    path = os.path.join(workdir, "selftest.jpg")
    if not os.path.exists(path):
        import io

        from PIL import Image
        buf = io.BytesIO()
        Image.new("RGB", (16, 16), (90, 140, 200)).save(buf, format="JPEG", quality=90)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(buf.getvalue())
        os.replace(tmp, path)
    return path


def _worker_env() -> Dict[str, str]:
    env = dict(os.environ)
    env.setdefault("GLOG_v", "3")          # MindSpore: errors only
    env.setdefault("OMP_NUM_THREADS", "1")  # one file at a time per worker; parallelism is the worker count
    env["PYTHONPATH"] = _ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


# Workers outlive one ``verify_images`` call: a clean, idle worker (it decoded only files that gave no error
# and no decoder message) is kept for IDLE_KEEP_S seconds, so that the train and validation sets of one run,
# or the many small datasets of a test session, pay the worker start-up (a MindSpore import, ~1.3 CPU-s)
# once. ``shutdown_workers`` (also at exit) ends them; each also dies with its parent (PR_SET_PDEATHSIG).
IDLE_KEEP_S = 60.0
_pool_lock = threading.Lock()
_idle: List[_Worker] = []
_pool_state = {"dir": None, "serial": 0, "timer": None, "active": 0, "last_used": 0.0}


def _pool_dir() -> str:
    with _pool_lock:
        d = _pool_state["dir"]
        if d is None or not os.path.isdir(d):
            d = _pool_state["dir"] = tempfile.mkdtemp(prefix="cspdarknet53_verify_")
        return d


def _next_serial() -> int:
    with _pool_lock:
        _pool_state["serial"] += 1
        return _pool_state["serial"]


_zygotes: Dict[str, "_Zygote"] = {}


def _get_zygote(decoder: str, workdir: str, env: Dict[str, str]) -> Optional["_Zygote"]:
    """The zygote of ``decoder`` (started once per process), or None when it cannot be used."""
    with _pool_lock:
        z = _zygotes.get(decoder)
        if z is not None and z.alive():
            return z
        if z is not None:
            if z.broken:
                return None  # failed before: the slow way for the rest of this process
            z.close()
        z = _zygotes[decoder] = _Zygote(decoder, workdir, env)
        return z if z.alive() else None


def _take_idle(decoder: str, k: int) -> List[_Worker]:
    out = []
    with _pool_lock:
        for w in list(_idle):
            if len(out) >= k:
                break
            if w.decoder == decoder:
                _idle.remove(w)
                if w.proc.poll() is None:
                    out.append(w)
                else:
                    w.kill()
    return out


def _reap_idle() -> None:
    """Ends idle workers older than IDLE_KEEP_S, and the zygotes once nothing used them for as long."""
    now = time.monotonic()
    zs = []
    with _pool_lock:
        old = [w for w in _idle if now - w.idle_since >= IDLE_KEEP_S or w.proc.poll() is not None]
        for w in old:
            _idle.remove(w)
        if not _idle and _pool_state["active"] == 0 and now - _pool_state["last_used"] >= IDLE_KEEP_S:
            zs = list(_zygotes.values())  # ~600 MB of address space each (MindSpore imported): not kept
            _zygotes.clear()
        _pool_state["timer"] = None
        if _idle or _zygotes:
            _schedule_reaper_locked()
    for w in old:
        w.kill()
    for z in zs:
        z.close()


def _schedule_reaper_locked() -> None:
    if _pool_state["timer"] is None:
        t = threading.Timer(IDLE_KEEP_S / 2, _reap_idle)
        t.daemon = True
        _pool_state["timer"] = t
        t.start()


def _give_back(w: _Worker) -> None:
    w.idle_since = time.monotonic()
    with _pool_lock:
        _idle.append(w)
        _schedule_reaper_locked()


def shutdown_workers() -> None:
    """Ends the idle decoder workers kept for later calls (at exit too)."""
    with _pool_lock:
        ws = list(_idle)
        _idle.clear()
        zs = list(_zygotes.values())
        _zygotes.clear()
        t, _pool_state["timer"] = _pool_state["timer"], None
        d, _pool_state["dir"] = _pool_state["dir"], None
    if t is not None:
        t.cancel()
    for w in ws:
        w.close()
    for z in zs:
        z.close()
    if d:
        shutil.rmtree(d, ignore_errors=True)


atexit.register(shutdown_workers)


def _run_workers(paths: Sequence[str], indices: Sequence[int], decoder: str, workers: int, timeout_s: float,
                 on_result: Callable[[int, str, str], None], startup_timeout_s: float = 300.0) -> Dict[str, int]:
    """Check ``paths[i]`` for i in ``indices`` in ``workers`` processes; ``on_result(i, status, reason)``.

    A file on which a worker dies or hangs after the worker met a bad file (one that failed, or made the
    decoder print a warning) is not blamed at once: a decoder can leave its state corrupted after a bad file
    (measured: after some corrupt JPEGs MindSpore's RandomCropDecodeResize segfaults on a later file that
    decodes fine on its own). Such a file is checked again as the first file of a fresh worker, and only
    blamed if it crashes or hangs there too."""
    stats = {"crashed": 0, "timed_out": 0, "restarts": 0, "collateral": 0}
    if not indices:
        return stats
    workdir = _pool_dir()
    env = _worker_env()
    pending = deque(indices)
    confirm: deque = deque()          # (index, what happened the first time)
    first_fault: Dict[int, str] = {}
    pool: List[_Worker] = []
    sel = selectors.DefaultSelector()
    failed_starts = 0
    workers = max(1, min(int(workers), len(indices)))

    with _pool_lock:
        _pool_state["active"] += 1
    try:
        zygote = _get_zygote(decoder, workdir, env) if USE_ZYGOTE else None
    except Exception as exc:  # e.g. no socketpair / send_fds here: the slow way
        logger.debug("no zygote for the %s decoder: %s", decoder, exc)
        zygote = None

    def start() -> _Worker:
        w = _Worker(decoder, workdir, _next_serial(), env, zygote)
        sel.register(w.fd, selectors.EVENT_READ, w)
        pool.append(w)
        return w

    def adopt(w: _Worker) -> None:
        sel.register(w.fd, selectors.EVENT_READ, w)
        pool.append(w)

    def retire(w: _Worker) -> None:
        try:
            sel.unregister(w.fd)
        except (KeyError, ValueError):
            pass
        w.kill()
        if w in pool:
            pool.remove(w)

    def fault(w: _Worker, what: str) -> None:
        """The worker died or hung on its current file: confirm in a fresh worker, or blame."""
        if w.busy is None:
            return
        # blame at once when everything this worker decoded before was clean (no error, no decoder message):
        # then nothing can have corrupted its state; else confirm in a fresh worker first
        index, fresh = w.busy[0], not w.dirty
        w.busy = None
        said = w.err_tail()
        reason = what + (f" (decoder said: {said})" if said else "")
        if fresh:
            first_fault.pop(index, None)
            if "crashed" in what:
                stats["crashed"] += 1
            else:
                stats["timed_out"] += 1
            on_result(index, SKIP, reason)
        else:
            first_fault[index] = reason
            confirm.append(index)

    def replace_if_needed() -> None:
        want_fresh = len(confirm) > sum(1 for w in pool if w.done == 0 and w.busy is None)
        if (pending or confirm) and len(pool) < workers:
            stats["restarts"] += 1
            start()
        elif want_fresh:  # recycle an idle worker that has decoded files into a fresh one
            idle = [w for w in pool if w.ready and w.busy is None and w.done > 0]
            if idle:
                retire(idle[0])
                stats["restarts"] += 1
                start()

    try:
        for w in _take_idle(decoder, workers):
            adopt(w)
        while len(pool) < workers:
            start()
        while pending or confirm or any(w.busy for w in pool):
            for w in list(pool):
                if not w.ready or w.busy is not None:
                    continue
                if confirm and w.done == 0:
                    i = confirm.popleft()
                elif pending:
                    i = pending.popleft()
                else:
                    continue
                if not w.send(i, paths[i]):
                    (confirm if i in first_fault else pending).appendleft(i)
            replace_if_needed()
            now = time.monotonic()
            deadlines = [w.busy[1] + timeout_s for w in pool if w.busy] + \
                        [w.started + startup_timeout_s for w in pool if not w.ready]
            wait = max(0.0, min(deadlines) - now) if deadlines else 1.0
            for key, _ in sel.select(timeout=min(wait, 1.0)):
                w = key.data
                try:
                    chunk = os.read(w.fd, 65536)
                except OSError:
                    chunk = b""
                if not chunk:  # the worker died
                    rc = w.proc.wait()
                    if w.zygote is not None and (not w.ready or not w.zygote.alive()):
                        # a forked worker that did not start, or died with its zygote: not the file's doing;
                        # start workers the slow way from now on, and check the file again
                        w.zygote.broken = True
                        if w.busy is not None:
                            pending.appendleft(w.busy[0])
                            w.busy = None
                        retire(w)
                        replace_if_needed()
                        continue
                    if not w.ready:
                        failed_starts += 1
                        tail = w.err_tail(2000)
                        retire(w)
                        if failed_starts >= 3:
                            raise VerifyError(f"the {decoder!r} decoder worker does not start "
                                              f"({_signal_name(rc)}): {tail}")
                    else:
                        fault(w, f"the decoder crashed on this file ({_signal_name(rc)})")
                        retire(w)
                    replace_if_needed()
                    continue
                w.buf += chunk
                while b"\n" in w.buf:
                    line, w.buf = w.buf.split(b"\n", 1)
                    if line == b"READY":
                        w.ready = True
                        failed_starts = 0
                        continue
                    ident, status, reason = line.decode("ascii").split(" ", 2)
                    index = int(ident)
                    if w.busy and w.busy[0] == index:
                        w.busy = None
                    w.done += 1
                    reason_text = json.loads(reason)
                    if status == SKIP or "(decoder said:" in reason_text:
                        w.dirty = True
                    if index in first_fault:
                        stats["collateral"] += 1
                        logger.debug("%s: fine in a fresh worker; the first worker died on it after other "
                                     "files (%s)", paths[index], first_fault.pop(index))
                    on_result(index, status, reason_text)
            now = time.monotonic()
            for w in list(pool):
                if w.busy and now - w.busy[1] > timeout_s:
                    w.kill()  # before reading what it said, so that the error file is complete
                    fault(w, f"the decoder did not finish this file within {timeout_s:g} s (killed)")
                    retire(w)
                    replace_if_needed()
                elif not w.ready and w.zygote is not None and now - w.started > FORK_READY_TIMEOUT_S:
                    w.zygote.broken = True   # a forked worker should be ready in milliseconds
                    retire(w)
                    replace_if_needed()
                elif not w.ready and now - w.started > startup_timeout_s:
                    tail = w.err_tail(2000)
                    retire(w)
                    raise VerifyError(f"the {decoder!r} decoder worker did not start within "
                                      f"{startup_timeout_s:g} s: {tail}")
            if (pending or confirm) and not pool:
                start()
    finally:
        for w in list(pool):
            try:
                sel.unregister(w.fd)
            except (KeyError, ValueError):
                pass
            if w.ready and w.busy is None and not w.dirty and not w.buf and w.proc.poll() is None:
                _give_back(w)   # clean: kept for the next call
            else:
                w.close()
        sel.close()
        with _pool_lock:
            _pool_state["active"] -= 1
            _pool_state["last_used"] = time.monotonic()
            _schedule_reaper_locked()
    return stats


# ---------------------------------------------------------------------------------------------------
# manifest
# ---------------------------------------------------------------------------------------------------
Entry = Tuple[int, int, str, str]  # size, mtime_ns, status, reason


def default_manifest_path(data_dir: str) -> str:
    """``DATA/.cspdarknet53_verified.jsonl`` if the folder is writable, else a file in the user cache
    named after the folder (``$CSPDARKNET53_CACHE`` or ``~/.cache/cspdarknet53``, ``verify/``)."""
    data_dir = os.path.abspath(data_dir)
    if os.access(data_dir, os.W_OK):
        return os.path.join(data_dir, DEFAULT_MANIFEST_NAME)
    cache = os.environ.get("CSPDARKNET53_CACHE") or os.path.join(os.path.expanduser("~"), ".cache",
                                                                   "cspdarknet53")
    tag = "%08x" % (zlib.crc32(os.fsencode(data_dir)) & 0xFFFFFFFF)
    name = os.path.basename(data_dir.rstrip(os.sep)) or "root"
    return os.path.join(cache, "verify", f"{name}-{tag}.jsonl")


class Manifest:
    """Verification results keyed by path (relative to ``root``), size and mtime_ns."""

    def __init__(self, path: str, root: Optional[str] = None, decoder: str = "mindspore"):
        self.path = os.path.abspath(path)
        self.root = os.path.abspath(root) if root else None
        self.decoder_id = decoder_id(decoder)
        self.entries: Dict[str, Entry] = {}
        self.new_keys = set()  # keys put by this run
        self._warned_write = False

    def key(self, path: str) -> str:
        ap = os.path.abspath(path)
        if self.root:
            rel = os.path.relpath(ap, self.root)
            if not rel.startswith(os.pardir + os.sep) and rel != os.pardir:
                return rel
        return ap

    def _read_file(self, path: str) -> Dict[str, Entry]:
        """Entries of one manifest file; {} if absent, unreadable, or made by another decoder/check."""
        try:
            with open(path, "r", encoding="utf-8") as f:
                header = f.readline()
                try:
                    head = json.loads(header)
                except ValueError:
                    logger.warning("ignoring verification manifest %s: not a manifest", path)
                    return {}
                if not isinstance(head, dict) or head.get("format") != MANIFEST_FORMAT:
                    logger.warning("ignoring verification manifest %s: not a manifest", path)
                    return {}
                if head.get("decoder") != self.decoder_id:
                    logger.info("verification manifest %s was made by %s, not %s: its files are checked again",
                                path, head.get("decoder"), self.decoder_id)
                    return {}
                out: Dict[str, Entry] = {}
                for line in f:
                    try:
                        k, size, mtime, status, reason = json.loads(line)
                    except ValueError:
                        continue  # a torn last line (should not happen with atomic writes) or junk
                    out[k] = (int(size), int(mtime), str(status), str(reason))
                return out
        except FileNotFoundError:
            return {}
        except OSError as exc:
            logger.warning("cannot read verification manifest %s: %s", path, exc)
            return {}

    def load(self) -> "Manifest":
        self.entries.update(self._read_file(self.path))
        return self

    def lookup(self, path: str, size: int, mtime_ns: int) -> Optional[Tuple[str, str]]:
        e = self.entries.get(self.key(path))
        if e is not None and e[0] == size and e[1] == mtime_ns:
            return e[2], e[3]
        return None

    def put(self, path: str, size: int, mtime_ns: int, status: str, reason: str) -> None:
        k = self.key(path)
        self.entries[k] = (int(size), int(mtime_ns), status, reason)
        self.new_keys.add(k)

    def write(self, path: Optional[str] = None, merge: bool = True, only_new: bool = False) -> bool:
        """Atomically write the entries (merged with what the file holds now, ours winning) to ``path``
        (default: the manifest); ``only_new``: just the entries ``put`` this run (a rank's part file).
        Returns False, with one warning, when the folder is not writable."""
        path = os.path.abspath(path or self.path)
        entries = {k: self.entries[k] for k in self.new_keys} if only_new else self.entries
        if merge:
            on_disk = self._read_file(path)
            if on_disk:
                on_disk.update(entries)
                entries = on_disk
        folder = os.path.dirname(path)
        try:
            os.makedirs(folder, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
        except OSError as exc:
            if not self._warned_write:
                logger.warning("cannot write the verification manifest %s (%s); files will be checked again "
                               "next time", path, exc)
                self._warned_write = True
            return False
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(json.dumps({"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION,
                                    "decoder": self.decoder_id, "root": self.root}, ensure_ascii=True) + "\n")
                for k in sorted(entries):
                    size, mtime, status, reason = entries[k]
                    # ensure_ascii keeps names that are not valid UTF-8 (surrogate escapes) lossless
                    f.write(json.dumps([k, size, mtime, status, reason], ensure_ascii=True) + "\n")
            mask = os.umask(0)
            os.umask(mask)
            os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes 0600: other users' ranks must read it too
            os.replace(tmp, path)
        except BaseException:
            try:
                os.remove(tmp)
            except OSError:
                pass
            raise
        return True

    def part_path(self, rank: int) -> str:
        return f"{self.path}.rank{int(rank)}"

    def announce_path(self, rank: int) -> str:
        return f"{self.path}.live{int(rank)}"

    def announce(self, rank: int) -> None:
        """Tells the other ranks that this one is checking its share (a file whose mtime is the time)."""
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            with open(self.announce_path(rank), "w") as f:
                f.write(f"{os.getpid()}\n")
        except OSError:
            pass

    def announce_paths(self) -> List[str]:
        folder, base = os.path.split(self.path)
        try:
            names = os.listdir(folder)
        except OSError:
            return []
        prefix = base + ".live"
        return [os.path.join(folder, n) for n in names if n.startswith(prefix) and n[len(prefix):].isdigit()]

    def announced(self, since: float) -> set:
        """Ranks that announced themselves at ``since`` (a time.time()) or later."""
        out = set()
        for p in self.announce_paths():
            try:
                if os.path.getmtime(p) >= since:
                    out.add(int(p.rsplit(".live", 1)[1]))
            except (OSError, ValueError):
                pass
        return out

    def part_paths(self) -> List[str]:
        folder, base = os.path.split(self.path)
        try:
            names = os.listdir(folder)
        except OSError:
            return []
        prefix = base + ".rank"
        return [os.path.join(folder, n) for n in names if n.startswith(prefix) and n[len(prefix):].isdigit()]


# ---------------------------------------------------------------------------------------------------
# verify_images
# ---------------------------------------------------------------------------------------------------
def _stat(path: str):
    """(size, mtime_ns) of a regular file, or (None, reason) when it cannot be used."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        try:
            os.lstat(path)
            return None, "broken symbolic link"
        except OSError:
            return None, "missing file"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None, "symbolic link loop"
        return None, f"cannot read: {exc.strerror or exc}"
    import stat as _st
    if not _st.S_ISREG(st.st_mode):
        return None, "not a regular file"
    if st.st_size == 0:
        return None, "empty file"
    return (st.st_size, st.st_mtime_ns), None


def _share(key: str, group_size: int) -> int:
    return zlib.crc32(key.encode("utf-8", "surrogateescape")) % group_size


class _Progress:
    """A tqdm bar on a terminal; otherwise (a log file, a batch job) one log line every 30 s."""

    def __init__(self, total: int, enabled: Optional[bool], desc: str):
        self.bar = None
        if enabled is None:  # auto: a check long enough to wonder about (> ~5 s of decoding)
            enabled = total >= AUTO_PROGRESS_FILES
        self.enabled = bool(enabled) and total > 0
        self.total, self.done, self.t0, self.last = total, 0, time.monotonic(), time.monotonic()
        if self.enabled and getattr(sys.stderr, "isatty", lambda: False)():
            try:
                from tqdm import tqdm
                self.bar = tqdm(total=total, desc=desc, unit="file", file=sys.stderr, dynamic_ncols=True)
            except ImportError:
                self.bar = None

    def update(self, k: int = 1) -> None:
        self.done += k
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(k)
            return
        now = time.monotonic()
        if now - self.last > 30 or self.done == self.total:
            self.last = now
            rate = self.done / max(1e-9, now - self.t0)
            left = (self.total - self.done) / rate if rate > 0 else 0.0
            logger.info("verified %d/%d files (%.0f/s, ~%.0f s left)", self.done, self.total, rate, left)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def verify_images(paths: Sequence[str], workers: int = 0, manifest: Optional[str] = None,
                  timeout_s: float = 60.0, *, root: Optional[str] = None, decoder: str = "mindspore",
                  rank: int = 0, group_size: int = 1, wait_timeout_s: Optional[float] = None,
                  flush_every_s: float = 60.0, progress: Optional[bool] = False,
                  stats: Optional[dict] = None) -> List[VerifyResult]:
    """Classify every file by decoding it in full: ``[VerifyResult(path, status, reason)]`` in input order.

    ``workers``: decoder processes (0: the cores available, divided among ``group_size`` ranks when more than
    one, but at most one per ``FILES_PER_WORKER`` files to check; at least 1). ``progress``: a bar or log
    lines (None: only for ``AUTO_PROGRESS_FILES`` files or more). ``manifest``: cache file (None: no cache). ``root``: manifest keys are relative to it
    (default: the manifest's folder). ``timeout_s``: per file. ``decoder``: "mindspore" (the pipeline's
    ``vision.Decode``), "pil", "cheap" (``check_image_file`` only, no workers) or "module:function".
    ``stats`` (a dict) receives counts: total, cached, checked, crashed, timed_out, seconds.
    """
    t0 = time.monotonic()
    paths = [os.fspath(p) for p in paths]
    n = len(paths)
    results: List[Optional[VerifyResult]] = [None] * n
    st = {"total": n, "cached": 0, "checked": 0, "crashed": 0, "timed_out": 0, "restarts": 0, "collateral": 0}
    rank, group_size = int(rank), max(1, int(group_size))
    man = None
    if manifest:
        man = Manifest(manifest, root or os.path.dirname(os.path.abspath(manifest)), decoder).load()
    keys: Dict[int, Tuple[int, int]] = {}
    todo: List[int] = []
    for i, p in enumerate(paths):
        sm, why = _stat(p)
        if sm is None:
            results[i] = VerifyResult(p, SKIP, why)
            continue
        keys[i] = sm
        hit = man.lookup(p, *sm) if man else None
        if hit is not None:
            results[i] = VerifyResult(p, hit[0], hit[1])
            st["cached"] += 1
        else:
            todo.append(i)

    if workers <= 0:  # the cores (shared among the ranks of a host), but no more than the work pays for
        cores = max(1, available_cpus() // min(group_size, 8)) if group_size > 1 else available_cpus()
        workers = max(1, min(cores, math.ceil(len(todo) / group_size / FILES_PER_WORKER)))

    def check(indices: List[int], flush_to: Optional[str]) -> None:
        bar = _Progress(len(indices), progress, "verifying images")
        if len(indices) >= AUTO_PROGRESS_FILES and decoder != "cheap":
            logger.info("decoding %d image file(s) once to check them (%d %s worker process(es)%s)", len(indices),
                        workers, decoder, f"; the results are kept in {man.path}" if man is not None else "")
        last_flush = [time.monotonic()]
        flush_every = [flush_every_s]

        def on_result(i, status, reason):
            results[i] = VerifyResult(paths[i], status, reason)
            if man is not None:
                man.put(paths[i], keys[i][0], keys[i][1], status, reason)
            bar.update()
            if man is not None and flush_to and time.monotonic() - last_flush[0] > flush_every[0]:
                t_write = time.monotonic()
                part = flush_to != man.path
                man.write(flush_to, merge=not part, only_new=part)
                last_flush[0] = time.monotonic()
                # a 1.28 M-entry manifest takes ~7 s to write: keep the saves under ~5 % of the time
                took = last_flush[0] - t_write
                flush_every[0] = flush_every_s if took < 0.5 else max(flush_every_s, 20 * took)

        try:
            if decoder == "cheap":
                for i in indices:
                    s, r = _cheap_check(paths[i])
                    on_result(i, s, r)
            else:
                got = _run_workers(paths, indices, decoder, workers, timeout_s, on_result)
                for k in ("crashed", "timed_out", "restarts", "collateral"):
                    st[k] += got[k]
        finally:
            bar.close()
        st["checked"] += len(indices)

    if group_size == 1 or man is None:
        check(todo, man.path if man else None)
        if man is not None and todo:
            man.write()
    else:
        share_of = {i: _share(man.key(paths[i]), group_size) for i in todo}
        mine = [i for i in todo if share_of[i] == rank]
        started = time.time()
        if todo:
            man.announce(rank)
        t_mine = time.monotonic()
        check(mine, man.part_path(rank))
        if mine:
            man.write(man.part_path(rank), merge=False, only_new=True)
        t_mine = time.monotonic() - t_mine
        limit = wait_timeout_s if wait_timeout_s is not None else 2 * t_mine + 120.0
        deadline = time.monotonic() + limit
        # A rank that has not said it is checking (``announce``) within a short grace is not waited for: its
        # share is checked here (one process building every rank's dataset in turn, a rank that never came)
        grace = time.monotonic() + min(limit, ANNOUNCE_GRACE_S + t_mine)
        stolen = False
        while True:
            missing = [i for i in todo if results[i] is None]
            if not missing:
                break
            cover: Dict[str, Entry] = {}
            for part in man.part_paths():        # the parts first, then the manifest: rank 0 replaces the
                cover.update(man._read_file(part))   # manifest before it removes the parts it merged
            cover.update(man._read_file(man.path))
            for i in missing:
                e = cover.get(man.key(paths[i]))
                if e is not None and (e[0], e[1]) == keys[i]:
                    results[i] = VerifyResult(paths[i], e[2], e[3])
                    man.entries[man.key(paths[i])] = e
            if all(results[i] is not None for i in missing):
                break
            if not stolen and time.monotonic() > grace:
                stolen = True
                live = man.announced(started - ANNOUNCE_FRESH_S)
                absent = [i for i in missing if results[i] is None and share_of[i] not in live]
                if absent:
                    logger.warning("rank %d: %d file(s) were not verified by the other ranks (rank(s) %s did not "
                                   "start checking their share); checking them here", rank, len(absent),
                                   ", ".join(str(r) for r in sorted({share_of[i] for i in absent})))
                    check(absent, None)
                continue
            if time.monotonic() > deadline:
                rest = [i for i in missing if results[i] is None]
                logger.warning("rank %d: %d file(s) were not verified by the other ranks within %.0f s "
                               "(is %s on a shared file system?); checking them here", rank, len(rest), limit,
                               man.path)
                check(rest, None)
                break
            time.sleep(0.5)
        if rank == 0 and todo:
            if man.write():
                for part in man.part_paths() + man.announce_paths():
                    try:
                        os.remove(part)
                    except OSError:
                        pass
    st["seconds"] = time.monotonic() - t0
    if stats is not None:
        stats.update(st)
    out = [r for r in results if r is not None]
    assert len(out) == n
    if st["checked"]:
        counts = {s: sum(1 for r in out if r.status == s) for s in (OK, CONVERT, SKIP)}
        logger.info("verified %d file(s) in %.1f s (%d checked by %d %s worker(s), %d from the manifest): %d ok, "
                    "%d convert, %d skip (%d crashed the decoder, %d timed out)", n, st["seconds"], st["checked"],
                    workers, decoder, st["cached"], counts[OK], counts[CONVERT], counts[SKIP], st["crashed"],
                    st["timed_out"])
    return out


def summarize(results: Iterable[VerifyResult]) -> Dict[str, int]:
    out = {OK: 0, CONVERT: 0, SKIP: 0}
    for r in results:
        out[r.status] = out.get(r.status, 0) + 1
    return out


def report_unusable(results: Sequence[VerifyResult], log: Optional[logging.Logger] = None, where: str = "",
                    display: Optional[Callable[[str], str]] = None) -> List[Tuple[str, str]]:
    """Log each unusable file once (one warning each: ``unusable image <path>: <reason>``) and a summary;
    return ``[(path, reason)]``. ``display`` turns a path into printable text (default
    ``src.utils.paths.display_name``: names that are not UTF-8 appear as ``\\xNN``)."""
    log = log or logger
    if display is None:
        try:
            from src.utils.paths import display_name as display
        except ImportError:  # pragma: no cover
            display = str
    bad = [(r.path, r.reason) for r in results if r.status == SKIP]
    for path, reason in bad:
        log.warning("unusable image %s: %s", display(path), reason)
    if bad:
        crashed = sum(1 for _, r in bad if r.startswith(("the decoder crashed", "the decoder did not finish")))
        log.warning("skipped %d of %d image files%s that cannot be used (%d of them crash or hang the decoder); "
                    "each is named above", len(bad), len(results), f" under {where}" if where else "", crashed)
    return bad
