"""A small facade over MLflow tracking: one experiment, runs that fail loudly.

Nothing is set globally at import time. ``TrackingContext`` talks to MLflow
through an ``MlflowClient`` bound to its tracking URI; the fluent API (needed
by ``log_model``) is pointed at that URI only inside ``start_run`` blocks and
restored afterwards (``mlflow_uri_scope``).

Example::

    tracking = TrackingContext(cfg.tracking_uri, cfg.artifact_location, "coincast")
    with tracking.start_run("retrain", tags={"timeframe": "1m"}) as parent_id:
        tracking.log_params({"n_rows": 1000})
        with tracking.start_run("lightgbm", nested=True):
            tracking.log_metrics({"auc": 0.53})
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from ml_core.errors import RegistryError
from ml_core.processes import process_token, token_gone

log = logging.getLogger(__name__)

_ENV_TRACKING = "MLFLOW_TRACKING_URI"
_ENV_REGISTRY = "MLFLOW_REGISTRY_URI"


#: Run tag: the process (``<host>:<pid>``) that opened the run, so that a later command
#: can end a run its killed process left RUNNING (``end_orphaned_runs``).
TAG_PROCESS = "coincast.process"
TAG_ENDED = "coincast.ended"

_scope_lock = threading.Lock()
_scope_stack: list[tuple[object, str, str]] = []  # (token, tracking_uri, registry_uri)
_scope_saved: tuple[str | None, str | None, str | None, str | None] | None = None


@contextmanager
def mlflow_uri_scope(tracking_uri: str, registry_uri: str | None = None) -> Iterator[None]:
    """Point MLflow's fluent API at ``tracking_uri`` (and registry) for the block only.

    MLflow keeps these URIs process-wide, so open scopes form one stack shared
    by all threads: leaving a scope re-applies the innermost scope still open
    (threads working on the same URI do not pull it from under each other),
    and leaving the last one restores the URIs and environment variables found
    before the first. Scopes on *different* URIs must not overlap in time.
    """
    global _scope_saved
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    token = object()
    with _scope_lock:
        if not _scope_stack:
            _scope_saved = (
                tracking_utils._tracking_uri,
                registry_utils._registry_uri,
                os.environ.get(_ENV_TRACKING),
                os.environ.get(_ENV_REGISTRY),
            )
        _scope_stack.append((token, tracking_uri, registry_uri or tracking_uri))
        _apply_uris(tracking_uri, registry_uri or tracking_uri)
    try:
        yield
    finally:
        with _scope_lock:
            _scope_stack[:] = [entry for entry in _scope_stack if entry[0] is not token]
            if _scope_stack:
                _apply_uris(_scope_stack[-1][1], _scope_stack[-1][2])
            elif _scope_saved is not None:
                _restore_uris(*_scope_saved)
                _scope_saved = None


def _apply_uris(tracking_uri: str, registry_uri: str) -> None:
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(registry_uri)


def _restore_uris(
    tracking_uri: str | None,
    registry_uri: str | None,
    env_tracking: str | None,
    env_registry: str | None,
) -> None:
    from mlflow.tracking._model_registry import utils as registry_utils

    mlflow.set_tracking_uri(tracking_uri)  # type: ignore[arg-type]  # None resets it
    registry_utils._registry_uri = registry_uri
    for name, value in ((_ENV_TRACKING, env_tracking), (_ENV_REGISTRY, env_registry)):
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def make_client(tracking_uri: str) -> MlflowClient:
    """An ``MlflowClient`` whose tracking and registry both live at ``tracking_uri``;
    ``RegistryError`` (one clear line) when its store cannot even be opened. A sqlite
    registry whose home was copied or moved is pointed at its own artifacts first
    (``rebase_moved_home``)."""
    if tracking_uri.startswith(("http://", "https://")):
        for name, value in _HTTP_BOUNDS.items():  # explicit settings win
            os.environ.setdefault(name, value)
    try:
        with _first_use_lock(tracking_uri):
            if tracking_uri not in _rebased:
                rebase_moved_home(tracking_uri)
                _rebased.add(tracking_uri)
            client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
            client._get_registry_client()  # its store too, while no other process creates it
            return client
    except (RegistryError, MlflowException):
        raise
    except Exception as exc:  # noqa: BLE001 - a broken store raises driver errors
        raise unreadable_registry(tracking_uri, exc) from exc


@contextmanager
def _first_use_lock(tracking_uri: str) -> Iterator[None]:
    """For a sqlite registry: hold an exclusive lock on ``<db>.lock`` while the stores are
    opened. MLflow creates (and migrates) the tables on first open; two processes doing it
    at once on a new home fail ("duplicate column name"). Makes the folder; an unwritable
    one is a ``RegistryError`` saying so (an existing db on a read-only copy is read
    without the lock)."""
    if not tracking_uri.startswith("sqlite:///"):
        yield
        return
    import fcntl

    db = Path(tracking_uri.removeprefix("sqlite:///")).resolve()
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
        handle = open(db.with_name(db.name + ".lock"), "a")  # noqa: SIM115 - closed below
    except OSError as exc:
        if db.is_file():
            yield
            return
        raise RegistryError(
            f"Cannot create the model registry {db}: {exc.strerror or exc} "
            f"({exc.filename or db.parent}). Use a home you can write to (--home or "
            "COINCAST_HOME) or fix the folder's permissions."
        ) from exc
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


_rebased: set[str] = set()
#: Where MLflow's sqlite store keeps absolute artifact locations (columns missing from
#: older schemas are skipped).
_PATH_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "storage_location"),
    ("model_versions", "source"),
)


def rebase_moved_home(tracking_uri: str) -> dict[str, str]:
    """Point a copied or moved home's registry at the artifacts beside it.

    MLflow records absolute artifact locations (``file:///old/home/mlartifacts/...``). A
    home copied as a backup, or moved, would still read (and write!) the old home's files.
    When the registry is a sqlite file and an experiment's artifact root is a folder that
    sits beside *another* folder's ``mlflow.db`` while a folder of the same name exists
    beside this one, every recorded location under the old root is rewritten to the new
    one, in one transaction, with a warning. Returns ``{old root: new root}`` (empty when
    nothing moved, or for server and non-sqlite registries).
    """
    import sqlite3
    from urllib.parse import unquote, urlparse

    if not tracking_uri.startswith("sqlite:///"):
        return {}
    db = Path(tracking_uri.removeprefix("sqlite:///")).resolve()
    if not db.is_file():
        return {}
    con = sqlite3.connect(db, timeout=30)
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "experiments" not in tables:
            return {}
        moves: dict[str, str] = {}
        for (root,) in con.execute("SELECT DISTINCT artifact_location FROM experiments"):
            if not root or not root.startswith("file://"):
                continue
            old = Path(unquote(urlparse(root).path))
            new = db.parent / old.name
            if old.parent != db.parent and new.is_dir():
                moves[root.rstrip("/")] = new.as_uri()
        if not moves:
            return {}
        columns = {
            (t, c) for t in tables for c in (r[1] for r in con.execute(f"PRAGMA table_info({t})"))
        }
        with con:  # one transaction
            for old_root, new_root in moves.items():
                for table, col in _PATH_COLUMNS:
                    if (table, col) in columns:
                        con.execute(
                            f"UPDATE {table} SET {col} = ? || substr({col}, ?) "
                            f"WHERE {col} = ? OR substr({col}, 1, ?) = ?",
                            [
                                new_root,
                                len(old_root) + 1,
                                old_root,
                                len(old_root) + 1,
                                old_root + "/",
                            ],
                        )
    finally:
        con.close()
    for old_root, new_root in moves.items():
        log.warning(
            "the registry %s was copied or moved: its artifact locations now point at %s "
            "(they pointed at %s)",
            db,
            new_root,
            old_root,
        )
    return moves


#: A tracking server that is down or unreachable fails a command within about half a minute
#: (MLflow's defaults: a 120 s timeout per request, 7 retries with backoff: minutes).
_HTTP_BOUNDS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
}
#: The driver package each SQLAlchemy registry URI needs, for the error that says so.
_DRIVERS = {"postgresql": "psycopg2-binary", "mysql": "pymysql", "mssql": "pyodbc"}


def user_error(exc: BaseException) -> RegistryError | None:
    """The one-line ``RegistryError`` for a registry fault a user can fix (a tracking
    server that does not answer, a missing database driver), or None for anything else.
    Passwords in the message are masked."""
    from ml_core.config import redact_text

    text = str(exc)
    if isinstance(exc, MlflowException) and "API request to" in text:
        url = text.split("API request to ", 1)[1].split(" ", 1)[0]
        base = url.split("/api/", 1)[0]
        cause = "connection refused" if "refused" in text.lower() else "no answer"
        if "timed out" in text.lower() or "timeout" in text.lower():
            cause = "timed out"
        return RegistryError(
            redact_text(
                f"The MLflow tracking server at {base} did not answer ({cause}, after "
                f"{os.environ.get('MLFLOW_HTTP_REQUEST_MAX_RETRIES', '?')} retries). Start it, "
                "or point coincast elsewhere (COINCAST_REGISTRY__TRACKING_URI; unset it for "
                "the home's own sqlite registry)."
            )
        )
    return None


def unreadable_registry(tracking_uri: str, exc: Exception) -> RegistryError:
    """One clear error for a registry whose store cannot be read (corrupt sqlite file,
    server down, missing driver), with the URI's password masked."""
    from ml_core.config import redact_uri

    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, ModuleNotFoundError):
        scheme = tracking_uri.split(":", 1)[0].split("+", 1)[0]
        package = _DRIVERS.get(scheme, exc.name or "the database driver")
        return RegistryError(
            f"The model registry at {redact_uri(tracking_uri)} needs the {scheme} driver, "
            f"which is not installed ({first}). Install it into coincast's environment: "
            f"`.venv/bin/pip install {package}`."
        )
    return RegistryError(
        f"The model registry at {redact_uri(tracking_uri)} cannot be read "
        f"({type(exc).__name__}: {first[:200]}). If it is the home's mlflow.db and it is "
        "corrupt, restore it from a backup (candles, predictions and the audit live in "
        "warehouse.duckdb and are not affected); if it is a server, check that it runs and "
        "that its driver is installed."
    )


