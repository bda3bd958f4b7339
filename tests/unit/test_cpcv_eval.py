"""CPCV evaluation of configurations on a small planted-signal panel."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml_core.config import FeatureConfig
from ml_core.errors import DataContractError
from ml_core.evaluation.paired import paired_bootstrap
from ml_core.models.linear import LogisticDirectionModel
from ml_core.models.pipeline import CandlePipeline
from ml_core.validation.cpcv import n_paths
from ml_core.validation.cpcv_eval import auc_score, configuration_key, evaluate_on_cpcv
from ml_core.validation.scaling import SymbolRobustScaler

HORIZONS = [3, 10]


def _frame(n_bars: int = 1500, seed: int = 0) -> pd.DataFrame:
    """Two symbols; ``signal`` drives the labels, ``noise`` does not."""
    rng = np.random.default_rng(seed)
    parts = []
    ts = pd.date_range("2025-01-01", periods=n_bars, freq="1min").to_numpy("datetime64[us]")
    for symbol in ("AAA", "BBB"):
        signal, noise = rng.normal(size=n_bars), rng.normal(size=n_bars)
        frame = pd.DataFrame({"symbol": symbol, "ts": ts, "signal": signal, "noise": noise})
        for h in HORIZONS:
            latent = signal + rng.normal(scale=1.5, size=n_bars)
            up = (latent > 0).astype(float)
            up[-h:] = np.nan  # the end of a series has no label
            frame[f"up_{h}"] = up
            t1 = pd.Series(ts + np.timedelta64(h, "m"))
            t1[np.isnan(up)] = pd.NaT
            frame[f"t1_{h}"] = t1.to_numpy()
        parts.append(frame)
    return pd.concat(parts, ignore_index=True)


def _pipeline(columns: list[str]) -> CandlePipeline:
    return CandlePipeline(
        candidate="logistic",
        timeframe="1m",
        horizons=list(HORIZONS),
        feature_cfg=FeatureConfig(),
        feature_columns=columns,
        feature_set="test.1",
        lookback_bars=0,
        scaler=SymbolRobustScaler(columns),
        models={h: LogisticDirectionModel(c=1.0) for h in HORIZONS},
    )


@pytest.fixture(scope="module")
def evaluation():
    frame = _frame()
    pipes = {"strong": _pipeline(["signal", "noise"]), "weak": _pipeline(["noise"])}
    return frame, evaluate_on_cpcv(
        frame, pipes, horizons=HORIZONS, n_groups=5, n_test_groups=2, embargo=0.01
    )


def test_paths_count_phi_and_cover_every_row_once(evaluation):
    frame, ev = evaluation
    phi = n_paths(5, 2)
    assert ev.n_paths == phi == 4 and ev.n_splits == 10
    assert len(ev.path_auc("strong")) == phi
    assert set(ev.path_scores["path"]) == set(range(phi))
    # every row is tested by exactly φ splits, and every path predicts every row once
    assert ev.n_rows == len(frame)
    np.testing.assert_array_equal(ev.row_test_counts, np.full(len(frame), phi))
    np.testing.assert_array_equal(ev.path_rows, np.full(phi, len(frame)))
    # each (split, group) cell appears once per configuration and horizon
    cells = ev.split_scores.groupby(["config", "horizon"]).size()
    assert (cells == ev.n_splits * ev.n_test_groups).all()


def test_stronger_configuration_beats_weaker_on_the_same_blocks(evaluation):
    _, ev = evaluation
    strong, weak = ev.path_auc("strong"), ev.path_auc("weak")
    assert strong.min() > 0.6 and abs(weak.mean() - 0.5) < 0.05
    assert (strong > weak).all()
    blocks_s, blocks_w = ev.block_auc("strong"), ev.block_auc("weak")
    assert list(blocks_s.index) == list(blocks_w.index) and len(blocks_s) == 5 * 4
    res = paired_bootstrap(blocks_s.to_numpy(), blocks_w.to_numpy(), confidence=0.9, seed=0)
    assert res.ci_low > 0.05 and res.p_value < 0.01
    summary = ev.summary("strong")
    assert len(summary["path_auc"]) == ev.n_paths
    assert summary["path_auc_min"] <= summary["path_auc_mean"] <= summary["path_auc_max"]


def test_unknown_config_and_missing_columns_are_named(evaluation):
    frame, ev = evaluation
    with pytest.raises(DataContractError, match="'other' was not evaluated"):
        ev.path_auc("other")
    with pytest.raises(DataContractError, match="lacks columns"):
        evaluate_on_cpcv(
            frame.drop(columns="t1_10"), {"a": _pipeline(["signal"])}, horizons=HORIZONS
        )
    with pytest.raises(DataContractError, match="lack"):
        evaluate_on_cpcv(frame, {"a": _pipeline(["signal", "volume"])}, horizons=HORIZONS)


def test_auc_score_handles_ties_nan_and_one_class():
    y = np.array([0.0, 1.0, np.nan, 1.0, 0.0])
    p = np.array([0.5, 0.5, 0.9, 0.7, 0.1])
    # pairs (pos, neg): (0.5 vs 0.5)=0.5, (0.5 vs 0.1)=1, (0.7 vs 0.5)=1, (0.7 vs 0.1)=1
    assert auc_score(y, p) == pytest.approx(3.5 / 4)
    assert np.isnan(auc_score(np.ones(4), np.arange(4.0)))


def test_configuration_key_ignores_fitted_state_but_not_settings(evaluation):
    _, ev = evaluation
    assert not ev.same_configuration("strong", "weak")
    a, b = _pipeline(["signal"]), _pipeline(["signal"])
    b.models[3].fit(np.random.default_rng(0).normal(size=(50, 1)), np.arange(50) % 2)
    assert configuration_key(a) == configuration_key(b)  # fitted state is not the recipe
    b.models[3] = LogisticDirectionModel(c=0.5)
    assert configuration_key(a) != configuration_key(b)


def test_thinned_training_keeps_splits_distinct():
    frame = _frame(n_bars=1500, seed=1)
    ev = evaluate_on_cpcv(
        frame,
        {"strong": _pipeline(["signal", "noise"])},
        horizons=HORIZONS,
        n_groups=5,
        n_test_groups=2,
        max_train_rows=400,
    )
    paths = ev.path_auc("strong")
    assert len(np.unique(paths.round(6))) == len(paths)  # no two paths from one model
    assert paths.min() > 0.6  # 400 rows spread over time still learn the signal
