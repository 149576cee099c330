"""Full decode check of image files, once, in worker processes that may crash, cached in a manifest.

    results = verify_images(paths, workers=2, manifest="DATA/.cspdarknet53_verified.jsonl", root="DATA")

The cheap check (``src.data.checks``) passes JPEGs on which MindSpore's decoder can crash or hang; here each file
is decoded by ``vision.Decode`` in ``forkserver`` workers, one file at a time: a worker that dies or times out names
its file (``skip``); a crash in a worker that met a bad file before is re-checked in a fresh worker. ``crc`` lets the
pipeline detect a file rewritten in place later. The manifest (JSON lines: a header, then ``[key, size, mtime_ns,
status, reason, crc]``) makes later runs check only changed files; it is written atomically, a foreign file at its
path is refused, and ``<manifest>.lock`` (flock) lets one rank check while the others wait for its results.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import math
import multiprocessing
import multiprocessing.connection
import multiprocessing.forkserver
import os
import shutil
import signal
import stat as stat_mod
import tempfile
import threading
import time
import zlib
from collections import Counter, deque
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

from src.data.checks import CONVERT, DEFAULT_MAX_PIXELS, OK, SKIP, check_image_file, scan_files
from src.data.demo import default_cache_dir
from src.errors import DatasetError
from src.utils.fileio import atomic_path, free_space
from src.utils.host import available_cpus
from src.utils.paths import display_name

logger = logging.getLogger(__name__)


MANIFEST_FORMAT = "cspdarknet53-verify-manifest"
MANIFEST_VERSION = 2
CHECK_VERSION = 2
DEFAULT_MANIFEST_NAME = ".cspdarknet53_verified.jsonl"  # hidden: the folder listing ignores it
FILES_PER_WORKER = 500  # workers=0: one decoder process per this many files (up to the cores)
AUTO_PROGRESS_FILES = 2000
PROGRESS_EVERY_S = 30.0
STARTUP_TIMEOUT_S = 300.0
_MAX_REASON = 300


class VerifyError(RuntimeError):
    """The decoder worker does not start; names the decoder and its output."""


class VerifyResult(NamedTuple):
    path: str
    status: str               # OK | CONVERT | SKIP
    reason: str
    crc: Optional[int] = None  # CRC-32 of the bytes decoded (None: not read, e.g. skipped by the cheap check)


def _first_line(exc: BaseException) -> str:
    """MindSpore's errors wrap the message in banners and a C++ call stack; keep the message."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith(("[ERROR]", "[Internal ERROR]")):
            return ln.split("]", 1)[1].split(" Dump the abnormal image")[0].strip()[:_MAX_REASON]
    return (lines[0] if lines else type(exc).__name__)[:_MAX_REASON]


def _make_check(decoder: str, max_pixels: Optional[int]) -> Callable[[str], Tuple[str, str, Optional[int]]]:
    """``check(path) -> (status, reason, crc)``: "mindspore", "pil" or "module:function" (-> (status, reason))."""
    import numpy as np

    if decoder == "mindspore":
        import mindspore.dataset.vision as V
        run = V.Decode()

        def decode(data):
            shape = getattr(run(data), "shape", ())
            if len(shape) != 3 or shape[2] != 3 or min(shape[:2]) < 1:
                raise ValueError(f"the decoder gives an image of shape {tuple(shape)}")
    elif decoder == "pil":
        import io
        from PIL import Image

        def decode(data):
            with Image.open(io.BytesIO(data.tobytes())) as im:
                im.load()
    elif ":" in decoder:
        import importlib
        module, name = decoder.split(":", 1)
        custom = getattr(importlib.import_module(module), name)
        return lambda path: (*custom(path), None)
    else:
        raise ValueError(f"unknown decoder {decoder!r} (mindspore, pil, cheap or module:function)")

    def check(path):
        status, reason = check_image_file(path, max_pixels)
        if status == SKIP:
            return status, reason, None
        try:
            data = np.fromfile(path, dtype=np.uint8)
        except OSError as exc:
            return SKIP, f"cannot read: {exc}", None
        crc = zlib.crc32(data)
        if status == CONVERT:  # PIL decoded it in full already
            return status, reason, crc
        try:
            decode(data)
        except Exception as exc:  # RuntimeError from the C++ decoder, PIL's errors
            return SKIP, f"{reason}: the decoder fails: {_first_line(exc)}", crc
        return OK, reason, crc

    return check


