"""Log pipelines as self-contained pyfunc models and address them by alias.

``log_pipeline`` pickles the fitted pipeline, logs it with the "models from
code" file ``pyfunc_model.py`` and the whole ``ml_core`` package as
``code_paths`` (so the model carries the code that builds features and
predicts), pins its pip requirements to the installed versions and registers
a new version. ``RegistryStore`` reads and moves aliases (``champion``,
``challenger``, ``previous``) and loads versions back.

Example::

    with tracking.start_run("retrain"):
        info = log_pipeline(pipe, tracking=tracking, model_name="coincast",
                            input_example=candles.tail(500), metrics={"auc": 0.53})
    store = RegistryStore(cfg.tracking_uri, "coincast")
    store.load_pyfunc("champion").predict(candles, params={"latest_only": True})
"""

from __future__ import annotations

import atexit
import hashlib
import importlib.metadata
import json
import logging
import math
import shutil
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cloudpickle
import mlflow
import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature, infer_signature
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode
from mlflow.types.schema import AnyType, ColSpec, Schema

from ml_core.errors import RegistryError
from ml_core.registry.pyfunc_model import normalize_candles
from ml_core.registry.tracking import (
    TrackingContext,
    make_client,
    mlflow_uri_scope,
    unreadable_registry,
)

log = logging.getLogger(__name__)

_PYFUNC_FILE = Path(__file__).with_name("pyfunc_model.py")
_ML_CORE_DIR = Path(__file__).resolve().parents[1]
PIPELINE_FILE = "pipeline.pkl"
LOGGED_MODEL_NAME = "pipeline"

#: Distributions the logged model needs, pinned to the versions installed here.
REQUIRED_DISTRIBUTIONS = (
    "mlflow",
    "pandas",
    "numpy",
    "duckdb",
    "scikit-learn",
    "lightgbm",
    "xgboost-cpu",
    "pyarrow",
    "cloudpickle",
    "pydantic",
    "pydantic-settings",
    "torch",
)
_PIPELINE_ATTRS = ("feature_set", "timeframe", "horizons", "lookback_bars")

TAG_FEATURE_SET = "coincast.feature_set"
TAG_TIMEFRAME = "coincast.timeframe"
#: SHA-256 of the logged model's files, checked before every load (``artifact_digest``).
TAG_ARTIFACT_DIGEST = "coincast.artifact_sha256"
TAG_HORIZONS = "coincast.horizons"
TAG_LOOKBACK = "coincast.lookback_bars"
TAG_METRICS = "coincast.metrics"


@dataclass(frozen=True)
class ModelVersionInfo:
    """One registered version: ``model_uri`` is ``models:/NAME/VERSION``."""

    model_name: str
    version: str
    run_id: str | None
    model_uri: str
    source: str
    aliases: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_mlflow(cls, mv: ModelVersion) -> ModelVersionInfo:
        return cls(
            model_name=mv.name,
            version=str(mv.version),
            run_id=mv.run_id or None,
            model_uri=f"models:/{mv.name}/{mv.version}",
            source=mv.source,
            aliases=tuple(sorted(mv.aliases or ())),
            tags=dict(mv.tags or {}),
        )


