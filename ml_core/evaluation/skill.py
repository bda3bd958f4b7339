"""Skill, not luck: per-horizon evidence against the naive baselines, and refresh comparisons.

A first champion (and every promoted model) must show, **per horizon**, that it
beats the best naive baseline (``always_up``, ``persistence``,
``momentum_sign``) with a bound, on two kinds of held-out time:

* **CPCV paths** of the development rows (train + validation): the model's
  recipe and each baseline are refit on every purged, embargoed split, and the
  per-block AUC differences (model - best baseline) are bootstrapped;
* **the test window**: the evaluated fit and each baseline (fit on train) are
  scored on the same time blocks of the test part, and the differences are
  bootstrapped.

The best baseline is chosen per horizon *after* seeing its scores (the highest
mean block AUC), which only makes the rule harder to pass. Each horizon's
lower bounds must be above 0, corrected for the number of horizons tested
(Bonferroni by default): the test-window bound at ``skill_confidence`` (0.995)
and the CPCV bound at ``confidence`` (0.9). The test window carries the
stricter level because it is the only evidence fitted strictly on the past:
on random-walk candles the CPCV comparison against the baselines came out
"significant" far more often than its level says (refits on rows after a test
group track the test period's own prices), while the test-window p-values were
uniform. A horizon passes
only when both bounds are above 0 and the test-window gain is at least
``min_baseline_margin``; the others are served as "no edge".

A *refresh* (the champion's recipe refit on newer data) is compared with the
champion on the newest rows that neither was fitted on
(:func:`compare_on_window`): the paired block bootstrap of their AUC
difference must have a lower bound above ``-refresh_margin``.

Example::

    skills = assess_skill(parts, probs, cpcv=ev, config="challenger", gate=cfg.gate,
                          horizons=[1, 4], min_margin=0.0)
    [s.horizon for s in skills if s.has_skill]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ml_core.config import GateConfig
from ml_core.errors import DataContractError
from ml_core.evaluation.baselines import (
    BASELINE_NAMES,
    AlwaysUp,
    MomentumSign,
    Persistence,
    fit_baselines,
)
from ml_core.evaluation.paired import PairedBootstrap, paired_bootstrap
from ml_core.validation.cpcv import time_blocks, to_ns
from ml_core.validation.cpcv_eval import CPCVEvaluation, auc_score

#: Configuration names of the baselines in a CPCV evaluation.
BASELINE_PREFIX = "baseline:"
_BASELINE_CLASSES = {cls.name: cls for cls in (AlwaysUp, Persistence, MomentumSign)}


@dataclass
class BaselineRecipe:
    """A naive baseline as a CPCV configuration: refit on each split's training rows."""

    candidate: str
    horizons: list[int]

    @property
    def feature_columns(self) -> list[str]:
        return []

    def fit_predict_rows(
        self, train: pd.DataFrame, test: pd.DataFrame, horizons: list[int]
    ) -> dict[int, np.ndarray]:
        cls = _BASELINE_CLASSES[self.candidate]
        return {h: np.asarray(cls(h).fit(train).predict_proba(test), dtype=float) for h in horizons}


def baseline_recipes(horizons: Sequence[int]) -> dict[str, BaselineRecipe]:
    """Every naive baseline as a CPCV configuration, keyed ``baseline:<name>``."""
    return {
        f"{BASELINE_PREFIX}{n}": BaselineRecipe(n, [int(h) for h in horizons])
        for n in BASELINE_NAMES
    }


@dataclass(frozen=True)
class HorizonSkill:
    """Whether one horizon shows skill over the best naive baseline, with the numbers."""

    horizon: int
    has_skill: bool
    reason: str
    confidence: float
    test_baseline: str
    test: PairedBootstrap | None
    cpcv_baseline: str | None = None
    cpcv: PairedBootstrap | None = None

    def as_metrics(self) -> dict[str, Any]:
        h = self.horizon
        out: dict[str, Any] = {
            f"skill_h{h}": self.has_skill,
            f"skill_h{h}_baseline": self.test_baseline,
        }
        if self.test is not None:
            out.update(self.test.as_metrics(f"skill_h{h}_test_"))
        if self.cpcv is not None:
            out[f"skill_h{h}_cpcv_baseline"] = self.cpcv_baseline
            out.update(self.cpcv.as_metrics(f"skill_h{h}_cpcv_"))
        return out

    def summary(self) -> str:
        """``h=4: +0.0123 vs momentum_sign (low +0.0041), CPCV +0.0100 (low +0.0020)``."""
        parts = [f"h={self.horizon}:"]
        if self.test is not None:
            parts.append(
                f"test {self.test.mean_diff:+.4f} vs {self.test_baseline} "
                f"(low {self.test.ci_low:+.4f})"
            )
        if self.cpcv is not None:
            parts.append(f"CPCV {self.cpcv.mean_diff:+.4f} (low {self.cpcv.ci_low:+.4f})")
        return " ".join(parts) + ("" if self.has_skill else f" - no edge: {self.reason}")


def horizon_confidence(gate: GateConfig, n_horizons: int, *, test_window: bool = False) -> float:
    """The per-horizon confidence: Bonferroni over ``n_horizons`` unless switched off.

    ``test_window`` uses ``gate.skill_confidence`` (the out-of-time test bound),
    otherwise ``gate.confidence`` (the CPCV bound).
    """
    level = gate.skill_confidence if test_window else gate.confidence
    if gate.skill_correction == "none" or n_horizons <= 1:
        return level
    return 1.0 - (1.0 - level) / n_horizons