def _said(err_path: str, start: int) -> str:
    """What a worker printed to its error file since byte ``start``, as one short line."""
    try:
        with open(err_path, "rb") as f:
            f.seek(start)
            text = f.read(16384).decode("utf-8", "backslashreplace")
    except OSError:
        return ""
    return " | ".join(ln.strip() for ln in text.splitlines() if ln.strip())[:_MAX_REASON]


def _worker_main(conn, decoder: str, max_pixels: Optional[int], err_path: str) -> None:
    """``(index, path)`` in, ``(index, status, reason, crc, cpu_s, err size)`` out; C-level output to ``err_path``."""
    with contextlib.suppress(Exception):  # die with the forkserver even when stuck in a decoder (Linux)
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    workdir = os.path.dirname(err_path)
    os.chdir(workdir)  # the decoder dumps undecodable images into its working directory
    fd = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    try:
        check = _make_check(decoder, max_pixels)
        if decoder == "mindspore":  # a tiny good JPEG must decode before the worker says it is ready
            from PIL import Image
            probe = os.path.join(workdir, f"selftest{os.getpid()}.jpg")
            Image.new("RGB", (16, 16), (90, 140, 200)).save(probe, format="JPEG", quality=90)
            status, reason, _ = check(probe)
            if status != OK:
                raise VerifyError(f"the decoder fails on a known-good image: {reason}")
    except BaseException as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready",))
    with contextlib.suppress(EOFError):  # the parent is gone
        for index, path in iter(conn.recv, None):
            start = os.fstat(2).st_size
            try:
                status, reason, crc = check(path)
            except Exception as exc:  # a bug or an unexpected error: unusable, with the reason
                status, reason, crc = SKIP, f"check failed: {type(exc).__name__}: {exc}", None
            end = os.fstat(2).st_size
            said = _said(err_path, start) if end > start else ""
            conn.send((index, status, f"{reason} (decoder said: {said})" if said else reason, crc,
                       time.process_time(), end))


_start_lock = threading.Lock()


def _forkserver():
    """The forkserver context; its server imports the decoder once (GLOG_v=3: no MindSpore log in its output)."""
    with _start_lock:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["src.data.verify", "mindspore.dataset.vision"])
        saved = os.environ.get("GLOG_v")
        os.environ["GLOG_v"] = saved or "3"
        try:
            multiprocessing.forkserver.ensure_running()
        finally:
            if saved is None:
                del os.environ["GLOG_v"]
    return ctx


def _signal_name(code: Optional[int]) -> str:
    if code is not None and code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"exit status {code}"


class _Worker:
    """One decoder process and the file it was given (``job``: index, start time, error-file offset)."""

    def __init__(self, decoder: str, max_pixels: Optional[int], workdir: str, serial: int):
        self.err_path = os.path.join(workdir, f"worker{serial}.err")
        self.conn, child = multiprocessing.Pipe()
        self.proc = _forkserver().Process(target=_worker_main, args=(child, decoder, max_pixels, self.err_path),
                                          daemon=True)
        self.proc.start()
        child.close()
        self.started, self.ready, self.job = time.monotonic(), False, None
        self.done, self.dirty, self.cpu, self.mark = 0, False, 0.0, 0  # dirty: met a file that failed or printed

    def send(self, index: int, path: str) -> None:
        self.conn.send((index, os.path.abspath(path)))  # absolute: a worker runs in its own folder
        self.job = (index, time.monotonic(), self.mark)