class TrackingContext:
    """Runs, params, metrics and artifacts for one experiment at one tracking URI.

    Cheap to create: the experiment is looked up (and created with
    ``artifact_location`` when missing) on first use. Each thread has its own
    stack of open runs; the logging methods write to the innermost one.
    """

    def __init__(
        self, tracking_uri: str, artifact_location: str | None, experiment_name: str
    ) -> None:
        self.tracking_uri = tracking_uri
        self.artifact_location = artifact_location
        self.experiment_name = experiment_name
        self.client = make_client(tracking_uri)
        self._experiment_id: str | None = None
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"TrackingContext({self.tracking_uri!r}, experiment={self.experiment_name!r})"

    def __getstate__(self) -> dict[str, Any]:
        """Picklable (e.g. as a task argument): only the locations travel, not open runs."""
        return {
            k: getattr(self, k) for k in ("tracking_uri", "artifact_location", "experiment_name")
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    # ---- experiment and runs ----
    @property
    def experiment_id(self) -> str:
        """Id of the experiment, created on first use if missing."""
        if self._experiment_id is None:
            self._experiment_id = self._ensure_experiment()
        return self._experiment_id

    def _ensure_experiment(self) -> str:
        exp = self.client.get_experiment_by_name(self.experiment_name)
        if exp is None:
            try:
                return self.client.create_experiment(
                    self.experiment_name, artifact_location=self.artifact_location
                )
            except MlflowException:  # created meanwhile by another process
                exp = self.client.get_experiment_by_name(self.experiment_name)
                if exp is None:
                    raise
        if exp.lifecycle_stage == "deleted":
            raise RegistryError(
                f"MLflow experiment {self.experiment_name!r} at {self.tracking_uri} is deleted. "
                f"Restore it (`mlflow experiments restore --experiment-id {exp.experiment_id}`) "
                "or set registry.experiment_name to another name."
            )
        return exp.experiment_id

    @property
    def _stack(self) -> list[str]:
        if not hasattr(self._local, "stack"):
            self._local.stack = []
        return self._local.stack

    @property
    def active_run_id(self) -> str | None:
        """Id of the innermost run opened by ``start_run`` in this thread, if any."""
        return self._stack[-1] if self._stack else None

    @property
    def run_id(self) -> str:
        """Id of the innermost open run; ``RegistryError`` outside ``start_run``."""
        if not self._stack:
            raise RegistryError(
                f"No open MLflow run in experiment {self.experiment_name!r}. "
                "Call this inside `with tracking.start_run(...):`."
            )
        return self._stack[-1]

    @contextmanager
    def start_run(
        self,
        run_name: str | None = None,
        tags: Mapping[str, Any] | None = None,
        *,
        nested: bool = False,
        parent_run_id: str | None = None,
    ) -> Iterator[str]:
        """Open a run for the block and yield its id.

        ``nested=True`` puts it under the innermost open run of this thread;
        ``parent_run_id`` nests it under a run opened elsewhere (e.g. by a flow
        in another thread). On exception the run is marked FAILED and the
        error re-raised; otherwise FINISHED.
        """
        if nested and parent_run_id is None:
            self.run_id  # noqa: B018 - raises a clear error when no run is open
        str_tags = {TAG_PROCESS: process_token(), **{k: str(v) for k, v in (tags or {}).items()}}
        with mlflow_uri_scope(self.tracking_uri):
            run = mlflow.start_run(
                experiment_id=self.experiment_id,
                run_name=run_name,
                tags=str_tags,
                nested=nested,
                parent_run_id=parent_run_id,
            )
            run_id = run.info.run_id
            self._stack.append(run_id)
            status = "FINISHED"
            try:
                yield run_id
            except BaseException as exc:
                status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
                log.warning("MLflow run %s (%s) marked %s: %r", run_id, run_name, status, exc)
                raise
            finally:
                self._stack.pop()
                mlflow.end_run(status=status)

    # ---- logging into the innermost run ----
    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log parameters (values stringified, as MLflow stores them)."""
        for key, value in params.items():
            self.client.log_param(self.run_id, key, _param_value(value))

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log numeric metrics; NaN and infinite values are skipped (debug-logged)."""
        run_id = self.run_id
        for key, value in metrics.items():
            number = float(value)
            if not math.isfinite(number):
                log.debug("skip metric %s=%r (not finite) on run %s", key, value, run_id)
                continue
            self.client.log_metric(run_id, key, number, step=step)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set run tags (values stringified)."""
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, str(value))

    def log_artifact(self, path: Path | str, artifact_path: str | None = None) -> None:
        """Upload a local file or folder to the run's artifacts."""
        p = Path(path)
        if not p.exists():
            raise RegistryError(f"Artifact {p} does not exist; write it before logging it.")
        if p.is_dir():
            self.client.log_artifacts(self.run_id, str(p), artifact_path)
        else:
            self.client.log_artifact(self.run_id, str(p), artifact_path)

    def log_dict(self, dictionary: Mapping[str, Any], artifact_file: str) -> None:
        """Store a dict as a JSON/YAML artifact (format from the file extension)."""
        self.client.log_dict(self.run_id, dict(dictionary), artifact_file)

    def log_text(self, text: str, artifact_file: str) -> None:
        """Store text as an artifact file."""
        self.client.log_text(self.run_id, text, artifact_file)


def end_orphaned_runs(tracking_uri: str) -> list[str]:
    """Mark KILLED the runs (of every experiment) still RUNNING whose process (tag
    ``coincast.process``) is gone from this host, with a ``coincast.ended`` tag saying so;
    returns their ids. A sqlite registry that does not exist yet is not created."""
    sqlite = tracking_uri.startswith("sqlite:///")
    if sqlite and not Path(tracking_uri.removeprefix("sqlite:///")).is_file():
        return []
    client = make_client(tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return []
    ended = []
    for run in client.search_runs(
        experiments, filter_string="attributes.status = 'RUNNING'", max_results=500
    ):
        token = run.data.tags.get(TAG_PROCESS)
        if not token_gone(token):
            continue
        client.set_tag(
            run.info.run_id,
            TAG_ENDED,
            f"marked KILLED by {process_token()}: process {token} ended without finishing it",
        )
        client.set_terminated(run.info.run_id, status="KILLED")
        ended.append(run.info.run_id)
    if ended:
        log.warning(
            "%d MLflow run(s) left RUNNING by killed processes marked KILLED: %s",
            len(ended),
            ", ".join(ended),
        )
    return ended


def _param_value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)
