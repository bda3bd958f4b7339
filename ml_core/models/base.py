"""The small interfaces every model implements, and the factory that picks one by name.

Two shapes of model fit into a ``CandlePipeline``:

``DirectionModel`` (one per horizon)
    Fitted on one horizon's training rows (scaled feature matrix and 0/1
    labels), optionally with validation rows for early stopping; returns P(up)
    for new rows. Linear models and trees are this shape.

``FrameModel`` (one for all horizons)
    Fitted once on *scaled frames*: the scaled feature columns plus context
    columns (``symbol``, ``ts``, ``segment_start``, ``close``, ``regime``, the
    label columns ``up_h`` / ``ret_h`` / ``t1_h`` when present), so it can see
    time order and symbols. Sequence models (windows over past bars of one
    symbol), stacking (out-of-fold predictions need time) and regime-weighted
    ensembles are this shape. ``history_bars`` is how many past rows of the
    same symbol a prediction at t reads (0 for row-wise models); serving keeps
    that many rows before the latest bar.

Both: ``fit`` / ``fit_frame`` return ``self``; fitted state ends in ``_``;
``fit`` replaces all fitted state, so ``copy.deepcopy(model).fit(...)`` refits
the same configuration (the CPCV gate relies on this). Tracking never happens
here: callers log what the model produced (``params()``).

Adding a model: write the class in its own module with a ``from_config(cfg:
ModelConfig)`` factory, and add one line to ``MODEL_FACTORIES``.
"""

from __future__ import annotations

import importlib
import re
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from ml_core.config import ModelConfig
from ml_core.errors import ConfigError


@runtime_checkable
class DirectionModel(Protocol):
    """P(up) classifier for one horizon."""

    name: str

    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        x_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
    ) -> DirectionModel: ...

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """P(up) per row, shape (n,)."""
        ...

    def feature_importance(self, columns: list[str]) -> pd.Series | None: ...

    def params(self) -> dict[str, object]: ...


@runtime_checkable
class FrameModel(Protocol):
    """P(up) for every horizon at once, from scaled frames with context columns."""

    name: str
    history_bars: int

    def fit_frame(
        self,
        train: pd.DataFrame,
        val: pd.DataFrame | None,
        *,
        features: list[str],
        horizons: list[int],
    ) -> FrameModel:
        """Fit on ``train`` (labels ``up_h`` may be NaN: skip those rows per horizon)."""
        ...

    def predict_frame(self, frame: pd.DataFrame) -> dict[int, np.ndarray]:
        """P(up) per horizon for every row of ``frame`` (rows in the frame's order)."""
        ...

    def feature_importance(self, columns: list[str]) -> pd.Series | None: ...

    def params(self) -> dict[str, object]: ...


@runtime_checkable
class ReturnModel(Protocol):
    """Expected log return ``ret_h`` for one horizon (the forecasting side)."""

    name: str

    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        x_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
    ) -> ReturnModel: ...

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Expected ``ret_h`` per row, shape (n,)."""
        ...

    def params(self) -> dict[str, object]: ...


#: Optional extra of a FrameModel: ``predict_frame_details(frame) -> {h: {"p_up": ...,
#: "uncertainty": ..., "exp_ret": ...}}`` (arrays; keys other than p_up optional).
DETAILS_METHOD = "predict_frame_details"

#: name -> "module:factory"; each factory takes the ModelConfig and returns a fresh model.
MODEL_FACTORIES: dict[str, str] = {
    "logistic": "ml_core.models.linear:logistic_from_config",
    "lightgbm": "ml_core.models.trees:lightgbm_from_config",
    "stacking": "ml_core.models.ensemble:stacking_from_config",
    "regime_ensemble": "ml_core.models.ensemble:regime_ensemble_from_config",
    "online_ensemble": "ml_core.models.ensemble:online_ensemble_from_config",
    "xgboost": "ml_core.models.trees:xgboost_from_config",
    "random_forest": "ml_core.models.trees:random_forest_from_config",
    "lstm": "ml_core.models.sequence.lstm:lstm_from_config",
    "attention_lstm": "ml_core.models.sequence.attention_lstm:attention_lstm_from_config",
    "transformer": "ml_core.models.sequence.transformer:transformer_from_config",
    "multiscale_lstm": "ml_core.models.sequence.multiscale:multiscale_lstm_from_config",
}

#: Columns carried beside the scaled features into a FrameModel (when the frame has them).
CONTEXT_COLUMNS = ("symbol", "ts", "segment_start", "close", "regime", "lifecycle")
_LABEL_COLUMN = re.compile(r"^(up|ret|t1|past_ret|tb|tb_t1|tb_ret)_\d+$")


def is_label_column(name: str) -> bool:
    """Whether ``name`` is a label column (``up_15``, ``t1_60``, ...)."""
    return bool(_LABEL_COLUMN.match(name))


def model_names() -> list[str]:
    """Every model name ``make_model`` accepts."""
    return sorted(MODEL_FACTORIES)


def make_model(name: str, cfg: ModelConfig) -> DirectionModel | FrameModel:
    """A fresh, unfitted model chosen by name from the config."""
    target = MODEL_FACTORIES.get(name)
    if target is None:
        raise ConfigError(
            f"Unknown model {name!r} in models.candidates; choose from {model_names()}."
        )
    module_name, factory = target.split(":")
    return getattr(importlib.import_module(module_name), factory)(cfg)


def is_frame_model(model: object) -> bool:
    """Whether ``model`` is fitted on frames (all horizons at once)."""
    return hasattr(model, "fit_frame") and hasattr(model, "predict_frame")
