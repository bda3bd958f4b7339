"""Paired bootstrap on synthetic paired scores: power on a real effect, calm on noise."""

from __future__ import annotations

import numpy as np
import pytest

from ml_core.errors import ConfigError, DataContractError
from ml_core.evaluation.paired import paired_bootstrap

SEEDS = range(20)


def _pair(seed: int, effect: float, n_units: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """Champion AUC per unit varies a lot between units; the challenger adds ``effect``."""
    rng = np.random.default_rng(seed)
    champion = 0.53 + rng.normal(scale=0.05, size=n_units)
    challenger = champion + effect + rng.normal(scale=0.05, size=n_units)
    return challenger, champion


def test_real_effect_is_detected_at_90_percent_on_every_seed():
    found = [paired_bootstrap(*_pair(s, 0.05), confidence=0.9, seed=s) for s in SEEDS]
    assert all(r.ci_low > 0 and r.beats(0.002) for r in found)
    assert all(r.p_value < 0.1 for r in found)
    assert np.mean([r.mean_diff for r in found]) == pytest.approx(0.05, abs=0.01)


def test_pure_noise_is_rarely_detected():
    found = [paired_bootstrap(*_pair(s, 0.0), confidence=0.9, seed=s) for s in SEEDS]
    hits = sum(r.beats() for r in found)
    assert hits <= 4  # ~10% expected at 0.9; 4 of 20 would already be unusual
    assert 0.2 < np.mean([r.p_value for r in found]) < 0.8


def test_pairing_matters_more_than_unit_spread():
    # unit-to-unit spread dwarfs the effect; only pairing reveals it
    rng = np.random.default_rng(1)
    champion = 0.5 + rng.normal(scale=0.2, size=30)
    res = paired_bootstrap(champion + 0.01, champion, seed=0)
    assert res.ci_low == pytest.approx(0.01) and res.p_value == 0.0


def test_bounds_are_ordered_seeded_and_scalar_champion_works():
    a, b = _pair(3, 0.02)
    one = paired_bootstrap(a, b, confidence=0.9, n_boot=500, seed=11)
    two = paired_bootstrap(a, b, confidence=0.9, n_boot=500, seed=11)
    assert one == two
    assert one.ci_low <= one.mean_diff <= one.ci_high and one.n_units == 24
    wider = paired_bootstrap(a, b, confidence=0.99, n_boot=500, seed=11)
    assert wider.ci_low < one.ci_low
    coin = paired_bootstrap(a, 0.5, seed=0)
    assert coin.mean_diff == pytest.approx(float(np.mean(a)) - 0.5)


def test_nan_units_are_dropped_and_bad_input_is_named():
    res = paired_bootstrap([0.6, np.nan, 0.7, 0.65], [0.5, 0.5, np.nan, 0.55], seed=0)
    assert res.n_units == 2
    with pytest.raises(DataContractError, match="same units"):
        paired_bootstrap([0.5, 0.6], [0.5, 0.6, 0.7])
    with pytest.raises(DataContractError, match="at least 2 units"):
        paired_bootstrap([0.5, np.nan], [0.5, 0.5])
    with pytest.raises(ConfigError, match="confidence=1.2"):
        paired_bootstrap([0.5, 0.6], [0.5, 0.6], confidence=1.2)
    with pytest.raises(ConfigError, match="n_boot=10"):
        paired_bootstrap([0.5, 0.6], [0.5, 0.6], n_boot=10)
