"""Ensembles (stacking, regime-weighted, online): OOF honesty, signal vs noise, causality.

Real models throughout (scikit-learn, LightGBM); the test-only bases below are
registered under their own names in ``MODEL_FACTORIES`` for the test's duration.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.tree import DecisionTreeClassifier

from ml_core.config import EnsembleConfig, ModelConfig
from ml_core.errors import ConfigError, DataContractError, NotFittedError
from ml_core.models import base
from ml_core.models.base import make_model
from ml_core.models.ensemble import (
    BaseModels,
    check_base_names,
    contribution_shares,
    fit_meta_learner,
    floored_softmax,
    online_weights,
    out_of_fold_probs,
)

FEATURES = ["signal", "noise_a", "noise_b", "noise_c"]
HORIZONS = [1, 5]
SMALL_LGBM = {"n_estimators": 40, "learning_rate": 0.1, "num_leaves": 7, "min_child_samples": 50}


# ---------------------------------------------------------------- planted data
def planted_frame(
    n_bars: int = 1500,
    symbols: tuple[str, ...] = ("AAA", "BBB"),
    strength: float = 1.0,
    seed: int = 0,
    regime_flip: bool = False,
) -> pd.DataFrame:
    """A model frame whose next-bar return follows the persistent ``signal`` feature.

    ``strength=0`` is pure noise. With ``regime_flip`` the signal lives in
    ``signal`` during regime 'bull' and in ``noise_a`` during 'bear' (blocks of 100 bars).
    """
    rng = np.random.default_rng(seed)
    frames = []
    for symbol in symbols:
        s = np.zeros(n_bars)
        shocks = rng.normal(0, 1, n_bars)
        for t in range(1, n_bars):
            s[t] = 0.9 * s[t - 1] + np.sqrt(1 - 0.81) * shocks[t]
        other = rng.normal(0, 1, (n_bars, 3))
        regime = np.where((np.arange(n_bars) // 100) % 2 == 0, "bull", "bear")
        driver = np.where(regime == "bear", other[:, 0], s) if regime_flip else s
        ret = np.r_[0.0, strength * 0.002 * driver[:-1]] + rng.normal(0, 0.002, n_bars)
        close = 100 * np.exp(np.cumsum(ret))
        ts = pd.date_range("2025-01-01", periods=n_bars, freq="1min").astype("datetime64[us]")
        frame = pd.DataFrame(
            {
                "symbol": symbol,
                "ts": ts,
                "segment_start": ts[0],
                "close": close,
                "signal": s,
                "noise_a": other[:, 0],
                "noise_b": other[:, 1],
                "noise_c": other[:, 2],
                "regime": pd.array(regime, dtype="string"),
            }
        )
        for h in HORIZONS:
            future = pd.Series(close).shift(-h)
            frame[f"ret_{h}"] = np.log(future / close)
            frame[f"up_{h}"] = np.where(future.isna(), np.nan, (future > close).astype(float))
            frame[f"t1_{h}"] = pd.Series(ts).shift(-h)
            frame[f"past_ret_{h}"] = np.log(close / pd.Series(close).shift(h))
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def time_split(frame: pd.DataFrame, frac: float = 0.7, gap: int = 10):
    """Earlier rows of each symbol to fit, later rows (after a gap) held out."""
    pos = frame.groupby("symbol").cumcount()
    n = frame.groupby("symbol")["ts"].transform("size")
    cut = (n * frac).astype(int)
    return (
        frame[pos < cut].reset_index(drop=True),
        frame[pos >= cut + gap].reset_index(drop=True),
    )


def model_cfg(bases: list[str], **ensemble: object) -> ModelConfig:
    return ModelConfig(
        lightgbm_params=SMALL_LGBM,
        ensemble=EnsembleConfig(base_models=bases, oof_folds=4, embargo_bars=5, **ensemble),
    )


def held_out_auc(model, held: pd.DataFrame, h: int) -> float:
    p = model.predict_frame(held)[h]
    ok = held[f"up_{h}"].notna().to_numpy()
    return float(roc_auc_score(held.loc[ok, f"up_{h}"].astype(int), p[ok]))


# ---------------------------------------------------------------- test-only bases
class Memorizer:
    """A deep unpruned tree: perfect on its training rows, weak on later rows."""

    name = "memorizer"

    def fit(self, x, y, x_val=None, y_val=None):
        self.model_ = DecisionTreeClassifier(random_state=0).fit(x, y.astype(int))
        return self

    def predict_proba(self, x):
        return self.model_.predict_proba(x)[:, 1]

    def feature_importance(self, columns):
        return None

    def params(self):
        return {}


class OneColumn:
    """P(up) = sigmoid(x[:, column]): a fixed 'model' that reads one feature."""

    def __init__(self, column: int) -> None:
        self.column = column
        self.name = f"col{column}"

    def fit(self, x, y, x_val=None, y_val=None):
        self.fitted_ = True
        return self

    def predict_proba(self, x):
        return 1 / (1 + np.exp(-x[:, self.column]))

    def feature_importance(self, columns):
        return pd.Series(np.eye(len(columns))[self.column], index=columns)

    def params(self):
        return {"column": self.column}


class ShallowTree(Memorizer):
    """A depth-3 tree: a cheap non-linear base (LightGBM is slow on a busy 2-core box)."""

    name = "shallow_tree"

    def fit(self, x, y, x_val=None, y_val=None):
        tree = DecisionTreeClassifier(max_depth=3, min_samples_leaf=50, random_state=0)
        self.model_ = tree.fit(x, y.astype(int))
        return self


def memorizer_from_config(cfg: ModelConfig) -> Memorizer:
    return Memorizer()


def shallow_tree_from_config(cfg: ModelConfig) -> ShallowTree:
    return ShallowTree()


def signal_only_from_config(cfg: ModelConfig) -> OneColumn:
    return OneColumn(FEATURES.index("signal"))


def noise_a_only_from_config(cfg: ModelConfig) -> OneColumn:
    return OneColumn(FEATURES.index("noise_a"))


class RollingSignal:
    """A FrameModel base that reads history: sigmoid of the mean signal of the last 3 rows."""

    name = "rolling_signal"
    history_bars = 2

    def fit_frame(self, train, val, *, features, horizons):
        self.horizons_ = list(horizons)
        return self

    def predict_frame(self, frame):
        order = frame.sort_values(["symbol", "ts"], kind="stable").index
        sorted_ = frame.loc[order]
        mean = sorted_.groupby("symbol")["signal"].transform(lambda s: s.rolling(3, 1).mean())
        p = pd.Series(1 / (1 + np.exp(-mean.to_numpy())), index=order).reindex(frame.index)
        return {h: p.to_numpy() for h in self.horizons_}

    def feature_importance(self, columns):
        return None

    def params(self):
        return {}


def rolling_signal_from_config(cfg: ModelConfig) -> RollingSignal:
    return RollingSignal()


@pytest.fixture
def test_bases(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("memorizer", "shallow_tree", "signal_only", "noise_a_only", "rolling_signal"):
        monkeypatch.setitem(base.MODEL_FACTORIES, name, f"{__name__}:{name}_from_config")


@pytest.fixture(scope="module")
def planted() -> tuple[pd.DataFrame, pd.DataFrame]:
    return time_split(planted_frame(strength=1.0, seed=1))


@pytest.fixture(scope="module")
def noise() -> tuple[pd.DataFrame, pd.DataFrame]:
    return time_split(planted_frame(strength=0.0, seed=2))


ENSEMBLES = ["stacking", "regime_ensemble", "online_ensemble"]


# ---------------------------------------------------------------- the required OOF test
def test_stacking_learns_from_out_of_fold_predictions_not_in_sample(test_bases, planted):
    """A memorizing base looks perfect in-sample; stacking must not trust it."""
    train, held = planted
    cfg = model_cfg(["logistic", "memorizer"])
    stack = make_model("stacking", cfg).fit_frame(train, None, features=FEATURES, horizons=HORIZONS)
    # the control: the same meta-learner on in-sample predictions of the same bases
    in_sample_bases = BaseModels(["logistic", "memorizer"], cfg).fit(
        train, None, features=FEATURES, horizons=HORIZONS
    )
    in_sample = in_sample_bases.predict(train)
    held_probs = in_sample_bases.predict(held)
    gains = []
    for h in HORIZONS:
        y = train[f"up_{h}"].to_numpy(dtype=float)
        leaky = fit_meta_learner(in_sample[h], y, cfg.ensemble)
        assert contribution_shares(leaky, in_sample[h])[1] > 0.8  # memorizer dominates
        assert stack.shares_[h][1] < 0.2, stack.params()  # OOF: memorizer nearly ignored
        assert stack.shares_[h][0] > 0.8
        ok = held[f"up_{h}"].notna().to_numpy()
        y_held = held.loc[ok, f"up_{h}"].astype(int)
        leaky_auc = roc_auc_score(
            y_held,
            leaky.predict_proba(
                np.log(np.clip(held_probs[h], 1e-6, 1 - 1e-6) / np.clip(1 - held_probs[h], 1e-6, 1))
            )[ok, 1],
        )
        gains.append(held_out_auc(stack, held, h) - leaky_auc)
    assert np.mean(gains) > 0.01, gains


def test_oof_predictions_come_only_from_models_fit_on_earlier_purged_rows(test_bases):
    """Every OOF row was predicted by a fold that never trained on it (memorizer != label)."""
    frame = planted_frame(n_bars=600, strength=0.0, seed=5)
    cfg = model_cfg(["memorizer"])
    oof = out_of_fold_probs(
        frame, None, names=["memorizer"], model_cfg=cfg, features=FEATURES, horizons=HORIZONS
    )
    for h in HORIZONS:
        p, y = oof[h][:, 0], frame[f"up_{h}"].to_numpy(dtype=float)
        known = ~np.isnan(p) & ~np.isnan(y)
        # the first block (1/(folds+1) of the timestamps) has no earlier fold to predict it
        first = frame["ts"] < np.sort(frame["ts"].unique())[600 // 5]
        assert np.isnan(p[first.to_numpy()]).all()
        assert known.sum() > 0.7 * len(frame)
        # in-sample, a memorizer is always right; out of fold on noise it is a coin flip
        accuracy = ((p[known] > 0.5) == (y[known] > 0.5)).mean()
        assert 0.4 < accuracy < 0.6, accuracy


# ---------------------------------------------------------------- signal and noise
@pytest.mark.parametrize("name", ENSEMBLES)
def test_each_ensemble_finds_planted_signal_and_not_noise(test_bases, planted, noise, name):
    cfg = model_cfg(["logistic", "shallow_tree"])
    train, held = planted
    model = make_model(name, cfg).fit_frame(train, None, features=FEATURES, horizons=HORIZONS)
    for h in HORIZONS:
        assert held_out_auc(model, held, h) > 0.75
    train, held = noise
    model = make_model(name, cfg).fit_frame(train, None, features=FEATURES, horizons=HORIZONS)
    for h in HORIZONS:
        assert abs(held_out_auc(model, held, h) - 0.5) < 0.07
    details = model.predict_frame_details(held)
    assert set(details) == set(HORIZONS)
    assert np.all((details[1]["uncertainty"] >= 0) & (details[1]["uncertainty"] <= 0.5))
    assert np.all((details[1]["p_up"] > 0) & (details[1]["p_up"] < 1))


def test_frame_model_bases_get_their_history_out_of_fold(test_bases, planted):
    train, held = planted
    cfg = model_cfg(["logistic", "rolling_signal"])
    oof = out_of_fold_probs(
        train,
        None,
        names=["logistic", "rolling_signal"],
        model_cfg=cfg,
        features=FEATURES,
        horizons=[1],
    )
    known = ~np.isnan(oof[1][:, 1])
    full = RollingSignal().fit_frame(train, None, features=FEATURES, horizons=[1])
    # each OOF block was predicted with the rows before it in view, as on the full frame
    np.testing.assert_allclose(oof[1][known, 1], full.predict_frame(train)[1][known])
    model = make_model("stacking", cfg).fit_frame(train, None, features=FEATURES, horizons=[1])
    assert model.history_bars == RollingSignal.history_bars
    assert held_out_auc(model, held, 1) > 0.75


def test_refit_of_a_deepcopy_gives_the_same_model(test_bases, planted):
    import copy

    train, held = planted
    cfg = model_cfg(["logistic", "shallow_tree"])
    model = make_model("stacking", cfg).fit_frame(train, None, features=FEATURES, horizons=[1])
    again = copy.deepcopy(model).fit_frame(train.iloc[::-1], None, features=FEATURES, horizons=[1])
    np.testing.assert_allclose(model.predict_frame(held)[1], again.predict_frame(held)[1])
    assert again.horizons_ == [1] and model.params() == again.params()


# ---------------------------------------------------------------- regime weighting
def test_regime_ensemble_weights_the_base_that_works_in_each_regime(test_bases):
    frame = planted_frame(n_bars=2000, strength=1.5, seed=3, regime_flip=True)
    train, held = time_split(frame)
    cfg = model_cfg(["signal_only", "noise_a_only"], regime_prior_rows=50)
    model = make_model("regime_ensemble", cfg).fit_frame(
        train, None, features=FEATURES, horizons=[1]
    )
    weights = model.weights_[1]
    assert weights["bull"][0] > 0.8 and weights["bear"][1] > 0.8, model.params()
    # held-out: beats the plain average of the same bases, and without regimes it is that average
    plain = make_model("regime_ensemble", cfg).fit_frame(
        train.drop(columns="regime"), None, features=FEATURES, horizons=[1]
    )
    np.testing.assert_allclose(plain.weights_[1][""], [0.5, 0.5])
    assert held_out_auc(model, held, 1) > held_out_auc(plain, held.drop(columns="regime"), 1) + 0.05
    # an unseen or unknown regime falls back to the overall weights
    odd = held.head(3).assign(regime=pd.array(["sideways", None, "bull"], dtype="string"))
    rows = model.row_weights(odd, 1)
    np.testing.assert_allclose(rows[0], weights[""])
    np.testing.assert_allclose(rows[1], weights[""])
    np.testing.assert_allclose(rows[2], weights["bull"])


# ---------------------------------------------------------------- online weights
def test_online_weights_at_t_use_only_outcomes_realized_by_t():
    frame = planted_frame(n_bars=400, seed=4)
    rng = np.random.default_rng(0)
    probs = rng.uniform(0.2, 0.8, (len(frame), 2))
    cfg = EnsembleConfig(online_half_life_bars=10, online_window_bars=50, min_weight=0.0)
    init = np.array([0.55, 0.5])
    before = online_weights(frame, probs, 5, init, cfg)
    cut = frame["ts"].iloc[200]
    future = (frame["ts"] > cut).to_numpy()
    changed = frame.assign(
        close=np.where(future, frame["close"] * rng.uniform(0.9, 1.1, len(frame)), frame["close"])
    )
    after = online_weights(changed, probs, 5, init, cfg)
    np.testing.assert_array_equal(before[~future], after[~future])
    assert not np.allclose(before[future], after[future])  # closes are read, only causally
    np.testing.assert_allclose(before.sum(axis=1), 1.0)
    # rows in a shuffled frame get the same weights (grouped and sorted inside)
    perm = rng.permutation(len(frame))
    shuffled = online_weights(frame.iloc[perm].reset_index(drop=True), probs[perm], 5, init, cfg)
    np.testing.assert_allclose(shuffled, before[perm])


def test_online_weights_do_not_chase_the_trend_with_one_sided_bases():
    """An always-up and an always-down base in a rising market: equal skill, equal weights."""
    frame = planted_frame(n_bars=600, strength=0.0, seed=6, symbols=("AAA",))
    rng = np.random.default_rng(1)
    steps = np.where(rng.uniform(size=len(frame)) < 0.7, 1.001, 0.999)  # 70% of bars go up
    frame = frame.assign(close=100 * np.cumprod(steps))
    probs = np.tile([0.6, 0.4], (len(frame), 1))
    cfg = EnsembleConfig(online_half_life_bars=20, online_window_bars=100, min_weight=0.0)
    w = online_weights(frame, probs, 1, np.array([0.5, 0.5]), cfg)
    np.testing.assert_allclose(w[200:], 0.5, atol=0.02)


def test_online_weights_follow_recent_accuracy_and_start_from_oof(test_bases):
    frame = planted_frame(n_bars=2000, strength=1.5, seed=3, regime_flip=True)
    train, held = time_split(frame)
    cfg = model_cfg(
        ["signal_only", "noise_a_only"],
        online_half_life_bars=15,
        online_window_bars=80,
        online_temperature=0.05,
    )
    model = make_model("online_ensemble", cfg).fit_frame(
        train, None, features=FEATURES, horizons=[1]
    )
    assert model.history_bars == 80 + 1
    probs = model.bases_.predict(held)[1]
    w = online_weights(held, probs, 1, model.init_accuracy_[1], model.cfg)
    late = (held.groupby("symbol").cumcount() % 100 >= 50).to_numpy()  # settled in its block
    bull = (held["regime"] == "bull").to_numpy()
    assert w[late & bull, 0].mean() > 0.7 and w[late & ~bull, 1].mean() > 0.7
    first = held.groupby("symbol").head(1).index.to_numpy()  # nothing realized yet: OOF weights
    w0 = floored_softmax(model.init_accuracy_[1] - 0.5, cfg.ensemble.online_temperature, 0.02)
    np.testing.assert_allclose(w[first], np.tile(w0, (len(first), 1)))


def test_online_prediction_needs_only_history_bars(test_bases, planted):
    train, held = planted
    cfg = model_cfg(["logistic", "shallow_tree"], online_window_bars=60)
    model = make_model("online_ensemble", cfg).fit_frame(
        train, None, features=FEATURES, horizons=HORIZONS
    )
    assert model.history_bars == 60 + max(HORIZONS)
    full = model.predict_frame(held)
    tail = held.groupby("symbol").tail(model.history_bars + 1).reset_index(drop=True)
    short = model.predict_frame(tail)
    last_full = held.groupby("symbol").tail(1).index.to_numpy()
    last_tail = tail.groupby("symbol").tail(1).index.to_numpy()
    for h in HORIZONS:
        np.testing.assert_allclose(short[h][last_tail], full[h][last_full], rtol=0, atol=1e-12)
    with pytest.raises(DataContractError, match="close"):
        model.predict_frame(held.drop(columns="close"))


# ---------------------------------------------------------------- errors and config
def test_base_names_and_overrides_are_checked(test_bases):
    with pytest.raises(ConfigError, match="Unknown base model"):
        check_base_names(["logistic", "nope"])
    with pytest.raises(ConfigError, match="ensemble"):
        check_base_names(["logistic", "stacking"])
    with pytest.raises(ConfigError, match="once"):
        check_base_names(["logistic", "logistic"])
    with pytest.raises(ConfigError, match="unknown key"):
        make_model("stacking", ModelConfig(params={"stacking": {"folds": 3}}))
    tuned = make_model(
        "stacking", ModelConfig(params={"stacking": {"meta_learner": "elastic_net"}})
    )
    assert tuned.cfg.meta_learner == "elastic_net"
    assert ModelConfig(candidates=["stacking", "online_ensemble"]).candidates[0] == "stacking"


def test_unfitted_and_unlabelled_inputs_are_clear_errors(test_bases, planted):
    train, _ = planted
    model = make_model("regime_ensemble", model_cfg(["logistic"]))
    with pytest.raises(NotFittedError, match="before fit"):
        model.predict_frame(train)
    with pytest.raises(DataContractError, match="t1_5"):
        model.fit_frame(train.drop(columns="t1_5"), None, features=FEATURES, horizons=HORIZONS)
    with pytest.raises(DataContractError, match="up_7"):
        model.fit_frame(train, None, features=FEATURES, horizons=[7])


def test_elastic_net_meta_learner_and_floored_softmax():
    w = floored_softmax(np.array([[0.1, 0.0, -0.1]]), 0.01, 0.05)
    np.testing.assert_allclose(w.sum(), 1.0)
    assert w.min() >= 0.05 - 1e-12 and w[0, 0] > w[0, 1] > w[0, 2]
    rng = np.random.default_rng(0)
    good = rng.uniform(0.05, 0.95, 400)
    y = (rng.uniform(size=400) < good).astype(float)
    probs = np.c_[good, rng.uniform(0.05, 0.95, 400)]
    meta = fit_meta_learner(probs, y, EnsembleConfig(meta_learner="elastic_net", meta_c=0.05))
    assert meta is not None and meta.coef_[0][0] > 0.3 and abs(meta.coef_[0][1]) < 0.1
    assert fit_meta_learner(probs[:10], y[:10], EnsembleConfig()) is None


# ---------------------------------------------------------------- real sample + registry
REAL_SYMBOLS = ["BTC/USDT:USDT", "DOGE/USDT:USDT"]
REAL_HORIZONS = [15, 60]


@pytest.fixture(scope="module")
def real_parts(sample_1m: pd.DataFrame):
    """A small real split: 2 symbols x 3 days of 1m candles, the production feature SQL."""
    import duckdb

    from ml_core.config import FeatureConfig, SplitConfig
    from ml_core.features import FEATURE_COLUMNS
    from ml_core.features.labels import build_model_frame
    from ml_core.validation.split import chronological_split

    candles = sample_1m[sample_1m["symbol"].isin(REAL_SYMBOLS)].groupby("symbol").head(3 * 1440)
    ts = pd.to_datetime(candles["ts"], utc=True).dt.tz_localize(None).astype("datetime64[us]")
    candles = candles.assign(ts=ts, timeframe="1m").reset_index(drop=True)
    with duckdb.connect() as con:
        con.register("candles_in", candles)
        frame = build_model_frame(
            con, timeframe="1m", horizons=REAL_HORIZONS, cfg=FeatureConfig(), relation="candles_in"
        )
    parts = chronological_split(
        frame, horizons=REAL_HORIZONS, cfg=SplitConfig(), complete_columns=list(FEATURE_COLUMNS)
    )
    return candles.drop(columns="timeframe"), parts


@pytest.mark.slow
def test_ensembles_fit_as_pipelines_and_registry_round_trip_is_exact(
    real_parts, tmp_path_factory: pytest.TempPathFactory
):
    """fit_pipeline on real candles; stacking logged and loaded gives the same predictions."""
    from ml_core.config import FeatureConfig
    from ml_core.models.pipeline import fit_pipeline
    from ml_core.registry import RegistryStore, TrackingContext, log_pipeline

    candles, parts = real_parts
    cfg = ModelConfig(  # default bases (logistic + LightGBM); one thread beats two on 2 cores
        lightgbm_params={**SMALL_LGBM, "n_estimators": 30, "min_child_samples": 100, "n_jobs": 1},
        ensemble=EnsembleConfig(online_window_bars=120),
        params={"online_ensemble": {"oof_folds": 2}},
    )
    root = tmp_path_factory.mktemp("mlflow-ensembles")
    tracking = TrackingContext(
        f"sqlite:///{root / 'mlflow.db'}", (root / "artifacts").as_uri(), "ensemble-tests"
    )
    recent = candles.groupby("symbol").tail(900).reset_index(drop=True)
    for name in ("stacking", "online_ensemble"):
        pipe = fit_pipeline(
            name,
            parts,
            horizons=REAL_HORIZONS,
            timeframe="1m",
            feature_cfg=FeatureConfig(),
            model_cfg=cfg,
        )
        assert pipe.frame_model is not None and pipe.frame_model.name == name
        val = pipe.predict_features(parts.val)
        for h in REAL_HORIZONS:
            assert np.isfinite(val[h]).all() and 0 < val[h].min() <= val[h].max() < 1
        expected = pipe.predict(recent)
        assert len(expected) > 0
        if name == "stacking":  # one registry round trip (the pyfunc path is the same for all)
            with tracking.start_run(f"ensemble-{name}"):
                info = log_pipeline(
                    pipe, tracking=tracking, model_name=f"coincast-{name}", input_example=recent
                )
            store = RegistryStore(tracking.tracking_uri, f"coincast-{name}")
            got = pd.DataFrame(store.load_pyfunc(info.version).predict(recent))
            assert list(got["symbol"]) == list(expected["symbol"])
            np.testing.assert_array_equal(got["p_up"].to_numpy(), expected["p_up"].to_numpy())
            np.testing.assert_array_equal(
                got["uncertainty"].to_numpy(), expected["uncertainty"].to_numpy()
            )
            assert store.load_pipeline(info.version).frame_model.params() == (
                pipe.frame_model.params()
            )
        # serving keeps history_bars rows before the latest bar: same answer as the full frame
        latest = pipe.predict(recent, latest_only=True)
        assert len(latest) == len(REAL_SYMBOLS) * len(REAL_HORIZONS)
        full_last = expected.groupby(["symbol", "horizon"]).tail(1)
        np.testing.assert_allclose(latest["p_up"], full_last["p_up"], rtol=0, atol=1e-12)
