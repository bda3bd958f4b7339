"""Ensembles over base models: stacking, regime-weighted averaging, online weights.

All three are ``FrameModel`` candidates (``stacking``, ``regime_ensemble``,
``online_ensemble``), fitted and registered like any other model. They share
one recipe (``models.ensemble`` in the config):

1. **Out-of-fold (OOF) predictions.** The training frame is cut into purged,
   expanding walk-forward folds *in time* (``WalkForwardCV``: a row trains a
   fold only when its latest label ends, ``max_h t1_h``, before the fold's test
   block, with an embargo gap of ``embargo_bars``, default the largest
   horizon). Each base model is fitted on a fold's past and predicts its test
   block, so every combiner learns from predictions made on rows the base never
   saw. (In-sample predictions would reward memorisation: a base that remembers
   its training rows looks perfect there and useless later.) The first block
   only trains; fold models early-stop on the caller's validation part, like
   the final ones. Cost: ``oof_folds + 1`` fits of every base.
2. **Final base models** are refit on the whole training frame.
3. **A combiner** learned from the OOF predictions:

   * ``StackingEnsemble``: per horizon, a logistic (or elastic-net) meta-learner
     on ``[logit(p_base) ...]``.
   * ``RegimeEnsemble``: per horizon and HMM regime (column ``regime``, the most
     likely *filtered* regime at t), base weights ``softmax((AUC - 0.5) / T)``
     from OOF AUC in that regime, shrunk toward the overall AUC; P(up) is the
     weighted mean of base P(up) under the regime at t.
   * ``OnlineEnsemble``: weights start from OOF accuracy and follow an
     exponential moving average of each base's *realized* (balanced) accuracy:
     at row t the outcome of the prediction made at t-h is known from
     ``close[t]`` vs ``close[t-h]`` (same symbol and segment). Only the last
     ``online_window_bars`` outcomes count, so serving needs a bounded history.
     P(up) is ``base_rate + Σ w_b (p_b - median_b)``: moving weights change how
     much each base's deviation counts, not the level.

Example::

    pipe = fit_pipeline("stacking", parts, horizons=[15, 60], ...)
    pipe.frame_model.params()   # meta-learner weights per horizon and base
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from ml_core.config import EnsembleConfig, ModelConfig
from ml_core.errors import ConfigError, DataContractError, NotFittedError
from ml_core.models.base import MODEL_FACTORIES, is_frame_model, make_model, model_names
from ml_core.validation.walk_forward import WalkForwardCV

log = logging.getLogger(__name__)

ENSEMBLE_NAMES = ("stacking", "regime_ensemble", "online_ensemble")
_EPS = 1e-6
_MIN_META_ROWS = 30


def logit(p: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)) with p clipped to [1e-6, 1 - 1e-6]."""
    p = np.clip(np.asarray(p, dtype=float), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def floored_softmax(scores: np.ndarray, temperature: float, min_weight: float) -> np.ndarray:
    """Weights ``min_weight + (1 - n*min_weight) * softmax(scores / T)`` over the last axis.

    >>> floored_softmax(np.array([0.0, 0.0]), 1.0, 0.1).tolist()
    [0.5, 0.5]
    """
    z = np.asarray(scores, dtype=float) / temperature
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    soft = z / z.sum(axis=-1, keepdims=True)
    n = soft.shape[-1]
    floor = min_weight if n * min_weight < 1 else 1.0 / n
    return floor + (1 - n * floor) * soft


def check_base_names(names: list[str]) -> list[str]:
    """The base model names, checked: known, no ensembles, no duplicates."""
    unknown = [n for n in names if n not in MODEL_FACTORIES]
    if unknown:
        raise ConfigError(
            f"Unknown base model(s) {unknown} in models.ensemble.base_models; "
            f"choose from {model_names()}."
        )
    nested = [n for n in names if n in ENSEMBLE_NAMES]
    if nested:
        raise ConfigError(
            f"models.ensemble.base_models {names} names ensemble(s) {nested}; "
            "use non-ensemble models, e.g. ['logistic', 'lightgbm']."
        )
    if len(set(names)) != len(names) or not names:
        raise ConfigError(f"models.ensemble.base_models {names} must list each model once.")
    return list(names)


# ---------------------------------------------------------------- base models
class BaseModels:
    """Fitted base models: per name one FrameModel or one DirectionModel per horizon."""

    def __init__(self, names: list[str], model_cfg: ModelConfig) -> None:
        self.names = list(names)
        self.model_cfg = model_cfg

    def fit(
        self,
        train: pd.DataFrame,
        val: pd.DataFrame | None,
        *,
        features: list[str],
        horizons: list[int],
    ) -> BaseModels:
        x = train[features].to_numpy(dtype=float)
        has_val = val is not None and not val.empty
        x_val = val[features].to_numpy(dtype=float) if has_val else None
        self.fitted_: list[object] = []
        for name in self.names:
            model = make_model(name, self.model_cfg)
            if is_frame_model(model):
                self.fitted_.append(
                    model.fit_frame(train, val, features=features, horizons=horizons)
                )
                continue
            per_h: dict[int, object | None] = {}
            for h in horizons:
                ok = train[f"up_{h}"].notna().to_numpy()
                y = train.loc[ok, f"up_{h}"].to_numpy(dtype=float)
                if len(np.unique(y)) < 2:
                    per_h[h] = None  # e.g. an early fold of one class: no prediction
                    continue
                x_v = y_v = None
                if x_val is not None and val is not None:
                    ok_v = val[f"up_{h}"].notna().to_numpy()
                    x_v, y_v = x_val[ok_v], val.loc[ok_v, f"up_{h}"].to_numpy(dtype=float)
                fresh = model if not per_h else make_model(name, self.model_cfg)
                per_h[h] = fresh.fit(x[ok], y, x_v, y_v)
            self.fitted_.append(per_h)
        self.features_ = list(features)
        self.horizons_ = list(horizons)
        return self

    @property
    def history_bars(self) -> int:
        """The most past rows any base reads (0 for row-wise bases)."""
        fitted = getattr(self, "fitted_", [])
        return max([int(getattr(m, "history_bars", 0) or 0) for m in fitted], default=0)

    def predict(self, frame: pd.DataFrame, rows: np.ndarray | None = None) -> dict[int, np.ndarray]:
        """P(up) per horizon, shape (n_rows, n_bases), for ``rows`` of ``frame`` (all: None).

        Sequence bases see every row of ``frame`` up to the last requested ts, so
        their windows have history; row-wise bases see only the requested rows.
        """
        if not hasattr(self, "fitted_"):
            raise NotFittedError("BaseModels.predict called before fit.")
        rows = np.arange(len(frame)) if rows is None else np.asarray(rows)
        out = {h: np.full((len(rows), len(self.names)), np.nan) for h in self.horizons_}
        x = frame[self.features_].to_numpy(dtype=float)[rows] if len(rows) else None
        for b, model in enumerate(self.fitted_):
            if isinstance(model, dict):
                for h, m in model.items():
                    if m is not None and x is not None:
                        out[h][:, b] = m.predict_proba(x)
                continue
            probs = self._predict_frame_rows(model, frame, rows) if len(rows) else {}
            for h in probs:
                out[h][:, b] = probs[h]
        return out

    @staticmethod
    def _predict_frame_rows(model: object, frame: pd.DataFrame, rows: np.ndarray) -> dict:
        if int(getattr(model, "history_bars", 0) or 0) == 0 or len(rows) == len(frame):
            sub = frame.iloc[rows].reset_index(drop=True)
            return {h: np.asarray(p, dtype=float) for h, p in model.predict_frame(sub).items()}
        last = frame["ts"].to_numpy()[rows].max()
        upto = np.flatnonzero(frame["ts"].to_numpy() <= last)
        probs = model.predict_frame(frame.iloc[upto].reset_index(drop=True))
        where = pd.Series(np.arange(len(upto)), index=upto).loc[rows].to_numpy()
        return {h: np.asarray(p, dtype=float)[where] for h, p in probs.items()}

    def importance(self, columns: list[str]) -> list[pd.Series | None]:
        """Each base's importance (sum 1; first horizon for per-horizon bases)."""
        out: list[pd.Series | None] = []
        for model in getattr(self, "fitted_", []):
            if isinstance(model, dict):
                model = next((m for m in model.values() if m is not None), None)
            imp = model.feature_importance(columns) if model is not None else None
            total = float(np.abs(imp).sum()) if imp is not None else 0.0
            out.append(np.abs(imp) / total if imp is not None and total > 0 else None)
        return out


def label_end_ts(frame: pd.DataFrame, horizons: list[int]) -> np.ndarray:
    """Each row's latest label end ``max_h t1_h`` (``ts`` where no label is known)."""
    ts = frame["ts"].to_numpy().astype("datetime64[ns]")
    end = ts.copy()
    for h in horizons:
        col = f"t1_{h}"
        if col not in frame.columns:
            raise DataContractError(
                f"Ensemble training frame lacks {col!r}; OOF folds purge by label end "
                "times. Build it with ml_core.features (build_model_frame)."
            )
        t1 = frame[col].to_numpy().astype("datetime64[ns]")
        end = np.where(~np.isnat(t1) & (t1 > end), t1, end)
    return end


def out_of_fold_probs(
    train: pd.DataFrame,
    val: pd.DataFrame | None,
    *,
    names: list[str],
    model_cfg: ModelConfig,
    features: list[str],
    horizons: list[int],
) -> dict[int, np.ndarray]:
    """Base P(up) per horizon (n_rows, n_bases), each row predicted by models of earlier folds.

    Rows of the first block (before every test block) stay NaN.
    """
    cfg = model_cfg.ensemble
    embargo = cfg.embargo_bars if cfg.embargo_bars is not None else max(horizons)
    cv = WalkForwardCV(n_splits=cfg.oof_folds, mode="expanding", embargo=int(embargo))
    oof = {h: np.full((len(train), len(names)), np.nan) for h in horizons}
    splits = cv.split(
        ts=train["ts"].to_numpy().astype("datetime64[ns]"),
        t1=label_end_ts(train, horizons),
        groups=train["symbol"].to_numpy(),
    )
    for fold, (train_idx, test_idx) in enumerate(splits):
        fold_train = train.iloc[train_idx].reset_index(drop=True)
        bases = BaseModels(names, model_cfg).fit(
            fold_train, val, features=features, horizons=horizons
        )
        probs = bases.predict(train, test_idx)
        for h in horizons:
            oof[h][test_idx] = probs[h]
        log.info("OOF fold %d: %d train rows -> %d rows", fold, len(train_idx), len(test_idx))
    return oof


def combine(probs: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean and weighted std of base P(up) per row (NaN bases left out)."""
    known = ~np.isnan(probs)
    w = np.where(known, weights, 0.0)
    total = w.sum(axis=1)
    w = np.divide(w, total[:, None], out=np.zeros_like(w), where=total[:, None] > 0)
    p = np.where(known, probs, 0.0)
    mean = (w * p).sum(axis=1)
    spread = np.sqrt((w * (p - mean[:, None]) ** 2).sum(axis=1))
    mean[total <= 0] = np.nan
    spread[total <= 0] = np.nan
    return mean, spread


# ---------------------------------------------------------------- the shared frame model
class _Ensemble:
    """OOF predictions + refit bases; subclasses learn and apply the combiner."""

    name = "ensemble"

    def __init__(self, cfg: EnsembleConfig, model_cfg: ModelConfig) -> None:
        self.cfg = cfg
        self.model_cfg = model_cfg.model_copy(update={"ensemble": cfg})
        self.history_bars = 0

    def fit_frame(
        self,
        train: pd.DataFrame,
        val: pd.DataFrame | None,
        *,
        features: list[str],
        horizons: list[int],
    ) -> _Ensemble:
        names = check_base_names(self.cfg.base_models)
        missing = [f"up_{h}" for h in horizons if f"up_{h}" not in train.columns]
        if missing:
            raise DataContractError(f"{self.name}: training frame lacks label columns {missing}.")
        kw = {"features": list(features), "horizons": list(horizons)}
        oof = out_of_fold_probs(train, val, names=names, model_cfg=self.model_cfg, **kw)
        self.bases_ = BaseModels(names, self.model_cfg).fit(train, val, **kw)
        self.horizons_ = list(horizons)
        self.features_ = list(features)
        self.oof_rows_ = {h: int((~np.isnan(oof[h]).any(axis=1)).sum()) for h in horizons}
        self.history_bars = self.bases_.history_bars
        self._fit_combiner(train, oof)
        return self

    def _fit_combiner(self, train: pd.DataFrame, oof: dict[int, np.ndarray]) -> None:
        raise NotImplementedError

    def _combine(self, frame: pd.DataFrame, probs: dict[int, np.ndarray]) -> dict[int, tuple]:
        raise NotImplementedError

    def _check_fitted(self) -> None:
        if not hasattr(self, "bases_"):
            raise NotFittedError(f"{type(self).__name__} used before fit_frame.")

    def predict_frame_details(self, frame: pd.DataFrame) -> dict[int, dict[str, np.ndarray]]:
        """``p_up`` and ``uncertainty`` (weighted spread of the base P(up)) per horizon."""
        self._check_fitted()
        out = self._combine(frame, self.bases_.predict(frame))
        return {h: {"p_up": p, "uncertainty": u} for h, (p, u) in out.items()}

    def predict_frame(self, frame: pd.DataFrame) -> dict[int, np.ndarray]:
        return {h: d["p_up"] for h, d in self.predict_frame_details(frame).items()}

    def mean_weights(self) -> np.ndarray:
        """Average share of each base over horizons (for importance and reports)."""
        raise NotImplementedError

    def feature_importance(self, columns: list[str]) -> pd.Series | None:
        """Base importances (each summing to 1) averaged with the ensemble's base weights."""
        if not hasattr(self, "bases_"):
            return None
        parts = [
            w * imp
            for w, imp in zip(self.mean_weights(), self.bases_.importance(columns), strict=True)
            if imp is not None
        ]
        return pd.concat(parts, axis=1).sum(axis=1).rename("weighted_share") if parts else None

    def _base_params(self) -> dict[str, object]:
        return {
            "base_models": ",".join(self.cfg.base_models),
            "oof_folds": self.cfg.oof_folds,
            **{f"oof_rows_h{h}": n for h, n in getattr(self, "oof_rows_", {}).items()},
        }


# ---------------------------------------------------------------- stacking
def fit_meta_learner(
    probs: np.ndarray, y: np.ndarray, cfg: EnsembleConfig, seed: int = 42
) -> LogisticRegression | None:
    """Meta-learner on ``logit(probs)`` rows with every base known and a label (None: too few)."""
    ok = ~np.isnan(probs).any(axis=1) & ~np.isnan(y)
    if ok.sum() < _MIN_META_ROWS or len(np.unique(y[ok])) < 2:
        return None
    elastic = cfg.meta_learner == "elastic_net"
    meta = LogisticRegression(
        C=cfg.meta_c,
        l1_ratio=cfg.meta_l1_ratio if elastic else 0.0,
        solver="saga" if elastic else "lbfgs",
        max_iter=5000,
        random_state=seed,
    )
    return meta.fit(logit(probs[ok]), y[ok].astype(int))


def contribution_shares(meta: LogisticRegression, probs: np.ndarray) -> np.ndarray:
    """Each base's share of the meta-learner's input: ``|coef| * std(logit p)``, sum 1."""
    ok = ~np.isnan(probs).any(axis=1)
    scale = logit(probs[ok]).std(axis=0) if ok.any() else np.ones(probs.shape[1])
    raw = np.abs(meta.coef_[0]) * scale
    return raw / raw.sum() if raw.sum() > 0 else np.full(len(raw), 1.0 / len(raw))


class StackingEnsemble(_Ensemble):
    """Logistic / elastic-net meta-learner per horizon on OOF logits of the bases."""

    name = "stacking"

    def _fit_combiner(self, train: pd.DataFrame, oof: dict[int, np.ndarray]) -> None:
        self.meta_: dict[int, LogisticRegression | None] = {}
        self.shares_: dict[int, np.ndarray] = {}
        n_bases = len(self.cfg.base_models)
        for h in self.horizons_:
            y = train[f"up_{h}"].to_numpy(dtype=float)
            meta = fit_meta_learner(oof[h], y, self.cfg, self.model_cfg.seed)
            if meta is None:
                log.warning("stacking h=%d: too few OOF rows; averaging the bases instead", h)
            self.meta_[h] = meta
            self.shares_[h] = (
                contribution_shares(meta, oof[h]) if meta else np.full(n_bases, 1 / n_bases)
            )

    def _combine(self, frame: pd.DataFrame, probs: dict[int, np.ndarray]) -> dict[int, tuple]:
        out = {}
        for h in self.horizons_:
            p_base = probs[h]
            equal = np.full(p_base.shape[1], 1.0 / p_base.shape[1])
            mean, spread = combine(p_base, np.broadcast_to(equal, p_base.shape))
            meta = self.meta_[h]
            if meta is not None and len(p_base):
                z = np.where(np.isnan(p_base), 0.0, logit(p_base))  # unknown base: p = 0.5
                mean = meta.predict_proba(z)[:, 1]
            out[h] = (mean, spread)
        return out

    def mean_weights(self) -> np.ndarray:
        return np.mean([self.shares_[h] for h in self.horizons_], axis=0)

    def params(self) -> dict[str, object]:
        out = {**self._base_params(), "meta_learner": self.cfg.meta_learner}
        for h, meta in getattr(self, "meta_", {}).items():
            for b, name in enumerate(self.cfg.base_models):
                out[f"share_h{h}_{name}"] = round(float(self.shares_[h][b]), 6)
                if meta is not None:
                    out[f"coef_h{h}_{name}"] = round(float(meta.coef_[0][b]), 6)
        return out


# ---------------------------------------------------------------- regime weighting
def _auc(y: np.ndarray, p: np.ndarray) -> tuple[float, int]:
    ok = ~np.isnan(y) & ~np.isnan(p)
    if ok.sum() < 2 or len(np.unique(y[ok])) < 2:
        return float("nan"), int(ok.sum())
    return float(roc_auc_score(y[ok].astype(int), p[ok])), int(ok.sum())


def regime_labels(frame: pd.DataFrame) -> np.ndarray | None:
    """The ``regime`` column as an object array ('' where unknown); None without it."""
    if "regime" not in frame.columns:
        return None
    return frame["regime"].astype("string").fillna("").to_numpy(dtype=object)


def regime_weights(
    oof: np.ndarray, y: np.ndarray, regimes: np.ndarray | None, cfg: EnsembleConfig
) -> dict[str, np.ndarray]:
    """Base weights per regime ('' = any/unknown regime) from OOF AUC.

    A regime's AUC is shrunk toward the overall AUC with ``regime_prior_rows``
    pseudo-rows, so a rare regime leans on the overall ranking. Without a
    regime column every base gets the same weight.
    """
    n_bases = oof.shape[1]
    if regimes is None:
        return {"": np.full(n_bases, 1.0 / n_bases)}
    overall = np.array([_auc(y, oof[:, b])[0] for b in range(n_bases)])
    overall = np.nan_to_num(overall, nan=0.5)
    temp, floor = cfg.regime_temperature, cfg.min_weight
    out = {"": floored_softmax(overall - 0.5, temp, floor)}
    for regime in sorted(set(regimes) - {""}):
        mask = regimes == regime
        aucs = []
        for b in range(n_bases):
            auc, n = _auc(y[mask], oof[mask, b])
            n = 0 if np.isnan(auc) else n
            prior = cfg.regime_prior_rows
            aucs.append((n * np.nan_to_num(auc) + prior * overall[b]) / max(n + prior, 1))
        out[str(regime)] = floored_softmax(np.array(aucs) - 0.5, temp, floor)
    return out


class RegimeEnsemble(_Ensemble):
    """Weighted mean of base P(up) with weights chosen by the filtered regime at t."""

    name = "regime_ensemble"

    def _fit_combiner(self, train: pd.DataFrame, oof: dict[int, np.ndarray]) -> None:
        regimes = regime_labels(train)
        self.weights_ = {
            h: regime_weights(oof[h], train[f"up_{h}"].to_numpy(dtype=float), regimes, self.cfg)
            for h in self.horizons_
        }

    def row_weights(self, frame: pd.DataFrame, h: int) -> np.ndarray:
        """Weights (n_rows, n_bases) for ``frame``: its regime's, else the overall ones."""
        table = self.weights_[h]
        regimes = regime_labels(frame)
        if regimes is None:
            regimes = np.full(len(frame), "", dtype=object)
        codes, uniques = pd.factorize(regimes)
        rows = np.stack([table.get(str(r), table[""]) for r in uniques] or [table[""]])
        return rows[codes].reshape(len(frame), -1)

    def _combine(self, frame: pd.DataFrame, probs: dict[int, np.ndarray]) -> dict[int, tuple]:
        return {h: combine(probs[h], self.row_weights(frame, h)) for h in self.horizons_}

    def mean_weights(self) -> np.ndarray:
        return np.mean([self.weights_[h][""] for h in self.horizons_], axis=0)

    def params(self) -> dict[str, object]:
        out: dict[str, object] = {**self._base_params(), "temperature": self.cfg.regime_temperature}
        for h, table in getattr(self, "weights_", {}).items():
            for regime, w in table.items():
                for b, name in enumerate(self.cfg.base_models):
                    out[f"w_h{h}_{regime or 'all'}_{name}"] = round(float(w[b]), 6)
        return out


# ---------------------------------------------------------------- online weights
def _group_order(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Row order by (symbol, segment, ts) and the group id of each sorted row."""
    sym = pd.factorize(frame["symbol"].astype(str))[0]
    seg = (
        pd.factorize(frame["segment_start"])[0]
        if "segment_start" in frame.columns
        else np.zeros(len(frame), dtype=int)
    )
    ts = frame["ts"].to_numpy().astype("datetime64[ns]").astype(np.int64)
    order = np.lexsort((ts, seg, sym))
    key = sym[order].astype(np.int64) * (int(seg.max(initial=0)) + 1) + seg[order]
    return order, key


def realized_hits(
    frame: pd.DataFrame,
    probs: np.ndarray,
    h: int,
    order: np.ndarray,
    group: np.ndarray,
    centers: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Per sorted row t: whether each base's call made at t-h was right, and the outcome.

    Returns ``(hits, outcome)``: ``hits`` (n, n_bases) 1/0, NaN unknown;
    ``outcome`` 1 (up) / 0 (down) / NaN. The outcome is ``close[t] > close[t-h]``:
    row t-h must be h bars earlier in the same symbol and segment (bar = median
    spacing), so only closes up to t are read. A base calls "up" when its P(up)
    is above its own ``center`` (its median OOF P(up)), so a base that always
    leans one way is not scored on the market's direction.
    """
    ts = frame["ts"].to_numpy().astype("datetime64[ns]").astype(np.int64)[order]
    close = frame["close"].to_numpy(dtype=float)[order]
    p = probs[order]
    hits = np.full(p.shape, np.nan)
    outcome = np.full(len(p), np.nan)
    same = np.r_[False, group[1:] == group[:-1]]
    steps = np.diff(ts)[same[1:]]
    if len(p) <= h or not (steps > 0).any():
        return hits, outcome
    bar = int(np.median(steps[steps > 0]))
    now, past = np.arange(h, len(p)), np.arange(0, len(p) - h)
    ok = (group[now] == group[past]) & (ts[now] - ts[past] == h * bar)
    now, past = now[ok], past[ok]
    up = close[now] > close[past]
    outcome[now] = up.astype(float)
    called = p[past] > centers
    hits[now] = np.where(np.isnan(p[past]), np.nan, (called == up[:, None]).astype(float))
    return hits, outcome


#: Prior strength of the online accuracy: independent outcomes of each class at the
#: initial (OOF) value. Outcomes h bars long overlap, so one counts h rows.
PRIOR_OUTCOMES = 5


def online_accuracy(
    hits: np.ndarray,
    outcome: np.ndarray,
    group: np.ndarray,
    init: np.ndarray,
    half_life: float,
    window: int,
    horizon: int = 1,
) -> np.ndarray:
    """Balanced realized accuracy per sorted row and base: an EMA over the last ``window`` rows.

    For each outcome class c (up, down), ``r_c[t] = Σ_j k_j hit[t-j] [c] / Σ_j k_j [c]``
    with ``k_j = α (1-α)^j`` for ``j < window`` (α from the half-life); the
    balanced rate ``(r_up + r_down) / 2`` is shrunk toward ``init`` with weight
    ``n = 2 min_c Σ_j k_j [c]`` against β = ``PRIOR_OUTCOMES`` α h. Balanced,
    because on minute bars outcomes come in runs: plain accuracy would reward
    whichever base called the latest run, and the weights would chase momentum.
    The filter is fixed and causal, so a frame cut to the last ``window`` rows
    (plus h) gives the same value at t.
    """
    alpha = 1.0 - 0.5 ** (1.0 / half_life)
    kernel = alpha * (1 - alpha) ** np.arange(window)
    prior = PRIOR_OUTCOMES * alpha * horizon
    out = np.empty(hits.shape)
    bounds = np.flatnonzero(np.r_[True, group[1:] != group[:-1], True])

    def ema(x: np.ndarray) -> np.ndarray:
        return np.convolve(np.r_[np.zeros(window - 1), x], kernel, mode="valid")

    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        for b in range(hits.shape[1]):
            hit = hits[lo:hi, b]
            known = ~np.isnan(hit)
            rates, weights = [], []
            for c in (0.0, 1.0):
                mask = (known & (outcome[lo:hi] == c)).astype(float)
                den = ema(mask)
                num = ema(np.where(known, hit, 0.0) * mask)
                rates.append(np.divide(num, den, out=np.full(len(den), 0.5), where=den > 1e-12))
                weights.append(den)
            n = 2 * np.minimum(weights[0], weights[1])
            balanced = 0.5 * (rates[0] + rates[1])
            out[lo:hi, b] = (n * balanced + prior * init[b]) / (n + prior)
    return out


def balanced_accuracy(probs: np.ndarray, y: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Per base: mean of the hit rates on up and on down rows (calls above ``centers``)."""
    out = np.full(probs.shape[1], 0.5)
    for b in range(probs.shape[1]):
        known = ~np.isnan(probs[:, b]) & ~np.isnan(y)
        rates = [
            ((probs[known & (y == c), b] > centers[b]) == bool(c)).mean()
            for c in (0.0, 1.0)
            if (known & (y == c)).any()
        ]
        out[b] = float(np.mean(rates)) if len(rates) == 2 else 0.5
    return out


def online_weights(
    frame: pd.DataFrame,
    probs: np.ndarray,
    h: int,
    init_accuracy: np.ndarray,
    cfg: EnsembleConfig,
    centers: np.ndarray | None = None,
) -> np.ndarray:
    """Base weights (n_rows, n_bases) at every row of ``frame`` from realized accuracy up to t."""
    if "close" not in frame.columns:
        raise DataContractError(
            "online_ensemble needs the raw 'close' column to see realized outcomes; "
            "pass frames from CandlePipeline.scaled_frame."
        )
    if not len(frame):
        return np.empty((0, probs.shape[1]))
    order, group = _group_order(frame)
    centers = np.full(probs.shape[1], 0.5) if centers is None else np.asarray(centers)
    hits, outcome = realized_hits(frame, probs, h, order, group, centers)
    acc = online_accuracy(
        hits, outcome, group, init_accuracy, cfg.online_half_life_bars, cfg.online_window_bars, h
    )
    weights = floored_softmax(acc - 0.5, cfg.online_temperature, cfg.min_weight)
    out = np.empty_like(weights)
    out[order] = weights
    return out


class OnlineEnsemble(_Ensemble):
    """Weights from an EMA of each base's realized accuracy, started at its OOF accuracy."""

    name = "online_ensemble"

    def __init__(self, cfg: EnsembleConfig, model_cfg: ModelConfig) -> None:
        super().__init__(cfg, model_cfg)
        self.history_bars = cfg.online_window_bars

    def _fit_combiner(self, train: pd.DataFrame, oof: dict[int, np.ndarray]) -> None:
        self.init_accuracy_: dict[int, np.ndarray] = {}
        self.centers_: dict[int, np.ndarray] = {}
        self.base_rate_: dict[int, float] = {}
        for h in self.horizons_:
            y = train[f"up_{h}"].to_numpy(dtype=float)
            known = ~np.isnan(oof[h]) & ~np.isnan(y)[:, None]
            self.centers_[h] = np.array(
                [
                    np.median(oof[h][known[:, b], b]) if known[:, b].any() else 0.5
                    for b in range(oof[h].shape[1])
                ]
            )
            self.init_accuracy_[h] = balanced_accuracy(oof[h], y, self.centers_[h])
            self.base_rate_[h] = float(np.nanmean(y)) if np.isfinite(y).any() else 0.5
        # outcomes of the last `window` rows reach back h more rows, plus the bases' own history
        self.history_bars = (
            self.cfg.online_window_bars + max(self.horizons_) + self.bases_.history_bars
        )

    def _combine(self, frame: pd.DataFrame, probs: dict[int, np.ndarray]) -> dict[int, tuple]:
        """``base_rate + Σ w_b (p_b - center_b)``: moving weights move how much each base's
        *deviation* counts, never the level (bases leaning up or down by different amounts
        would otherwise shift every prediction whenever the weights move)."""
        out = {}
        for h in self.horizons_:
            w = online_weights(
                frame, probs[h], h, self.init_accuracy_[h], self.cfg, self.centers_[h]
            )
            _, spread = combine(probs[h], w)
            shifted, _ = combine(probs[h] - self.centers_[h], w)
            out[h] = (np.clip(self.base_rate_[h] + shifted, _EPS, 1 - _EPS), spread)
        return out

    def mean_weights(self) -> np.ndarray:
        return np.mean(
            [
                floored_softmax(a - 0.5, self.cfg.online_temperature, self.cfg.min_weight)
                for a in self.init_accuracy_.values()
            ],
            axis=0,
        )

    def params(self) -> dict[str, object]:
        out: dict[str, object] = {
            **self._base_params(),
            "half_life_bars": self.cfg.online_half_life_bars,
            "window_bars": self.cfg.online_window_bars,
        }
        for h, acc in getattr(self, "init_accuracy_", {}).items():
            w = floored_softmax(acc - 0.5, self.cfg.online_temperature, self.cfg.min_weight)
            for b, name in enumerate(self.cfg.base_models):
                out[f"oof_balanced_acc_h{h}_{name}"] = round(float(acc[b]), 6)
                out[f"w0_h{h}_{name}"] = round(float(w[b]), 6)
        return out


# ---------------------------------------------------------------- factories
def ensemble_config(cfg: ModelConfig, name: str) -> EnsembleConfig:
    """``models.ensemble`` with the overrides of ``models.params[name]`` applied."""
    overrides = cfg.params_for(name)
    if not overrides:
        return cfg.ensemble
    unknown = sorted(set(overrides) - set(EnsembleConfig.model_fields))
    if unknown:
        raise ConfigError(
            f"models.params[{name!r}] has unknown key(s) {unknown}; "
            f"choose from {sorted(EnsembleConfig.model_fields)}."
        )
    return EnsembleConfig.model_validate({**cfg.ensemble.model_dump(), **overrides})


def stacking_from_config(cfg: ModelConfig) -> StackingEnsemble:
    return StackingEnsemble(ensemble_config(cfg, "stacking"), cfg)


def regime_ensemble_from_config(cfg: ModelConfig) -> RegimeEnsemble:
    return RegimeEnsemble(ensemble_config(cfg, "regime_ensemble"), cfg)


def online_ensemble_from_config(cfg: ModelConfig) -> OnlineEnsemble:
    return OnlineEnsemble(ensemble_config(cfg, "online_ensemble"), cfg)
