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
