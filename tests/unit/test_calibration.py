"""Calibrated probabilities (src/analysis/calibration.py): NLL, ECE with 15 equal-width bins, temperature
fitting on held-out logits, the calibration record file and the reliability diagram."""
import json
import math

import numpy as np
import pytest

from src.analysis import calibration as cal
from src.errors import ModelRecordError


def _toy(n=3000, k=10, signal=2.0, seed=0):
    """Logits whose calibrated form is known: z = noise + signal on the true class, noise ~ N(0, 1). The
    posterior of this model is softmax(signal * z), so softmax(z * s) is calibrated at T = s / signal."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    z = rng.normal(0.0, 1.0, (n, k))
    z[np.arange(n), y] += signal
    return z, y


def test_nll_and_softmax_known_values():
    z = np.array([[0.0, 0.0], [math.log(3.0), 0.0]])
    np.testing.assert_allclose(cal.softmax(z), [[0.5, 0.5], [0.75, 0.25]])
    assert cal.nll(z, [0, 1]) == pytest.approx((math.log(2) + math.log(4)) / 2)
    assert cal.nll(z * 2, [0, 1], temperature=2.0) == pytest.approx(cal.nll(z, [0, 1]))


def test_ece_hand_computed():
    # confidences 0.9 (right), 0.9 (wrong), 0.6 (right), 0.6 (right): bins (13/15, 14/15] and (8/15, 9/15]
    z = np.log(np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]]))
    y = np.array([0, 1, 0, 0])
    stats = cal.reliability(z, y, bins=15)
    assert sum(stats["count"]) == 4 and stats["count"][13] == 2 and stats["count"][8] == 2
    # 2/4 * |0.5 - 0.9| + 2/4 * |1.0 - 0.6|
    assert stats["ece"] == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)
    assert cal.reliability(z, y)["ece"] == pytest.approx(0.4)
    assert stats["accuracy_top1"] == 0.75
    # a confidence of exactly 1/15 falls in bin 0 ((0, 1/15]), 1.0 in the last
    edge = np.log(np.array([[1.0, 1e-300]]))
    assert cal.reliability(edge, [0])["count"][-1] == 1


def test_temperature_fit_lowers_nll_on_a_miscalibrated_model():
    z, y = _toy()
    for scale, expected_t in ((6.0, 3.0), (0.5, 0.25)):   # over- and under-confident by a known factor
        fit = cal.fit_temperature(z * scale, y)
        assert fit.hit_bound is None
        assert fit.temperature == pytest.approx(expected_t, rel=0.08)
        assert fit.nll_after < fit.nll_before - 0.05
        assert fit.nll_after == pytest.approx(cal.nll(z * scale, y, fit.temperature))
        # the minimum: a little off either side costs NLL
        for off in (0.9, 1.1):
            assert cal.nll(z * scale, y, fit.temperature * off) > fit.nll_after
        before = cal.reliability(z * scale, y)["ece"]
        after = cal.reliability(z * scale, y, temperature=fit.temperature)["ece"]
        assert after < before / 2


def test_temperature_fit_is_robust_at_the_edges():
    # every image right with growing margins: the NLL keeps falling as T -> 0; the fit stops at the bound
    z = np.zeros((20, 3))
    z[:, 0] = np.linspace(1, 5, 20)
    fit = cal.fit_temperature(z, np.zeros(20, int))
    assert fit.hit_bound == "min" and fit.temperature == pytest.approx(cal.T_MIN)
    # constant logits: any temperature gives the same NLL; no NaN, no exception
    fit = cal.fit_temperature(np.zeros((5, 4)), np.arange(5) % 4)
    assert math.isfinite(fit.temperature) and fit.nll_after == pytest.approx(math.log(4))
    # huge logits do not overflow
    z, y = _toy(n=500)
    fit = cal.fit_temperature(z * 1e4, y)
    assert math.isfinite(fit.nll_after) and fit.temperature == pytest.approx(0.5e4, rel=0.2)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_logits_are_refused(bad):
    z, y = _toy(n=20)
    z[3, 1] = bad
    for fn in (cal.nll, cal.reliability, cal.fit_temperature):
        with pytest.raises(ValueError, match="not finite"):
            fn(z, y)


def test_calibration_record_file_round_trip(tmp_path):
    z, y = _toy(n=400)
    record = cal.calibration_record(z * 4, y, checkpoint="/x/net.ckpt", checkpoint_sha256="ab" * 32,
                                    data="/data/val")
    assert record["ece_after"] < record["ece_before"] and record["nll_after"] < record["nll_before"]
    assert record["bins"] == 15
    path = cal.write_calibration(record, cal.default_calibration_path(tmp_path / "net.ckpt"))
    assert path.endswith("net.ckpt.calibration.json")
    assert cal.read_calibration(path, checkpoint_sha256="ab" * 32) == json.loads(open(path).read()) == record
    with pytest.raises(ModelRecordError, match="fitted for checkpoint"):
        cal.read_calibration(path, checkpoint_sha256="cd" * 32)
    (tmp_path / "bad.json").write_text(json.dumps(dict(record, temperature=0)))
    with pytest.raises(ModelRecordError, match="temperature"):
        cal.read_calibration(tmp_path / "bad.json")
    with pytest.raises(ModelRecordError, match="not found"):
        cal.read_calibration(tmp_path / "missing.json")


def test_reliability_diagram_png(tmp_path):
    pytest.importorskip("matplotlib")
    from PIL import Image

    z, y = _toy(n=300)
    before = cal.reliability(z * 4, y)
    after = cal.reliability(z * 4, y, temperature=cal.fit_temperature(z * 4, y).temperature)
    path = cal.plot_reliability(before, tmp_path / "reliability.png", after=after)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 300


def test_sums_over_batches_give_the_same_reliability():
    z, y = _toy(n=257)
    whole = cal.reliability(z * 3, y, temperature=1.5)
    sums = sum(cal.calibration_sums(z[i:i + 50] * 3, y[i:i + 50], temperature=1.5) for i in range(0, 257, 50))
    parts = cal.reliability_from_sums(sums, temperature=1.5)
    for key in ("ece", "nll", "accuracy_top1", "mean_confidence", "images"):
        assert parts[key] == pytest.approx(whole[key], rel=1e-12), key
    assert parts["count"] == whole["count"]