def _decode_all(paths: Sequence[str], indices: Sequence[int], decoder: str, workers: int, timeout_s: float,
                max_pixels: Optional[int], on_result: Callable[[int, str, str, Optional[int]], None],
                stats: dict) -> None:
    """Checks ``paths[i]`` for i in ``indices`` in ``workers`` processes; ``on_result(i, status, reason, crc)``."""
    pending, confirm = deque(indices), deque()   # confirm: re-check in a fresh worker
    first_fault: Dict[int, str] = {}
    pool: List[_Worker] = []
    failed_starts = 0
    workdir = tempfile.mkdtemp(prefix="cspdarknet53_verify_")

    def retire(w: _Worker, kill: bool) -> None:
        if not kill and w.proc.is_alive():
            with contextlib.suppress(OSError):
                w.conn.send(None)
            w.proc.join(5)
        if w.proc.is_alive():
            w.proc.kill()
        w.proc.join()
        w.conn.close()
        stats["cpu_s"] += w.cpu
        pool.remove(w)

    def fault(w: _Worker, what: str) -> None:
        index, said = w.job[0], _said(w.err_path, w.job[2])
        reason = what + (f" (decoder said: {said})" if said else "")
        if w.dirty and index not in first_fault:
            first_fault[index] = reason
            confirm.append(index)
        else:
            first_fault.pop(index, None)
            stats["crashed" if "crashed" in what else "timed_out"] += 1
            on_result(index, SKIP, reason, None)
        w.job = None

    try:
        while pending or confirm or any(w.job for w in pool):
            for w in [w for w in pool if w.ready and w.job is None]:
                if confirm and w.done == 0:
                    w.send(confirm[0], paths[confirm.popleft()])
                elif confirm and not pending:
                    retire(w, kill=False)    # a used worker: make room for a fresh one
                elif pending:
                    w.send(pending[0], paths[pending.popleft()])
            wanted = min(workers, len(pending) + len(confirm) + sum(1 for w in pool if w.job))
            while len(pool) < max(1, wanted) and (pending or confirm):
                stats["started"] += 1
                pool.append(_Worker(decoder, max_pixels, workdir, stats["started"]))
            multiprocessing.connection.wait([w.conn for w in pool] + [w.proc.sentinel for w in pool], timeout=1.0)
            now = time.monotonic()
            for w in list(pool):
                while w.conn.poll():
                    try:
                        msg = w.conn.recv()
                    except (EOFError, OSError):
                        break
                    if msg[0] == "ready":
                        w.ready, failed_starts = True, 0
                    elif msg[0] == "error":
                        raise VerifyError(f"the {decoder!r} decoder worker does not start: {msg[1]}")
                    else:
                        index, status, reason, crc, w.cpu, w.mark = msg
                        w.job, w.done = None, w.done + 1
                        w.dirty = w.dirty or status == SKIP or "(decoder said:" in reason
                        if first_fault.pop(index, None) is not None:
                            stats["collateral"] += 1
                        on_result(index, status, reason, crc)
                if not w.proc.is_alive():
                    w.proc.join()
                    if not w.ready:
                        failed_starts += 1
                        if failed_starts >= 3:
                            raise VerifyError(f"the {decoder!r} decoder worker does not start "
                                              f"({_signal_name(w.proc.exitcode)}): {_said(w.err_path, 0)}")
                    elif w.job is not None:
                        fault(w, f"the decoder crashed on this file ({_signal_name(w.proc.exitcode)})")
                    retire(w, kill=True)
                elif w.job is not None and now - w.job[1] > timeout_s:
                    retire(w, kill=True)
                    fault(w, f"the decoder did not finish this file within {timeout_s:g} s (killed)")
                elif not w.ready and now - w.started > STARTUP_TIMEOUT_S:
                    retire(w, kill=True)
                    raise VerifyError(f"the {decoder!r} decoder worker did not start within "
                                      f"{STARTUP_TIMEOUT_S:g} s: {_said(w.err_path, 0)}")
    finally:
        for w in list(pool):
            retire(w, kill=w.job is not None)
        shutil.rmtree(workdir, ignore_errors=True)


Entry = Tuple[int, int, str, str, Optional[int]]  # size, mtime_ns, status, reason, crc


