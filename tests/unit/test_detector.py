"""ml_core.monitoring.detector: Page-Hinkley / CUSUM on the paired log-loss difference.

Series are seeded Gaussian noise around small means, the size of the per-outcome
log-loss differences of an AUC-0.54 model (mean a few 1e-3, sd ~0.05-0.1).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from ml_core.config import MonitorConfig
from ml_core.errors import ConfigError, DataContractError
from ml_core.monitoring.detector import (
    LOSS_EPS,
    Cusum,
    DetectorState,
    PageHinkley,
    describe_state,
    log_loss_difference,
    make_detector,
    state_metrics,
)

CFG = MonitorConfig()
DETECTORS = ["page_hinkley", "cusum"]


def detector(kind: str = "page_hinkley", **kw) -> PageHinkley | Cusum:
    params = {
        "delta": CFG.detector_delta,
        "threshold": CFG.detector_threshold,
        "min_outcomes": CFG.detector_min_outcomes,
        **kw,
    }
    return make_detector(kind, **params)


def series(
    n: int, mean: float, sd: float = 0.06, seed: int = 0, start: str = "2025-01-01"
) -> tuple[np.ndarray, pd.DatetimeIndex]:
    rng = np.random.default_rng(seed)
    return rng.normal(mean, sd, n), pd.date_range(start, periods=n, freq="15min")


def jump_series(
    n_before: int, n_after: int, before: float, after: float, seed: int = 0, sd: float = 0.06
) -> tuple[np.ndarray, pd.DatetimeIndex]:
    d0, t = series(n_before + n_after, 0.0, sd=sd, seed=seed)
    d = d0 + np.r_[np.full(n_before, before), np.full(n_after, after)]
    return d, t


# ---------------------------------------------------------------- detection
@pytest.mark.parametrize("kind", DETECTORS)
@pytest.mark.parametrize("seed", range(5))
def test_a_mean_jump_is_detected_within_a_bounded_delay(kind, seed):
    # the champion was a little better than its reference, then loses 0.012 nats an outcome
    n_before = 5000
    d, t = jump_series(n_before, 5000, before=-0.002, after=0.012, seed=seed)
    state = detector(kind).update(detector(kind).new_state(), d, t)
    assert state.alarm is not None
    delay = state.alarm.n_outcomes - n_before
    # drift after the jump >= 0.012 - delta: the statistic crosses the threshold after
    # ~threshold / drift outcomes; twice that bounds the noise
    bound = 2 * CFG.detector_threshold / (0.012 - CFG.detector_delta)
    assert 0 < delay <= bound, (delay, bound)
    assert state.alarm.at == t[state.alarm.n_outcomes - 1]
    assert state.alarm.mean_diff_since_change > 0
    # the estimated change is near the planted one
    change = state.alarm.change_at
    assert abs((change - t[n_before - 1]) / pd.Timedelta("15min")) < delay


@pytest.mark.parametrize("kind", DETECTORS)
@pytest.mark.parametrize("mean", [-0.002, 0.0])
def test_a_stable_series_with_the_same_noise_never_alarms(kind, mean):
    # ~100,000 outcomes: 12 weeks of a 1m deployment (6 symbols x 7 horizons on the grid)
    for seed in range(3):
        d, t = series(100_000, mean, seed=seed)
        state = detector(kind).update(detector(kind).new_state(), d, t)
        assert state.alarm is None, (seed, state.alarm)
        assert state.statistic < CFG.detector_threshold


def test_page_hinkley_holds_a_champion_that_never_beat_its_reference_to_parity():
    # worse than the reference from the very first outcome: no change to see, yet an excess
    d, t = series(3000, 0.02, seed=4)
    assert detector("page_hinkley").update(detector().new_state(), d, t).alarm is not None


def test_no_alarm_while_the_champion_is_still_better_than_its_reference():
    # much better, then only a little better: a change, but rolling back would not help
    d, t = jump_series(5000, 20_000, before=-0.04, after=-0.01, seed=2, sd=0.03)
    det = detector("page_hinkley")
    state = det.update(det.new_state(), d, t)
    assert state.statistic > CFG.detector_threshold  # the change itself is seen
    assert state.alarm is None and state.mean_diff_since_change < 0


def test_no_alarm_before_min_outcomes():
    d, t = series(150, 0.5, seed=1)  # hopelessly worse, but only 150 outcomes
    det = detector(min_outcomes=200)
    state = det.update(det.new_state(), d, t)
    assert state.alarm is None and state.statistic > CFG.detector_threshold
    more, t2 = series(1, 0.5, seed=2, start="2025-02-01")
    state = det.update(state, more, t2)
    assert state.alarm is None  # 151
    d3, t3 = series(49, 0.5, seed=3, start="2025-03-01")
    state = det.update(state, d3, t3)
    assert state.alarm is not None and state.alarm.n_outcomes == 200


def test_cusum_is_the_tabular_recursion():
    d, t = jump_series(300, 300, before=0.0, after=0.05, seed=7)
    det = Cusum(delta=0.01, threshold=1e9, min_outcomes=1)
    g = 0.0
    for x in d:
        g = max(0.0, g + x - 0.01)
    assert det.update(det.new_state(), d, t).statistic == pytest.approx(g, abs=1e-9)


# ---------------------------------------------------------------- state
@pytest.mark.parametrize("kind", DETECTORS)
def test_state_round_trips_and_resuming_equals_one_pass(kind):
    d, t = jump_series(3000, 3000, before=-0.003, after=0.015, seed=3)
    det = detector(kind)
    one_pass = det.update(det.new_state(version="3", reference="previous v2"), d, t)
    state = det.new_state(version="3", reference="previous v2")
    for lo, hi in [(0, 1), (1, 700), (700, 700), (700, 3100), (3100, 4000), (4000, 6000)]:
        stored = json.loads(json.dumps(state.to_dict()))  # what the warehouse keeps
        state = det.update(DetectorState.from_dict(stored), d[lo:hi], t[lo:hi])
    assert one_pass.alarm is not None
    assert state == one_pass  # exactly, including the alarm
    assert DetectorState.from_dict(json.loads(json.dumps(state.to_dict()))) == state


def test_resume_resets_on_version_reference_or_settings_change():
    det = detector()
    d, t = series(500, 0.001)
    stored = det.update(det.new_state(version="3", reference="previous v2"), d, t)
    same, why = det.resume(stored, version="3", reference="previous v2")
    assert same is stored and why is None
    fresh, why = det.resume(stored, version="4", reference="previous v3")
    assert fresh.n_outcomes == 0 and fresh.version == "4" and fresh.alarm is None
    assert why == "champion changed (v3 -> v4)"
    fresh, why = det.resume(stored, version="3", reference="naive baseline")
    assert fresh.n_outcomes == 0 and "reference changed" in why
    other = detector(delta=CFG.detector_delta * 2)
    fresh, why = other.resume(stored, version="3", reference="previous v2")
    assert fresh.n_outcomes == 0 and fresh.delta == other.delta
    assert "settings changed" in why
    assert det.resume(None, version="3", reference="x")[1] == "no stored state"


def test_describe_and_metrics_carry_the_numbers():
    d, t = jump_series(2000, 3000, before=-0.002, after=0.03, seed=5)
    det = PageHinkley(delta=0.003, threshold=10.0, min_outcomes=200)
    state = det.update(det.new_state(version="3", reference="previous v2"), d, t)
    text = describe_state(state)
    assert text.startswith("Page-Hinkley alarm: cumulative log-loss excess ")
    assert (
        f"{state.alarm.statistic:.1f} > 10.0 over {state.alarm.n_since_change:,} outcomes" in text
    )
    assert "vs previous v2" in text
    m = state_metrics(state)
    assert m["detector_alarm"] and m["detector_threshold"] == 10.0
    assert m["detector_alarm_at"] == state.alarm.at.isoformat()
    assert m["detector_n_outcomes"] == 5000
    quiet = det.update(det.new_state(version="3", reference="naive baseline"), d[:100], t[:100])
    assert "quiet" in describe_state(quiet) and "waiting for min_outcomes=200" in describe_state(
        quiet
    )
    assert json.dumps(m)  # JSON-able as it is


# ---------------------------------------------------------------- the loss
def test_log_loss_difference_signs_and_clip():
    up = np.array([1.0, 0.0, 1.0])
    d = log_loss_difference([0.9, 0.1, 0.6], [0.5, 0.5, 0.5], up)
    assert (d < 0).all()
    assert d[0] == pytest.approx(-math.log(0.9) - math.log(2))
    worst = log_loss_difference([0.0], [0.5], [1.0])[0]
    assert worst == pytest.approx(-math.log(LOSS_EPS) - math.log(2))
    with pytest.raises(DataContractError, match="differ in shape"):
        log_loss_difference([0.5, 0.5], [0.5], [1.0, 0.0])


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"delta": -0.1}, r"delta=-0\.1 must be finite and >= 0"),
        ({"delta": math.inf}, "delta=inf must be finite"),
        ({"threshold": 0.0}, r"threshold=0\.0 must be finite and > 0"),
        ({"threshold": "25"}, "threshold must be a number"),
        ({"min_outcomes": 0}, "min_outcomes=0 must be an integer >= 1"),
        ({"min_outcomes": 2.5}, "min_outcomes=2.5 must be an integer"),
    ],
)
def test_parameters_are_validated(kw, match):
    params = {"delta": 0.003, "threshold": 10.0, "min_outcomes": 200, **kw}
    with pytest.raises(ConfigError, match=match):
        PageHinkley(**params)


def test_unknown_detector_and_off():
    assert make_detector("off", delta=0.0, threshold=1.0, min_outcomes=1) is None
    with pytest.raises(ConfigError, match="Unknown detector 'ewma'"):
        make_detector("ewma", delta=0.0, threshold=1.0, min_outcomes=1)


def test_bad_inputs_are_refused():
    det = detector()
    state = det.new_state()
    with pytest.raises(DataContractError, match="3 loss differences but 2 times"):
        det.update(state, [0.1, 0.2, 0.3], pd.date_range("2025-01-01", periods=2, freq="h"))
    with pytest.raises(DataContractError, match="1 loss difference"):
        det.update(state, [0.1, math.nan], pd.date_range("2025-01-01", periods=2, freq="h"))
    with pytest.raises(ConfigError, match="call resume"):
        Cusum(delta=0.003, threshold=10.0, min_outcomes=200).update(state, [], [])
