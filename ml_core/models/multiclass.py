"""The triple-barrier target as a 3-class problem: SELL / HOLD / BUY per horizon.

Beside P(up) (``up_h``) and the expected return (``ret_h``), a retrain fits a
multinomial classifier on the triple-barrier label ``tb_h`` of each horizon
(``ml_core.features.triple_barrier``), on the training part only, scaled per
symbol on training rows, and scores it on the test part next to the
majority-class and momentum baselines. The label's end ``tb_t1_h`` is never
later than ``t1_h``, so the purge of the chronological split covers it.

Example::

    result = fit_triple_barrier(parts, horizons=[15, 60], feature_columns=cols, cfg=tb_cfg)
    result.metrics            # model and baselines per horizon on test
    result.predict_proba(frame)[15]   # columns SELL, HOLD, BUY
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from ml_core.config import TripleBarrierConfig
from ml_core.errors import DataContractError
from ml_core.evaluation.multiclass import CLASS_NAMES, CLASSES, baseline_rows, multiclass_metrics
from ml_core.validation.scaling import SymbolRobustScaler
from ml_core.validation.split import SplitParts

log = logging.getLogger(__name__)


@dataclass
class TripleBarrierResult:
    """Fitted 3-class models per horizon and their test metrics beside the baselines."""

    scaler: SymbolRobustScaler
    models: dict[int, object] = field(default_factory=dict)
    metrics: pd.DataFrame = field(default_factory=pd.DataFrame)

    def predict_proba(self, frame: pd.DataFrame) -> dict[int, pd.DataFrame]:
        """P(SELL), P(HOLD), P(BUY) per horizon for rows with the feature columns."""
        x = self.scaler.transform(frame)
        cols = [CLASS_NAMES[c] for c in CLASSES]
        return {h: pd.DataFrame(_proba(m, x), columns=cols) for h, m in self.models.items()}


def fit_triple_barrier(
    parts: SplitParts,
    *,
    horizons: list[int],
    feature_columns: list[str],
    cfg: TripleBarrierConfig,
    seed: int = 42,
    max_train_rows: int | None = 100_000,
) -> TripleBarrierResult:
    """Fit one multinomial model per horizon on ``tb_h`` and score it on test."""
    missing = [f"tb_{h}" for h in horizons if f"tb_{h}" not in parts.train.columns]
    if missing:
        raise DataContractError(
            f"The model frame has no triple-barrier labels {missing}; enable "
            "labels.triple_barrier.enabled in the config."
        )
    train = parts.train
    if max_train_rows is not None and len(train) > max_train_rows:
        cutoff = train["ts"].sort_values().iloc[len(train) - max_train_rows]
        train = train.loc[train["ts"] >= cutoff]
    scaler = SymbolRobustScaler(feature_columns).fit(train)
    x_train = scaler.transform(train)
    x_test = scaler.transform(parts.test) if not parts.test.empty else None
    result = TripleBarrierResult(scaler=scaler)
    rows: list[dict] = []
    for h in horizons:
        y_col = f"tb_{h}"
        ok = train[y_col].notna().to_numpy()
        y = train.loc[ok, y_col].to_numpy(dtype=int)
        if len(np.unique(y)) < 2:
            log.warning("triple barrier h=%d: one class only in training; skipped", h)
            continue
        model = _make(cfg.model, seed).fit(x_train[ok], y)
        result.models[h] = model
        if x_test is None:
            continue
        ok_t = parts.test[y_col].notna().to_numpy()
        proba = _proba(model, x_test[ok_t])
        pred = CLASSES[np.argmax(proba, axis=1)]
        y_t = parts.test.loc[ok_t, y_col].to_numpy(dtype=int)
        rows.append({"model": cfg.model, "horizon": h, **multiclass_metrics(y_t, proba, pred)})
        rows.extend(baseline_rows(train, parts.test, h))
    result.metrics = pd.DataFrame(rows)
    return result


def _make(name: str, seed: int) -> object:
    if name == "lightgbm":
        import lightgbm as lgb

        return lgb.LGBMClassifier(
            objective="multiclass",
            n_estimators=200,
            learning_rate=0.05,
            num_leaves=15,
            min_child_samples=200,
            class_weight="balanced",
            random_state=seed,
            n_jobs=2,
            verbose=-1,
        )
    # balanced classes: otherwise the dominant HOLD class wins every row
    return LogisticRegression(C=0.1, max_iter=200, class_weight="balanced", random_state=seed)


def _proba(model: object, x: np.ndarray) -> np.ndarray:
    """Class probabilities in the order of ``CLASSES`` (absent classes get 0)."""
    raw = model.predict_proba(x)  # type: ignore[attr-defined]
    out = np.zeros((len(x), len(CLASSES)))
    for j, cls in enumerate(model.classes_):  # type: ignore[attr-defined]
        out[:, int(np.where(int(cls) == CLASSES)[0][0])] = raw[:, j]
    return out
