"""Weekly realized skill of the served predictions, beside the naive baselines on the same rows.

Per policy, week and horizon (and a horizon-0 row: the mean over horizons, as
the monitor and the gate summarize): AUC, log loss, Brier, the hit rate of
the confident decile, and the after-fee return of the simple trading view
(``ml_core.evaluation.trading``). The naive baselines
(``ml_core.evaluation.baselines``) are fitted *causally*: on the model-frame
rows whose label was known when the week began (bar t+h closed by the
week's start), then scored on exactly the served rows of that week. A week is
flagged when the served AUC is below the best baseline's (the best chosen per
horizon, as the promotion gate's skill rule does).

The confident decile: the 10% of rows with the largest ``|p - 0.5|`` (the top
and bottom tails of P(up) together); its hit rate is the share whose side of
0.5 matched the realized direction.

Example::

    table = weekly_metrics(served, weeks, model_frame=frame, horizons=[1, 4],
                           eval_cfg=EvaluationConfig(), timeframe="1h")
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ml_core.config import EvaluationConfig
from ml_core.errors import ConfigError, DataContractError
from ml_core.evaluation.baselines import BASELINE_NAMES, Baseline, fit_baselines
from ml_core.evaluation.metrics import classification_metrics
from ml_core.evaluation.trading import trading_metrics
from ml_core.replay.clock import ReplayWeek, bar_length, week_of

log = logging.getLogger(__name__)

#: Horizon of the summary row (mean over horizons).
SUMMARY_HORIZON = 0
#: Share of the most confident rows in the confident-decile hit rate.
CONFIDENT_SHARE = 0.1
#: Columns of the weekly table, in order.
WEEKLY_COLUMNS = [
    "policy",
    "week",
    "week_start",
    "week_stop",
    "horizon",
    "n",
    "auc",
    "log_loss",
    "brier",
    "hit_rate_confident",
    "n_confident",
    "trading_return",
    "bh_return",
    "best_baseline",
    "baseline_auc",
    "baseline_log_loss",
    "auc_vs_baseline",
    "worse_than_baseline",
    "versions",
]
_MEANED = (
    "auc",
    "log_loss",
    "brier",
    "hit_rate_confident",
    "trading_return",
    "bh_return",
    "baseline_auc",
    "baseline_log_loss",
)


def confident_hit_rate(
    up: Sequence[float] | np.ndarray,
    p_up: Sequence[float] | np.ndarray,
    share: float = CONFIDENT_SHARE,
) -> tuple[float, int]:
    """Hit rate of the ``share`` most confident rows (by ``|p - 0.5|``) and their count.

    Rows with an unknown outcome are dropped first; ties at the cut are broken
    by row order (stable). A row "hits" when ``p > 0.5`` and it went up, or
    ``p <= 0.5`` and it did not.

    >>> confident_hit_rate([1, 0, 1, 0], [0.9, 0.2, 0.55, 0.5], share=0.5)
    (1.0, 2)
    """
    if not 0 < share <= 1:
        raise ConfigError(f"share={share} must be in (0, 1], e.g. 0.1 for the confident decile.")
    y = np.asarray(up, dtype=float).ravel()
    p = np.asarray(p_up, dtype=float).ravel()
    if y.shape != p.shape:
        raise DataContractError(f"up has {y.size} rows but p_up has {p.size}; pass one per row.")
    known = ~(np.isnan(y) | np.isnan(p))
    y, p = y[known], p[known]
    if y.size == 0:
        return math.nan, 0
    n = max(1, math.ceil(share * y.size))
    order = np.argsort(-np.abs(p - 0.5), kind="stable")[:n]
    hits = (p[order] > 0.5) == (y[order] == 1.0)
    return float(hits.mean()), int(n)


def score_rows(
    rows: pd.DataFrame,
    p_up: np.ndarray,
    *,
    horizon: int,
    eval_cfg: EvaluationConfig,
    timeframe: str,
) -> dict[str, float]:
    """Realized metrics of ``p_up`` on ``rows`` (``symbol, ts, up, ret``) for one horizon."""
    up = rows["up"].to_numpy(dtype=float)
    scores = classification_metrics(up, p_up)
    hit, n_conf = confident_hit_rate(up, p_up)
    trade = pd.DataFrame(
        {
            "symbol": rows["symbol"].to_numpy(),
            "ts": rows["ts"].to_numpy(),
            f"ret_{horizon}": rows["ret"],
        }
    )
    trading = trading_metrics(trade, p_up, horizon=horizon, cfg=eval_cfg, timeframe=timeframe)
    return {
        "n": int(scores["n"]),
        "auc": scores["auc"],
        "log_loss": scores["log_loss"],
        "brier": scores["brier"],
        "hit_rate_confident": hit,
        "n_confident": n_conf,
        "trading_return": trading["total_return"],
        "bh_return": trading["bh_total_return"],
    }


def weekly_metrics(
    served: pd.DataFrame,
    weeks: Sequence[ReplayWeek],
    *,
    model_frame: pd.DataFrame,
    horizons: Sequence[int],
    eval_cfg: EvaluationConfig,
    timeframe: str,
    policies: Sequence[str] | None = None,
) -> pd.DataFrame:
    """``WEEKLY_COLUMNS``: one row per (policy, week, horizon) plus a horizon-0 summary.

    ``served`` holds realized served predictions (``policy, served_at,
    model_version, symbol, ts, horizon, p_up, up, ret``); a row belongs to the
    week its prediction was served in. ``model_frame`` is the model frame
    (features and labels, ``ml_core.features.build_model_frame``) of the same
    candles; the baselines are fitted on it per week and horizon. ``policies``
    (default: those in ``served``, in order) get rows even where they served
    nothing (``n = 0``, metrics NaN).
    """
    realized = served[served["up"].notna()].copy()
    realized["week"] = week_of(realized["served_at"], weeks)
    fitted = _BaselineCache(model_frame, timeframe)
    by_number = {w.number: w for w in weeks}
    rows: list[dict] = []
    for policy in policies or list(dict.fromkeys(served["policy"])):
        mine = realized[realized["policy"] == policy]
        for week in weeks:
            this_week = mine[mine["week"] == week.number]
            per_h = []
            for h in horizons:
                g = this_week[this_week["horizon"] == int(h)].sort_values(["symbol", "ts"])
                per_h.append(
                    _horizon_row(g, int(h), week, fitted, eval_cfg, timeframe)
                    | {"versions": _versions(g)}
                )
            head = {"policy": policy, "week": week.number}
            head |= {"week_start": week.start, "week_stop": by_number[week.number].stop}
            rows += [head | r for r in per_h]
            rows.append(head | _summary(per_h) | {"versions": _versions(this_week)})
    if not rows:
        return pd.DataFrame(columns=WEEKLY_COLUMNS)
    return pd.DataFrame(rows)[WEEKLY_COLUMNS]


def worse_weeks(weekly: pd.DataFrame) -> pd.DataFrame:
    """The summary rows (horizon 0) of weeks whose served AUC trailed the best baseline."""
    summary = weekly[weekly["horizon"] == SUMMARY_HORIZON]
    return summary[summary["worse_than_baseline"].fillna(False).astype(bool)].reset_index(drop=True)


# ---- helpers ------------------------------------------------------------------------------


class _BaselineCache:
    """Baselines fitted once per (week start, horizon) on the rows known at the week's start."""

    def __init__(self, model_frame: pd.DataFrame, timeframe: str) -> None:
        self.frame = model_frame
        self.bar = bar_length(timeframe)
        self.fitted: dict[tuple[pd.Timestamp, int], dict[str, Baseline] | None] = {}

    def get(self, week_start: pd.Timestamp, horizon: int) -> dict[str, Baseline] | None:
        key = (week_start, horizon)
        if key not in self.fitted:
            t1 = pd.to_datetime(self.frame[f"t1_{horizon}"])
            known = self.frame[(t1 + self.bar) <= week_start]
            try:
                self.fitted[key] = fit_baselines(known, horizon)
            except DataContractError as exc:
                log.warning("no baselines for week %s, h=%d: %s", week_start, horizon, exc)
                self.fitted[key] = None
        return self.fitted[key]

    def features(self, rows: pd.DataFrame, horizon: int) -> pd.DataFrame:
        """The baselines' inputs (``logret_1``, ``past_ret_h``) for ``rows`` (by symbol, ts)."""
        cols = ["symbol", "ts", "logret_1", f"past_ret_{horizon}"]
        feats = self.frame[cols].copy()
        feats["ts"] = pd.to_datetime(feats["ts"]).astype("datetime64[us]")
        keys = rows[["symbol", "ts"]].copy()
        keys["ts"] = pd.to_datetime(keys["ts"]).astype("datetime64[us]")
        return keys.merge(feats, on=["symbol", "ts"], how="left")


