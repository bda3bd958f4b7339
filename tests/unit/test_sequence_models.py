"""Torch sequence models: learn a planted signal, stay at chance on noise, never read the future.

Tiny sizes (window 16, hidden 8, a few epochs, ~3k rows) keep every fit a few
seconds on 2 CPU cores. Held-out rows are always *later* rows (no shuffled
splits). The registry round trip fits a small real-sample pipeline and logs it
to a sqlite MLflow registry in a temp folder.
"""

from __future__ import annotations

import copy

import cloudpickle
import duckdb
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from ml_core.config import FeatureConfig, ModelConfig, SequenceConfig, SplitConfig
from ml_core.errors import ConfigError, NotFittedError
from ml_core.models.base import MODEL_FACTORIES, is_frame_model, make_model
from ml_core.models.sequence.loop import horizon_weights, masked_bce, warmup_cosine

SEQUENCE_MODELS = ["lstm", "attention_lstm", "transformer", "multiscale_lstm"]
FEATURES = ["f0", "f1", "f2", "f3"]
HORIZONS = [1, 5]
TINY = SequenceConfig(
    window=16,
    hidden=8,
    layers=1,
    heads=2,
    epochs=3,
    batch_size=128,
    lr=1e-2,
    warmup_steps=10,
    scales=[4, 16],
    expanding_max=16,
    max_steps=8,
    mc_passes=4,
    num_threads=1,
)


def tiny_cfg(**overrides: object) -> ModelConfig:
    return ModelConfig(sequence=TINY.model_copy(update=overrides), seed=7)


def synthetic_frame(n_bars: int, *, signal: bool, seed: int = 0) -> pd.DataFrame:
    """Two symbols of scaled-looking features; with ``signal``, up_h = [f1_t + 2 f0_{t-2} > 0].

    The planted signal needs bar t-2: a row-wise model cannot see it all.
    """
    rng = np.random.default_rng(seed)
    frames = []
    for symbol in ["AAA", "BBB"]:
        f = rng.normal(size=(n_bars, len(FEATURES)))
        ts = pd.date_range("2024-01-01", periods=n_bars, freq="1min")
        if signal:
            up = (0.5 * f[:, 1] + np.r_[0.0, 0.0, f[:-2, 0]] > 0).astype(float)
        else:
            up = rng.integers(0, 2, n_bars).astype(float)
        frame = pd.DataFrame(f, columns=FEATURES).assign(
            symbol=symbol, ts=ts, segment_start=ts[0], up_1=up, up_5=up
        )
        frame.loc[frame.index[-5:], "up_5"] = np.nan  # labels beyond the end are unknown
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def later_split(frame: pd.DataFrame, frac: float = 0.7) -> tuple[pd.DataFrame, pd.DataFrame]:
    cut = frame["ts"].quantile(frac)
    return (
        frame[frame["ts"] < cut].reset_index(drop=True),
        frame[frame["ts"] >= cut].reset_index(drop=True),
    )


@pytest.fixture(scope="module")
def signal_data() -> tuple[pd.DataFrame, pd.DataFrame]:
    return later_split(synthetic_frame(2000, signal=True))


@pytest.fixture(scope="module")
def fitted(signal_data) -> dict[str, object]:
    """Each sequence model fitted once on the planted-signal data."""
    train, test = signal_data
    return {
        name: make_model(name, tiny_cfg(epochs=4)).fit_frame(
            train, test, features=FEATURES, horizons=HORIZONS
        )
        for name in SEQUENCE_MODELS
    }


# ---------------------------------------------------------------- learning
@pytest.mark.parametrize("name", SEQUENCE_MODELS)
def test_learns_planted_signal_on_later_rows(name: str, fitted, signal_data) -> None:
    model = fitted[name]
    _, test = signal_data
    assert is_frame_model(model) and model.name == name
    probs = model.predict_frame(test)
    auc = roc_auc_score(test["up_1"], probs[1])
    assert auc > 0.72, f"{name}: held-out AUC {auc:.3f} on a planted signal"
    assert set(probs) == set(HORIZONS) and all(len(p) == len(test) for p in probs.values())
    assert model.report_.epochs_run >= 1 and model.report_.samples_per_second > 0


