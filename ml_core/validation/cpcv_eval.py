"""Score model configurations on CPCV splits and paths (promotion gate v2).

A registered pipeline is a *configuration* (its per-horizon models'
constructor settings, feature columns and scaler settings) plus fitted
state. To compare configurations without leakage, each one is refit on
every CPCV split of the development frame (train + validation parts):

* a ``copy.deepcopy`` of each per-horizon model is fitted again (``fit``
  replaces all fitted state) with a fresh per-symbol scaler, on the split's
  purged and embargoed training rows, thinned evenly over time to at most
  ``max_train_rows``; the latest ``inner_val_frac`` of those rows (purged by ``t1``) is
  the early-stopping validation set, as the validation part is in training;
* each pipeline first adds its own regime features to the frame
  (``with_regime_features``): the HMM itself is **not** refit per split, so
  regime probabilities carry the (unsupervised, label-free) fit of the
  pipeline's own training part;
* a row's purge interval ends at the max over horizons of ``t1_h``; rows
  with a NaN label are skipped per horizon when fitting and scoring;
* a multi-horizon ``frame_model`` (sequence models, stacking) is refit the
  same way with ``fit_frame`` on scaled frames; a sequence model then sees
  training rows on both sides of the removed test groups, and the first
  ``history_bars`` rows of a test group are predicted without earlier context.

Scores are AUCs per (split, test group, horizon), per (split, time block,
horizon) and per (path, horizon) over the φ assembled backtest paths.

Units for the paired test: the rows of one CPCV group are cut into
``blocks_per_group`` time blocks; a block's score is the mean AUC over every
split that tests it and every horizon. Horizons share rows and splits that
test the same group share rows, so those cells are not independent; time
blocks (a day or so on the sample) are the nearest to independent units, and
both configurations are scored on exactly the same ones.

Example::

    ev = evaluate_on_cpcv(dev, {"challenger": pipe_a, "champion": pipe_b}, horizons=[15, 60])
    ev.path_auc("challenger")        # (φ,) mean AUC over horizons per path
    ev.block_auc("champion")         # Series indexed by time block
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ml_core.errors import DataContractError
from ml_core.validation.cpcv import CombinatorialPurgedCV, time_blocks, to_ns
from ml_core.validation.scaling import SymbolRobustScaler

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CPCVEvaluation:
    """AUCs of each configuration on the same CPCV splits, blocks and paths.

    ``split_scores``: config, split, group, horizon, n, auc.
    ``block_scores``: config, split, block, horizon, n, auc.
    ``path_scores``: config, path, horizon, n, auc.
    ``row_test_counts``: how many splits test each row of the (sorted) frame.
    ``path_rows``: rows each path predicts (for every horizon: all rows).
    """

    configs: tuple[str, ...]
    horizons: tuple[int, ...]
    n_groups: int
    n_test_groups: int
    n_splits: int
    n_paths: int
    n_rows: int
    split_scores: pd.DataFrame
    block_scores: pd.DataFrame
    path_scores: pd.DataFrame
    row_test_counts: np.ndarray
    path_rows: np.ndarray
    fit_seconds: dict[str, float] = field(default_factory=dict)
    fingerprints: dict[str, str] = field(default_factory=dict)

    def same_configuration(self, a: str, b: str) -> bool:
        """Whether two evaluated pipelines are the same recipe (refits differ only by regimes)."""
        return bool(self.fingerprints) and self.fingerprints.get(a) == self.fingerprints.get(b)

    def path_auc(self, config: str) -> np.ndarray:
        """Mean AUC over horizons per path, shape ``(n_paths,)``."""
        rows = self._rows(self.path_scores, config)
        return rows.groupby("path")["auc"].mean().reindex(range(self.n_paths)).to_numpy()

    def block_auc(self, config: str, horizon: int | None = None) -> pd.Series:
        """Mean AUC over the splits testing each block (and over horizons), by block."""
        rows = self._rows(self.block_scores, config)
        if horizon is not None:
            rows = rows[rows["horizon"] == int(horizon)]
        return rows.groupby("block")["auc"].mean()

    def summary(self, config: str) -> dict[str, Any]:
        """Numbers for a decision record: path AUCs and their spread."""
        paths = self.path_auc(config)
        return {
            "path_auc": [round(float(v), 5) for v in paths],
            "path_auc_mean": float(np.nanmean(paths)),
            "path_auc_min": float(np.nanmin(paths)),
            "path_auc_max": float(np.nanmax(paths)),
        }

    def _rows(self, table: pd.DataFrame, config: str) -> pd.DataFrame:
        if config not in self.configs:
            raise DataContractError(
                f"configuration {config!r} was not evaluated; known: {list(self.configs)}."
            )
        return table[table["config"] == config]


def evaluate_on_cpcv(
    frame: pd.DataFrame,
    pipelines: Mapping[str, Any],
    *,
    horizons: Sequence[int],
    n_groups: int = 6,
    n_test_groups: int = 2,
    embargo: int | float = 0.01,
    max_train_rows: int | None = 20_000,
    blocks_per_group: int = 4,
    inner_val_frac: float = 0.2,
) -> CPCVEvaluation:
    """Refit every configuration in ``pipelines`` on each CPCV split; score tests and paths.

    ``frame``: the development rows (train + validation parts) with the
    pipelines' base feature columns, ``symbol``, ``ts`` and ``up_h`` / ``t1_h``
    per horizon. ``pipelines``: name -> ``CandlePipeline`` (per-horizon
    ``models`` or a multi-horizon ``frame_model``).
    """
    dev = _sorted_frame(frame, horizons)
    usable = _common_horizons(pipelines, horizons)
    ts = dev["ts"].to_numpy()
    t1 = _label_end(dev, usable)
    cv = CombinatorialPurgedCV(n_groups=n_groups, n_test_groups=n_test_groups, embargo=embargo)
    splits = list(cv.split(ts=ts, t1=t1, groups=dev["symbol"].to_numpy()))
    group = time_blocks(to_ns(ts, "ts"), to_ns(ts, "ts"), n_groups).block
    block = _sub_blocks(ts, group, blocks_per_group)
    counts = np.zeros(len(dev), dtype=np.int64)
    for _, test_idx in splits:
        counts[test_idx] += 1
    tables: dict[str, list[pd.DataFrame]] = {"split": [], "block": [], "path": []}
    fit_seconds: dict[str, float] = {}
    path_rows = np.zeros(cv.n_paths, dtype=np.int64)
    cells = {"group": group, "block": block}
    for name, pipe in pipelines.items():
        start = time.perf_counter()
        scored = _evaluate_config(
            pipe, dev, cv, splits, usable, t1, cells, max_train_rows, inner_val_frac
        )
        for key, table in scored.items():
            if key == "path_rows":
                path_rows = table
            else:
                tables[key].append(table.assign(config=name))
        fit_seconds[name] = time.perf_counter() - start
        log.info("CPCV %s: %d splits refit in %.1fs", name, len(splits), fit_seconds[name])
    return CPCVEvaluation(
        configs=tuple(pipelines),
        horizons=tuple(usable),
        n_groups=cv.n_groups,
        n_test_groups=cv.n_test_groups,
        n_splits=cv.n_splits,
        n_paths=cv.n_paths,
        n_rows=len(dev),
        split_scores=_stack(tables["split"], ["config", "split", "group", "horizon", "n", "auc"]),
        block_scores=_stack(tables["block"], ["config", "split", "block", "horizon", "n", "auc"]),
        path_scores=_stack(tables["path"], ["config", "path", "horizon", "n", "auc"]),
        row_test_counts=counts,
        path_rows=path_rows,
        fit_seconds=fit_seconds,
        fingerprints={name: configuration_key(pipe) for name, pipe in pipelines.items()},
    )


def configuration_key(pipe: Any) -> str:
    """The recipe of a pipeline: candidate, feature columns and each model's settings.

    Settings are a model's attributes that are not fitted state (no trailing ``_``).
    A pipeline that recorded its evaluated recipe (``recipe_key``) is keyed by it, so a
    copy refit for serving still matches the recipe it was evaluated as.
    """
    recorded = getattr(pipe, "recipe_key", "")
    if recorded:
        return str(recorded)
    if hasattr(pipe, "fit_predict_rows"):  # a naive baseline recipe
        return f"baseline:{pipe.candidate}"
    models = {"frame": pipe.frame_model} if getattr(pipe, "frame_model", None) else pipe.models
    settings = {
        str(h): (
            type(m).__name__,
            sorted((k, repr(v)) for k, v in vars(m).items() if not k.endswith("_")),
        )
        for h, m in sorted(models.items(), key=lambda kv: str(kv[0]))
    }
    return repr((pipe.candidate, list(pipe.feature_columns), settings))


def _evaluate_config(
    pipe: Any,
    dev: pd.DataFrame,
    cv: CombinatorialPurgedCV,
    splits: list[tuple[np.ndarray, np.ndarray]],
    horizons: list[int],
    t1: np.ndarray,
    cells: Mapping[str, np.ndarray],
    max_train_rows: int | None,
    inner_val_frac: float,
) -> dict[str, Any]:
    """One configuration: refit per split, score cells and assembled paths."""
    prepared = _with_own_regimes(pipe, dev)
    preds: dict[int, dict[int, np.ndarray]] = {h: {} for h in horizons}
    split_tables, block_tables = [], []
    for s, (train_idx, test_idx) in enumerate(splits):
        train = _thin(prepared.iloc[train_idx], max_train_rows)
        probs = fit_predict(
            pipe, train, prepared.iloc[test_idx], horizons, inner_val_frac, t1[train.index]
        )
        for h in horizons:
            preds[h][s] = probs[h]
        split_tables.append(_cell_scores(dev, test_idx, probs, cells["group"], "group", s))
        block_tables.append(_cell_scores(dev, test_idx, probs, cells["block"], "block", s))
    path_tables, path_rows = [], np.zeros(cv.n_paths, dtype=np.int64)
    for h in horizons:
        paths = cv.assemble_paths(preds[h], ts=dev["ts"].to_numpy())
        path_rows = np.isfinite(paths).sum(axis=1)
        y = dev[f"up_{h}"].to_numpy(dtype=float)
        path_tables += [
            {"path": p, "horizon": h, **_auc_cell(y, paths[p])} for p in range(cv.n_paths)
        ]
    return {
        "split": pd.concat(split_tables, ignore_index=True),
        "block": pd.concat(block_tables, ignore_index=True),
        "path": pd.DataFrame(path_tables),
        "path_rows": path_rows,
    }


def fit_predict(
    pipe: Any,
    train: pd.DataFrame,
    test: pd.DataFrame,
    horizons: Sequence[int],
    inner_val_frac: float,
    train_t1: np.ndarray,
) -> dict[int, np.ndarray]:
    """Refit a copy of ``pipe``'s configuration on ``train``; P(up) per horizon on ``test``.

    A recipe with its own ``fit_predict_rows(train, test, horizons)`` (the naive
    baselines of ``ml_core.evaluation.skill``) is fitted on all of ``train``.
    """
    if hasattr(pipe, "fit_predict_rows"):
        return pipe.fit_predict_rows(train, test, list(horizons))
    fit_part, val_part = _inner_split(train, train_t1, inner_val_frac)
    scaler = SymbolRobustScaler(list(pipe.feature_columns), clip=pipe.scaler.clip).fit(fit_part)
    frame_model = getattr(pipe, "frame_model", None)
    if frame_model is not None:
        # a FrameModel reads scaled frames with context columns (CandlePipeline.scaled_frame);
        # a shallow copy of the pipeline carries this split's fresh scaler
        local = copy.copy(pipe)
        local.scaler = scaler
        val = local.scaled_frame(val_part) if len(val_part) else None
        model = copy.deepcopy(frame_model).fit_frame(
            local.scaled_frame(fit_part),
            val,
            features=list(pipe.feature_columns),
            horizons=list(horizons),
        )
        probs = model.predict_frame(local.scaled_frame(test))
        return {h: np.asarray(probs[h], dtype=float) for h in horizons}
    x_fit, x_test = scaler.transform(fit_part), scaler.transform(test)
    x_val = scaler.transform(val_part) if len(val_part) else None
    out: dict[int, np.ndarray] = {}
    for h in horizons:
        y_col = f"up_{h}"
        ok = fit_part[y_col].notna().to_numpy()
        y = fit_part[y_col].to_numpy(dtype=float)[ok]
        if len(np.unique(y)) < 2:
            raise DataContractError(
                f"CPCV split: horizon {h} training labels {y_col!r} have fewer than two "
                f"classes ({int(ok.sum())} rows); lower cpcv_groups or ingest more history."
            )
        x_v = y_v = None
        if x_val is not None:
            ok_v = val_part[y_col].notna().to_numpy()
            x_v, y_v = x_val[ok_v], val_part[y_col].to_numpy(dtype=float)[ok_v]
        model = copy.deepcopy(pipe.models[h]).fit(x_fit[ok], y, x_v, y_v)
        out[h] = np.asarray(model.predict_proba(x_test), dtype=float)
    return out


def auc_score(y: np.ndarray, p: np.ndarray) -> float:
    """ROC AUC by the rank-sum formula on finite pairs; NaN with one class.

    >>> auc_score(np.array([0.0, 1.0, 0.0, 1.0]), np.array([0.1, 0.9, 0.2, 0.8]))
    1.0
    """
    ok = np.isfinite(y) & np.isfinite(p)
    y, p = y[ok], p[ok]
    n_pos = int((y == 1.0).sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = pd.Series(p).rank(method="average").to_numpy()
    return float((ranks[y == 1.0].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _auc_cell(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    ok = np.isfinite(y) & np.isfinite(p)
    return {"n": int(ok.sum()), "auc": auc_score(y, p)}


def _cell_scores(
    dev: pd.DataFrame,
    test_idx: np.ndarray,
    probs: Mapping[int, np.ndarray],
    cell: np.ndarray,
    column: str,
    split: int,
) -> pd.DataFrame:
    """AUC per (cell value, horizon) of one split's test predictions."""
    rows = []
    cells = cell[test_idx]
    for h, p in probs.items():
        y = dev[f"up_{h}"].to_numpy(dtype=float)[test_idx]
        for value in np.unique(cells):
            mask = cells == value
            rows.append(
                {"split": split, column: int(value), "horizon": h, **_auc_cell(y[mask], p[mask])}
            )
    return pd.DataFrame(rows)


