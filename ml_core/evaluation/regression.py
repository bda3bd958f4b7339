"""Regression metrics of expected-return forecasts, beside two naive baselines.

For each horizon h the target is ``ret_h`` (log return over the next h bars,
NaN at the end of a segment: those rows are dropped from both inputs and
counted in ``n_dropped``). Metrics: MAE, RMSE, R² (against the mean of the
realized returns), directional accuracy (share of rows where forecast and
realized return have the same sign, over rows where neither is exactly zero)
and Pearson correlation.

Baselines, scored on exactly the same rows:

- ``zero_return``: predicts 0 (a random walk). Its R² is slightly below 0 and
  its direction and correlation are undefined (NaN): a constant has no sign.
- ``last_return``: predicts the realized return over the last h bars,
  ``past_ret_h`` (0 where the segment is shorter than h bars).

Example::

    >>> m = regression_metrics([0.01, -0.02, 0.03], [0.02, -0.01, -0.01])
    >>> m["n"], round(m["mae"], 4), m["directional_accuracy"]
    (3, 0.02, 0.6666666666666666)
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from ml_core.errors import DataContractError

#: Keys of :func:`regression_metrics`, in display order.
REGRESSION_KEYS = ("n", "n_dropped", "mae", "rmse", "r2", "directional_accuracy", "corr")

#: Baselines scored beside every return model.
RETURN_BASELINES = ("zero_return", "last_return")


def regression_metrics(y_true: ArrayLike, pred: ArrayLike) -> dict[str, float]:
    """MAE, RMSE, R², directional accuracy and correlation of ``pred`` against ``y_true``.

    Rows with a NaN ``y_true`` are dropped (counted in ``n_dropped``); a NaN
    forecast on a labelled row is a contract error. Undefined values (R² of a
    constant target, correlation of a constant forecast, direction with no
    non-zero pairs) are NaN.
    """
    y = np.asarray(y_true, dtype=float).ravel()
    p = np.asarray(pred, dtype=float).ravel()
    if y.shape != p.shape:
        raise DataContractError(
            f"y_true has {y.size} rows but pred has {p.size}; pass one forecast per label row."
        )
    labelled = ~np.isnan(y)
    y, p = y[labelled], p[labelled]
    if np.isnan(p).any():
        raise DataContractError(
            f"pred is NaN on {int(np.isnan(p).sum())} labelled rows; every labelled row needs "
            "a forecast (drop rows with incomplete features before predicting)."
        )
    out: dict[str, float] = {"n": int(y.size), "n_dropped": int((~labelled).sum())}
    if y.size == 0:
        return {**out, **dict.fromkeys(REGRESSION_KEYS[2:], math.nan)}
    err = p - y
    out["mae"] = float(np.mean(np.abs(err)))
    out["rmse"] = float(np.sqrt(np.mean(err**2)))
    sst = float(np.sum((y - y.mean()) ** 2))
    out["r2"] = 1.0 - float(np.sum(err**2)) / sst if sst > 0 else math.nan
    signed = (y != 0) & (p != 0)
    out["directional_accuracy"] = (
        float(np.mean(np.sign(y[signed]) == np.sign(p[signed]))) if signed.any() else math.nan
    )
    out["corr"] = _pearson(y, p)
    return out


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    da, db = a - a.mean(), b - b.mean()
    denom = math.sqrt(float(np.sum(da**2)) * float(np.sum(db**2)))
    return float(np.sum(da * db)) / denom if denom > 0 else math.nan


def baseline_forecasts(frame: pd.DataFrame, horizon: int) -> dict[str, np.ndarray]:
    """``zero_return`` and ``last_return`` forecasts of ``ret_{horizon}`` for each row."""
    col = f"past_ret_{horizon}"
    if col not in frame.columns:
        raise DataContractError(
            f"Frame lacks {col!r} for the last-return baseline; build it with "
            "ml_core.features.labels (labels include past_ret_h per horizon)."
        )
    last = np.nan_to_num(frame[col].to_numpy(dtype=float), nan=0.0)
    return {"zero_return": np.zeros(len(frame)), "last_return": last}


def score_return_models(
    frame: pd.DataFrame, forecasts: dict[str, dict[int, np.ndarray]], horizons: list[int]
) -> pd.DataFrame:
    """Metrics per (model, horizon) for ``forecasts[model][h]`` on ``frame``, baselines added.

    Adds ``rmse_skill`` = 1 - RMSE / RMSE(zero_return) on the same rows
    (above 0: better than predicting no move). Rows in order of ``forecasts``,
    then the baselines, per horizon.
    """
    rows = []
    for h in horizons:
        target = f"ret_{h}"
        if target not in frame.columns:
            raise DataContractError(f"Frame lacks label column {target!r} to score returns.")
        y = frame[target].to_numpy(dtype=float)
        preds = {name: f[h] for name, f in forecasts.items() if h in f}
        preds.update(baseline_forecasts(frame, h))
        zero_rmse = regression_metrics(y, preds["zero_return"])["rmse"]
        for name, p in preds.items():
            m = regression_metrics(y, p)
            skill = 1.0 - m["rmse"] / zero_rmse if zero_rmse and zero_rmse > 0 else math.nan
            rows.append(
                {
                    "model": name,
                    "horizon": h,
                    "baseline": name in RETURN_BASELINES,
                    **m,
                    "rmse_skill": skill,
                }
            )
    return pd.DataFrame(rows)


#: Title and note of the run report's section on return models.
REPORT_TITLE = "Expected-return models (target ret_h)"
REPORT_NOTE = (
    "Each configured regressor per horizon on validation and test, beside the zero-return and "
    "last-return (past_ret_h) baselines. The selected one (lowest validation RMSE per horizon) "
    "gives every pipeline's exp_ret. rmse_skill = 1 - RMSE / RMSE(zero_return): above 0 beats "
    "predicting no move."
)


def report_table(table: pd.DataFrame) -> pd.DataFrame:
    """The columns of a return-model table worth showing in the run report."""
    keep = ["split", "horizon", "model", "selected", "n", "mae", "rmse", "r2"]
    keep += ["directional_accuracy", "corr", "rmse_skill"]
    return table[[c for c in keep if c in table.columns]].reset_index(drop=True)


def return_model_metrics(table: pd.DataFrame) -> dict[str, float]:
    """Flat tracking metrics of the selected return models on test, e.g. ``ret_test_rmse_h15``."""
    if table.empty or "selected" not in table.columns:
        return {}
    chosen = table[(table["split"] == "test") & table["selected"]]
    out = {}
    for row in chosen.to_dict(orient="records"):
        for key in ("rmse", "mae", "r2", "directional_accuracy", "corr", "rmse_skill"):
            value = float(row[key])
            if math.isfinite(value):
                out[f"ret_test_{key}_h{int(row['horizon'])}"] = value
    return out
