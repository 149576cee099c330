"""SIGTERM and SIGINT as the jobs see them: a scheduler's request to stop (SIGTERM, before preemption on
ModelArts, Kubernetes, Slurm) or Ctrl-C (SIGINT).

``install()`` (``model_utils.entry.run_entry`` calls it first) makes both raise ``src.errors.Stopped`` at the
next Python instruction (``Stopped`` is a ``BaseException``, so ``except Exception`` clauses in libraries,
``logging``'s among them, let it through), so an eval, export or predict job stops without writing a result
that looks complete, and the entry script exits 143 / 130 with one line (through ``os._exit``: a signal that
lands inside ``import mindspore`` leaves MindSpore half initialised, and its exit handlers then abort the
process). Loops over dataset iterators go through ``guarded``. The training loop defers them instead
(``deferred()``): the signal is remembered, the current step finishes, and the trainer asks ``requested()``
after each step, saves a resumable checkpoint and raises ``Stopped`` itself.
"""
import contextlib
import signal

from src.errors import Stopped

__all__ = ["STOP_SIGNALS", "install", "deferred", "requested", "guarded"]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_pending = []    # the signal numbers received while deferred
_defer = [False]


def _handler(signum, _frame):
    if _defer[0]:
        _pending.append(signum)
        return
    raise Stopped(signum)


def install():
    """Installs the handlers (again: MindSpore's device set-up, data engine and graph runtime replace them).
    Only the main thread may do so; elsewhere this does nothing."""
    try:
        for sig in STOP_SIGNALS:
            signal.signal(sig, _handler)
    except ValueError:  # not the main thread
        pass


def guarded(iterable):
    """Yields from ``iterable`` (a dataset iterator), installing the handlers again after each item:
    MindSpore's data engine replaces the process's SIGTERM handler when an iterator starts (measured with
    MindSpore 2.10), and a signal would then end the process without a message or a checkpoint."""
    for item in iterable:
        install()
        yield item


def requested():
    """The first signal received while deferred, or None. Installs the handlers again first: MindSpore's graph
    runtime replaces the SIGINT handler with its own on every compiled step (measured with MindSpore 2.10), and
    that one re-sends the signal as SIGTERM (``kill(getpid(), SIGTERM)``), so a Ctrl-C that lands inside a step
    reaches the trainer as SIGTERM (exit 143); one between steps stays SIGINT (130)."""
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