def test_blocks(frame: pd.DataFrame, n_blocks: int) -> np.ndarray:
    """Time block (0..n-1) of every row: equal-count blocks of the shared timestamps."""
    ts_ns = to_ns(frame["ts"].to_numpy(), "ts")
    n = max(1, min(int(n_blocks), len(np.unique(ts_ns))))
    return time_blocks(ts_ns, ts_ns, n).block


def block_auc(y: np.ndarray, p: np.ndarray, blocks: np.ndarray) -> np.ndarray:
    """AUC of ``p`` for ``y`` within each block (NaN where a block has one class)."""
    return np.array([auc_score(y[blocks == b], p[blocks == b]) for b in np.unique(blocks)])


def assess_skill(
    test: pd.DataFrame,
    probs: Mapping[int, np.ndarray],
    *,
    train: pd.DataFrame,
    horizons: Sequence[int],
    gate: GateConfig,
    min_margin: float = 0.0,
    cpcv: CPCVEvaluation | None = None,
    config: str = "challenger",
) -> list[HorizonSkill]:
    """Per-horizon skill of ``probs`` (P(up) on ``test``) over the best naive baseline.

    Baselines are fit on ``train`` and scored on the same ``gate.skill_blocks``
    time blocks of ``test``. With ``cpcv`` (holding ``config`` and the
    ``baseline:*`` configurations), the CPCV block differences must pass too.
    """
    horizons = [int(h) for h in horizons]
    if test.empty:
        raise DataContractError("skill needs test rows; the test part is empty.")
    conf = horizon_confidence(gate, len(horizons), test_window=True)
    kw = {"confidence": conf, "n_boot": gate.n_boot, "seed": gate.seed}
    kw_cpcv = {**kw, "confidence": horizon_confidence(gate, len(horizons))}
    blocks = test_blocks(test, gate.skill_blocks)
    out = []
    for h in horizons:
        y = test[f"up_{h}"].to_numpy(dtype=float)
        model = block_auc(y, np.asarray(probs[h], dtype=float), blocks)
        fitted = fit_baselines(train, h)
        base = {n: block_auc(y, fitted[n].predict_proba(test), blocks) for n in BASELINE_NAMES}
        best = max(base, key=lambda n: np.nan_to_num(np.nanmean(base[n]), nan=-1.0))
        reasons = []
        try:
            res_test = paired_bootstrap(model, base[best], **kw)
        except DataContractError as exc:
            res_test = None
            reasons.append(f"test window: {exc}")
        if res_test is not None and res_test.ci_low <= 0:
            reasons.append(f"test lower bound {res_test.ci_low:+.4f} <= 0")
        if res_test is not None and res_test.mean_diff < min_margin:
            reasons.append(f"test gain {res_test.mean_diff:+.4f} < margin {min_margin:.4f}")
        cpcv_best, res_cpcv = None, None
        if cpcv is not None:
            cpcv_best, res_cpcv, why = _cpcv_skill(cpcv, config, h, kw_cpcv)
            reasons += why
        out.append(
            HorizonSkill(
                horizon=h,
                has_skill=not reasons,
                reason="; ".join(reasons),
                confidence=conf,
                test_baseline=best,
                test=res_test,
                cpcv_baseline=cpcv_best,
                cpcv=res_cpcv,
            )
        )
    return out


def _cpcv_skill(
    cpcv: CPCVEvaluation, config: str, h: int, kw: dict[str, Any]
) -> tuple[str | None, PairedBootstrap | None, list[str]]:
    if h not in cpcv.horizons:
        return None, None, [f"horizon not evaluated on CPCV (cpcv_horizons={list(cpcv.horizons)})"]
    names = [c for c in cpcv.configs if c.startswith(BASELINE_PREFIX)]
    if not names:
        raise DataContractError(
            "the CPCV evaluation holds no baseline configurations; evaluate with "
            "baseline_recipes(horizons) beside the model."
        )
    model = cpcv.block_auc(config, h)
    scores = {n: cpcv.block_auc(n, h).reindex(model.index) for n in names}
    best = max(scores, key=lambda n: np.nan_to_num(scores[n].mean(), nan=-1.0))
    try:
        res = paired_bootstrap(model.to_numpy(), scores[best].to_numpy(), **kw)
    except DataContractError as exc:
        return best.removeprefix(BASELINE_PREFIX), None, [f"CPCV: {exc}"]
    why = [] if res.ci_low > 0 else [f"CPCV lower bound {res.ci_low:+.4f} <= 0"]
    return best.removeprefix(BASELINE_PREFIX), res, why


def compare_on_window(
    window: pd.DataFrame,
    a: Mapping[int, np.ndarray],
    b: Mapping[int, np.ndarray],
    *,
    horizons: Sequence[int],
    gate: GateConfig,
) -> PairedBootstrap:
    """Paired block bootstrap of the AUC difference ``a - b`` on ``window``.

    A block's value is the mean over horizons of the within-block AUC
    difference; blocks are ``gate.skill_blocks`` time blocks of ``window``.
    """
    if window.empty:
        raise DataContractError("the comparison window is empty; no unseen rows to compare on.")
    blocks = test_blocks(window, gate.skill_blocks)
    diffs = []
    for h in horizons:
        y = window[f"up_{h}"].to_numpy(dtype=float)
        diffs.append(
            block_auc(y, np.asarray(a[h], dtype=float), blocks)
            - block_auc(y, np.asarray(b[h], dtype=float), blocks)
        )
    per_block = np.nanmean(np.vstack(diffs), axis=0) if diffs else np.empty(0)
    return paired_bootstrap(
        per_block, 0.0, confidence=gate.confidence, n_boot=gate.n_boot, seed=gate.seed
    )