def decoder_id(decoder: str, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> str:
    """What the manifest records about the check; entries made with another id are checked again."""
    if decoder in ("mindspore", "pil"):
        from importlib.metadata import version
        decoder = f"{decoder}-{version('mindspore' if decoder == 'mindspore' else 'pillow')}"
    return f"{decoder}/check{CHECK_VERSION}/max_pixels={int(max_pixels or 0)}"


def default_manifest_path(data_dir: str) -> str:
    """``DATA/.cspdarknet53_verified.jsonl`` if writable, else one named after the folder in the user cache."""
    data_dir = os.path.abspath(data_dir)
    if os.access(data_dir, os.W_OK):
        return os.path.join(data_dir, DEFAULT_MANIFEST_NAME)
    tag = "%08x" % (zlib.crc32(os.fsencode(data_dir)) & 0xFFFFFFFF)
    name = os.path.basename(data_dir.rstrip(os.sep)) or "root"
    return os.path.join(default_cache_dir(), "verify", f"{name}-{tag}.jsonl")


def manifest_path(setting: Optional[str], data_dir: str) -> Optional[str]:
    """``verify_manifest``: "" the default for ``data_dir`` (none without one), "none"/None none, else that file."""
    if setting is None or str(setting).lower() == "none":
        return None
    return str(setting) or (default_manifest_path(data_dir) if data_dir else None)


class Manifest:
    """Verification results keyed by path (relative to ``root``), size and mtime_ns."""

    def __init__(self, path: str, root: Optional[str] = None, decoder: str = "mindspore",
                 max_pixels: Optional[int] = DEFAULT_MAX_PIXELS):
        self.path = os.path.abspath(path)
        self.root = os.path.abspath(root) if root else os.path.dirname(self.path)
        self.decoder_id = decoder_id(decoder, max_pixels)
        self.entries: Dict[str, Entry] = {}
        self._warned = False

    def key(self, path: str) -> str:
        rel = os.path.relpath(os.path.abspath(path), self.root)
        return os.path.abspath(path) if rel == os.pardir or rel.startswith(os.pardir + os.sep) else rel

    def check_path(self) -> None:
        """``DatasetError`` when the path holds anything but a manifest (it would be replaced)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise DatasetError(f"verify_manifest {self.path}: {exc.strerror or exc}") from None
        if not stat_mod.S_ISREG(st.st_mode):
            raise DatasetError(f"verify_manifest {self.path} is not a regular file (a folder, device or pipe); "
                               "it is never replaced: give the path of a manifest file, or 'none'")
        try:
            with open(self.path, "rb") as f:
                ours = json.loads(f.readline(65536)).get("format") == MANIFEST_FORMAT
        except OSError as exc:
            raise DatasetError(f"verify_manifest {self.path}: cannot read it: {exc.strerror or exc}") from None
        except (ValueError, AttributeError):
            ours = False
        if not ours:
            raise DatasetError(f"verify_manifest {self.path} exists and is not a verification manifest of this "
                               "project; it is never overwritten: give another path (or 'none'), or remove it")

    def _read(self) -> Dict[str, Entry]:
        """The entries on disk; {} when absent, or made by another version or check."""
        self.check_path()
        out: Dict[str, Entry] = {}
        with contextlib.suppress(FileNotFoundError), open(self.path, "r", encoding="utf-8") as f:
            head = json.loads(f.readline())
            if head.get("version") != MANIFEST_VERSION or head.get("decoder") != self.decoder_id:
                logger.info("verification manifest %s was made by %s, not %s: its files are checked again",
                            self.path, head.get("decoder"), self.decoder_id)
                return out
            for line in f:
                with contextlib.suppress(ValueError):
                    k, size, mtime, status, reason, crc = json.loads(line)
                    out[k] = (int(size), int(mtime), str(status), str(reason), crc)
        return out

    def load(self) -> "Manifest":
        self.entries.update(self._read())
        return self

    def lookup(self, path: str, size: int, mtime_ns: int) -> Optional[Entry]:
        e = self.entries.get(self.key(path))
        return e if e is not None and e[0] == size and e[1] == mtime_ns else None

    def put(self, path: str, size: int, mtime_ns: int, status: str, reason: str, crc: Optional[int]) -> None:
        self.entries[self.key(path)] = (int(size), int(mtime_ns), status, reason, crc)

    def write(self) -> None:
        """Atomically writes the entries merged with the file's (ours win); a storage error is one warning."""
        self.entries = {**self._read(), **self.entries}
        head = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "decoder": self.decoder_id, "root": self.root}
        try:  # ensure_ascii keeps names that are not valid UTF-8 (surrogate escapes) lossless
            with atomic_path(self.path) as tmp, open(tmp, "w", encoding="utf-8") as f:
                f.write(json.dumps(head, ensure_ascii=True) + "\n")
                f.writelines(json.dumps([k, *self.entries[k]], ensure_ascii=True) + "\n" for k in sorted(self.entries))
        except OSError as exc:
            if not self._warned:
                self._warned = True
                logger.warning("cannot write the verification manifest %s: %s (%s); its files will be checked "
                               "again next time", self.path, exc.strerror or exc,
                               free_space(os.path.dirname(self.path)))