def _stack(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    return (
        pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)
    )


def _sorted_frame(frame: pd.DataFrame, horizons: Sequence[int]) -> pd.DataFrame:
    if frame.empty:
        raise DataContractError("CPCV needs development rows; the frame is empty.")
    need = {"symbol", "ts"} | {f"{p}_{h}" for h in horizons for p in ("up", "t1")}
    missing = sorted(need - set(frame.columns))
    if missing:
        raise DataContractError(
            f"CPCV frame lacks columns {missing[:6]}; pass the model frame's train + val parts."
        )
    return frame.sort_values(["ts", "symbol"], kind="stable").reset_index(drop=True)


def _common_horizons(pipelines: Mapping[str, Any], horizons: Sequence[int]) -> list[int]:
    if not pipelines:
        raise DataContractError("evaluate_on_cpcv needs at least one pipeline.")
    usable = [int(h) for h in horizons]
    for name, pipe in pipelines.items():
        usable = [h for h in usable if h in pipe.horizons]
        if not usable:
            raise DataContractError(
                f"pipeline {name!r} predicts horizons {pipe.horizons}, none of {list(horizons)}; "
                "compare pipelines trained on the same label horizons."
            )
    return usable


def _label_end(dev: pd.DataFrame, horizons: Sequence[int]) -> np.ndarray:
    """Latest label end over horizons per row; rows without any label end at their ts."""
    t1 = dev[[f"t1_{h}" for h in horizons]].max(axis=1, skipna=True)
    return t1.fillna(dev["ts"]).to_numpy(dtype="datetime64[ns]")