def _horizon_row(
    g: pd.DataFrame,
    horizon: int,
    week: ReplayWeek,
    cache: _BaselineCache,
    eval_cfg: EvaluationConfig,
    timeframe: str,
) -> dict:
    out: dict = {"horizon": horizon, "best_baseline": None, "baseline_auc": math.nan}
    out["baseline_log_loss"] = math.nan
    if g.empty:
        empty = dict.fromkeys(("auc", "log_loss", "brier", "hit_rate_confident"), math.nan)
        empty |= {"trading_return": math.nan, "bh_return": math.nan, "n": 0, "n_confident": 0}
        return out | empty | {"auc_vs_baseline": math.nan, "worse_than_baseline": None}
    p_up = g["p_up"].to_numpy(dtype=float)
    out |= score_rows(g, p_up, horizon=horizon, eval_cfg=eval_cfg, timeframe=timeframe)
    fitted = cache.get(week.start, horizon)
    if fitted is not None:
        feats = cache.features(g, horizon)
        up = g["up"].to_numpy(dtype=float)
        scored = {
            name: classification_metrics(up, fitted[name].predict_proba(feats))
            for name in BASELINE_NAMES
        }
        aucs = {n: s["auc"] for n, s in scored.items() if not math.isnan(s["auc"])}
        if aucs:
            best = max(aucs, key=lambda n: (aucs[n], -BASELINE_NAMES.index(n)))
            out |= {
                "best_baseline": best,
                "baseline_auc": aucs[best],
                "baseline_log_loss": scored[best]["log_loss"],
            }
    diff = out["auc"] - out["baseline_auc"]
    out["auc_vs_baseline"] = diff
    out["worse_than_baseline"] = None if math.isnan(diff) else bool(diff < 0)
    return out


def _summary(per_h: list[dict]) -> dict:
    out: dict = {"horizon": SUMMARY_HORIZON}
    out["n"] = int(sum(r["n"] for r in per_h))
    out["n_confident"] = int(sum(r["n_confident"] for r in per_h))
    for key in _MEANED:
        out[key] = _nanmean([r[key] for r in per_h])
    names = sorted({r["best_baseline"] for r in per_h if r["best_baseline"]})
    out["best_baseline"] = ",".join(names) or None
    diff = _nanmean([r["auc_vs_baseline"] for r in per_h])
    out["auc_vs_baseline"] = diff
    out["worse_than_baseline"] = None if math.isnan(diff) else bool(diff < 0)
    return out


def _versions(rows: pd.DataFrame) -> str:
    if rows.empty:
        return ""
    return ",".join(sorted({str(v) for v in rows["model_version"]}, key=_version_key))


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), version) if version.isdigit() else (10**9, version)


def _nanmean(values: list[float]) -> float:
    arr = np.asarray(values, dtype=float)
    return float(np.nanmean(arr)) if np.isfinite(arr).any() else math.nan
