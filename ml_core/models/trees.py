"""Tree direction models: LightGBM and XGBoost (early-stopped on validation), random forest."""

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
    params = {**cfg.lightgbm_params, **cfg.params_for("lightgbm")}
    n_jobs = int(params.pop("n_jobs", 2))  # threads: a model setting, not a booster param
    return LightGBMDirectionModel(
        params=params,
        early_stopping_rounds=cfg.early_stopping_rounds,
        seed=cfg.seed,
        n_jobs=n_jobs,
    )


#: XGBoost defaults (``models.params['xgboost']`` overrides any of them).
XGBOOST_DEFAULTS: dict[str, float | int | str] = {
    "n_estimators": 400,
    "learning_rate": 0.03,
    "max_depth": 4,
    "min_child_weight": 50.0,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "reg_lambda": 1.0,
    "max_bin": 256,
}


class XGBoostDirectionModel:
    """XGBoost ``hist`` trees, early-stopped on validation log loss; seeded and deterministic."""

    name = "xgboost"

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
    ) -> XGBoostDirectionModel:
        import xgboost as xgb

        has_val = x_val is not None and y_val is not None and len(y_val) > 0
        self.model_ = xgb.XGBClassifier(
            **{**XGBOOST_DEFAULTS, **self.params_in},
            objective="binary:logistic",
            eval_metric="logloss",
            tree_method="hist",
            early_stopping_rounds=self.early_stopping_rounds if has_val else None,
            random_state=self.seed,
            n_jobs=self.n_jobs,
        )
        eval_set = [(x_val, np.asarray(y_val).astype(int))] if has_val else None
        self.model_.fit(x, y.astype(int), eval_set=eval_set, verbose=False)
        best = getattr(self.model_, "best_iteration", None) if has_val else None
        n_trees = int(self.model_.get_booster().num_boosted_rounds())
        self.best_iteration_ = int(best) + 1 if best is not None else n_trees
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        if not hasattr(self, "model_"):
            raise NotFittedError("XGBoostDirectionModel.predict_proba called before fit.")
        return self.model_.predict_proba(x, iteration_range=(0, self.best_iteration_))[:, 1]

    def feature_importance(self, columns: list[str]) -> pd.Series | None:
        if not hasattr(self, "model_"):
            return None
        scores = self.model_.get_booster().get_score(importance_type="total_gain")
        # the booster names features f0, f1, ... when fitted on a plain array
        gain = np.array([scores.get(f"f{i}", 0.0) for i in range(len(columns))], dtype=float)
        return pd.Series(gain / max(gain.sum(), 1e-12), index=columns, name="gain_share")

    def params(self) -> dict[str, object]:
        out: dict[str, object] = {**XGBOOST_DEFAULTS, **self.params_in}
        out["early_stopping_rounds"] = self.early_stopping_rounds
        if hasattr(self, "best_iteration_"):
            out["best_iteration"] = self.best_iteration_
        return out


def xgboost_from_config(cfg: ModelConfig) -> XGBoostDirectionModel:
    """The configured XGBoost model (``XGBOOST_DEFAULTS`` merged with ``models.params``).

    ``models.params['xgboost']['n_jobs']`` sets the threads (default 2).
    """
    params = cfg.params_for("xgboost")
    n_jobs = int(params.pop("n_jobs", 2))
    return XGBoostDirectionModel(
        params=params,
        early_stopping_rounds=cfg.early_stopping_rounds,
        seed=cfg.seed,
        n_jobs=n_jobs,
    )


#: Random-forest defaults: shallow, large leaves and subsampled trees keep a fit on
#: 400k rows within seconds on two cores (``max_samples`` is a row count, capped at n).
RANDOM_FOREST_DEFAULTS: dict[str, float | int | str] = {
    "n_estimators": 150,
    "max_depth": 8,
    "min_samples_leaf": 200,
    "max_samples": 50_000,
    "max_features": "sqrt",
}


class RandomForestDirectionModel:
    """Bagged scikit-learn trees of bounded size; ignores the validation rows (no early stop)."""

    name = "random_forest"

    def __init__(
        self,
        *,
        params: dict[str, float | int | str] | None = None,
        seed: int = 42,
        n_jobs: int = 2,
    ) -> None:
        self.params_in = dict(params or {})
        self.seed = seed
        self.n_jobs = n_jobs

    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        x_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
    ) -> RandomForestDirectionModel:
        from sklearn.ensemble import RandomForestClassifier

        params = {**RANDOM_FOREST_DEFAULTS, **self.params_in}
        max_samples = params.get("max_samples")
        if isinstance(max_samples, int | np.integer) and not isinstance(max_samples, bool):
            params["max_samples"] = min(int(max_samples), len(y))  # an int above n is an error
        self.model_ = RandomForestClassifier(
            **params, bootstrap=True, random_state=self.seed, n_jobs=self.n_jobs
        )
        self.model_.fit(x, y.astype(int))
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        if not hasattr(self, "model_"):
            raise NotFittedError("RandomForestDirectionModel.predict_proba called before fit.")
        proba = self.model_.predict_proba(x)
        classes = list(self.model_.classes_)
        return proba[:, classes.index(1)] if 1 in classes else np.zeros(len(x))

    def feature_importance(self, columns: list[str]) -> pd.Series | None:
        if not hasattr(self, "model_"):
            return None
        return pd.Series(self.model_.feature_importances_, index=columns, name="impurity_share")

    def params(self) -> dict[str, object]:
        return {**RANDOM_FOREST_DEFAULTS, **self.params_in}


def random_forest_from_config(cfg: ModelConfig) -> RandomForestDirectionModel:
    """The configured random forest (``RANDOM_FOREST_DEFAULTS`` merged with ``models.params``;
    ``n_jobs`` there sets the threads, default 2)."""
    params = cfg.params_for("random_forest")
    n_jobs = int(params.pop("n_jobs", 2))
    return RandomForestDirectionModel(params=params, seed=cfg.seed, n_jobs=n_jobs)
