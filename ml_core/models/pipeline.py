"""The registered unit: candles in, P(up) per symbol and horizon out.

``CandlePipeline`` holds everything needed to serve without the warehouse:
the feature set (computed by the same DuckDB SQL as in training), per-symbol
scalers fit on training rows only, and one fitted model per horizon.

Example::

    pipe = fit_pipeline("lightgbm", parts, horizons=[15, 60], ...)
    pipe.predict(candles, latest_only=True)   # symbol, ts, horizon, p_up
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ml_core.config import FeatureConfig, ModelConfig
from ml_core.errors import DataContractError, NotFittedError
from ml_core.models.base import (
    CONTEXT_COLUMNS,
    DETAILS_METHOD,
    DirectionModel,
    FrameModel,
    ReturnModel,
    is_frame_model,
    is_label_column,
    make_model,
)
from ml_core.models.calibration import Calibrator, fit_calibrator
from ml_core.models.conformal import fit_conformal, prediction_sets
from ml_core.regime.hmm import RegimeModel, add_regime_features, probability_column, state_names
from ml_core.validation.scaling import SymbolRobustScaler
from ml_core.validation.split import SplitParts

log = logging.getLogger(__name__)

PREDICTION_COLUMNS = ["symbol", "ts", "horizon", "p_up", "uncertainty", "exp_ret"]

#: What a served pipeline may be refit on after its evaluation (``registry.final_fit``).
FINAL_FIT_ROWS = {
    "train": ("train",),
    "train_val": ("train", "val"),
    "all": ("train", "val", "test"),
}


@dataclass
class CandlePipeline:
    """Feature set + scalers + models, picklable as one object.

    Either ``models`` holds one ``DirectionModel`` per horizon, or
    ``frame_model`` holds one ``FrameModel`` for all horizons (sequence models,
    ensembles). ``return_models`` optionally add an expected return per horizon.
    """

    candidate: str
    timeframe: str
    horizons: list[int]
    feature_cfg: FeatureConfig
    feature_columns: list[str]
    feature_set: str
    lookback_bars: int
    scaler: SymbolRobustScaler
    models: dict[int, DirectionModel] = field(default_factory=dict)
    first_ts: dict[str, pd.Timestamp] = field(default_factory=dict)
    regime_model: RegimeModel | None = None
    frame_model: FrameModel | None = None
    return_models: dict[int, ReturnModel] = field(default_factory=dict)
    #: The recipe (candidate, feature columns, model settings) this pipeline was evaluated as;
    #: a refit for serving keeps it, so next week's refresh is recognised as the same recipe.
    recipe_key: str = ""
    #: Horizons with skill shown against the naive baselines (None: not assessed, all served).
    edge_horizons: list[int] | None = None
    #: Latest candle of the data set it was trained from, and the latest label end time of
    #: its fitted rows (a window after it is unseen by this pipeline).
    data_end_ts: pd.Timestamp | None = None
    fit_label_end_ts: pd.Timestamp | None = None
    final_fit: str = "train"
    #: P(up) calibrator per horizon, fitted on validation (``calibrate``); none: raw p.
    calibrators: dict[int, Calibrator] = field(default_factory=dict)
    #: MAPIE conformal classifier per horizon on the calibrated P(up) (``calibrate``).
    conformal: dict[int, object] = field(default_factory=dict)

    def has_edge(self, horizon: int) -> bool:
        """Whether ``horizon`` is served (skill shown, or skill not assessed)."""
        return self.edge_horizons is None or int(horizon) in self.edge_horizons

    @property
    def history_bars(self) -> int:
        """Past rows of a symbol one prediction reads (0 for row-wise models)."""
        return int(getattr(self.frame_model, "history_bars", 0) or 0)

    def calibrated(self, h: int, p: np.ndarray) -> np.ndarray:
        """``p`` (raw P(up) of horizon ``h``) through its calibrator (as is without one;
        pipelines pickled before calibration have none)."""
        cal = (getattr(self, "calibrators", None) or {}).get(int(h))
        return p if cal is None else cal(p)

    def direction_sets(self, h: int, p: np.ndarray) -> np.ndarray:
        """The conformal set (``up`` / ``down`` / ``both``) of each calibrated P(up) of
        horizon ``h``; None entries without a conformal model."""
        return prediction_sets((getattr(self, "conformal", None) or {}).get(int(h)), p)

    def predict_features(
        self, frame: pd.DataFrame, *, calibrated: bool = True
    ) -> dict[int, np.ndarray]:
        """P(up) per horizon for rows of a frame that already has the feature columns
        (``calibrated=False``: the models' raw probabilities)."""
        raw = self._raw_features(frame)
        return {h: self.calibrated(h, p) for h, p in raw.items()} if calibrated else raw

    def _raw_features(self, frame: pd.DataFrame) -> dict[int, np.ndarray]:
        if not self.models and self.frame_model is None:
            raise NotFittedError(f"Pipeline {self.candidate!r} has no fitted models.")
        if frame.empty:
            return {h: np.empty(0) for h in self.horizons}
        frame = self.with_regime_features(frame)
        if self.frame_model is not None:
            probs = self.frame_model.predict_frame(self.scaled_frame(frame))
            return {h: np.asarray(probs[h], dtype=float) for h in self.horizons}
        x = self.scaler.transform(frame)
        return {h: self.models[h].predict_proba(x) for h in self.horizons}

    def predict_details(
        self, frame: pd.DataFrame, rows: np.ndarray | None = None
    ) -> dict[int, dict[str, np.ndarray]]:
        """``p_up``, ``uncertainty`` and ``exp_ret`` per horizon (NaN where not modelled).

        ``rows`` (positions) asks only for those rows; the others still serve
        as history. Models that can (``scores_rows``) skip the rest, which may
        then come back NaN.
        """
        frame = self.with_regime_features(frame)
        n = len(frame)
        nan = np.full(n, np.nan)
        details_fn = getattr(self.frame_model, DETAILS_METHOD, None)
        if details_fn is not None and n:
            only = rows is not None and getattr(self.frame_model, "scores_rows", False)
            raw = details_fn(self.scaled_frame(frame), **({"rows": rows} if only else {}))
            out = {
                h: {k: np.asarray(v, dtype=float) for k, v in raw[h].items()} for h in self.horizons
            }
            for h in self.horizons:
                out[h]["p_up"] = self.calibrated(h, out[h]["p_up"])
        else:
            out = {h: {"p_up": p} for h, p in self.predict_features(frame).items()}
        x = self.scaler.transform(frame) if self.return_models and n else None
        for h in self.horizons:
            out[h].setdefault("uncertainty", nan)
            if x is not None and h in self.return_models:
                out[h]["exp_ret"] = self.return_models[h].predict(x)
            out[h].setdefault("exp_ret", nan)
        return out

    def scaled_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Scaled feature columns plus context and label columns: a FrameModel's input."""
        scaled = pd.DataFrame(
            self.scaler.transform(frame), columns=self.feature_columns, index=frame.index
        )
        keep = [c for c in frame.columns if c in CONTEXT_COLUMNS or is_label_column(c)]
        return pd.concat([frame[keep], scaled], axis=1).reset_index(drop=True)

    def with_regime_features(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` with this pipeline's filtered regime columns (added when missing)."""
        cols = regime_columns(self.regime_model)
        if self.regime_model is None or all(c in frame.columns for c in cols):
            return frame
        return add_regime_features(
            frame.drop(columns=["regime", *cols], errors="ignore"), self.regime_model
        )

    def predict(
        self, candles: pd.DataFrame, latest_only: bool = False, with_regime: bool = False
    ) -> pd.DataFrame:
        """Score candles: one row per (symbol, ts with complete features, horizon).

        ``with_regime`` adds ``regime``: the most probable filtered market state at that
        bar (e.g. ``Bull``), or None for a pipeline without a regime model.
        """
        from ml_core.features import features_from_candles

        candles = _normalize_candles(candles, self.timeframe)
        feats = features_from_candles(candles, self.feature_cfg, first_ts=self.first_ts or None)
        feats = self.with_regime_features(feats)
        missing = [c for c in self.feature_columns if c not in feats.columns]
        if missing:
            raise DataContractError(
                f"This {self.candidate} pipeline was trained on feature set {self.feature_set} with "
                f"columns the installed feature code no longer makes ({missing[:3]}...). Serve it "
                "from its own logged code (a fresh process), or retrain with `coincast retrain`."
            )
        feats = feats.dropna(subset=self.feature_columns)
        if latest_only:
            # sequence models read `history_bars` rows before the latest one
            grouped = feats.sort_values(["symbol", "ts"]).groupby("symbol", sort=True)
            feats = grouped.tail(self.history_bars + 1)
        feats = feats.sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True)
        rows = None
        if latest_only:  # sequence models: score the last bar, read the rest as history
            last = feats.groupby("symbol")["ts"].transform("max")
            rows = np.flatnonzero((feats["ts"] == last).to_numpy())
        details = self.predict_details(feats, rows=rows)
        regime = self._regime_names(feats) if with_regime else None
        out = [
            pd.DataFrame(
                {
                    "symbol": feats["symbol"],
                    "ts": feats["ts"],
                    "horizon": h,
                    "p_up": details[h]["p_up"],
                    "uncertainty": details[h]["uncertainty"],
                    "exp_ret": details[h]["exp_ret"],
                    "edge": self.has_edge(h),
                    "p_set": self.direction_sets(h, details[h]["p_up"]),
                    **({} if regime is None else {"regime": regime}),
                }
            )
            for h in self.horizons
        ]
        if not out:
            return pd.DataFrame(columns=[*PREDICTION_COLUMNS, "edge"])
        result = pd.concat(out, ignore_index=True)
        if latest_only:
            last = result.groupby("symbol")["ts"].transform("max")
            result = result[result["ts"] == last]
        return result.sort_values(["symbol", "ts", "horizon"], kind="stable").reset_index(drop=True)

    def _regime_names(self, feats: pd.DataFrame) -> np.ndarray:
        """The most probable regime per row of ``feats`` (None without a regime model)."""
        if self.regime_model is None:
            return np.full(len(feats), None, dtype=object)
        names = state_names(self.regime_model.cfg.n_states)
        probs = self.with_regime_features(feats)[regime_columns(self.regime_model)].to_numpy()
        return np.asarray(names, dtype=object)[probs.argmax(axis=1)]

    def feature_importance(self) -> pd.DataFrame:
        """Importance per feature and horizon (long format), where the model offers it."""
        rows = []
        models = self.models or dict.fromkeys(self.horizons, self.frame_model)
        for h, model in models.items():
            imp = model.feature_importance(self.feature_columns) if model is not None else None
            if imp is not None:
                rows.append(
                    pd.DataFrame({"feature": imp.index, "horizon": h, "importance": imp.values})
                )
        return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def fit_pipeline(
    candidate: str,
    parts: SplitParts,
    *,
    horizons: list[int],
    timeframe: str,
    feature_cfg: FeatureConfig,
    model_cfg: ModelConfig,
    regime_model: RegimeModel | None = None,
    calibrated: bool = True,
) -> CandlePipeline:
    """Fit scalers on training rows and one ``candidate`` model per horizon, then (with
    ``calibrated``) its P(up) calibrators on the validation rows (``calibrate``;
    ``train_candidates`` calibrates itself, reusing its validation predictions).

    With a ``regime_model`` the parts must already carry its filtered
    probabilities (``add_regime_features``); they become model inputs too.
    """
    from ml_core.features import (
        FEATURE_COLUMNS,
        FEATURE_SET_NAME,
        FEATURE_SET_VERSION,
        LOOKBACK_BARS,
    )

    columns = list(FEATURE_COLUMNS) + regime_columns(regime_model)
    feature_set = f"{FEATURE_SET_NAME}.{FEATURE_SET_VERSION}"
    if regime_model is not None:
        feature_set += f"+hmm{regime_model.cfg.n_states}"
    train = _recent(parts.train, model_cfg.max_train_rows)
    scaler = SymbolRobustScaler(columns).fit(train)
    for h in horizons:
        _check_two_classes(train, h)
    pipe = CandlePipeline(
        candidate=candidate,
        timeframe=timeframe,
        horizons=list(horizons),
        feature_cfg=feature_cfg,
        feature_columns=columns,
        feature_set=feature_set,
        lookback_bars=int(LOOKBACK_BARS)
        + (regime_model.cfg.vol_window + 200 if regime_model else 0),
        scaler=scaler,
        first_ts=dict(parts.first_ts),
        regime_model=regime_model,
    )
    model = make_model(candidate, model_cfg)
    if is_frame_model(model):
        val = pipe.scaled_frame(parts.val) if not parts.val.empty else None
        pipe.frame_model = model.fit_frame(
            pipe.scaled_frame(train), val, features=columns, horizons=list(horizons)
        )
        pipe.lookback_bars += pipe.history_bars
        log.info("fitted %s for horizons %s on %d rows", candidate, list(horizons), len(train))
        return _finish(pipe, train, parts, model_cfg if calibrated else None)
    x_train = scaler.transform(train)
    x_val = scaler.transform(parts.val) if not parts.val.empty else None
    for h in horizons:
        y_col = f"up_{h}"
        ok = train[y_col].notna().to_numpy()
        x_v = y_v = None
        if x_val is not None:
            ok_v = parts.val[y_col].notna().to_numpy()
            x_v, y_v = x_val[ok_v], parts.val.loc[ok_v, y_col].to_numpy()
        model = model if h == horizons[0] else make_model(candidate, model_cfg)
        pipe.models[h] = model.fit(x_train[ok], train.loc[ok, y_col].to_numpy(), x_v, y_v)
        log.info("fitted %s for horizon %d on %d rows", candidate, h, int(ok.sum()))
    return _finish(pipe, train, parts, model_cfg if calibrated else None)


def _finish(
    pipe: CandlePipeline, train: pd.DataFrame, parts: SplitParts, model_cfg: ModelConfig | None
) -> CandlePipeline:
    if model_cfg is not None:
        calibrate(
            pipe,
            parts.val,
            model_cfg.calibration,
            conformal_confidence=model_cfg.conformal_confidence,
        )
    return _stamp(pipe, train, parts)


def calibrate(
    pipe: CandlePipeline,
    val: pd.DataFrame,
    method: str,
    raw_val: dict[int, np.ndarray] | None = None,
    conformal_confidence: float | None = 0.9,
) -> pd.DataFrame:
    """Fit ``pipe``'s P(up) calibrators (``ml_core.models.calibration``) and conformal
    direction sets (``ml_core.models.conformal``, at ``conformal_confidence``; None: none)
    on the validation rows ``val``, in place; ``raw_val``: its raw validation predictions when
    already made. Returns the method choice per horizon (horizon, method, holdout log
    loss, chosen); no validation rows: no calibrators, the raw p is served."""
    pipe.calibrators, pipe.conformal = {}, {}
    if val.empty:
        return pd.DataFrame()
    raw = raw_val if raw_val is not None else pipe.predict_features(val, calibrated=False)
    tables = []
    for h in pipe.horizons:
        y = val[f"up_{h}"].to_numpy(float)
        cal, table = fit_calibrator(raw[h], y, val["ts"], method=method)
        pipe.calibrators[h] = cal
        if conformal_confidence is not None:
            found = fit_conformal(cal(raw[h]), y, confidence=conformal_confidence)
            if found is not None:
                pipe.conformal[h] = found
        tables.append(table.assign(horizon=h, n_val=cal.n_rows))
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def _stamp(pipe: CandlePipeline, fitted_rows: pd.DataFrame, parts: SplitParts) -> CandlePipeline:
    """Record the recipe and the time extent of what ``pipe`` was fitted on."""
    pipe.recipe_key = recipe_key(pipe)
    pipe.fit_label_end_ts = label_end(fitted_rows, pipe.horizons)
    ends = [p["ts"].max() for p in (parts.train, parts.val, parts.test) if not p.empty]
    pipe.data_end_ts = pd.Timestamp(max(ends)) if ends else None
    return pipe


def recipe_key(pipe: CandlePipeline) -> str:
    """The recipe of a pipeline: candidate, feature columns and each model's settings.

    Two pipelines with the same key differ only in the data they were fitted on
    (``ml_core.validation.cpcv_eval.configuration_key``, which CPCV compares by).
    """
    from ml_core.validation.cpcv_eval import configuration_key

    return configuration_key(pipe)


def label_end(rows: pd.DataFrame, horizons: list[int]) -> pd.Timestamp | None:
    """Latest label end time ``t1_h`` over ``rows`` and horizons (latest ts without labels)."""
    cols = [f"t1_{h}" for h in horizons if f"t1_{h}" in rows.columns]
    if rows.empty:
        return None
    if cols:
        value = rows[cols].max(axis=1, skipna=True).max()
        if pd.notna(value):
            return pd.Timestamp(value)
    return pd.Timestamp(rows["ts"].max())


def refit_recipe(
    pipe: CandlePipeline,
    parts: SplitParts,
    model_cfg: ModelConfig,
    regime_model: RegimeModel | None = None,
) -> CandlePipeline:
    """``pipe``'s recipe (its models' settings) refit on this split, evaluated like a candidate.

    Scaler and copies of the direction / frame models are fit on the training
    part (validation for early stopping), keeping ``recipe_key``; the return
    models are dropped (the retrain attaches this week's). ``regime_model``
    (this week's, fit on the same training part) replaces the old one.
    """
    import copy

    out = copy.copy(pipe)
    out.regime_model = regime_model if regime_model is not None else pipe.regime_model
    out.return_models, out.models = {}, {}
    train = _recent(out.with_regime_features(parts.train), model_cfg.max_train_rows)
    val = out.with_regime_features(parts.val) if not parts.val.empty else parts.val
    out.scaler = SymbolRobustScaler(list(pipe.feature_columns), clip=pipe.scaler.clip).fit(train)
    if pipe.frame_model is not None:
        out.frame_model = copy.deepcopy(pipe.frame_model).fit_frame(
            out.scaled_frame(train),
            out.scaled_frame(val) if len(val) else None,
            features=list(pipe.feature_columns),
            horizons=list(pipe.horizons),
        )
    x, x_val = out.scaler.transform(train), out.scaler.transform(val) if len(val) else None
    for h, model in pipe.models.items():
        ok = train[f"up_{h}"].notna().to_numpy()
        x_v = y_v = None
        if x_val is not None:
            ok_v = val[f"up_{h}"].notna().to_numpy()
            x_v, y_v = x_val[ok_v], val.loc[ok_v, f"up_{h}"].to_numpy()
        fresh = copy.deepcopy(model)
        out.models[h] = fresh.fit(x[ok], train.loc[ok, f"up_{h}"].to_numpy(), x_v, y_v)
    # this split's validation, not the old one
    calibrate(out, val, model_cfg.calibration, conformal_confidence=model_cfg.conformal_confidence)
    key = pipe.recipe_key or recipe_key(pipe)
    stamped = _stamp(out, train, parts)
    stamped.recipe_key = key  # the recipe it was refit as, not its refit settings
    return stamped


def refit_for_serving(
    pipe: CandlePipeline, parts: SplitParts, final_fit: str, model_cfg: ModelConfig
) -> CandlePipeline:
    """The evaluated ``pipe``'s recipe refit on the parts ``final_fit`` names.

    ``final_fit='train'`` returns ``pipe`` itself (the evaluated fit is served).
    Otherwise a copy gets a fresh per-symbol scaler and copies of its models
    (direction, frame and return models) fitted on the union of the named parts,
    without early stopping: boosted models keep the number of trees the
    evaluated fit stopped at. The regime model (label-free) is kept. The
    evaluated numbers stay with the evaluated pipeline's record; the copy keeps
    ``recipe_key`` and ``edge_horizons``.
    """
    import copy

    if final_fit not in FINAL_FIT_ROWS:
        raise DataContractError(
            f"final_fit={final_fit!r} is not one of {sorted(FINAL_FIT_ROWS)}; "
            "set registry.final_fit to train, train_val or all."
        )
    if final_fit == "train":
        return pipe
    rows = pd.concat(
        [getattr(parts, name) for name in FINAL_FIT_ROWS[final_fit]], ignore_index=True
    )
    rows = _recent(pipe.with_regime_features(rows), model_cfg.max_train_rows)
    out = copy.copy(pipe)
    out.scaler = SymbolRobustScaler(list(pipe.feature_columns), clip=pipe.scaler.clip).fit(rows)
    out.models, out.return_models = {}, {}
    if pipe.frame_model is not None:
        out.frame_model = _fixed_size(pipe.frame_model).fit_frame(
            out.scaled_frame(rows),
            None,
            features=list(pipe.feature_columns),
            horizons=pipe.horizons,
        )
    x = out.scaler.transform(rows) if (pipe.models or pipe.return_models) else None
    for h, model in pipe.models.items():
        ok = rows[f"up_{h}"].notna().to_numpy()
        out.models[h] = _fixed_size(model).fit(x[ok], rows.loc[ok, f"up_{h}"].to_numpy())
    for h, model in pipe.return_models.items():
        ok = rows[f"ret_{h}"].notna().to_numpy()
        y = rows.loc[ok, f"ret_{h}"].to_numpy(dtype=float)
        out.return_models[h] = _fixed_size(model).fit(x[ok], y, None, None)
    out.fit_label_end_ts = label_end(rows, pipe.horizons)
    out.final_fit = final_fit
    log.info("refit %s for serving on %s: %d rows", pipe.candidate, final_fit, len(rows))
    return out


def _fixed_size(model: object) -> object:
    """A copy of ``model`` that, refit without validation, uses the evaluated tree count."""
    import copy

    clone = copy.deepcopy(model)
    best = getattr(model, "best_iteration_", None)
    params = getattr(clone, "params_in", None)
    if best and isinstance(params, dict):
        clone.params_in = {**params, "n_estimators": int(best)}
    return clone


def _check_two_classes(train: pd.DataFrame, h: int) -> None:
    y_col = f"up_{h}"
    ok = train[y_col].notna().to_numpy()
    if ok.sum() < 2 or train.loc[ok, y_col].nunique() < 2:
        raise DataContractError(
            f"Horizon {h}: training labels {y_col!r} have fewer than two classes "
            f"({int(ok.sum())} labelled rows). Ingest more history."
        )


def regime_columns(regime_model: RegimeModel | None) -> list[str]:
    """The regime probability columns a model uses as inputs (none without regimes)."""
    if regime_model is None:
        return []
    return [probability_column(name) for name in state_names(regime_model.cfg.n_states)]


def _recent(train: pd.DataFrame, max_rows: int | None) -> pd.DataFrame:
    """The most recent ``max_rows`` training rows (by ts, across symbols)."""
    if max_rows is None or len(train) <= max_rows:
        return train
    cutoff = train["ts"].sort_values().iloc[len(train) - max_rows]
    return train.loc[train["ts"] >= cutoff].reset_index(drop=True)


def _normalize_candles(candles: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """Serving input as the canonical candle frame: naive-UTC ts, timeframe column."""
    required = ["symbol", "ts", "open", "high", "low", "close", "volume"]
    missing = [c for c in required if c not in candles.columns]
    if missing:
        raise DataContractError(
            f"Candles for prediction lack columns {missing}; expected {required}."
        )
    out = candles[required].copy()
    ts = pd.to_datetime(out["ts"], utc=True)
    out["ts"] = ts.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[us]")
    out["timeframe"] = timeframe
    for col in ["open", "high", "low", "close", "volume"]:
        out[col] = out[col].astype("float64")
    return out.sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True)
