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


def test_a_stop_that_lands_while_logging_writes_is_not_swallowed(handlers):
    """``Stopped`` is a BaseException: ``logging`` (which catches every ``Exception`` raised while a record is
    written and prints "--- Logging error ---") and libraries' ``except Exception`` let it through."""
    import io
    import logging

    class Terminal(io.StringIO):
        def write(self, text):
            os.kill(os.getpid(), signal.SIGTERM)
            signal.sigtimedwait([], 0.5)  # the handler raises here, inside StreamHandler.emit

    log = logging.getLogger("signals_test_logging")
    log.propagate = False
    log.addHandler(logging.StreamHandler(Terminal()))
    with pytest.raises(Stopped):
        log.warning("a record")
    with pytest.raises(Stopped):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            signal.sigtimedwait([], 0.5)
        except Exception:  # noqa: BLE001 (what a library does)
            pass
