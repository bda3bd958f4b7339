"""Logistic-regression baseline model (scikit-learn)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from ml_core.config import ModelConfig
from ml_core.errors import NotFittedError


class LogisticDirectionModel:
    """L2-regularised logistic regression on robust-scaled features."""

    name = "logistic"

    def __init__(self, *, c: float = 0.1, seed: int = 42, max_iter: int = 500) -> None:
        self.c = c
        self.seed = seed
        self.max_iter = max_iter

    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        x_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
    ) -> LogisticDirectionModel:
        self.model_ = LogisticRegression(
            C=self.c, max_iter=self.max_iter, solver="newton-cholesky", random_state=self.seed
        )
        self.model_.fit(x, y.astype(int))
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        if not hasattr(self, "model_"):
            raise NotFittedError("LogisticDirectionModel.predict_proba called before fit.")
        return self.model_.predict_proba(x)[:, 1]

    def feature_importance(self, columns: list[str]) -> pd.Series | None:
        if not hasattr(self, "model_"):
            return None
        return pd.Series(np.abs(self.model_.coef_[0]), index=columns, name="abs_coef")

    def params(self) -> dict[str, object]:
        return {"C": self.c, "max_iter": self.max_iter}


def logistic_from_config(cfg: ModelConfig) -> LogisticDirectionModel:
    """The configured logistic model (``models.logistic_c``, tuned params override)."""
    params = cfg.params_for("logistic")
    return LogisticDirectionModel(c=float(params.get("c", cfg.logistic_c)), seed=cfg.seed)
