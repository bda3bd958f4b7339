"""Direction models behave: planted signal well above chance, pure noise at chance.

Every data set is split by time (first 60% train, next 20% validation, last
20% test), never shuffled: the held-out rows are *later* rows, as in real use.
A model that scores well above 0.5 on noise is leaking or broken; one that
cannot find a strong planted signal is not training.
"""

from __future__ import annotations

import copy

import duckdb
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from ml_core.config import ModelConfig, SplitConfig, load_config
from ml_core.errors import NotFittedError
from ml_core.features import FEATURE_COLUMNS
from ml_core.features.labels import build_model_frame
from ml_core.models.base import make_model, model_names
from ml_core.models.pipeline import fit_pipeline
from ml_core.models.training import fit_return_models
from ml_core.models.trees import RandomForestDirectionModel, XGBoostDirectionModel
from ml_core.validation.split import chronological_split

#: Small, fast settings for every model under test; one thread (OpenMP boosters slow
#: down badly on an oversubscribed CI box). The determinism test uses two threads.
FAST = ModelConfig(
    lightgbm_params={"n_estimators": 60, "learning_rate": 0.1, "num_leaves": 7, "n_jobs": 1},
    params={
        "xgboost": {"n_estimators": 60, "learning_rate": 0.1, "max_depth": 3, "n_jobs": 1},
        "random_forest": {"n_estimators": 30, "min_samples_leaf": 20, "n_jobs": 1},
        "xgboost_reg": {"n_estimators": 60, "learning_rate": 0.1, "n_jobs": 1},
    },
    early_stopping_rounds=10,
)
DIRECTION_MODELS = ["logistic", "lightgbm", "xgboost", "random_forest"]
N_ROWS, N_FEATURES = 6000, 8


def time_split(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    """First 60% / next 20% / last 20% by row order (time), no shuffling."""
    a, b = int(len(y) * 0.6), int(len(y) * 0.8)
    return x[:a], y[:a], x[a:b], y[a:b], x[b:], y[b:]


def planted(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Up when a noisy mix of two features is positive (and an interaction)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N_ROWS, N_FEATURES))
    score = x[:, 0] + 0.5 * x[:, 1] + 0.5 * x[:, 2] * x[:, 3] + rng.normal(0, 0.7, N_ROWS)
    return x, (score > 0).astype(float)


def noise(seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(N_ROWS, N_FEATURES)), rng.integers(0, 2, N_ROWS).astype(float)


def held_out_auc(name: str, x: np.ndarray, y: np.ndarray) -> float:
    x_tr, y_tr, x_va, y_va, x_te, y_te = time_split(x, y)
    model = make_model(name, FAST).fit(x_tr, y_tr, x_va, y_va)
    p = model.predict_proba(x_te)
    assert p.shape == (len(y_te),) and np.all((p >= 0) & (p <= 1))
    return float(roc_auc_score(y_te, p))


def test_new_models_are_registered_by_name() -> None:
    assert {"xgboost", "random_forest"} <= set(model_names())
    assert isinstance(make_model("xgboost", FAST), XGBoostDirectionModel)
    assert isinstance(make_model("random_forest", FAST), RandomForestDirectionModel)


@pytest.mark.parametrize("name", DIRECTION_MODELS)
def test_planted_signal_is_found_on_later_rows(name: str) -> None:
    assert held_out_auc(name, *planted()) > 0.7


@pytest.mark.parametrize("name", DIRECTION_MODELS)
def test_pure_noise_stays_at_chance_on_later_rows(name: str) -> None:
    assert abs(held_out_auc(name, *noise()) - 0.5) < 0.05


@pytest.mark.parametrize("name", ["xgboost", "random_forest"])
def test_deepcopy_refits_the_same_model(name: str) -> None:
    x_tr, y_tr, x_va, y_va, x_te, _ = time_split(*planted(2))
    first = make_model(name, FAST)
    if name == "random_forest":
        first.n_jobs = 2  # the production default: votes summed by two threads
    twin = copy.deepcopy(first)
    p1 = first.fit(x_tr, y_tr, x_va, y_va).predict_proba(x_te)
    p2 = twin.fit(x_tr, y_tr, x_va, y_va).predict_proba(x_te)
    # equal up to the order two threads sum the trees' votes in (random forest)
    np.testing.assert_allclose(p1, p2, rtol=0, atol=1e-12)
    # refitting a fitted model replaces its state: same data, same predictions
    p3 = copy.deepcopy(first).fit(x_tr, y_tr, x_va, y_va).predict_proba(x_te)
    np.testing.assert_allclose(p1, p3, rtol=0, atol=1e-12)
    # a different seed is a different model (the seed is really used)
    other = type(first)(params=first.params_in, seed=7).fit(x_tr, y_tr, x_va, y_va)
    assert np.abs(other.predict_proba(x_te) - p1).max() > 1e-6