def pinned_requirements(extra: Sequence[str] = ()) -> list[str]:
    """``name==version`` for each of ``REQUIRED_DISTRIBUTIONS`` installed here, plus ``extra``."""
    pins = []
    for dist in REQUIRED_DISTRIBUTIONS:
        try:
            pins.append(f"{dist}=={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            log.warning("distribution %s is not installed; left out of pip_requirements", dist)
    return pins + list(extra)


def log_pipeline(
    pipeline: Any,
    *,
    tracking: TrackingContext,
    model_name: str,
    input_example: pd.DataFrame,
    metrics: Mapping[str, float] | None = None,
    tags: Mapping[str, Any] | None = None,
    extra_pip_requirements: Sequence[str] = (),
) -> ModelVersionInfo:
    """Log ``pipeline`` as a pyfunc into the open run of ``tracking`` and register it.

    Call inside ``with tracking.start_run(...)``. ``input_example`` is a small
    candle frame (enough bars per symbol for ``lookback_bars``); it fixes the
    signature and MLflow replays it through the loaded model as a check.
    Returns the new version; its tags carry feature set, timeframe, horizons,
    lookback and the ``metrics`` summary.
    """
    _check_pipeline(pipeline)
    run_id = tracking.run_id
    example = normalize_candles(input_example)
    output = pipeline.predict(example)
    if len(output) == 0:
        raise RegistryError(
            f"input_example ({len(example)} rows) gives no predictions from "
            f"{type(pipeline).__name__}; pass at least lookback_bars + 1 = "
            f"{int(pipeline.lookback_bars) + 1} consecutive bars per symbol."
        )
    signature = _signature(example, output)
    version_tags = {
        **pipeline_tags(pipeline, metrics),
        **{k: str(v) for k, v in (tags or {}).items()},
    }
    with tempfile.TemporaryDirectory(prefix="coincast-pipeline-") as tmp:
        pkl = Path(tmp) / PIPELINE_FILE
        with open(pkl, "wb") as fh:
            cloudpickle.dump(pipeline, fh)
        with mlflow_uri_scope(tracking.tracking_uri):
            info = mlflow.pyfunc.log_model(
                name=LOGGED_MODEL_NAME,
                python_model=str(_PYFUNC_FILE),
                artifacts={"pipeline": str(pkl)},
                code_paths=[str(_ML_CORE_DIR)],
                pip_requirements=pinned_requirements(extra_pip_requirements),
                signature=signature,
                input_example=example,
                tags=version_tags,
            )
    with mlflow_uri_scope(tracking.tracking_uri), tempfile.TemporaryDirectory() as copy:
        logged = mlflow.artifacts.download_artifacts(info.model_uri, dst_path=copy)
        version_tags[TAG_ARTIFACT_DIGEST] = artifact_digest(Path(logged))
    mv = _register(tracking, model_name, info.model_uri, info.model_id, run_id, version_tags)
    client = tracking.client
    client.set_tag(run_id, "coincast.registered_version", f"{model_name}/{mv.version}")
    log.info("registered %s version %s from run %s", model_name, mv.version, run_id)
    return ModelVersionInfo.from_mlflow(client.get_model_version(model_name, mv.version))


def _gone(info: ModelVersionInfo, why: str) -> str:
    return (
        f"Cannot load {info.model_name} v{info.version}: {why}. Restore the artifact store "
        "(<home>/mlartifacts) from a backup, `coincast rollback --to` a version whose files "
        "exist, or retrain."
    )


def _private_dir() -> str:
    """A fresh folder for one verified model copy, removed when the process exits (the
    loaded model may import its code from there until then)."""
    path = tempfile.mkdtemp(prefix="coincast-model-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


#: Files of a logged model that change after logging and are not loaded as code or data:
#: MLflow writes the registration's name and version; the interpreter writes bytecode.
_UNSIGNED = frozenset({"registered_model_meta"})


def artifact_digest(model_dir: Path) -> str:
    """SHA-256 over every file of a logged model (relative path and content, sorted):
    the pickle, the pyfunc code and the ml_core copy the loader runs."""
    digest = hashlib.sha256()
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(model_dir).as_posix()
        if "__pycache__" in rel or rel in _UNSIGNED:
            continue
        digest.update(rel.encode() + b"\0")
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def _register(
    tracking: TrackingContext,
    model_name: str,
    source: str,
    model_id: str | None,
    run_id: str,
    tags: Mapping[str, str],
) -> ModelVersion:
    """Create the registered model if needed and a version from the logged model."""
    client = tracking.client
    try:
        client.create_registered_model(model_name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    # MLflow 3.17 resolves a 'models:/m-...' source through the *global* tracking
    # URI (sqlalchemy_store.create_model_version), so scope it to ours.
    with mlflow_uri_scope(tracking.tracking_uri):
        return client.create_model_version(
            name=model_name, source=source, run_id=run_id, tags=dict(tags), model_id=model_id
        )


def _signature(example: pd.DataFrame, output: pd.DataFrame) -> ModelSignature:
    """Signature inferred from the example, with ``ts`` left open (``Any``).

    MLflow would otherwise reject ISO strings and aware timestamps before
    ``predict`` can convert them to naive UTC; the params schema is what lets
    callers pass ``latest_only``.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ii]nteger column", category=UserWarning)
        sig = infer_signature(example, output, params={"latest_only": False})
    inputs = [ColSpec(AnyType(), "ts") if spec.name == "ts" else spec for spec in sig.inputs.inputs]
    return ModelSignature(inputs=Schema(inputs), outputs=sig.outputs, params=sig.params)


def pipeline_tags(pipeline: Any, metrics: Mapping[str, float] | None = None) -> dict[str, str]:
    """Version tags describing ``pipeline`` and its evaluation ``metrics``."""
    summary = {k: round(float(v), 6) for k, v in (metrics or {}).items() if math.isfinite(float(v))}
    return {
        TAG_FEATURE_SET: str(pipeline.feature_set),
        TAG_TIMEFRAME: str(pipeline.timeframe),
        TAG_HORIZONS: ",".join(str(h) for h in pipeline.horizons),
        TAG_LOOKBACK: str(pipeline.lookback_bars),
        TAG_METRICS: json.dumps(summary, sort_keys=True),
    }


def _check_pipeline(pipeline: Any) -> None:
    missing = [a for a in ("predict", *_PIPELINE_ATTRS) if not hasattr(pipeline, a)]
    if missing:
        raise RegistryError(
            f"Cannot log {type(pipeline).__name__}: it lacks {missing}. A pipeline needs "
            f"predict(candles, latest_only=False) and attributes {list(_PIPELINE_ATTRS)}."
        )


def registered_model_names(tracking_uri: str) -> list[str]:
    """Names of every registered model at ``tracking_uri``, sorted."""
    client = make_client(tracking_uri)
    try:
        return sorted(m.name for m in client.search_registered_models(max_results=1000))
    except MlflowException:
        raise
    except Exception as exc:  # noqa: BLE001 - a broken store raises driver errors
        raise unreadable_registry(tracking_uri, exc) from exc


class RegistryStore:
    """Aliases, tags and loading for one registered model at one tracking URI."""

    def __init__(self, tracking_uri: str, model_name: str) -> None:
        self.tracking_uri = tracking_uri
        self.model_name = model_name
        self.client = make_client(tracking_uri)

    def __repr__(self) -> str:
        return f"RegistryStore({self.tracking_uri!r}, {self.model_name!r})"

    def __getstate__(self) -> dict[str, str]:
        """Picklable (e.g. as a task argument): the client is rebuilt on load."""
        return {"tracking_uri": self.tracking_uri, "model_name": self.model_name}

    def __setstate__(self, state: dict[str, str]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    # ---- reading ----
    def exists(self) -> bool:
        """Whether the registered model has been created (first ``log_pipeline``)."""
        return self._registered_model(required=False) is not None

    def aliases(self) -> dict[str, str]:
        """Alias -> version; empty when the model is not registered yet."""
        rm = self._registered_model(required=False)
        return {k: str(v) for k, v in sorted((rm.aliases if rm else {}).items())}

    def get_alias(self, alias: str) -> ModelVersionInfo | None:
        """The version ``alias`` points to, or None (also when no model is registered)."""
        version = self.aliases().get(alias)
        return None if version is None else self.get_version(version)

    def get_version(self, version: str) -> ModelVersionInfo:
        """One version; ``RegistryError`` naming the known versions when absent."""
        self._registered_model(required=True)
        try:
            return ModelVersionInfo.from_mlflow(
                self.client.get_model_version(self.model_name, str(version))
            )
        except MlflowException as exc:
            if not _is_not_found(exc):
                raise
        known = ", ".join(v.version for v in self.list_versions()) or "none"
        raise RegistryError(
            f"Model {self.model_name!r} has no version {version!r} (versions: {known}). "
            "Use `coincast models` to list them."
        )

    def resolve(self, alias_or_version: str) -> ModelVersionInfo:
        """A version given its number ('3') or an alias ('champion'); raises if absent."""
        ref = str(alias_or_version)
        if ref.isdigit():
            return self.get_version(ref)
        self._registered_model(required=True)
        info = self.get_alias(ref)
        if info is None:
            known = ", ".join(f"{a}->v{v}" for a, v in self.aliases().items()) or "none"
            raise RegistryError(
                f"No {ref} for model {self.model_name!r} yet (aliases: {known}). "
                + (
                    "Run `coincast retrain` first."
                    if ref in ("champion", "challenger")
                    else "Pass an existing alias or a version number."
                )
            )
        return info

    def list_versions(self) -> list[ModelVersionInfo]:
        """Every version, oldest first; empty when the model is not registered."""
        found = self.client.search_model_versions(f"name = '{self.model_name}'")
        infos = [ModelVersionInfo.from_mlflow(mv) for mv in found]
        return sorted(infos, key=lambda i: int(i.version))

    def version_tags(self, version: str) -> dict[str, str]:
        """Tags of one version."""
        return dict(self.get_version(version).tags)

    # ---- writing ----
    def set_alias(self, alias: str, version: str) -> None:
        """Point ``alias`` at ``version`` (which must exist)."""
        self.get_version(version)
        self.client.set_registered_model_alias(self.model_name, alias, str(version))
        log.info("alias %s@%s -> v%s", self.model_name, alias, version)

    def delete_alias(self, alias: str) -> bool:
        """Remove ``alias``; returns False when it was not set."""
        if alias not in self.aliases():
            return False
        self.client.delete_registered_model_alias(self.model_name, alias)
        log.info("alias %s@%s deleted", self.model_name, alias)
        return True

    def describe_version(self, version: str, text: str) -> None:
        """Set the version's description (the model card the MLflow UI shows on its page)."""
        self.client.update_model_version(self.model_name, str(version), description=text)

    def set_version_tags(self, version: str, tags: Mapping[str, Any]) -> None:
        """Set tags on one version (values stringified)."""
        self.get_version(version)
        for key, value in tags.items():
            self.client.set_model_version_tag(self.model_name, str(version), key, str(value))

    # ---- loading ----
    def load_pyfunc(self, alias_or_version: str) -> mlflow.pyfunc.PyFuncModel:
        """The MLflow pyfunc model at ``models:/NAME@alias`` (or ``/VERSION``), verified.

        Loading unpickles the pipeline and runs the artifact's code, so the files are
        first copied to a private folder and their digest compared with the one recorded
        at registration (tag ``coincast.artifact_sha256``); a mismatch raises
        ``RegistryError`` and nothing of the artifact runs. A version registered before
        digests existed loads with a warning. The trust boundary: whoever can write the
        artifact store can change a model; the digest lives in the registry database.
        """
        info = self.resolve(alias_or_version)
        expected = info.tags.get(TAG_ARTIFACT_DIGEST)
        with mlflow_uri_scope(self.tracking_uri):
            # the version itself, not the alias: it may move while we load
            try:
                local = Path(
                    mlflow.artifacts.download_artifacts(info.model_uri, dst_path=_private_dir())
                )
            except MlflowException as exc:
                raise RegistryError(_gone(info, f"its artifacts cannot be read ({exc})")) from exc
            if not (local / "MLmodel").is_file():
                raise RegistryError(_gone(info, "its artifacts are gone (no MLmodel file)"))
            if expected is None:
                log.warning(
                    "%s v%s has no artifact digest (registered before digests): loading it "
                    "unverified",
                    self.model_name,
                    info.version,
                )
            elif (found := artifact_digest(local)) != expected:
                raise RegistryError(
                    f"The artifacts of {self.model_name} v{info.version} changed since they "
                    f"were registered (digest {found[:12]}..., registered {expected[:12]}...): "
                    "refusing to load them, as loading runs their code. Restore the artifact "
                    "store from a backup, or roll back / retrain to another version."
                )
            return mlflow.pyfunc.load_model(str(local))

    def missing_artifacts(self, version: str) -> str | None:
        """Why ``version`` cannot be loaded for lack of files (None when its model files are
        there): e.g. the artifact store was deleted or the home was copied without it."""
        info = self.get_version(version)
        try:
            with mlflow_uri_scope(self.tracking_uri):
                listed = mlflow.artifacts.list_artifacts(artifact_uri=info.model_uri)
        except Exception as exc:  # noqa: BLE001 - any store error means: cannot load
            return f"its artifacts cannot be listed ({type(exc).__name__}: {exc})"
        names = {Path(f.path).name for f in listed}
        if "MLmodel" not in names:
            return "its artifacts are gone (no MLmodel file in the artifact store)"
        return None

    def load_pipeline(self, alias_or_version: str) -> Any:
        """The raw pipeline object of a version, for re-scoring in process."""
        wrapper = self.load_pyfunc(alias_or_version).unwrap_python_model()
        return wrapper.pipeline

    # ---- helpers ----
    def _registered_model(self, *, required: bool) -> Any:
        try:
            return self.client.get_registered_model(self.model_name)
        except MlflowException as exc:
            if not _is_not_found(exc):
                raise
        except Exception as exc:  # noqa: BLE001 - a broken store raises driver errors
            raise unreadable_registry(self.tracking_uri, exc) from exc
        if required:
            raise RegistryError(
                f"No registered model {self.model_name!r} at {self.tracking_uri}. "
                "Run `coincast retrain` first (or check registry.model_name / tracking_uri)."
            )
        return None


def _is_not_found(exc: MlflowException) -> bool:
    return exc.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST)
