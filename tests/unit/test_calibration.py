"""P(up) calibration on planted signals: fitted on validation in time order, scored on
later (test) rows it never saw."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml_core.evaluation.metrics import classification_metrics, expected_calibration_error
from ml_core.models.calibration import MIN_CALIBRATION_ROWS, Calibrator, fit_calibrator


def _planted(n: int, seed: int, *, sharpness: float) -> tuple[np.ndarray, ...]:
    """Labels drawn from P(up) = sigmoid(0.6 x); the model reports sigmoid(sharpness x)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-0.6 * x))).astype(float)
    raw = 1 / (1 + np.exp(-sharpness * x))
    ts = pd.date_range("2025-01-01", periods=n, freq="1min").to_numpy()
    return raw, y, ts


@pytest.mark.parametrize("sharpness", [2.5, 0.2])  # overconfident, underconfident
def test_calibration_fixes_a_miscalibrated_model_on_later_rows(sharpness):
    raw, y, ts = _planted(30_000, 1, sharpness=sharpness)
    val, test = slice(0, 20_000), slice(20_000, None)
    cal, table = fit_calibrator(raw[val], y[val], ts[val])
    assert cal.method in {"sigmoid", "isotonic"} and table["chosen"].sum() == 1
    assert set(table["method"]) == {"none", "sigmoid", "isotonic"}
    served = cal(raw[test])
    ece_raw = expected_calibration_error(y[test], raw[test])
    ece = expected_calibration_error(y[test], served)
    assert ece_raw > 0.05 and ece < 0.02 and ece < ece_raw / 4, (ece_raw, ece)
    auc_raw = classification_metrics(y[test], raw[test])["auc"]
    auc = classification_metrics(y[test], served)["auc"]
    assert abs(auc - auc_raw) < 0.005
    assert np.all(np.diff(served[np.argsort(raw[test])]) >= -1e-12)  # monotone: order kept


def test_a_calibrated_model_is_left_about_as_it_is():
    raw, y, ts = _planted(30_000, 2, sharpness=0.6)  # already the true probability
    cal, _ = fit_calibrator(raw[:20_000], y[:20_000], ts[:20_000])
    test = slice(20_000, None)
    assert expected_calibration_error(y[test], cal(raw[test])) < 0.02
    assert np.max(np.abs(cal(raw[test]) - raw[test])) < 0.1


def test_the_method_is_chosen_on_the_latest_validation_rows_only():
    """Rows are shuffled in the input; the choice still fits on the earliest 2/3 by time.
    A model that is calibrated early and overconfident late gets calibrated (the later
    third decides), though a fit on all rows in input order would see mostly early rows."""
    early, y_early, _ = _planted(12_000, 3, sharpness=0.6)
    late_raw, y_late, _ = _planted(6_000, 4, sharpness=3.0)
    raw = np.concatenate([early, late_raw])
    y = np.concatenate([y_early, y_late])
    ts = pd.date_range("2025-01-01", periods=len(raw), freq="1min").to_numpy()
    order = np.random.default_rng(0).permutation(len(raw))
    cal, table = fit_calibrator(raw[order], y[order], ts[order])
    by = table.set_index("method")["holdout_log_loss"]
    assert cal.method != "none" and by["none"] > by[cal.method]


def test_too_few_rows_or_one_class_keep_the_raw_probability():
    raw, y, ts = _planted(MIN_CALIBRATION_ROWS - 1, 5, sharpness=2.0)
    cal, table = fit_calibrator(raw, y, ts)
    assert cal.method == "none" and table.empty
    np.testing.assert_array_equal(cal(raw), raw)
    raw, _, ts = _planted(5_000, 6, sharpness=2.0)
    cal, _ = fit_calibrator(raw, np.ones(5_000), ts)
    assert cal.method == "none"


def test_a_named_method_is_used_and_nan_stays_nan():
    raw, y, ts = _planted(5_000, 7, sharpness=2.0)
    cal, table = fit_calibrator(raw, y, ts, method="isotonic")
    assert cal.method == "isotonic" and set(table["method"]) == {"none", "isotonic"}
    out = cal(np.array([np.nan, 0.5, 0.0, 1.0]))
    assert np.isnan(out[0]) and np.all((out[1:] > 0) & (out[1:] < 1))
    assert Calibrator()(np.array([0.3])).tolist() == [0.3]


def test_a_sigmoid_that_would_reverse_the_ranking_is_refused():
    raw, y, ts = _planted(5_000, 8, sharpness=2.0)
    cal, _ = fit_calibrator(raw, 1 - y, ts, method="sigmoid")  # validation ranks upside down
    assert cal.method == "none"
