"""Per-symbol robust scaling, fit on each symbol's training rows only.

Features are centred on the symbol's training median and divided by its
training inter-quartile range, then clipped to ``[-clip, clip]`` so one wild
memecoin bar cannot dominate a linear model. Symbols unseen at fit time use
the pooled training statistics.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml_core.errors import DataContractError, NotFittedError


class SymbolRobustScaler:
    """``(x - median_symbol) / iqr_symbol``, clipped; statistics from training rows only."""

    def __init__(self, columns: list[str], *, clip: float = 10.0) -> None:
        self.columns = list(columns)
        self.clip = clip

    def fit(self, train: pd.DataFrame) -> SymbolRobustScaler:
        missing = [c for c in self.columns if c not in train.columns]
        if missing:
            raise DataContractError(f"Cannot fit scaler: training frame lacks {missing[:5]}.")
        grouped = train.groupby("symbol", sort=True)[self.columns]
        self.center_ = grouped.median()
        self.scale_ = _safe_scale(grouped.quantile(0.75) - grouped.quantile(0.25))
        q = train[self.columns]
        self.pooled_center_ = q.median()
        self.pooled_scale_ = _safe_scale((q.quantile(0.75) - q.quantile(0.25)).to_frame().T).iloc[0]
        self.fit_rows_ = pd.Series(train.groupby("symbol").size())
        self.fit_ts_max_ = train.groupby("symbol")["ts"].max()
        return self

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Scaled feature matrix (float64, rows in the frame's order)."""
        if not hasattr(self, "center_"):
            raise NotFittedError("SymbolRobustScaler.transform called before fit(train).")
        center = _per_row(self.center_, self.pooled_center_, frame["symbol"])
        scale = _per_row(self.scale_, self.pooled_scale_, frame["symbol"])
        x = frame[self.columns].to_numpy(dtype=np.float64)
        z = (x - center) / scale
        return np.clip(z, -self.clip, self.clip)


def _per_row(stats: pd.DataFrame, pooled: pd.Series, symbols: pd.Series) -> np.ndarray:
    """``stats`` row of each symbol (rows x columns), the pooled value where the symbol or
    its statistic is missing: ``reindex(...).fillna(pooled)`` in one array operation."""
    values = stats.reindex(symbols).to_numpy(dtype=np.float64)
    fallback = pooled.reindex(stats.columns).to_numpy(dtype=np.float64)
    return np.where(np.isnan(values), fallback, values)


def _safe_scale(iqr: pd.DataFrame) -> pd.DataFrame:
    """Replace zero / missing IQRs (constant features) by 1 so nothing divides by zero."""
    return iqr.where(iqr.abs() > 1e-12, 1.0).fillna(1.0)
