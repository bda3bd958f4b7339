"""The tune flow on a tiny real home: studies, tuned params file, MLflow runs, artifact.

Then the train flow's tuning tasks on the same home merge the tuned parameters
and record them. Real Prefect (session test server), DuckDB, Optuna sqlite and
MLflow sqlite in a temp folder.
"""

from __future__ import annotations

import json

import optuna
import pytest

from ml_core.config import load_config
from ml_core.data.ingest import ingest_paths
from ml_core.data.warehouse import Warehouse

pytestmark = pytest.mark.slow

SYMBOLS = ["BTC/USDT:USDT", "DOGE/USDT:USDT"]
N_BARS = 4 * 1440


@pytest.fixture(scope="module")
def tiny_home(tmp_path_factory, sample_1m):
    home = tmp_path_factory.mktemp("tune-home")
    subset = sample_1m[sample_1m["symbol"].isin(SYMBOLS)].groupby("symbol").head(N_BARS)
    data = home / "candles_1m.parquet"
    subset.to_parquet(data, index=False)
    cfg_path = home / "config.json"
    cfg_path.write_text(
        json.dumps(
            {
                "home": str(home),
                "labels": {"horizons": {"1m": [15, 60]}},
                "models": {"candidates": ["logistic"]},
                "tuning": {"models": ["lightgbm"], "max_train_rows": 2000},
                "regime": {
                    "n_iter": 30,
                    "return_column": "logret_1",
                    "vol_column": "volatility_60",
                },
            }
        )
    )
    cfg = load_config(cfg_path)
    ingest_paths(Warehouse(cfg.warehouse_path), [data], cfg.quality)
    return home, cfg_path


def _artifact(key: str):
    from prefect import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterKey,
        FlowRunFilter,
        TaskRunFilter,
    )
    from prefect.client.schemas.sorting import ArtifactSort

    # prefect 3.8.8's client sends None for every argument left out: pass them all
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
            flow_run_filter=FlowRunFilter(),
            task_run_filter=TaskRunFilter(),
            sort=ArtifactSort.CREATED_DESC,
            limit=5,
            offset=0,
        )
    return found[0] if found else None


def _apply_and_record(home: str, cfg_path: str, run_id: str):
    """What the train flow does with tuned params: apply first, record on its run later."""
    from prefect import flow

    from flows.params import RunParams
    from tasks.tuning import apply_tuning, record_applied_tuning

    @flow(name="apply-tuned-params-check")
    def check() -> tuple:
        cfg, applied = apply_tuning(RunParams(home=home, config_path=cfg_path).load())
        record_applied_tuning(cfg, applied, run_id)
        return cfg, applied

    return check()


def test_tune_flow_persists_logs_publishes_and_train_applies(prefect_harness, tiny_home):
    from mlflow.tracking import MlflowClient
    from typer.testing import CliRunner

    from coincast_cli import app
    from ml_core.models.base import make_model
    from ml_core.models.tuning import storage_url, tuned_params_path

    home, cfg_path = tiny_home
    cfg = load_config(cfg_path)
    args = ["tune", "--home", str(home), "--config", str(cfg_path), "-c", "logistic", "-n", "2"]
    # a wide terminal: rich would otherwise truncate table cells with an ellipsis
    result = CliRunner(env={"COLUMNS": "250"}).invoke(app, args)
    assert result.exit_code == 0, result.output
    output = result.output.replace("\n", "")  # rich may wrap long paths
    assert "coincast-logistic-all" in output and "tuned_params.json" in output

    # the study persisted in <home>/optuna.db with the trial budget of this run
    assert storage_url(cfg).endswith(str(home / "optuna.db"))
    stored = optuna.load_study(study_name="coincast-logistic-all", storage=storage_url(cfg))
    assert len(stored.trials) == 2
    assert stored.user_attrs["best_params"] == stored.best_params

    # best params in the tuned-params file
    doc = json.loads(tuned_params_path(cfg).read_text())
    entry = doc["models"]["coincast"]["logistic"]
    assert entry["params"] == stored.best_params and entry["n_trials_total"] == 2

    # MLflow: parent 'tune' run -> study run -> one run per trial
    client = MlflowClient(tracking_uri=cfg.tracking_uri)
    exp = client.get_experiment_by_name(cfg.tuning.experiment_name)
    runs = client.search_runs([exp.experiment_id])
    (parent,) = [r for r in runs if r.info.run_name == "tune"]
    assert parent.info.run_id in output
    assert parent.data.params["candidates"] == "logistic"
    study_runs = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert [r.info.run_name for r in study_runs] == ["coincast-logistic-all"]
    study_run = study_runs[0]
    assert study_run.data.metrics["n_trials_total"] == 2
    assert float(study_run.data.params["best.c"]) == pytest.approx(stored.best_params["c"])
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == study_run.info.run_id]
    assert len(trials) == 2
    for run in trials:
        number = int(run.data.tags["optuna.trial_number"])
        trial = stored.trials[number]
        assert float(run.data.params["c"]) == pytest.approx(trial.params["c"])
        assert run.data.metrics["value"] == pytest.approx(trial.value)
        assert run.data.tags["optuna.state"] == "COMPLETE" and run.info.status == "FINISHED"

    # Prefect table artifact of the best params
    artifact = _artifact("tuning-coincast")
    assert artifact is not None and artifact.type == "table"
    rows = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
    assert rows[0]["study"] == "coincast-logistic-all"
    assert json.loads(rows[0]["best_params"]) == stored.best_params

    # the next train's first task merges them into its config and records them on its run
    # (the train flow runs both tasks: tests/e2e runs it whole)
    train_run = client.create_run(exp.experiment_id, run_name="train")
    tuned_cfg, applied = _apply_and_record(str(home), str(cfg_path), train_run.info.run_id)
    assert applied == {"logistic": stored.best_params}
    assert make_model("logistic", tuned_cfg.models).c == stored.best_params["c"]
    logged = client.get_run(train_run.info.run_id).data.params
    assert logged["tuned_params_applied"] == "logistic"
    assert float(logged["tuned.logistic.c"]) == stored.best_params["c"]


def test_tune_cli_names_untunable_models_without_a_traceback(tmp_path):
    from typer.testing import CliRunner

    from coincast_cli import app

    result = CliRunner().invoke(app, ["tune", "--home", str(tmp_path), "-c", "nope"])
    assert result.exit_code == 1
    assert "Cannot tune ['nope']" in result.output and "lightgbm" in result.output
    assert "Traceback" not in result.output
