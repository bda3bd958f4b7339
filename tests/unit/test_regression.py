"""Return models and regression metrics: planted returns are recovered on later rows,
noise is not, the metrics match hand computations, and a retrain wires the best
regressor per horizon into every candidate pipeline."""

from __future__ import annotations

import copy
import math

import duckdb
import numpy as np
import pandas as pd
import pytest

from ml_core.config import ModelConfig, SplitConfig, load_config
from ml_core.errors import CoincastError, ConfigError, DataContractError, NotFittedError
from ml_core.evaluation.regression import (
    baseline_forecasts,
    regression_metrics,
    report_table,
    return_model_metrics,
    score_return_models,
)
from ml_core.features import FEATURE_COLUMNS
from ml_core.features.labels import build_model_frame
from ml_core.models.regression import make_return_model, return_model_names
from ml_core.models.training import _attach_return_models, train_candidates
from ml_core.validation.split import chronological_split

FAST = ModelConfig(
    params={
        "lightgbm_reg": {"n_estimators": 80, "learning_rate": 0.1, "n_jobs": 1},
        "xgboost_reg": {"n_estimators": 80, "learning_rate": 0.1, "n_jobs": 1},
    },
    early_stopping_rounds=10,
)
ALL = ["ridge", "lasso", "elastic_net", "lightgbm_reg", "xgboost_reg"]
N_ROWS = 5000


