"""SIGTERM (a scheduler's stop request) and SIGINT (Ctrl-C) as the jobs see them. ``install()`` (``run_entry``
calls it first) makes both raise ``src.errors.Stopped`` at the next Python instruction, so no job writes a result
that looks complete; the entry exits 143 / 130 through ``os._exit`` (a signal inside ``import mindspore`` leaves
it half initialised, and its exit handlers then abort). Loops over dataset iterators go through ``guarded``; the
training loop defers signals (``deferred()``), checks ``requested()`` after each step and saves a checkpoint.
"""
import contextlib
import signal

from src.errors import Stopped

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_pending = []    # the signal numbers received while deferred
_defer = [False]


def _handler(signum, _frame):
    if _defer[0]:
        _pending.append(signum)
        return
    raise Stopped(signum)


def install():
    """Installs the handlers (again: MindSpore's set-up, data engine and graph runtime replace them); a no-op off
    the main thread."""
    try:
        for sig in STOP_SIGNALS:
            signal.signal(sig, _handler)
    except ValueError:  # not the main thread
        pass


def guarded(iterable):
    """Yields from ``iterable`` (a dataset iterator), installing the handlers again after each item: MindSpore
    2.10's data engine replaces the SIGTERM handler when an iterator starts."""
    for item in iterable:
        install()
        yield item


def requested():
    """The first signal received while deferred, or None; installs the handlers again first (MindSpore 2.10's
    graph runtime replaces SIGINT's on every step and re-sends it as SIGTERM: a Ctrl-C inside a step exits 143)."""
    install()
    return _pending[0] if _pending else None


@contextlib.contextmanager
def deferred():
    """Inside the block a stop signal is only recorded (``requested()``); leaving it restores raising."""
    install()
    _defer[0] = True
    try:
        yield
    finally:
        _defer[0] = False
        _pending.clear()
