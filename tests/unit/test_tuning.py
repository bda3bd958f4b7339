"""Optuna tuning on real candles: persistent, resumable studies and tuned params in retrains."""

from __future__ import annotations

import json

import duckdb
import numpy as np
import optuna
import pytest

from ml_core.config import CoincastConfig, FeatureConfig, SplitConfig
from ml_core.errors import ConfigError, DataContractError
from ml_core.features import FEATURE_COLUMNS, build_model_frame
from ml_core.features.feature_set import candle_frame_for_sql
from ml_core.models.base import is_frame_model, make_model
from ml_core.models.tuning import (
    SEARCH_SPACES,
    Choice,
    FloatRange,
    IntRange,
    apply_tuned_params,
    check_tunable,
    horizon_groups,
    load_tuned_params,
    prepare_tuning_data,
    run_study,
    save_tuned_params,
    storage_url,
    suggest_params,
    trial_model_config,
    tunable_models,
    tuned_params_path,
    tuned_trial_count,
)
from ml_core.validation.split import chronological_split

HORIZONS = [15, 60]
SYMBOLS = ["BTC/USDT:USDT", "DOGE/USDT:USDT"]


@pytest.fixture(scope="module")
def tiny_parts(sample_1m):
    """Two real symbols x 3 days of 1m candles -> model frame -> purged split."""
    candles = sample_1m[sample_1m["symbol"].isin(SYMBOLS)].groupby("symbol").head(3 * 1440)
    frame, _ = candle_frame_for_sql(candles, "1m")
    with duckdb.connect() as con:
        con.register("candles", frame)
        model_frame = build_model_frame(
            con, timeframe="1m", horizons=HORIZONS, cfg=FeatureConfig(), relation="candles"
        )
    return chronological_split(
        model_frame, horizons=HORIZONS, cfg=SplitConfig(), complete_columns=list(FEATURE_COLUMNS)
    )


@pytest.fixture(scope="module")
def tiny_data(tiny_parts):
    return prepare_tuning_data(
        tiny_parts, columns=list(FEATURE_COLUMNS), horizons=HORIZONS, max_train_rows=2000
    )


def _cfg(home, **tuning) -> CoincastConfig:
    return CoincastConfig(
        home=home,
        labels={"horizons": {"1m": HORIZONS}},
        models={"candidates": ["logistic", "lightgbm"]},
        tuning={"models": ["logistic"], **tuning},
    )


def test_study_persists_and_resumes_from_storage(tmp_path, tiny_data):
    cfg = _cfg(tmp_path)
    first = run_study(cfg, "logistic", "all", HORIZONS, tiny_data, n_trials=3)
    assert (tmp_path / "optuna.db").is_file()
    assert [t.number for t in first.new_trials] == [0, 1, 2]

    # a new process would see exactly this: the study as stored
    stored = optuna.load_study(study_name="coincast-logistic-all", storage=storage_url(cfg))
    assert len(stored.trials) == 3
    assert stored.user_attrs["best_params"] == stored.best_params == first.best_params
    assert stored.user_attrs["horizons"] == HORIZONS
    # every completed trial reported one pruning step per horizon
    assert all(len(t.intermediate_values) == len(HORIZONS) for t in stored.trials)
    # the objective is the mean validation AUC over the group's horizons
    best = stored.best_trial
    assert best.value == pytest.approx(np.mean([best.user_attrs[f"auc_{h}"] for h in HORIZONS]))

    second = run_study(cfg, "logistic", "all", HORIZONS, tiny_data, n_trials=2)
    assert [t.number for t in second.new_trials] == [3, 4]
    assert second.n_trials_total == 5
    # the resumed sampler does not replay the first session's draws
    first_cs = {t.params["c"] for t in first.new_trials}
    assert not first_cs & {t.params["c"] for t in second.new_trials}

    reloaded = optuna.load_study(study_name="coincast-logistic-all", storage=storage_url(cfg))
    assert len(reloaded.trials) == 5
    values = [t.value for t in reloaded.trials]
    assert reloaded.best_value == max(values) == second.best_value
    assert reloaded.user_attrs["best_params"] == reloaded.best_params == second.best_params


def test_best_params_file_and_apply_make_the_next_model_use_them(tmp_path, tiny_data):
    cfg = _cfg(tmp_path, models=["logistic", "lightgbm"])
    outcomes = [
        run_study(cfg, "logistic", "all", HORIZONS, tiny_data, n_trials=1),
        run_study(cfg, "lightgbm", "all", HORIZONS, tiny_data, n_trials=1),
    ]
    save_tuned_params(cfg, outcomes)
    doc = json.loads(tuned_params_path(cfg).read_text())
    entry = doc["models"]["coincast"]["logistic"]
    assert entry["params"] == outcomes[0].best_params
    assert entry["study_name"] == "coincast-logistic-all"
    assert entry["n_trials"] == entry["n_trials_total"] == 1
    assert entry["best_value"] == pytest.approx(outcomes[0].best_value)
    assert entry["updated_at"].startswith("20")
    assert tuned_trial_count(cfg) == 2
    assert tuned_trial_count(cfg, "lightgbm") == 1

    tuned = apply_tuned_params(cfg)
    assert cfg.models.params == {}  # the input config is not changed
    best_c = outcomes[0].best_params["c"]
    x, y = tiny_data.x_train, tiny_data.train["up_15"].to_numpy()
    ok = ~np.isnan(y)
    logistic = make_model("logistic", tuned.models).fit(x[ok], y[ok])
    assert logistic.params()["C"] == best_c
    assert logistic.model_.get_params()["C"] == best_c

    lgb_best = outcomes[1].best_params
    lgbm = make_model("lightgbm", tuned.models).fit(x[ok][:2000], y[ok][:2000])
    fitted = lgbm.model_.get_params()
    assert fitted["num_leaves"] == lgb_best["num_leaves"]
    assert fitted["learning_rate"] == lgb_best["learning_rate"]
    # untuned defaults of the config survive the merge
    assert fitted["subsample_freq"] == cfg.models.lightgbm_params["subsample_freq"]

    off = cfg.model_copy(update={"tuning": cfg.tuning.model_copy(update={"apply": False})})
    assert apply_tuned_params(off).models.params == {}


