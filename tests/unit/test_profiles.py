"""Settings profiles: 'default' keeps make run quick, 'full' fits the whole zoo."""

from __future__ import annotations

import pytest

from ml_core.config import load_config, profile_names
from ml_core.errors import ConfigError
from ml_core.models.base import model_names
from ml_core.models.regression import return_model_names


def test_full_profile_names_every_model_and_regressor_of_the_zoo():
    cfg = load_config(profile="full")
    assert cfg.profile == "full"
    assert sorted(cfg.models.candidates) == model_names()
    assert sorted(cfg.models.regressors) == return_model_names()


def test_default_profile_is_the_quick_one():
    cfg = load_config()
    assert cfg.profile == "default"
    assert cfg.models.candidates == ["logistic", "lightgbm"]


def test_explicit_settings_win_over_the_profile(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("profile: full\nmodels:\n  candidates: [logistic, xgboost]\n")
    cfg = load_config(path)
    assert cfg.models.candidates == ["logistic", "xgboost"]
    assert "lasso" in cfg.models.regressors  # the rest of the profile still applies


def test_profile_from_the_environment(monkeypatch):
    monkeypatch.setenv("COINCAST_PROFILE", "full")
    assert "transformer" in load_config().models.candidates


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(ConfigError, match="default") as err:
        load_config(profile="fast")
    assert "full" in str(err.value)
    assert profile_names() == ["default", "full"]


def test_retrain_sub_flows_keep_every_run_setting(tmp_path):
    from flows.params import RetrainParams, RunParams

    params = RetrainParams(
        home=str(tmp_path),
        timeframe="1h",
        profile="full",
        ingest_paths=["x"],
        exclude_symbols=["WIF/USDT"],
    )
    run = params.run_params()
    assert type(run) is RunParams
    assert run.model_dump() == {
        "home": str(tmp_path),
        "config_path": None,
        "timeframe": "1h",
        "profile": "full",
        "exclude_symbols": ["WIF/USDT"],
    }
    cfg = run.load()
    assert "transformer" in cfg.models.candidates
    assert cfg.data.exclude_symbols == ["WIF/USDT"] and cfg.data.timeframe == "1h"


def test_the_retrain_after_a_rollback_keeps_the_monitors_run_settings(tmp_path):
    """monitor.retrain_on_rollback: a `full`-profile monitor's retrain fits the full zoo
    (it dropped the profile and the excluded symbols before)."""
    from flows.params import MonitorParams, RetrainParams

    monitor = MonitorParams(
        home=str(tmp_path), timeframe="1h", profile="full", exclude_symbols=["WIF/USDT"]
    )
    retrain = RetrainParams(**monitor.shared().model_dump())  # what flows/monitor.py starts
    assert retrain.shared() == monitor.shared()
    cfg = retrain.load()
    assert "transformer" in cfg.models.candidates and cfg.data.exclude_symbols == ["WIF/USDT"]


@pytest.mark.parametrize(
    "override",
    [
        {"evaluation": {"fee_bps": float("inf")}},
        {"quality": {"max_price": float("nan")}},
        {"registry": {"gate": {"refresh_margin": float("-inf")}}},
    ],
)
def test_non_finite_settings_are_refused_naming_the_field(tmp_path, override) -> None:
    from ml_core.config import load_config
    from ml_core.errors import ConfigError

    section = next(iter(override))
    with pytest.raises(ConfigError, match=rf"(?s){section}\..*finite number"):
        load_config(None, home=tmp_path, **override)


def test_passwords_in_uris_are_redacted() -> None:
    from ml_core.config import redact_uri

    assert (
        redact_uri("postgresql://cc:s3cret@db:5432/mlflow") == "postgresql://cc:***@db:5432/mlflow"
    )
    assert (
        redact_uri("sqlite:////home/u/.coincast/mlflow.db")
        == "sqlite:////home/u/.coincast/mlflow.db"
    )