@pytest.mark.parametrize("name", SEQUENCE_MODELS)
def test_pure_noise_stays_near_chance(name: str) -> None:
    train, test = later_split(synthetic_frame(1500, signal=False, seed=3))
    model = make_model(name, tiny_cfg(epochs=2)).fit_frame(
        train, test, features=FEATURES, horizons=HORIZONS
    )
    auc = roc_auc_score(test["up_1"], model.predict_frame(test)[1])
    assert abs(auc - 0.5) < 0.08, f"{name}: AUC {auc:.3f} on pure noise"


# ---------------------------------------------------------------- causality
@pytest.mark.parametrize("name", SEQUENCE_MODELS)
def test_output_at_t_ignores_every_later_bar(name: str, fitted, signal_data) -> None:
    """Bidirectional layers and attention included: rows after t never move P(up) at t."""
    model = fitted[name]
    _, test = signal_data
    t = test["ts"].iloc[100]
    before = model.predict_frame(test)
    future = test["ts"] > t
    changed = test.copy()
    rng = np.random.default_rng(0)
    changed.loc[future, FEATURES] = rng.normal(0, 5, size=(int(future.sum()), len(FEATURES)))
    after = model.predict_frame(changed)
    truncated = model.predict_frame(test[~future].reset_index(drop=True))
    past = (~future).to_numpy()
    for h in HORIZONS:
        np.testing.assert_allclose(after[h][past], before[h][past], rtol=0, atol=1e-6)
        np.testing.assert_allclose(truncated[h], before[h][past], rtol=0, atol=1e-6)
        assert not np.allclose(after[h][future.to_numpy()], before[h][future.to_numpy()])
    # and the bars inside the window do matter (the check above could fail)
    changed_past = test.copy()
    changed_past.loc[test["ts"] == t - pd.Timedelta(minutes=2), "f0"] += 3.0
    moved = model.predict_frame(changed_past)[1][(test["ts"] == t).to_numpy()]
    assert not np.allclose(moved, before[1][(test["ts"] == t).to_numpy()], atol=1e-6)


def test_predictions_follow_the_frame_row_order(fitted, signal_data) -> None:
    model = fitted["attention_lstm"]
    _, test = signal_data
    shuffled = test.sample(frac=1.0, random_state=5)
    got = model.predict_frame(shuffled)[5]
    expected = pd.Series(model.predict_frame(test)[5], index=test.index)
    np.testing.assert_allclose(got, expected.loc[shuffled.index].to_numpy(), atol=1e-6)


# ---------------------------------------------------------------- uncertainty, state
@pytest.mark.parametrize("name", SEQUENCE_MODELS)
def test_mc_dropout_is_seeded_and_pickles_to_identical_predictions(name, fitted, signal_data):
    model = fitted[name]
    _, test = signal_data
    frame = test.head(300)
    details = model.predict_frame_details(frame)
    again = model.predict_frame_details(frame)
    clone = cloudpickle.loads(cloudpickle.dumps(model))
    restored = clone.predict_frame_details(frame)
    for h in HORIZONS:
        np.testing.assert_array_equal(details[h]["p_up"], model.predict_frame(frame)[h])
        assert (details[h]["uncertainty"] > 0).mean() > 0.9  # dropout makes passes differ
        np.testing.assert_array_equal(details[h]["uncertainty"], again[h]["uncertainty"])
        np.testing.assert_array_equal(restored[h]["p_up"], details[h]["p_up"])
        np.testing.assert_array_equal(restored[h]["uncertainty"], details[h]["uncertainty"])
    assert next(clone.network_.parameters()).device.type == "cpu"


