"""Conformal prediction sets for the direction of every model: {up}, {down} or both.

A calibrated P(up) of 0.56 says little about how sure the forecast is. MAPIE's split
conformal classifier (``SplitConformalClassifier``, score ``lac``) turns it into a set
that holds the realized direction with a chosen probability (``models.
conformal_confidence``, default 0.9) on exchangeable data: ``up`` or ``down`` when the
model is sure enough, ``both`` (or ``none``, an empty set) when it is not: abstain, no
trade. It works on the
pipeline's calibrated P(up) itself, so every model gets one, trees and linear models
included; it is conformalized on the validation part (the rows the calibrator saw too)
and its realized coverage is measured on the test part, which neither saw.

Example::

    conformal = fit_conformal(p_val, y_val, confidence=0.9)
    prediction_sets(conformal, p_test)   # array(['both', 'up', ...])
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

#: Fewest labelled rows (and of each class) a conformal set is fitted on.
MIN_CONFORMAL_ROWS = 200

#: What a served set is called: index = (down in set) + 2 * (up in set).
SET_NAMES = np.array(["none", "down", "up", "both"], dtype=object)


class ProbabilityAsFeature(ClassifierMixin, BaseEstimator):
    """A prefit classifier whose one input column is P(up): MAPIE's view of any pipeline."""

    def fit(self, X: np.ndarray, y: np.ndarray) -> ProbabilityAsFeature:  # noqa: N803
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = 1
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        p = np.clip(np.asarray(X, dtype=float)[:, 0], 0.0, 1.0)
        return np.column_stack([1.0 - p, p])

    def predict(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        return (np.asarray(X, dtype=float)[:, 0] > 0.5).astype(int)


def fit_conformal(p: np.ndarray, y: np.ndarray, *, confidence: float) -> object | None:
    """MAPIE's split conformal classifier on (P(up), label) pairs; None with too few rows
    or one class (no set is served then)."""
    from mapie.classification import SplitConformalClassifier

    p = np.asarray(p, dtype=float)
    y = np.asarray(y, dtype=float)
    ok = np.isfinite(p) & np.isfinite(y)
    p, y = p[ok], y[ok].astype(int)
    n_up = int(y.sum())
    if len(y) < MIN_CONFORMAL_ROWS or min(n_up, len(y) - n_up) < 20:
        return None
    estimator = ProbabilityAsFeature().fit(p[:1].reshape(-1, 1), y[:1])
    model = SplitConformalClassifier(
        estimator=estimator, confidence_level=confidence, conformity_score="lac", prefit=True
    )
    return model.conformalize(p.reshape(-1, 1), y)


def prediction_sets(model: object | None, p: np.ndarray) -> np.ndarray:
    """``up`` / ``down`` / ``both`` (abstain) / ``none`` per P(up); None entries (object
    array) without a model or where p is NaN."""
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, None, dtype=object)
    ok = np.isfinite(p)
    if model is None or not ok.any():
        return out
    _, sets = model.predict_set(p[ok].reshape(-1, 1))  # type: ignore[attr-defined]
    members = sets[:, :, 0].astype(int)
    out[ok] = SET_NAMES[members[:, 0] + 2 * members[:, 1]]
    return out


def coverage(sets: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Realized coverage (share of labelled rows whose direction is in its set) and the
    shares of abstentions (``both``, or ``none``: an empty set, which LAC gives to a
    P(up) too unsure for either direction), ``up`` and ``down`` sets."""
    y = np.asarray(y, dtype=float)
    ok = np.isfinite(y) & np.array([s is not None for s in sets], dtype=bool)
    if not ok.any():
        return {"coverage": float("nan"), "abstain": float("nan"), "n": 0}
    s, truth = sets[ok], y[ok]
    covered = np.where(truth == 1, np.isin(s, ["up", "both"]), np.isin(s, ["down", "both"]))
    return {
        "coverage": float(covered.mean()),
        "abstain": float(np.isin(s, ["both", "none"]).mean()),
        "set_up": float((s == "up").mean()),
        "set_down": float((s == "down").mean()),
        "n": int(ok.sum()),
    }
