"""Paired bootstrap of a mean difference: does the challenger beat the champion?

Both models are scored on the same units (here: CPCV time blocks), so the
question is about the per-unit differences ``d = challenger - champion``.
Resampling the units with replacement ``n_boot`` times (seeded) gives the
distribution of the mean difference; from it:

* ``ci_low`` - the one-sided lower confidence bound at ``confidence``, i.e.
  the ``1 - confidence`` quantile (``ci_high`` is the ``confidence`` quantile,
  so ``[ci_low, ci_high]`` is the two-sided interval at ``2*confidence - 1``);
* ``p_value`` - one-sided, the share of resampled means at or below 0
  (the percentile-bootstrap p-value of H0: mean difference <= 0).

Pure numpy. The units should be close to independent: see
``ml_core.validation.cpcv_eval`` for why time blocks, not (split, horizon)
cells, are used.

Example::

    res = paired_bootstrap(auc_challenger, auc_champion, confidence=0.9, seed=0)
    res.mean_diff, res.ci_low, res.p_value
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from ml_core.errors import ConfigError, DataContractError


@dataclass(frozen=True)
class PairedBootstrap:
    """Mean difference of paired units with its bootstrap bounds."""

    mean_diff: float
    ci_low: float
    ci_high: float
    p_value: float
    confidence: float
    n_units: int
    n_boot: int
    seed: int

    def beats(self, min_improvement: float = 0.0) -> bool:
        """Lower bound above 0 and mean difference at least ``min_improvement``."""
        return self.ci_low > 0 and self.mean_diff >= min_improvement

    def as_metrics(self, prefix: str = "") -> dict[str, float]:
        """Flat numbers for a decision record."""
        return {
            f"{prefix}mean_diff": self.mean_diff,
            f"{prefix}ci_low": self.ci_low,
            f"{prefix}ci_high": self.ci_high,
            f"{prefix}p_value": self.p_value,
            f"{prefix}n_units": self.n_units,
        }


def paired_bootstrap(
    challenger: ArrayLike,
    champion: ArrayLike | float,
    *,
    confidence: float = 0.9,
    n_boot: int = 2000,
    seed: int = 0,
) -> PairedBootstrap:
    """Bootstrap the mean of ``challenger - champion`` over paired units.

    ``champion`` may be a scalar (e.g. 0.5, a coin flip's AUC) to test one
    model against a fixed level. Units where either value is NaN are dropped.

    >>> res = paired_bootstrap([0.6, 0.62, 0.58, 0.61], [0.5, 0.52, 0.5, 0.49], seed=1)
    >>> round(res.mean_diff, 4), res.ci_low > 0
    (0.1, True)
    """
    _check_settings(confidence, n_boot)
    a = np.asarray(challenger, dtype=float).ravel()
    b = (
        np.broadcast_to(np.asarray(champion, dtype=float), a.shape)
        if np.ndim(champion) == 0
        else (np.asarray(champion, dtype=float).ravel())
    )
    if a.shape != b.shape:
        raise DataContractError(
            f"challenger has {a.size} units but champion has {b.size}; pass values "
            "scored on the same units, in the same order."
        )
    diff = (a - b)[np.isfinite(a) & np.isfinite(b)]
    if diff.size < 2:
        raise DataContractError(
            f"paired bootstrap needs at least 2 units with finite values on both sides, got "
            f"{diff.size}; score on more blocks (more history or more CPCV groups)."
        )
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    chunk = max(1, 2_000_000 // diff.size)  # bound memory of the index matrix
    for lo in range(0, n_boot, chunk):
        hi = min(n_boot, lo + chunk)
        idx = rng.integers(0, diff.size, size=(hi - lo, diff.size))
        means[lo:hi] = diff[idx].mean(axis=1)
    return PairedBootstrap(
        mean_diff=float(diff.mean()),
        ci_low=float(np.quantile(means, 1.0 - confidence)),
        ci_high=float(np.quantile(means, confidence)),
        p_value=float(np.mean(means <= 0.0)),
        confidence=float(confidence),
        n_units=int(diff.size),
        n_boot=int(n_boot),
        seed=int(seed),
    )


def _check_settings(confidence: float, n_boot: int) -> None:
    if not 0.5 < float(confidence) < 1.0:
        raise ConfigError(f"confidence={confidence} must be in (0.5, 1), e.g. 0.9.")
    if isinstance(n_boot, bool) or not isinstance(n_boot, numbers.Integral) or n_boot < 100:
        raise ConfigError(f"n_boot={n_boot!r} must be an int >= 100, e.g. 2000.")