def later_rows_corr(name: str, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Fit on the first 60% (val: next 20%), score the last 20%: (corr, rmse_skill)."""
    a, b = int(N_ROWS * 0.6), int(N_ROWS * 0.8)
    model = make_return_model(name, FAST).fit(x[:a], y[:a], x[a:b], y[a:b])
    pred = model.predict(x[b:])
    assert pred.shape == (N_ROWS - b,) and np.isfinite(pred).all()
    m = regression_metrics(y[b:], pred)
    zero = regression_metrics(y[b:], np.zeros(N_ROWS - b))["rmse"]
    return m["corr"], 1.0 - m["rmse"] / zero


def features(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(N_ROWS, 6))


def test_names_match_the_config() -> None:
    assert return_model_names() == sorted(ALL)
    assert ModelConfig().regressors == ["ridge"]
    with pytest.raises(ConfigError, match="Unknown return model"):
        ModelConfig(regressors=["ridge", "prophet"])
    with pytest.raises(ConfigError, match="twice"):
        ModelConfig(regressors=["ridge", "ridge"])
    with pytest.raises(ConfigError, match="choose from"):
        make_return_model("arima", FAST)


@pytest.mark.parametrize("name", ALL)
def test_planted_linear_return_is_recovered_on_later_rows(name: str) -> None:
    x = features(0)
    rng = np.random.default_rng(10)
    y = 0.002 * (x[:, 0] - 0.5 * x[:, 1]) + rng.normal(0, 0.002, N_ROWS)
    corr, skill = later_rows_corr(name, x, y)
    assert corr > 0.5
    assert skill > 0.05  # clearly better than predicting no move


@pytest.mark.parametrize("name", ["lightgbm_reg", "xgboost_reg"])
def test_trees_recover_a_nonlinear_return(name: str) -> None:
    x = features(1)
    rng = np.random.default_rng(11)
    y = 0.002 * (np.abs(x[:, 0]) - 0.8) + 0.002 * x[:, 1] * (x[:, 2] > 0)
    y = y + rng.normal(0, 0.001, N_ROWS)
    corr, _ = later_rows_corr(name, x, y)
    assert corr > 0.5


@pytest.mark.parametrize("name", ALL)
def test_pure_noise_is_not_predictable(name: str) -> None:
    x = features(2)
    y = np.random.default_rng(12).normal(0, 0.002, N_ROWS)
    corr, skill = later_rows_corr(name, x, y)
    assert math.isnan(corr) or abs(corr) < 0.1  # a lasso may shrink to a constant
    assert skill < 0.01


def test_predictions_are_in_return_units_and_overrides_apply() -> None:
    x = features(3)
    y = 0.002 * x[:, 0] + np.random.default_rng(13).normal(0, 0.002, N_ROWS)
    model = make_return_model("ridge", FAST).fit(x, y)
    scaled = make_return_model("ridge", FAST).fit(x, 10 * y)
    np.testing.assert_allclose(scaled.predict(x), 10 * model.predict(x), rtol=1e-9)
    tuned = make_return_model("ridge", ModelConfig(params={"ridge": {"alpha": 0.01}})).fit(x, y)
    assert tuned.params()["alpha"] == 0.01
    assert tuned.model_.alpha == pytest.approx(0.01 * N_ROWS)  # per-row alpha, summed loss
    # weaker shrinkage: larger coefficients
    assert np.abs(tuned.model_.coef_).sum() > np.abs(model.model_.coef_).sum()


def test_boosted_regressor_stops_early_on_validation() -> None:
    x = features(4)
    y = np.random.default_rng(14).normal(0, 0.002, N_ROWS)
    cfg = FAST.model_copy(update={"params": {"xgboost_reg": {"n_estimators": 300, "n_jobs": 1}}})
    model = make_return_model("xgboost_reg", cfg).fit(x[:3000], y[:3000], x[3000:], y[3000:])
    assert model.best_iteration_ < 300


def test_return_model_errors_name_the_problem() -> None:
    model = make_return_model("lasso", FAST)
    with pytest.raises(NotFittedError, match="before fit"):
        model.predict(np.zeros((2, 3)))
    with pytest.raises(DataContractError, match="x has 3 rows but y has 2"):
        model.fit(np.zeros((3, 2)), np.zeros(2))
    with pytest.raises(DataContractError, match="not finite"):
        model.fit(np.zeros((3, 2)), np.array([0.1, np.nan, 0.2]))


# ---------------------------------------------------------------- metrics
def test_regression_metrics_match_hand_computation() -> None:
    y = [0.01, -0.02, 0.03, np.nan, 0.0]
    p = [0.02, -0.01, -0.01, 0.5, 0.01]
    m = regression_metrics(y, p)
    # labelled rows: errors 0.01, 0.01, -0.04, 0.01
    assert m["n"] == 4 and m["n_dropped"] == 1
    assert m["mae"] == pytest.approx(0.07 / 4)
    assert m["rmse"] == pytest.approx(math.sqrt(19e-4 / 4))
    # mean(y) = 0.005, SST = 1.3e-3, SSE = 1.9e-3
    assert m["r2"] == pytest.approx(1 - 1.9 / 1.3)
    # the y == 0 row has no direction: 2 of 3 signs agree
    assert m["directional_accuracy"] == pytest.approx(2 / 3)
    assert m["corr"] == pytest.approx(5e-5 / math.sqrt(1.3e-3 * 6.75e-4))


def test_undefined_metrics_are_nan_not_errors() -> None:
    zero = regression_metrics([0.01, -0.02, 0.03], [0.0, 0.0, 0.0])
    assert math.isnan(zero["directional_accuracy"]) and math.isnan(zero["corr"])
    assert zero["rmse"] == pytest.approx(math.sqrt((1e-4 + 4e-4 + 9e-4) / 3))
    empty = regression_metrics([np.nan], [0.1])
    assert empty["n"] == 0 and math.isnan(empty["rmse"])
    with pytest.raises(DataContractError, match="3 rows but pred has 2"):
        regression_metrics([0.1, 0.2, 0.3], [0.1, 0.2])
    with pytest.raises(DataContractError, match="NaN on 1 labelled"):
        regression_metrics([0.1, 0.2], [0.1, np.nan])


def test_baselines_and_scoring_table() -> None:
    frame = pd.DataFrame(
        {
            "ret_2": [0.02, -0.01, 0.03, np.nan],
            "past_ret_2": [np.nan, 0.01, 0.02, -0.05],
        }
    )
    base = baseline_forecasts(frame, 2)
    np.testing.assert_array_equal(base["zero_return"], [0, 0, 0, 0])
    np.testing.assert_array_equal(base["last_return"], [0.0, 0.01, 0.02, -0.05])  # NaN -> 0
    table = score_return_models(frame, {"perfect": {2: np.array([0.02, -0.01, 0.03, 0.0])}}, [2])
    assert list(table["model"]) == ["perfect", "zero_return", "last_return"]
    rows = table.set_index("model")
    assert rows.loc["perfect", "rmse"] == pytest.approx(0.0)
    assert rows.loc["perfect", "rmse_skill"] == pytest.approx(1.0)
    assert rows.loc["zero_return", "rmse_skill"] == pytest.approx(0.0)
    # last return errors: -0.02, 0.02, -0.01 -> RMSE sqrt(9e-4 / 3)
    assert rows.loc["last_return", "rmse"] == pytest.approx(math.sqrt(9e-4 / 3))
    assert rows.loc["last_return", "directional_accuracy"] == pytest.approx(0.5)
    assert list(rows["baseline"]) == [False, True, True]
    with pytest.raises(DataContractError, match="past_ret_3"):
        baseline_forecasts(frame, 3)


# ---------------------------------------------------------------- wiring into a retrain
SYMBOLS = ["BTC/USDT:USDT", "SOL/USDT:USDT"]


@pytest.fixture(scope="module")
def real_parts(sample_1m: pd.DataFrame):
    candles = sample_1m[sample_1m["symbol"].isin(SYMBOLS)].groupby("symbol").head(2 * 1440)
    candles = candles.assign(
        ts=candles["ts"].dt.tz_convert("UTC").dt.tz_localize(None), timeframe="1m"
    )
    con = duckdb.connect()
    con.register("candles_small", candles)
    cfg = load_config(
        None,
        labels={"horizons": {"1m": [5, 15]}},
        models={
            "candidates": ["logistic", "lightgbm"],
            "regressors": ["ridge", "lasso", "lightgbm_reg"],
            "lightgbm_params": {"n_estimators": 40, "n_jobs": 1},
            "params": FAST.params,
        },
    )
    frame = build_model_frame(
        con, timeframe="1m", horizons=cfg.horizons, cfg=cfg.features, relation="candles_small"
    )
    parts = chronological_split(
        frame, horizons=cfg.horizons, cfg=SplitConfig(), complete_columns=list(FEATURE_COLUMNS)
    )
    return parts, cfg


@pytest.fixture(scope="module")
def trained(real_parts):
    parts, cfg = real_parts
    return train_candidates(parts, cfg)


def test_best_regressor_per_horizon_is_chosen_on_validation(trained) -> None:
    table = trained[0].regression_metrics
    assert set(table["split"]) == {"val", "test"}
    assert set(table["model"]) == {"ridge", "lasso", "lightgbm_reg", "zero_return", "last_return"}
    for h in (5, 15):
        val = table[(table["split"] == "val") & (table["horizon"] == h) & ~table["baseline"]]
        chosen = val.loc[val["rmse"].idxmin(), "model"]
        picked = table[(table["horizon"] == h) & table["selected"]]
        assert set(picked["model"]) == {chosen} and set(picked["split"]) == {"val", "test"}
        assert trained[0].pipeline.return_models[h].name == chosen


def test_every_candidate_serves_the_chosen_expected_return(trained, real_parts) -> None:
    parts, _ = real_parts
    first, second = trained
    assert first.regression_metrics is second.regression_metrics
    for r in trained:
        assert sorted(r.pipeline.return_models) == [5, 15]
        details = r.pipeline.predict_details(parts.test)
        x = r.pipeline.scaler.transform(parts.test)
        for h in (5, 15):
            expected = first.pipeline.return_models[h].predict(x)
            np.testing.assert_allclose(details[h]["exp_ret"], expected, rtol=0, atol=0)
            # the table's test row is the metric of exactly these forecasts
            row = first.regression_metrics.query(
                "split == 'test' and horizon == @h and selected"
            ).iloc[0]
            m = regression_metrics(parts.test[f"ret_{h}"], expected)
            assert row["rmse"] == pytest.approx(m["rmse"]) and row["n"] == m["n"]


def test_report_and_tracking_views(trained) -> None:
    table = trained[0].regression_metrics
    shown = report_table(table)
    assert list(shown.columns[:4]) == ["split", "horizon", "model", "selected"]
    assert len(shown) == len(table)
    flat = return_model_metrics(table)
    assert {"ret_test_rmse_h5", "ret_test_rmse_h15", "ret_test_corr_h5"} <= set(flat)
    chosen = table.query("split == 'test' and horizon == 15 and selected").iloc[0]
    assert flat["ret_test_rmse_h15"] == pytest.approx(chosen["rmse"])


def test_regressors_can_be_switched_off(real_parts) -> None:
    parts, cfg = real_parts
    models = cfg.models.model_copy(update={"candidates": ["logistic"], "regressors": []})
    (result,) = train_candidates(parts, cfg.model_copy(update={"models": models}))
    assert result.regression_metrics.empty and not result.pipeline.return_models
    assert result.pipeline.predict_details(parts.test)[5]["exp_ret"].size == len(parts.test)


def test_return_models_refuse_a_differently_scaled_pipeline(trained) -> None:
    first = trained[0].pipeline
    other = copy.deepcopy(trained[1].pipeline)
    other.scaler.center_ = other.scaler.center_ + 1.0
    with pytest.raises(CoincastError, match="scales features differently"):
        _attach_return_models(other, first, first.return_models)


def test_run_report_shows_the_return_model_table(trained, real_parts) -> None:
    from ml_core.evaluation.baselines import score_baselines
    from ml_core.evaluation.regression import REPORT_TITLE
    from ml_core.reporting.assemble import build_run_report
    from ml_core.reporting.report import _extra_table

    parts, cfg = real_parts
    kw = {"eval_cfg": cfg.evaluation, "timeframe": "1m"}
    report = build_run_report(
        title="t",
        parts=parts,
        results=trained,
        baselines=score_baselines(parts.train, parts.test, cfg.horizons, cfg.evaluation, "1m"),
        decision={"candidate": trained[0].name},
        horizons=cfg.horizons,
        **kw,
    )
    section = next(t for t in report.extra_tables if t[0] == REPORT_TITLE)
    assert len(section[2]) == len(trained[0].regression_metrics)
    # the cells the HTML template renders (render_report itself is tested in test_report.py)
    view = _extra_table(*section)
    assert view["columns"][:4] == ["split", "horizon", "model", "selected"]
    cells = {row[2] for row in view["rows"]}
    assert {"ridge", "lightgbm_reg", "zero_return", "last_return"} <= cells
