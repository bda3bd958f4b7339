"""Conformal direction sets (MAPIE split conformal on the calibrated P(up)): realized
coverage on later rows of a stationary series, abstention when the set holds both."""

from __future__ import annotations

import numpy as np
import pytest

from ml_core.models.conformal import coverage, fit_conformal, prediction_sets


def _stationary(n: int, seed: int, sharpness: float = 3.0):
    """P(up) drawn per row; the label follows it (a calibrated, informative forecaster)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    p = 1 / (1 + np.exp(-sharpness * x))
    y = (rng.random(n) < p).astype(float)
    return p, y


@pytest.mark.parametrize("confidence", [0.6, 0.8, 0.9])
def test_realized_coverage_on_later_rows_is_the_target(confidence):
    p, y = _stationary(30_000, 1)
    model = fit_conformal(p[:10_000], y[:10_000], confidence=confidence)
    sets = prediction_sets(model, p[10_000:])
    got = coverage(sets, y[10_000:])
    assert got["n"] == 20_000
    assert abs(got["coverage"] - confidence) < 0.015, got
    assert set(np.unique(sets)) <= {"up", "down", "both", "none"}


def test_a_confident_forecast_gets_one_direction_and_a_coin_flip_abstains():
    p, y = _stationary(20_000, 2)
    model = fit_conformal(p, y, confidence=0.8)
    sets = prediction_sets(model, np.array([0.999, 0.001, 0.5]))
    assert list(sets[:2]) == ["up", "down"]
    assert sets[2] in {"both", "none"}  # a coin flip: no direction (LAC sets may be empty)
    # on a weak forecaster (AUC near 0.5) most sets hold both: it abstains
    weak_p, weak_y = _stationary(20_000, 3, sharpness=0.2)
    weak = fit_conformal(weak_p[:10_000], weak_y[:10_000], confidence=0.9)
    assert coverage(prediction_sets(weak, weak_p[10_000:]), weak_y[10_000:])["abstain"] > 0.7


def test_too_few_rows_serve_no_set_and_nan_stays_none():
    p, y = _stationary(100, 4)
    assert fit_conformal(p, y, confidence=0.9) is None
    assert list(prediction_sets(None, p[:3])) == [None, None, None]
    model = fit_conformal(*_stationary(5_000, 5), confidence=0.9)
    assert prediction_sets(model, np.array([np.nan, 0.9]))[0] is None