@contextlib.contextmanager
def _exclusive(manifest: Optional[Manifest]):
    """Holds ``<manifest>.lock`` (flock, released by the kernel even on SIGKILL) for the block."""
    fd = None
    if manifest is not None:
        try:
            os.makedirs(os.path.dirname(manifest.path), exist_ok=True)
            fd = os.open(manifest.path + ".lock", os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:
            pass  # a read-only place: no lock (and no manifest written); each process checks for itself
    try:
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                logger.info("waiting for another process that is checking the same files (%s.lock)", manifest.path)
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError as exc:  # no locks on this file system
                logger.warning("cannot lock %s.lock (%s): ranks check the files each for themselves",
                               manifest.path, exc.strerror or exc)
        yield
    finally:
        if fd is not None:
            os.close(fd)


def _stat(path: str):
    """(size, mtime_ns) of a regular file, or (None, reason) when it cannot be used."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None, "broken symbolic link" if os.path.islink(path) else "missing file"
    except OSError as exc:
        return None, "symbolic link loop" if exc.errno == errno.ELOOP else f"cannot read: {exc.strerror or exc}"
    if not stat_mod.S_ISREG(st.st_mode):
        return None, "not a regular file"
    if st.st_size == 0:
        return None, "empty file"
    return (st.st_size, st.st_mtime_ns), None


def verify_images(paths: Sequence[str], workers: int = 0, manifest: Optional[str] = None,
                  timeout_s: float = 60.0, *, root: Optional[str] = None, decoder: str = "mindspore",
                  max_pixels: Optional[int] = DEFAULT_MAX_PIXELS, group_size: int = 1, flush_every_s: float = 60.0,
                  progress: Optional[bool] = None, stats: Optional[dict] = None) -> List[VerifyResult]:
    """``[VerifyResult]`` in input order. ``workers`` 0: automatic (cores shared among ``group_size`` ranks without
    a manifest); ``manifest`` keys are relative to ``root``; ``decoder`` "cheap": ``check_image_file`` alone;
    ``stats`` receives total, cached, checked, crashed, timed_out, collateral, started, cpu_s, seconds."""
    t0 = time.monotonic()
    paths = [os.fspath(p) for p in paths]
    results: List[Optional[VerifyResult]] = [None] * len(paths)
    st = {} if stats is None else stats
    st.update(total=len(paths), cached=0, checked=0, crashed=0, timed_out=0, collateral=0, started=0, cpu_s=0.0)
    man = Manifest(manifest, root, decoder, max_pixels) if manifest else None
    if man is not None:
        man.check_path()  # before any work: a user's file or a device is refused, never replaced
    keys: Dict[int, Tuple[int, int]] = {}
    for i, p in enumerate(paths):
        sm, why = _stat(p)
        if sm is None:
            results[i] = VerifyResult(p, SKIP, why)
        else:
            keys[i] = sm

    with _exclusive(man):
        if man is not None:
            man.load()
        todo = []
        for i, (size, mtime) in keys.items():
            hit = man.lookup(paths[i], size, mtime) if man is not None else None
            if hit is None:
                todo.append(i)
            else:
                results[i] = VerifyResult(paths[i], hit[2], hit[3], hit[4])
        st["cached"] = len(keys) - len(todo)
        if workers <= 0:
            cores = available_cpus() if man is not None else max(1, available_cpus() // min(group_size, 8))
            workers = max(1, min(cores, math.ceil(len(todo) / FILES_PER_WORKER)))
        show = decoder != "cheap" and (progress if progress is not None else len(todo) >= AUTO_PROGRESS_FILES)
        if show and todo:
            logger.info("decoding %d image file(s) once to check them (%d %s worker process(es))%s", len(todo),
                        workers, decoder, f"; the results are kept in {man.path}" if man is not None else "")
        clock = {"flush": time.monotonic(), "log": time.monotonic(), "done": 0}

        def on_result(i, status, reason, crc):
            results[i] = VerifyResult(paths[i], status, reason, crc)
            clock["done"] += 1
            now = time.monotonic()
            if man is not None:
                man.put(paths[i], *keys[i], status, reason, crc)
                if now - clock["flush"] > flush_every_s:
                    man.write()
                    clock["flush"] = time.monotonic()
            if show and now - clock["log"] > PROGRESS_EVERY_S:
                clock["log"] = now
                rate = clock["done"] / max(1e-9, now - t0)
                logger.info("verified %d/%d files (%.0f/s, ~%.0f s left)", clock["done"], len(todo), rate,
                            (len(todo) - clock["done"]) / max(rate, 1e-9))

        if decoder == "cheap":
            for i, (status, reason) in zip(todo, scan_files([paths[i] for i in todo], max_pixels=max_pixels)):
                on_result(i, status, reason, None)
        elif todo:
            _decode_all(paths, todo, decoder, workers, timeout_s, max_pixels, on_result, st)
        st["checked"] = len(todo)
        if man is not None and todo:
            man.write()
    st["seconds"] = time.monotonic() - t0
    return results


def check_files(paths: Sequence[str], data_dir: str, where: str, *, verify: bool = True, manifest: Optional[str] = "",
                log: Optional[logging.Logger] = None, **options) -> List[VerifyResult]:
    """``verify_images`` of a dataset's files (``verify`` off: the cheap check), logged, unusable ones named once."""
    log, stats = log or logger, {}
    manifest = manifest_path(manifest, data_dir) if verify else None
    results = verify_images(paths, manifest=manifest, root=data_dir or None, decoder="mindspore" if verify else "cheap",
                            stats=stats, **options)
    if verify:
        log.info("verified %d files in %.1f s (%d decoded now, %d known from %s)", len(paths), stats["seconds"],
                 stats["checked"], stats["cached"], manifest or "no manifest")
    else:
        log.info("checked %d files (first and last bytes only: verify_files is off) in %.1f s", len(paths),
                 stats["seconds"])
    report_unusable(results, log, where)
    return results


def summarize(results: Sequence[VerifyResult]) -> Dict[str, int]:
    return {OK: 0, CONVERT: 0, SKIP: 0, **Counter(r.status for r in results)}


def report_unusable(results: Sequence[VerifyResult], log: logging.Logger, where: str = "") -> None:
    """One warning per unusable file, and a summary."""
    bad = [(r.path, r.reason) for r in results if r.status == SKIP]
    for path, reason in bad:
        log.warning("unusable image %s: %s", display_name(path), reason)
    if bad:
        crashed = sum(1 for _, r in bad if r.startswith(("the decoder crashed", "the decoder did not finish")))
        log.warning("skipped %d of %d image files%s that cannot be used (%d of them crash or hang the decoder); "
                    "each is named above", len(bad), len(results), f" under {where}" if where else "", crashed)