@pytest.mark.parametrize("name", ["xgboost", "random_forest"])
def test_planted_feature_ranks_first_in_importance(name: str) -> None:
    x_tr, y_tr, x_va, y_va, _, _ = time_split(*planted())
    columns = [f"f{i}" for i in range(N_FEATURES)]
    imp = make_model(name, FAST).fit(x_tr, y_tr, x_va, y_va).feature_importance(columns)
    assert imp is not None and list(imp.index) == columns
    assert imp.idxmax() == "f0"
    assert imp[["f4", "f5", "f6", "f7"]].max() < imp["f0"] / 3


def test_xgboost_stops_early_on_noise_and_honours_overrides() -> None:
    over = {"n_estimators": 300, "max_depth": 2, "learning_rate": 0.3, "n_jobs": 1}
    cfg = FAST.model_copy(update={"params": {"xgboost": over}})
    model = make_model("xgboost", cfg)
    x_tr, y_tr, x_va, y_va, _, _ = time_split(*noise())
    model.fit(x_tr, y_tr, x_va, y_va)
    assert model.model_.get_params()["max_depth"] == 2
    assert model.n_jobs == 1 and "n_jobs" not in model.params_in
    assert model.params()["max_depth"] == 2
    assert model.best_iteration_ < 100  # validation loss stalls quickly on noise
    # without validation rows it keeps every tree
    assert model.fit(x_tr, y_tr).best_iteration_ == 300


def test_random_forest_caps_max_samples_at_the_row_count() -> None:
    x, y = planted()
    model = make_model("random_forest", FAST).fit(x[:300], y[:300])
    assert model.model_.get_params()["max_samples"] == 300
    assert model.params()["max_samples"] == 50_000  # the configured value is reported


@pytest.mark.parametrize("cls", [XGBoostDirectionModel, RandomForestDirectionModel])
def test_predict_before_fit_raises(cls: type) -> None:
    with pytest.raises(NotFittedError, match="before fit"):
        cls().predict_proba(np.zeros((2, 3)))


# ---------------------------------------------------------------- registry round trip
SYMBOLS = ["BTC/USDT:USDT", "DOGE/USDT:USDT"]


@pytest.fixture(scope="module")
def real_parts(sample_1m: pd.DataFrame):
    """Two real symbols x 2 days of 1m candles, features + labels, split by time."""
    candles = sample_1m[sample_1m["symbol"].isin(SYMBOLS)].groupby("symbol").head(2 * 1440)
    candles = candles.assign(
        ts=candles["ts"].dt.tz_convert("UTC").dt.tz_localize(None), timeframe="1m"
    )
    con = duckdb.connect()
    con.register("candles_small", candles)
    cfg = load_config(None, labels={"horizons": {"1m": [5, 15]}})
    frame = build_model_frame(
        con, timeframe="1m", horizons=cfg.horizons, cfg=cfg.features, relation="candles_small"
    )
    parts = chronological_split(
        frame, horizons=cfg.horizons, cfg=SplitConfig(), complete_columns=list(FEATURE_COLUMNS)
    )
    return candles.drop(columns="timeframe"), parts, cfg


@pytest.mark.slow
def test_xgboost_pipeline_survives_the_registry(real_parts, tmp_path) -> None:
    from ml_core.registry import RegistryStore, TrackingContext, log_pipeline

    candles, parts, cfg = real_parts
    model_cfg = FAST.model_copy(update={"regressors": ["ridge", "xgboost_reg"]})
    pipe = fit_pipeline(
        "xgboost",
        parts,
        horizons=cfg.horizons,
        timeframe="1m",
        feature_cfg=cfg.features,
        model_cfg=model_cfg,
    )
    pipe.return_models, table = fit_return_models(parts, pipe, model_cfg, horizons=cfg.horizons)
    assert set(table["split"]) == {"val", "test"} and table["selected"].sum() == 2 * 2
    recent = candles.groupby("symbol").tail(pipe.lookback_bars + 30)
    expected = pipe.predict(recent)
    assert expected["exp_ret"].notna().all() and expected["p_up"].between(0, 1).all()

    tracking = TrackingContext(
        f"sqlite:///{tmp_path / 'mlflow.db'}", (tmp_path / "art").as_uri(), "trees-tests"
    )
    with tracking.start_run("roundtrip"):
        info = log_pipeline(
            pipe,
            tracking=tracking,
            model_name="coincast-trees",
            input_example=recent.groupby("symbol").tail(pipe.lookback_bars + 5),
        )
    loaded = RegistryStore(tracking.tracking_uri, "coincast-trees").load_pyfunc(info.version)
    got = loaded.predict(recent)
    pd.testing.assert_frame_equal(
        got[["symbol", "ts", "horizon", "p_up", "exp_ret"]].reset_index(drop=True),
        expected[["symbol", "ts", "horizon", "p_up", "exp_ret"]].reset_index(drop=True),
        check_exact=True,
    )
