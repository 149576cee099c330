"""src.utils.signals: SIGTERM / SIGINT become src.errors.Stopped, or are deferred for the training loop."""
import os
import signal

import pytest

from src.errors import Stopped
from src.utils import signals


@pytest.fixture
def handlers():
    saved = {s: signal.getsignal(s) for s in signals.STOP_SIGNALS}
    signals.install()
    yield
    signals.install()  # forgets the signals raised here: a later test's loops must not see them
    for s, h in saved.items():
        signal.signal(s, h)


@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_real_signal_raises_stopped_with_the_shell_status(handlers, sig, status):
    with pytest.raises(Stopped) as info:
        os.kill(os.getpid(), sig)
        signal.sigtimedwait([], 0.5)  # gives the handler a Python instruction to run at
    assert info.value.exit_status == status and info.value.signum == sig
    assert signal.Signals(sig).name in str(info.value)


def test_deferred_signals_are_recorded_not_raised(handlers):
    with signals.deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        signal.sigtimedwait([], 0.2)
        assert signals.requested() == signal.SIGTERM
    assert signals.requested() is None
    with pytest.raises(Stopped):  # raising again after the block
        os.kill(os.getpid(), signal.SIGTERM)
        signal.sigtimedwait([], 0.5)


def test_guarded_installs_the_handlers_after_each_item(handlers):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # what a library's own handler would be
    items = signals.guarded(iter([1, 2]))
    assert next(items) == 1
    assert signal.getsignal(signal.SIGTERM) is signals._handler


def test_a_signal_swallowed_by_logging_is_raised_again_by_check(handlers):
    """logging catches every exception raised while a record is written ("--- Logging error ---"), so a stop
    signal that lands there is lost unless ``check()`` (which the jobs call before writing results, and
    ``guarded`` after each item) raises it again."""
    import logging

    class Terminal:  # a stream whose write is interrupted by SIGTERM, as a log line can be
        def write(self, text):
            os.kill(os.getpid(), signal.SIGTERM)
            signal.sigtimedwait([], 0.5)  # the handler raises here, inside StreamHandler.emit

        def flush(self):
            pass

    log = logging.getLogger("signals_test_swallow")
    log.propagate = False
    log.addHandler(logging.StreamHandler(Terminal()))
    previous, logging.raiseExceptions = logging.raiseExceptions, False  # no "Logging error" print in the test
    try:
        log.warning("a record")  # returns normally: logging swallowed the Stopped
    finally:
        logging.raiseExceptions = previous
    with pytest.raises(Stopped) as info:
        signals.check()
    assert info.value.signum == signal.SIGTERM
    with pytest.raises(Stopped):
        next(signals.guarded(iter([1])))
    signals.install()  # a new job starts clean
    signals.check()


def test_the_runs_log_handlers_let_a_stop_through(handlers):
    """The project's own log (RunLog) does not swallow a stop signal that lands while it writes a line."""
    import io
    import logging

    class Terminal(io.StringIO):
        def write(self, text):
            os.kill(os.getpid(), signal.SIGTERM)
            signal.sigtimedwait([], 0.5)

    handler = signals.passes_stops(logging.StreamHandler(Terminal()))
    log = logging.getLogger("signals_test_passes")
    log.propagate = False
    log.addHandler(handler)
    with pytest.raises(Stopped):
        log.warning("a record")