def _sub_blocks(ts: np.ndarray, group: np.ndarray, per_group: int) -> np.ndarray:
    """Global time-block id: each group's unique timestamps cut into ``per_group`` blocks."""
    ts_ns = to_ns(ts, "ts")
    out = np.empty(len(ts_ns), dtype=np.int64)
    for g in np.unique(group):
        rows = np.flatnonzero(group == g)
        n = min(per_group, len(np.unique(ts_ns[rows])))
        out[rows] = int(g) * per_group + time_blocks(ts_ns[rows], ts_ns[rows], n).block
    return out


def _with_own_regimes(pipe: Any, dev: pd.DataFrame) -> pd.DataFrame:
    """``dev`` with this pipeline's regime columns (any other pipeline's are replaced)."""
    regime_model = getattr(pipe, "regime_model", None)
    if regime_model is None:
        prepared = dev
    else:
        own = [c for c in pipe.feature_columns if c.startswith("regime_")]
        prepared = pipe.with_regime_features(dev.drop(columns=["regime", *own], errors="ignore"))
    missing = [c for c in pipe.feature_columns if c not in prepared.columns]
    if missing:
        raise DataContractError(
            f"pipeline {pipe.candidate!r} uses columns the current model frame lacks "
            f"({missing[:3]}); its feature set {pipe.feature_set} differs from the current one, "
            "so it cannot be refit on CPCV. Compare with gate_version=1 or retrain it."
        )
    return prepared.reset_index(drop=True)


def _thin(train: pd.DataFrame, max_rows: int | None) -> pd.DataFrame:
    """At most ``max_rows`` rows spaced evenly over the (time-ordered) rows; index preserved.

    Not the most recent rows: in CPCV those are the same window for every split
    that does not test the last group, which would collapse the paths into one model.
    """
    if max_rows is None or len(train) <= max_rows:
        return train
    return train.iloc[np.unique(np.linspace(0, len(train) - 1, max_rows).round().astype(int))]


def _inner_split(
    train: pd.DataFrame, train_t1: np.ndarray, frac: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Latest ``frac`` of the rows as early-stopping validation; fit rows purged by t1."""
    if frac <= 0 or len(train) < 10:
        return train, train.iloc[:0]
    ts = train["ts"].to_numpy()
    val_start = np.sort(ts)[int(len(ts) * (1.0 - frac))]
    is_val = ts >= val_start
    keep_fit = ~is_val & (train_t1 < val_start)
    return train.loc[keep_fit], train.loc[is_val]