@pytest.mark.parametrize("name", ["multiscale_lstm", "transformer"])
def test_scoring_only_some_rows_keeps_the_rest_as_history(name, fitted, signal_data) -> None:
    _, test = signal_data
    last = test.groupby("symbol").tail(1).index.to_numpy()
    full = fitted[name].predict_frame(test)
    some = fitted[name].predict_frame_details(test, rows=last, mc_passes=2)
    for h in HORIZONS:
        np.testing.assert_allclose(some[h]["p_up"][last], full[h][last], rtol=0, atol=1e-6)
        assert np.isnan(np.delete(some[h]["p_up"], last)).all()
        assert np.isfinite(some[h]["uncertainty"][last]).all()


def test_global_torch_rng_is_left_alone(fitted, signal_data) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    fitted["lstm"].predict_frame_details(signal_data[1].head(50))
    np.testing.assert_array_equal(torch.rand(3).numpy(), expected.numpy())


def test_deepcopy_refits_the_same_configuration(fitted, signal_data) -> None:
    train, test = signal_data
    model = fitted["lstm"]
    refit = copy.deepcopy(model).fit_frame(train, test, features=FEATURES, horizons=HORIZONS)
    np.testing.assert_array_equal(refit.predict_frame(test)[1], model.predict_frame(test)[1])
    assert refit.params()["fit_epochs_run"] == model.params()["fit_epochs_run"]


def test_max_train_windows_keeps_the_most_recent(signal_data) -> None:
    train, test = signal_data
    model = make_model("lstm", tiny_cfg(max_train_windows=300, epochs=1))
    model.fit_frame(train, None, features=FEATURES, horizons=HORIZONS)
    assert model.report_.n_train_windows == 300 and model.report_.n_val_windows == 0
    assert np.isnan(model.report_.best_val_loss)
    assert model.history_bars == 15


def test_unfitted_model_raises() -> None:
    with pytest.raises(NotFittedError, match="before fit_frame"):
        make_model("transformer", tiny_cfg()).predict_frame(synthetic_frame(20, signal=True))


# ---------------------------------------------------------------- config and loss helpers
def test_factories_and_per_model_overrides() -> None:
    assert set(SEQUENCE_MODELS) <= set(MODEL_FACTORIES)
    cfg = tiny_cfg().model_copy(update={"params": {"transformer": {"hidden": 12, "heads": 3}}})
    assert make_model("transformer", cfg).cfg.hidden == 12
    assert make_model("lstm", cfg).cfg.hidden == 8
    assert make_model("multiscale_lstm", tiny_cfg(scales=[4, 16], expanding_max=32)).window == 32
    bad = tiny_cfg().model_copy(update={"params": {"lstm": {"hiden": 4}}})
    with pytest.raises(ConfigError, match=r"unknown keys \['hiden'\]"):
        make_model("lstm", bad)
    with pytest.raises(ConfigError, match="not divisible"):
        make_model("transformer", tiny_cfg(hidden=10, heads=4)).build_network(4, 2)
    with pytest.raises(ConfigError, match="positive numbers"):
        SequenceConfig(horizon_weights=[1.0, -1.0])


def test_horizon_weights_favour_short_horizons() -> None:
    w = horizon_weights("inverse_sqrt", [15, 60, 240])
    assert w.sum() == pytest.approx(1.0) and w[0] > w[1] > w[2]
    np.testing.assert_allclose(horizon_weights([3.0, 1.0], [1, 5]), [0.75, 0.25])
    np.testing.assert_allclose(horizon_weights("equal", [1, 5]), [0.5, 0.5])
    with pytest.raises(ConfigError, match="2 numbers for 3 horizons"):
        horizon_weights([1.0, 2.0], [1, 5, 9])


