"""LightGBM direction model, early-stopped on the validation part."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd

from ml_core.config import ModelConfig
from ml_core.errors import NotFittedError


class LightGBMDirectionModel:
    """Gradient-boosted trees; stops adding trees when validation log loss stalls."""

    name = "lightgbm"

    def __init__(
        self,
        *,
        params: dict[str, float | int | str] | None = None,
        early_stopping_rounds: int = 30,
        seed: int = 42,
        n_jobs: int = 2,
    ) -> None:
        self.params_in = dict(params or {})
        self.early_stopping_rounds = early_stopping_rounds
        self.seed = seed
        self.n_jobs = n_jobs

    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        x_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
    ) -> LightGBMDirectionModel:
        self.model_ = lgb.LGBMClassifier(
            **self.params_in,
            random_state=self.seed,
            n_jobs=self.n_jobs,
            verbose=-1,
            deterministic=True,
            force_row_wise=True,
        )
        fit_kw: dict[str, object] = {}
        if x_val is not None and y_val is not None and len(y_val) > 0:
            fit_kw = {
                "eval_X": (x_val,),
                "eval_y": (y_val.astype(int),),
                "eval_metric": "binary_logloss",
                "callbacks": [lgb.early_stopping(self.early_stopping_rounds, verbose=False)],
            }
        self.model_.fit(x, y.astype(int), **fit_kw)
        self.best_iteration_ = int(self.model_.best_iteration_ or self.model_.n_estimators)
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        if not hasattr(self, "model_"):
            raise NotFittedError("LightGBMDirectionModel.predict_proba called before fit.")
        return self.model_.predict_proba(x, num_iteration=self.best_iteration_)[:, 1]

    def feature_importance(self, columns: list[str]) -> pd.Series | None:
        if not hasattr(self, "model_"):
            return None
        gain = self.model_.booster_.feature_importance(importance_type="gain")
        return pd.Series(gain / max(gain.sum(), 1e-12), index=columns, name="gain_share")

    def params(self) -> dict[str, object]:
        out: dict[str, object] = dict(self.params_in)
        out["early_stopping_rounds"] = self.early_stopping_rounds
        if hasattr(self, "best_iteration_"):
            out["best_iteration"] = self.best_iteration_
        return out


def lightgbm_from_config(cfg: ModelConfig) -> LightGBMDirectionModel:
    """The configured LightGBM model (``models.lightgbm_params``, tuned params override)."""
    return LightGBMDirectionModel(
        params={**cfg.lightgbm_params, **cfg.params_for("lightgbm")},
        early_stopping_rounds=cfg.early_stopping_rounds,
        seed=cfg.seed,
    )