def test_resumed_study_with_other_horizons_is_refused(tmp_path, tiny_data):
    cfg = _cfg(tmp_path)
    run_study(cfg, "logistic", "all", HORIZONS, tiny_data, n_trials=1)
    with pytest.raises(ConfigError, match=r"horizons \[15, 60\].*delete-study"):
        run_study(cfg, "logistic", "all", [15], tiny_data, n_trials=1)


def test_median_pruner_stops_trailing_trials_after_one_horizon(tmp_path, tiny_data):
    cfg = _cfg(tmp_path, pruner_startup_trials=1, pruner_warmup_steps=0)
    outcome = run_study(cfg, "logistic", "all", HORIZONS, tiny_data, n_trials=5)
    pruned = [t for t in outcome.new_trials if t.state == "PRUNED"]
    complete = [t for t in outcome.new_trials if t.state == "COMPLETE"]
    assert pruned and complete and outcome.n_pruned == len(pruned)
    # a pruned trial stopped after its first horizon; its value is that step's report
    assert all(list(t.intermediate) == [0] for t in pruned)
    assert all(t.value == t.intermediate[0] for t in pruned)
    assert all(len(t.intermediate) == 2 for t in complete)
    assert outcome.n_trials_total == 5


def test_every_search_space_samples_in_bounds_and_models_accept_the_draws(tiny_data):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    x, y = tiny_data.x_train[:400], tiny_data.train["up_15"].to_numpy()[:400]
    ok = ~np.isnan(y)
    for name, space in SEARCH_SPACES.items():
        trial = study.ask()
        params = suggest_params(trial, name)
        assert set(params) == set(space)
        for key, spec in space.items():
            if isinstance(spec, Choice):
                assert params[key] in spec.choices
            else:
                assert spec.low <= params[key] <= spec.high
                assert isinstance(params[key], int) == isinstance(spec, IntRange)
        if name not in tunable_models():
            continue
        model = make_model(name, trial_model_config(CoincastConfig().models, name, params))
        if not is_frame_model(model):
            assert model.fit(x[ok], y[ok]).predict_proba(x[:5]).shape == (5,)
    assert {"logistic", "lightgbm"} <= set(tunable_models())
    assert isinstance(SEARCH_SPACES["logistic"]["c"], FloatRange)


def test_horizon_groups_split_at_the_median():
    assert horizon_groups([60, 15], "all") == {"all": [15, 60]}
    hs = [15, 30, 60, 120, 240, 360, 720]
    assert horizon_groups(hs, "short_long") == {"short": [15, 30, 60, 120], "long": [240, 360, 720]}
    assert horizon_groups([15, 60], "short_long") == {"short": [15], "long": [60]}
    assert horizon_groups([15], "short_long") == {"short": [15]}
    with pytest.raises(ConfigError, match="'all' or 'short_long'"):
        horizon_groups(hs, "medium")


def test_untunable_models_and_bad_files_say_what_to_do(tmp_path, tiny_parts):
    with pytest.raises(ConfigError, match=r"Cannot tune \['nope'\].*Tunable models"):
        check_tunable(["logistic", "nope"])
    with pytest.raises(ConfigError, match="tuning.models is empty"):
        check_tunable([])
    assert check_tunable(["logistic", "logistic"]) == ["logistic"]

    cfg = _cfg(tmp_path)
    assert tuned_trial_count(cfg) == 0 and apply_tuned_params(cfg) is cfg  # no file yet
    tuned_params_path(cfg).write_text("{not json")
    with pytest.raises(ConfigError, match="unreadable.*delete it"):
        load_tuned_params(tuned_params_path(cfg))
    tuned_params_path(cfg).write_text("[]")
    with pytest.raises(ConfigError, match="lacks a 'models' mapping"):
        apply_tuned_params(cfg)

    empty_val = type(tiny_parts)(
        train=tiny_parts.train, val=tiny_parts.val.iloc[0:0], test=tiny_parts.test, gap_bars=60
    )
    with pytest.raises(DataContractError, match="validation part is empty"):
        prepare_tuning_data(
            empty_val, columns=list(FEATURE_COLUMNS), horizons=HORIZONS, max_train_rows=None
        )


def test_storage_url_defaults_to_the_home_and_can_point_elsewhere(tmp_path):
    assert storage_url(_cfg(tmp_path)) == f"sqlite:///{tmp_path.resolve() / 'optuna.db'}"
    other = "postgresql://u:secret@db/optuna"
    assert storage_url(_cfg(tmp_path, storage_url=other)) == other
    from ml_core.registry.tuning_log import redact_url

    assert redact_url(other) == "postgresql://u:***@db/optuna"
    assert redact_url(storage_url(_cfg(tmp_path))).endswith("optuna.db")