def test_masked_bce_skips_unknown_labels_per_horizon() -> None:
    logits = torch.tensor([[0.0, 5.0], [0.0, -5.0]])
    y = torch.tensor([[1.0, float("nan")], [0.0, float("nan")]])
    w = torch.tensor([0.5, 0.5])
    assert masked_bce(logits, y, w).item() == pytest.approx(np.log(2), rel=1e-6)
    y2 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert masked_bce(logits, y2, w).item() > np.log(2)  # the wrong second horizon now counts


def test_warmup_then_cosine_schedule() -> None:
    lr = [warmup_cosine(s, warmup_steps=10, total_steps=110) for s in range(110)]
    assert lr[0] == pytest.approx(0.1) and lr[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lr[10:], lr[11:], strict=False))
    assert lr[-1] == pytest.approx(0.1, abs=1e-3)


# ---------------------------------------------------------------- registry round trip
def _small_real_parts(sample_1m: pd.DataFrame, horizons: list[int]):
    from ml_core.features import FEATURE_COLUMNS
    from ml_core.features.labels import build_model_frame
    from ml_core.validation.split import chronological_split

    symbols = ["ETH/USDT:USDT", "SOL/USDT:USDT"]
    candles = sample_1m[sample_1m["symbol"].isin(symbols)].sort_values(["symbol", "ts"])
    candles = candles.groupby("symbol").head(1600)
    candles = candles.assign(
        ts=candles["ts"].dt.tz_convert("UTC").dt.tz_localize(None), timeframe="1m"
    )
    con = duckdb.connect()
    con.register("candles_in", candles)
    frame = build_model_frame(
        con, timeframe="1m", horizons=horizons, cfg=FeatureConfig(), relation="candles_in"
    )
    con.close()
    parts = chronological_split(
        frame,
        horizons=horizons,
        cfg=SplitConfig(min_train_rows=200),
        complete_columns=list(FEATURE_COLUMNS),
    )
    return candles.drop(columns="timeframe").reset_index(drop=True), parts


@pytest.mark.slow
def test_registry_round_trip_predicts_identically(sample_1m, tmp_path) -> None:
    from ml_core.models.pipeline import fit_pipeline
    from ml_core.registry import RegistryStore, TrackingContext, log_pipeline

    horizons = [15, 60]
    candles, parts = _small_real_parts(sample_1m, horizons)
    pipe = fit_pipeline(
        "lstm",
        parts,
        horizons=horizons,
        timeframe="1m",
        feature_cfg=FeatureConfig(),
        model_cfg=tiny_cfg(epochs=1),
    )
    assert pipe.history_bars == 15 and pipe.lookback_bars >= 240 + 15
    tail = candles.groupby("symbol").tail(pipe.lookback_bars + 40).reset_index(drop=True)
    tracking = TrackingContext(
        f"sqlite:///{tmp_path / 'mlflow.db'}", (tmp_path / "artifacts").as_uri(), "seq-tests"
    )
    with tracking.start_run("retrain"):
        log_pipeline(pipe, tracking=tracking, model_name="seq", input_example=tail)
    loaded = RegistryStore(tracking.tracking_uri, "seq").load_pyfunc("1")
    expected = pipe.predict(tail)
    got = pd.DataFrame(loaded.predict(tail))
    assert expected.groupby("symbol").size().min() >= 40 * len(horizons)
    np.testing.assert_array_equal(got["p_up"].to_numpy(), expected["p_up"].to_numpy())
    np.testing.assert_array_equal(got["uncertainty"].to_numpy(), expected["uncertainty"].to_numpy())
    assert (expected["uncertainty"] > 0).mean() > 0.9  # MC-dropout, seeded
    latest = pd.DataFrame(loaded.predict(tail, params={"latest_only": True}))
    full_last = expected[expected["ts"] == expected.groupby("symbol")["ts"].transform("max")]
    np.testing.assert_allclose(
        latest["p_up"].to_numpy(), full_last["p_up"].to_numpy(), rtol=0, atol=1e-6
    )
