"""SIGTERM and SIGINT as the jobs see them: a scheduler's request to stop (SIGTERM, before preemption on
ModelArts, Kubernetes, Slurm) or Ctrl-C (SIGINT).

``install()`` (``model_utils.entry.run_entry`` calls it first) makes both raise ``src.errors.Stopped`` at the
next Python instruction (``check()`` raises it again where a library swallowed it), so an eval, export or
predict job stops without writing a result that looks complete, and the entry script exits 143 / 130 with
one line (through ``os._exit``: a signal that lands
inside ``import mindspore`` leaves MindSpore half initialised, and its exit handlers then abort the
process). Loops over dataset iterators go through ``guarded``. The training loop defers them instead
(``deferred()``): the signal is remembered, the current step finishes, and the trainer asks ``requested()``
after each step, saves a resumable checkpoint and raises ``Stopped`` itself.
"""
import contextlib
import signal
import sys

from src.errors import Stopped

__all__ = ["STOP_SIGNALS", "install", "reinstall", "check", "passes_stops", "deferred", "requested", "guarded"]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_pending = []    # the signal numbers received while deferred
_defer = [False]
_raised = []     # the signal numbers raised as Stopped (check() raises them again if one was swallowed)


def _handler(signum, _frame):
    if _defer[0]:
        _pending.append(signum)
        return
    _raised.append(signum)
    raise Stopped(signum)


def _set_handlers():
    try:
        for sig in STOP_SIGNALS:
            signal.signal(sig, _handler)
    except ValueError:  # not the main thread
        pass


def install():
    """Installs the handlers for a new job (a signal an earlier job in this process received is forgotten).
    Only the main thread may do so; elsewhere this does nothing."""
    _raised.clear()
    _set_handlers()


def check():
    """Raises ``Stopped`` again for a signal already received whose exception was swallowed on its way: the
    ``logging`` module catches every exception raised while it writes a record (and prints "--- Logging error
    ---"), and a signal lands there easily in a job that logs. Jobs call it before writing their results."""
    if _raised:
        raise Stopped(_raised[0])


def passes_stops(handler):
    """``handler`` (a ``logging.Handler``) made to let ``Stopped`` through: ``logging`` catches every exception
    raised while a record is written and prints "--- Logging error ---" with a traceback instead."""
    original = handler.handleError

    def handle_error(record):
        if isinstance(sys.exc_info()[1], Stopped):
            raise  # pylint: disable=misplaced-bare-raise  (inside the emit's except clause)
        original(record)

    handler.handleError = handle_error
    return handler


def reinstall():
    """Installs the handlers again after a library that may have replaced them (MindSpore's device set-up and
    data engine do), and ``check()``."""
    _set_handlers()
    check()


def guarded(iterable):
    """Yields from ``iterable`` (a dataset iterator), installing the handlers again after each item:
    MindSpore's data engine replaces the process's SIGTERM handler when an iterator starts (measured with
    MindSpore 2.10), and a signal would then end the process without a message or a checkpoint."""
    for item in iterable:
        reinstall()
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
    reinstall()
    _defer[0] = True
    try:
        yield
    finally:
        _defer[0] = False
        _pending.clear()
