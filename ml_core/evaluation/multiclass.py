"""Metrics of the 3-class triple-barrier target (SELL / HOLD / BUY) and its naive baselines.

Classes are the triple-barrier labels -1 (stop-loss first), 0 (vertical
barrier: neither touched) and +1 (take-profit first). HOLD usually dominates,
so plain accuracy flatters a model that always says HOLD: the report leads
with balanced accuracy and macro F1, and shows the majority-class baseline
(what always-HOLD scores) and a momentum baseline (BUY after a rise over the
last h bars, SELL after a fall) beside every model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import balanced_accuracy_score, f1_score, log_loss

CLASSES = np.array([-1, 0, 1])
CLASS_NAMES = {-1: "SELL", 0: "HOLD", 1: "BUY"}


def multiclass_metrics(y: np.ndarray, proba: np.ndarray | None, pred: np.ndarray) -> dict:
    """Accuracy, balanced accuracy, macro F1, log loss (when ``proba``) and class shares.

    ``y`` and ``pred`` hold classes in {-1, 0, 1}; ``proba`` has one column per
    class of ``CLASSES`` in that order.
    """
    y = np.asarray(y, dtype=int)
    pred = np.asarray(pred, dtype=int)
    n = len(y)
    out: dict[str, float] = {"n": float(n)}
    if n == 0:
        return {
            **out,
            "accuracy": np.nan,
            "balanced_accuracy": np.nan,
            "macro_f1": np.nan,
            "log_loss": np.nan,
        }
    out["accuracy"] = float(np.mean(y == pred))
    out["balanced_accuracy"] = float(balanced_accuracy_score(y, pred))
    out["macro_f1"] = float(f1_score(y, pred, labels=CLASSES, average="macro", zero_division=0))
    out["log_loss"] = (
        float(log_loss(y, np.clip(proba, 1e-12, 1.0), labels=CLASSES))
        if proba is not None
        else np.nan
    )
    for cls, name in CLASS_NAMES.items():
        out[f"share_{name.lower()}"] = float(np.mean(y == cls))
        out[f"pred_{name.lower()}"] = float(np.mean(pred == cls))
    return out


def majority_prediction(y_train: np.ndarray, n: int) -> np.ndarray:
    """The most frequent training class, ``n`` times (ties: HOLD first)."""
    y_train = np.asarray(y_train, dtype=int)
    counts = {c: int(np.sum(y_train == c)) for c in (0, -1, 1)}
    return np.full(n, max(counts, key=counts.get), dtype=int)


def momentum_prediction(past_ret: np.ndarray) -> np.ndarray:
    """BUY after a rise over the last h bars, SELL after a fall, HOLD when unknown or flat."""
    past = np.nan_to_num(np.asarray(past_ret, dtype=float), nan=0.0)
    return np.sign(past).astype(int)


def baseline_rows(train: pd.DataFrame, test: pd.DataFrame, horizon: int) -> list[dict]:
    """Majority-class and momentum baselines on the labelled test rows of ``horizon``."""
    y_col = f"tb_{horizon}"
    ok = test[y_col].notna().to_numpy()
    y = test.loc[ok, y_col].to_numpy(dtype=int)
    y_train = train[y_col].dropna().to_numpy(dtype=int)
    rows = []
    preds = {
        "majority_class": majority_prediction(y_train, len(y)),
        "momentum_sign": momentum_prediction(test.loc[ok, f"past_ret_{horizon}"].to_numpy()),
    }
    for name, pred in preds.items():
        rows.append({"model": name, "horizon": horizon, **multiclass_metrics(y, None, pred)})
    return rows
