"""ml_core.registry against a real sqlite MLflow in a temp folder (one db per module)."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import cloudpickle
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from sklearn.linear_model import LogisticRegression

from ml_core.config import timeframe_seconds
from ml_core.data.warehouse import Warehouse
from ml_core.errors import RegistryError
from ml_core.registry import (
    Decision,
    RegistryStore,
    TrackingContext,
    apply_decision,
    log_pipeline,
    mlflow_uri_scope,
    read_audit,
    rollback,
)
from ml_core.registry.pyfunc_model import normalize_candles

FEATURES = ["ret_1", "ret_3", "range_per_min"]


# ---------------------------------------------------------------- a small real pipeline
def make_candles(n_bars: int = 240, seed: int = 0) -> pd.DataFrame:
    """Two symbols of 1m candles, a seeded random walk."""
    rng = np.random.default_rng(seed)
    frames = []
    for i, symbol in enumerate(["BTCUSDT", "ETHUSDT"]):
        close = 100.0 * (i + 1) * np.exp(np.cumsum(rng.normal(0, 0.002, n_bars)))
        open_ = np.r_[close[0], close[:-1]]
        frames.append(
            pd.DataFrame(
                {
                    "symbol": symbol,
                    "timeframe": "1m",
                    "ts": pd.date_range("2024-01-01", periods=n_bars, freq="1min"),
                    "open": open_,
                    "high": np.maximum(open_, close) * (1 + rng.uniform(0, 1e-3, n_bars)),
                    "low": np.minimum(open_, close) * (1 - rng.uniform(0, 1e-3, n_bars)),
                    "close": close,
                    "volume": rng.uniform(1, 10, n_bars),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


class ToyPipeline:
    """Logistic regression per horizon on three candle features (uses ml_core code)."""

    feature_set = "toy"
    timeframe = "1m"
    lookback_bars = 3

    def __init__(self, horizons: tuple[int, ...] = (1, 3)) -> None:
        self.horizons = list(horizons)

    def _features(self, candles: pd.DataFrame) -> pd.DataFrame:
        c = candles.sort_values(["symbol", "ts"], kind="stable")
        log_close = np.log(c["close"]).groupby(c["symbol"])
        minutes = timeframe_seconds(self.timeframe) / 60  # needs ml_core at load time
        return c[["symbol", "ts", "close"]].assign(
            ret_1=log_close.diff(),
            ret_3=log_close.diff(3),
            range_per_min=(c["high"] - c["low"]) / c["close"] / minutes,
        )

    def fit(self, candles: pd.DataFrame) -> ToyPipeline:
        f = self._features(candles)
        self.models_ = {}
        for h in self.horizons:
            fwd = np.log(f["close"]).groupby(f["symbol"]).shift(-h) - np.log(f["close"])
            rows = f[FEATURES].notna().all(axis=1) & fwd.notna()
            y = (fwd[rows] > 0).astype(int)
            self.models_[h] = LogisticRegression().fit(f.loc[rows, FEATURES], y)
        return self

    def predict(self, candles: pd.DataFrame, latest_only: bool = False) -> pd.DataFrame:
        f = self._features(candles).dropna(subset=FEATURES)
        if latest_only:
            f = f.groupby("symbol", sort=False).tail(1)
        parts = [
            pd.DataFrame(
                {
                    "symbol": f["symbol"].to_numpy(),
                    "ts": f["ts"].to_numpy(),
                    "horizon": h,
                    "p_up": model.predict_proba(f[FEATURES])[:, 1],
                }
            )
            for h, model in self.models_.items()
        ]
        return pd.concat(parts, ignore_index=True)


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrackingContext]:
    """One migrated sqlite tracking db for the module (migrations cost seconds)."""
    root = tmp_path_factory.mktemp("mlflow")
    # Pickle the test pipeline by value so the logged model does not need this module.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield TrackingContext(
        f"sqlite:///{root / 'mlflow.db'}", (root / "artifacts").as_uri(), "registry-tests"
    )
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return make_candles()


@pytest.fixture(scope="module")
def pipeline(candles: pd.DataFrame) -> ToyPipeline:
    return ToyPipeline().fit(candles)


@pytest.fixture(scope="module")
def logged(tracking: TrackingContext, pipeline: ToyPipeline, candles: pd.DataFrame):
    """Version 1 of 'coincast-toy', logged once for the module; yields (info, run_id)."""
    with tracking.start_run("retrain", tags={"purpose": "test"}) as run_id:
        info = log_pipeline(
            pipeline,
            tracking=tracking,
            model_name="coincast-toy",
            input_example=candles.groupby("symbol").tail(10),
            metrics={"auc": 0.5312345678, "brier": float("nan")},
            tags={"candidate": "logistic"},
        )
    return info, run_id


@pytest.fixture
def fresh_store(tracking: TrackingContext, logged) -> Callable[[str, int], RegistryStore]:
    """A new registered model with ``n`` versions sharing the logged model (no re-logging)."""
    info, run_id = logged
    client = MlflowClient(tracking_uri=tracking.tracking_uri)

    def make(name: str, n_versions: int = 3) -> RegistryStore:
        client.create_registered_model(name)
        with mlflow_uri_scope(tracking.tracking_uri):  # MLflow resolves models:/m-... globally
            for _ in range(n_versions):
                client.create_model_version(name, source=info.source, run_id=run_id)
        return RegistryStore(tracking.tracking_uri, name)

    return make


@pytest.fixture
def warehouse(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path / "warehouse.duckdb")


# ---------------------------------------------------------------- tracking
def test_failed_block_marks_run_failed_and_reraises(tracking: TrackingContext) -> None:
    with pytest.raises(ValueError, match="boom"), tracking.start_run("doomed") as run_id:
        raise ValueError("boom")
    assert tracking.client.get_run(run_id).info.status == "FAILED"
    assert tracking.active_run_id is None


def test_run_logging_and_nesting(tracking: TrackingContext, tmp_path: Path) -> None:
    note = tmp_path / "note.txt"
    note.write_text("hello")
    with tracking.start_run("parent", tags={"timeframe": "1m"}) as parent_id:
        tracking.log_params({"horizons": [1, 3], "seed": 7})
        with tracking.start_run("candidate", nested=True) as child_id:
            tracking.log_metrics({"auc": 0.53, "ic": float("nan")}, step=2)
            tracking.set_tags({"candidate": "lightgbm"})
            tracking.log_dict({"a": 1}, "summary.json")
            tracking.log_text("text", "notes/readme.txt")
            tracking.log_artifact(note)
        assert tracking.run_id == parent_id
    client = tracking.client
    parent, child = client.get_run(parent_id), client.get_run(child_id)
    assert parent.info.status == child.info.status == "FINISHED"
    assert parent.data.params == {"horizons": "1,3", "seed": "7"}
    assert parent.data.tags["timeframe"] == "1m"
    assert child.data.tags["mlflow.parentRunId"] == parent_id
    assert child.data.metrics == {"auc": 0.53}  # NaN skipped
    assert client.get_metric_history(child_id, "auc")[0].step == 2
    paths = {a.path for a in client.list_artifacts(child_id)}
    assert {"summary.json", "notes", "note.txt"} <= paths
    assert parent.info.artifact_uri.startswith(tracking.artifact_location)


def test_logging_outside_a_run_is_a_clear_error(tracking: TrackingContext) -> None:
    with pytest.raises(RegistryError, match="No open MLflow run"):
        tracking.log_metrics({"auc": 0.5})
    with (
        pytest.raises(RegistryError, match="No open MLflow run"),
        tracking.start_run("orphan", nested=True),
    ):
        pass


def test_handles_pickle_without_their_clients(tracking: TrackingContext) -> None:
    store = RegistryStore(tracking.tracking_uri, "coincast-toy")
    ctx, st = pickle.loads(pickle.dumps((tracking, store)))
    assert (ctx.tracking_uri, ctx.artifact_location) == (
        tracking.tracking_uri,
        tracking.artifact_location,
    )
    assert ctx.experiment_id == tracking.experiment_id and ctx.active_run_id is None
    assert (st.tracking_uri, st.model_name) == (store.tracking_uri, "coincast-toy")


def test_uri_scope_restores_previous_uri(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    outer = f"sqlite:///{tmp_path / 'outer.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", outer)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    inner = f"sqlite:///{tmp_path / 'inner.db'}"
    with mlflow_uri_scope(inner):
        assert mlflow.get_tracking_uri() == inner
        assert mlflow.get_registry_uri() == inner
    assert os.environ["MLFLOW_TRACKING_URI"] == outer
    assert "MLFLOW_REGISTRY_URI" not in os.environ
    assert mlflow.get_tracking_uri() == outer
    # Two threads' scopes on one URI, left out of order: the URI stays until the last leaves.
    first, second = mlflow_uri_scope(inner), mlflow_uri_scope(inner)
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert mlflow.get_tracking_uri() == inner
    second.__exit__(None, None, None)
    assert mlflow.get_tracking_uri() == outer


# ---------------------------------------------------------------- logging and loading
def test_pyfunc_from_registry_predicts_like_the_pipeline(
    tracking: TrackingContext, logged, pipeline: ToyPipeline, candles: pd.DataFrame
) -> None:
    info, _ = logged
    store = RegistryStore(tracking.tracking_uri, "coincast-toy")
    store.set_alias("champion", info.version)
    with mlflow_uri_scope(tracking.tracking_uri):
        model = mlflow.pyfunc.load_model("models:/coincast-toy@champion")
    expected = pipeline.predict(candles)
    got = model.predict(candles)
    np.testing.assert_array_equal(got["p_up"].to_numpy(), expected["p_up"].to_numpy())
    np.testing.assert_array_equal(got["horizon"].to_numpy(), expected["horizon"].to_numpy())
    assert got["ts"].equals(expected["ts"].astype(got["ts"].dtype))

    latest = model.predict(candles, params={"latest_only": True})
    assert len(latest) == 2 * len(pipeline.horizons)
    np.testing.assert_array_equal(
        latest["p_up"].to_numpy(), pipeline.predict(candles, latest_only=True)["p_up"].to_numpy()
    )
    # ts as ISO strings or aware timestamps gives the same answers.
    as_text = candles.assign(ts=candles["ts"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
    tokyo = candles.assign(ts=candles["ts"].dt.tz_localize("UTC").dt.tz_convert("Asia/Tokyo"))
    for variant in (as_text, tokyo):
        np.testing.assert_array_equal(
            store.load_pyfunc("champion").predict(variant)["p_up"].to_numpy(),
            expected["p_up"].to_numpy(),
        )


def test_version_tags_run_link_and_raw_pipeline(
    tracking: TrackingContext, logged, pipeline: ToyPipeline, candles: pd.DataFrame
) -> None:
    info, run_id = logged
    store = RegistryStore(tracking.tracking_uri, "coincast-toy")
    assert info.version == "1" and info.run_id == run_id
    assert info.model_uri == "models:/coincast-toy/1"
    tags = store.version_tags("1")
    assert tags["coincast.feature_set"] == "toy"
    assert tags["coincast.timeframe"] == "1m"
    assert tags["coincast.horizons"] == "1,3"
    assert tags["coincast.lookback_bars"] == "3"
    assert json.loads(tags["coincast.metrics"]) == {"auc": 0.531235}  # NaN dropped
    assert tags["candidate"] == "logistic"
    run = tracking.client.get_run(run_id)
    assert run.data.tags["coincast.registered_version"] == "coincast-toy/1"
    assert [v.version for v in store.list_versions()] == ["1"]

    raw = store.load_pipeline("1")
    assert type(raw).__name__ == "ToyPipeline" and raw is not pipeline
    pd.testing.assert_frame_equal(raw.predict(candles), pipeline.predict(candles))


def test_logged_model_is_self_contained(
    tracking: TrackingContext,
    logged,
    pipeline: ToyPipeline,
    candles: pd.DataFrame,
    tmp_path: Path,
) -> None:
    """A fresh interpreter outside the repo loads it: ml_core comes from the model's code/."""
    info, _ = logged
    with mlflow_uri_scope(tracking.tracking_uri):
        model_dir = mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(tmp_path))
    assert (Path(model_dir) / "code" / "ml_core" / "config.py").is_file()
    reqs = (Path(model_dir) / "requirements.txt").read_text().split()
    assert any(r.startswith("scikit-learn==") for r in reqs)
    assert any(r.startswith("lightgbm==") for r in reqs)
    candles.to_parquet(tmp_path / "candles.parquet")
    script = (
        "import importlib.util, sys\n"
        "# hide an editable install of this repo (make install), as on a serving host\n"
        "sys.meta_path[:] = [f for f in sys.meta_path if '__editable__' not in "
        "(getattr(f, '__module__', '') or '') + type(f).__module__]\n"
        "import mlflow, pandas as pd\n"
        "assert importlib.util.find_spec('ml_core') is None, 'ml_core visible before load'\n"
        "model = mlflow.pyfunc.load_model(sys.argv[1])\n"
        "model.predict(pd.read_parquet(sys.argv[2])).to_parquet(sys.argv[3])\n"
        "import ml_core; print(ml_core.__file__)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHONPATH", "MLFLOW_"))}
    done = subprocess.run(
        [sys.executable, "-c", script, model_dir, "candles.parquet", "out.parquet"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().startswith(str(Path(model_dir).resolve() / "code" / "ml_core"))
    got = pd.read_parquet(tmp_path / "out.parquet")
    np.testing.assert_array_equal(got["p_up"].to_numpy(), pipeline.predict(candles)["p_up"])


def test_log_pipeline_rejects_an_incomplete_pipeline(
    tracking: TrackingContext, candles: pd.DataFrame
) -> None:
    class NoAttrs:
        def predict(self, candles: pd.DataFrame, latest_only: bool = False) -> pd.DataFrame:
            return candles

    with tracking.start_run("bad"), pytest.raises(RegistryError, match="lacks .*feature_set"):
        log_pipeline(NoAttrs(), tracking=tracking, model_name="x", input_example=candles)


def test_normalize_candles_gives_naive_utc_without_touching_input() -> None:
    naive = pd.DataFrame({"ts": pd.to_datetime(["2024-01-01 00:00", "2024-01-01 00:01"])})
    aware = naive.assign(ts=naive["ts"].dt.tz_localize("UTC").dt.tz_convert("US/Eastern"))
    text = naive.assign(ts=["2024-01-01T01:00:00+01:00", "2024-01-01T00:01:00Z"])
    for frame in (naive, aware, text):
        before = frame.copy()
        out = normalize_candles(frame)
        assert out["ts"].dt.tz is None
        assert list(out["ts"]) == list(naive["ts"])
        pd.testing.assert_frame_equal(frame, before)


# ---------------------------------------------------------------- aliases and errors
def test_missing_model_alias_and_version_raise_registry_errors(
    tracking: TrackingContext, fresh_store: Callable[[str, int], RegistryStore]
) -> None:
    absent = RegistryStore(tracking.tracking_uri, "never-registered")
    assert absent.get_alias("champion") is None and absent.aliases() == {}
    with pytest.raises(RegistryError, match="No registered model 'never-registered'"):
        absent.load_pyfunc("champion")
    store = fresh_store("errors", 1)
    with pytest.raises(RegistryError, match="No champion for model 'errors' yet.*retrain"):
        store.load_pipeline("champion")
    with pytest.raises(RegistryError, match="has no version '9' \\(versions: 1\\)"):
        store.set_alias("champion", "9")
    assert store.delete_alias("challenger") is False


# ---------------------------------------------------------------- promotion and rollback
def _decide(store: RegistryStore, version: str, promote: bool, **metrics: float) -> Decision:
    return Decision(
        promote=promote,
        reason=f"auc delta {metrics.get('delta', 0):+.3f}",
        challenger_version=version,
        champion_before=store.aliases().get("champion"),
        metrics=metrics,
    )


def test_promote_twice_then_reject(
    tracking: TrackingContext,
    fresh_store: Callable[[str, int], RegistryStore],
    warehouse: Warehouse,
) -> None:
    store = fresh_store("promo", 3)
    with tracking.start_run("retrain-1") as run_id:
        pass
    row = apply_decision(store, warehouse, _decide(store, "1", True, delta=0.01), run_id=run_id)
    assert store.aliases() == {"challenger": "1", "champion": "1"}
    assert row["action"] == "promote" and row["champion_before"] is None
    assert row["champion_after"] == "1" and row["run_id"] == run_id
    assert store.version_tags("1")["coincast.decision"] == "promote"
    assert tracking.client.get_run(run_id).data.tags["coincast.challenger_version"] == "1"

    apply_decision(store, warehouse, _decide(store, "2", True, delta=0.004, p_value=0.01))
    assert store.aliases() == {"challenger": "2", "champion": "2", "previous": "1"}

    row = apply_decision(store, warehouse, _decide(store, "3", False, delta=-0.002))
    assert store.aliases() == {"challenger": "3", "champion": "2", "previous": "1"}
    assert (row["action"], row["champion_before"], row["champion_after"]) == ("reject", "2", "2")
    assert store.version_tags("3")["coincast.reason"] == "auc delta -0.002"

    audit = read_audit(warehouse, "promo")
    assert list(audit["action"]) == ["reject", "promote", "promote"]
    assert list(audit["challenger_version"]) == ["3", "2", "1"]
    assert json.loads(audit["metrics_json"].iloc[1]) == {"delta": 0.004, "p_value": 0.01}
    assert set(audit["actor"]) == {"retrain"}
    assert len(read_audit(warehouse, "promo", limit=2)) == 2
    assert read_audit(warehouse, "other-model").empty


def test_retrying_a_decision_returns_its_audit_row(
    fresh_store: Callable[[str, int], RegistryStore], warehouse: Warehouse
) -> None:
    store = fresh_store("retry", 2)
    apply_decision(store, warehouse, _decide(store, "1", True))
    decision = _decide(store, "2", True, delta=0.01)
    first = apply_decision(store, warehouse, decision)
    again = apply_decision(store, warehouse, decision)  # e.g. a Prefect task retry
    assert again["id"] == first["id"] and again["created_at"] == first["created_at"]
    assert store.aliases() == {"challenger": "2", "champion": "2", "previous": "1"}
    assert len(read_audit(warehouse, "retry")) == 2


def test_stale_decision_is_refused(
    fresh_store: Callable[[str, int], RegistryStore], warehouse: Warehouse
) -> None:
    store = fresh_store("stale", 2)
    first = _decide(store, "1", True)
    second = _decide(store, "2", True)  # both made while there was no champion
    apply_decision(store, warehouse, first)
    with pytest.raises(RegistryError, match="champion is now '1'"):
        apply_decision(store, warehouse, second)
    assert store.aliases()["champion"] == "1"
    assert len(read_audit(warehouse, "stale")) == 1


def test_rollback_moves_champion_back_and_is_audited(
    fresh_store: Callable[[str, int], RegistryStore], warehouse: Warehouse
) -> None:
    store = fresh_store("rollback", 3)
    for version in ("1", "2"):
        apply_decision(store, warehouse, _decide(store, version, True))
    row = rollback(
        store,
        warehouse,
        reason="realized auc 0.47 < 0.50",
        actor="monitor",
        metrics={"realized_auc": 0.47, "bound": 0.5},
    )
    assert store.aliases() == {"challenger": "2", "champion": "1"}  # previous consumed
    assert (row["action"], row["champion_before"], row["champion_after"]) == ("rollback", "2", "1")
    assert store.version_tags("2")["coincast.decision"] == "rollback"
    with pytest.raises(RegistryError, match="no 'previous' alias .*rollback --to VERSION"):
        rollback(store, warehouse, reason="again", actor="monitor")
    rollback(store, warehouse, to_version="3", reason="manual", actor="cli")
    assert store.aliases()["champion"] == "3"
    audit = read_audit(warehouse, "rollback")
    assert list(audit["action"][:2]) == ["rollback", "rollback"]
    assert json.loads(audit["metrics_json"].iloc[1]) == {"bound": 0.5, "realized_auc": 0.47}
    assert audit["actor"].iloc[0] == "cli"


def test_rollback_without_champion_is_a_clear_error(
    fresh_store: Callable[[str, int], RegistryStore], warehouse: Warehouse
) -> None:
    store = fresh_store("no-champion", 1)
    with pytest.raises(RegistryError, match="No champion for model 'no-champion'"):
        rollback(store, warehouse, reason="x", actor="monitor")


@pytest.mark.parametrize("target", ["pyfunc_model.py", "pipeline.pkl"])
def test_tampered_artifacts_are_refused_before_any_of_their_code_runs(
    tracking: TrackingContext,
    pipeline: ToyPipeline,
    candles: pd.DataFrame,
    tmp_path: Path,
    target: str,
) -> None:
    from urllib.parse import urlparse

    from ml_core.registry.store import TAG_ARTIFACT_DIGEST

    with tracking.start_run("retrain") as _:
        info = log_pipeline(
            pipeline,
            tracking=tracking,
            model_name=f"coincast-tamper-{target.split('.')[-1]}",
            input_example=candles.groupby("symbol").tail(10),
        )
    assert len(info.tags[TAG_ARTIFACT_DIGEST]) == 64
    store = RegistryStore(tracking.tracking_uri, info.model_name)
    store.load_pyfunc(info.version)  # untouched: loads

    client = MlflowClient(tracking_uri=tracking.tracking_uri)
    model_id = info.source.rsplit("/", 1)[-1]  # models:/m-<id>
    where = Path(urlparse(client.get_logged_model(model_id).artifact_location).path)
    marker = tmp_path / "ran"
    targets = list(where.rglob(target))
    assert targets, sorted(p.name for p in where.rglob("*"))[:20]
    for path in targets:  # what an attacker with write access to the store would do
        if target.endswith(".py"):
            with open(path, "a") as fh:
                fh.write(f"\nopen({str(marker)!r}, 'w').write('ran')\n")
        else:  # a pickle whose loading runs a command
            import cloudpickle

            class Evil:
                def __reduce__(self):
                    return (open, (str(marker), "w"))

            path.write_bytes(cloudpickle.dumps(Evil()))
    with pytest.raises(RegistryError, match=r"changed since they were registered"):
        store.load_pyfunc(info.version)
    assert not marker.exists()


def test_deleted_artifacts_are_reported_by_status_and_refused_with_guidance(
    tracking: TrackingContext, pipeline: ToyPipeline, candles: pd.DataFrame
) -> None:
    import shutil
    from urllib.parse import urlparse

    with tracking.start_run("retrain") as _:
        info = log_pipeline(
            pipeline,
            tracking=tracking,
            model_name="coincast-gone",
            input_example=candles.groupby("symbol").tail(10),
        )
    store = RegistryStore(tracking.tracking_uri, "coincast-gone")
    assert store.missing_artifacts(info.version) is None
    client = MlflowClient(tracking_uri=tracking.tracking_uri)
    where = urlparse(client.get_logged_model(info.source.rsplit("/", 1)[-1]).artifact_location)
    shutil.rmtree(where.path)
    assert "artifacts are gone" in store.missing_artifacts(info.version)
    with pytest.raises(RegistryError, match=r"Cannot load coincast-gone v1: .*rollback --to"):
        store.load_pyfunc(info.version)


def test_a_copied_home_reads_and_writes_its_own_artifacts(
    tracking: TrackingContext,  # keeps this module's pipeline pickled by value
    pipeline: ToyPipeline,
    candles: pd.DataFrame,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import shutil
    from urllib.parse import urlparse

    home = tmp_path / "home"
    uri = f"sqlite:///{home / 'mlflow.db'}"
    original = TrackingContext(uri, (home / "mlartifacts").as_uri(), "coincast")
    with original.start_run("retrain"):
        info = log_pipeline(
            pipeline,
            tracking=original,
            model_name="coincast-moved",
            input_example=candles.groupby("symbol").tail(10),
        )
    expected = RegistryStore(uri, "coincast-moved").load_pyfunc(info.version).predict(candles)

    backup = tmp_path / "backup"
    shutil.copytree(home, backup)
    shutil.rmtree(home)  # the original home is gone: only the copy remains
    moved_uri = f"sqlite:///{backup / 'mlflow.db'}"
    with caplog.at_level("WARNING", logger="ml_core.registry.tracking"):
        store = RegistryStore(moved_uri, "coincast-moved")
    assert "copied or moved" in caplog.text
    pd.testing.assert_frame_equal(store.load_pyfunc(info.version).predict(candles), expected)
    assert store.missing_artifacts(info.version) is None

    copy = TrackingContext(moved_uri, (backup / "mlartifacts").as_uri(), "coincast")
    with copy.start_run("after the move") as run_id:
        copy.log_text("hello", "note.txt")
    written = Path(urlparse(copy.client.get_run(run_id).info.artifact_uri).path)
    assert written.is_relative_to(backup) and (written / "note.txt").read_text() == "hello"
    assert not home.exists()
