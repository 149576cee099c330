"""The trainer's not-learning warning (a loss at or above chance after the warmup)."""
import logging
import math

from src.trainer import warn_if_not_learning

LOG = logging.getLogger("trainer_guard_test")  # outside src.*: RunLog may stop src.* from propagating


def test_warns_above_chance_after_warmup(caplog):
    with caplog.at_level(logging.WARNING, logger="trainer_guard_test"):
        assert warn_if_not_learning(LOG, epoch=2, mean_loss=math.log(10) + 0.01, num_classes=10, warmup_epochs=1)
    assert "not below chance level ln(10)" in caplog.text and "epoch 3" in caplog.text


def test_quiet_during_warmup_below_chance_and_for_nan(caplog):
    with caplog.at_level(logging.WARNING, logger="trainer_guard_test"):
        assert not warn_if_not_learning(LOG, epoch=0, mean_loss=3.0, num_classes=10, warmup_epochs=1)  # warmup
        assert not warn_if_not_learning(LOG, epoch=1, mean_loss=3.0, num_classes=10, warmup_epochs=1.5)
        assert not warn_if_not_learning(LOG, epoch=5, mean_loss=2.2, num_classes=10, warmup_epochs=1)  # learning
        assert not warn_if_not_learning(LOG, epoch=5, mean_loss=float("nan"), num_classes=10, warmup_epochs=1)
        assert not warn_if_not_learning(LOG, epoch=5, mean_loss=0.5, num_classes=1, warmup_epochs=0)
    assert caplog.text == ""
    # no warmup: the first epoch is exempt (the loss starts at chance), the second is not
    assert warn_if_not_learning(LOG, epoch=1, mean_loss=2.4, num_classes=10, warmup_epochs=0)
