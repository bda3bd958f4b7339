"""Local servers, one command: Prefect server, MLflow UI and the deployment server.

``run_ui(cfg)`` starts each process in its own process group, waits until it
answers (HTTP health, or for the deployment server: its deployments registered),
prints the URLs, and on SIGINT/SIGTERM (or when one of them dies) stops them all
in reverse order: SIGTERM to the whole group, SIGKILL after a grace period, so
no worker or job process is left behind. Everything binds ``cfg.deployments.host``
(127.0.0.1 by default); their output goes to ``<home>/logs/<name>.log``.

Example::

    run_ui(load_config())   # blocks until Ctrl-C
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from ml_core.config import CoincastConfig
from ml_core.errors import CoincastError, ConfigError
from ml_core.processes import live_record, read_live_record

log = logging.getLogger(__name__)

#: the deployment ``coincast serve`` registers last for each data set (see
#: ``deployments.deployment_specs``); the last data set's is the last of all
LAST_REGISTERED = "rollback/rollback"


def last_registered(timeframes: Sequence[str]) -> str:
    """``rollback/rollback-<last timeframe>``: registered after every other deployment."""
    return f"{LAST_REGISTERED}-{timeframes[-1]}"


class ServerError(CoincastError):
    """A supervised server did not start, or died."""


@dataclass
class ManagedProcess:
    """A child process the supervisor owns: how to start it and how to tell it is ready."""

    name: str
    argv: list[str]
    ready: Callable[[], bool]
    url: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    stop_signal: signal.Signals = signal.SIGTERM
    #: start only once every process started before it is ready (it talks to them)
    needs_previous: bool = False
    proc: subprocess.Popen | None = None
    _log_file: IO[bytes] | None = None
    _started_at: float = 0.0
    _reaper: subprocess.Popen | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        """Start in a new session (own process group), output to ``log_path``."""
        out: int | IO[bytes] = subprocess.DEVNULL
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = out = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv,
            env={**os.environ, **self.env},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._started_at = time.monotonic()
        self._reaper = _start_reaper(self.proc.pid)
        log.info("started %s (pid %d): %s", self.name, self.proc.pid, " ".join(self.argv))

    def wait_ready(self, timeout_s: float, poll_s: float = 0.5) -> float:
        """Seconds from start to ``ready()``; raises ServerError if it exits or times out."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            if not self.alive:
                code = None if self.proc is None else self.proc.returncode
                raise ServerError(
                    f"{self.name} exited with code {code} before it was ready.{self._log_hint()}"
                )
            if self.ready():
                return time.monotonic() - self._started_at
            time.sleep(poll_s)
        raise ServerError(
            f"{self.name} was not ready after {timeout_s:.0f} s.{self._log_hint()} "
            "Raise the timeout on a slow machine."
        )

    def stop(self, grace_s: float = 15.0) -> None:
        """``stop_signal`` to the process group, SIGKILL what is left after ``grace_s``."""
        if self.proc is None:
            return
        pgid = self.proc.pid  # leader of its own session: pgid == pid
        _signal_group(pgid, self.stop_signal)
        try:
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0f s; killing it", self.name, grace_s)
        # workers may outlive the leader: make sure the whole group is gone
        _signal_group(pgid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.wait(timeout=5)
        if self._reaper is not None:  # it ends by itself once the group is gone
            try:
                self._reaper.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._reaper.kill()
                self._reaper.wait(timeout=5)
            self._reaper = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        log.info("stopped %s", self.name)

    def _log_hint(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        tail = self.log_path.read_text(errors="replace").strip().splitlines()[-15:]
        return f" Its log ({self.log_path}) ends with:\n" + "\n".join(tail)


#: A watchdog per server: when the process that started the server dies without stopping
#: it (``kill -9`` of `coincast ui`), the watchdog is re-parented; it then stops the
#: server's whole process group (SIGTERM, SIGKILL after 10 s). It exits with the group.
_REAPER = """
import os, signal, sys, time
owner, pgid = int(sys.argv[1]), int(sys.argv[2])
def group_alive():
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
while group_alive():
    if os.getppid() != owner:
        for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 0.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                sys.exit(0)
            end = time.monotonic() + grace
            while time.monotonic() < end and group_alive():
                time.sleep(0.2)
        sys.exit(0)
    time.sleep(0.5)
"""


def _start_reaper(pgid: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", _REAPER, str(os.getpid()), str(pgid)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # not in the terminal's group: a Ctrl-C is for `ui`
    )


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.killpg(pgid, sig)


# ------------------------------------------------------------------ readiness probes
def http_ok(url: str, timeout_s: float = 2.0) -> bool:
    """True when ``url`` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 - local URL
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def deployment_registered_since(api_url: str, flow_deployment: str, since: datetime) -> bool:
    """True when ``flow/deployment`` exists and was written at or after ``since`` (UTC)."""
    try:
        with urllib.request.urlopen(  # noqa: S310 - local URL
            f"{api_url}/deployments/name/{flow_deployment}", timeout=2.0
        ) as resp:
            body = json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError):
        return False
    updated = datetime.fromisoformat(body["updated"].replace("Z", "+00:00"))
    return updated >= since


def port_is_free(host: str, port: int) -> bool:
    """True when a server could listen on ``host:port`` now (TIME_WAIT leftovers allowed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """An unused TCP port on ``host`` (for tests and throwaway servers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------ the three servers
def _probe_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def prefect_server(home: Path, host: str, port: int, log_dir: Path | None = None) -> ManagedProcess:
    """``prefect server start`` with its sqlite database under ``home/prefect``."""
    prefect_home = home / "prefect"
    base = f"http://{_probe_host(host)}:{port}"
    return ManagedProcess(
        name="prefect-server",
        argv=[sys.executable, "-m", "prefect", "server", "start"]
        + ["--host", host, "--port", str(port)],
        env={
            "PREFECT_HOME": str(prefect_home),
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": (
                f"sqlite+aiosqlite:///{prefect_home / 'prefect.db'}"
            ),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "true",
            # the UI's API address defaults to port 4200 whatever --port says
            "PREFECT_UI_API_URL": os.environ.get("PREFECT_UI_API_URL", f"{base}/api"),
        },
        ready=lambda: http_ok(f"{base}/api/health"),
        url=base,
        log_path=None if log_dir is None else log_dir / "prefect-server.log",
    )


def mlflow_server(cfg: CoincastConfig, host: str, port: int, log_dir: Path | None = None):
    """``mlflow server`` over the registry of ``cfg`` (one worker, no job runner)."""
    base = f"http://{_probe_host(host)}:{port}"
    return ManagedProcess(
        name="mlflow-ui",
        argv=[sys.executable, "-m", "mlflow", "server", "--host", host, "--port", str(port)]
        + ["--workers", "1", "--backend-store-uri", cfg.tracking_uri]
        + ["--default-artifact-root", cfg.artifact_location],
        env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        ready=lambda: http_ok(f"{base}/health"),
        url=base,
        log_path=None if log_dir is None else log_dir / "mlflow-ui.log",
    )


def deployment_server(
    cfg: CoincastConfig,
    api_url: str,
    config_path: str | None = None,
    log_dir: Path | None = None,
    timeframes: Sequence[str] = (),
) -> ManagedProcess:
    """``coincast serve`` against ``api_url``; ready once all its deployments are registered.

    ``serve`` registers them one by one in ``deployment_specs`` order per data set;
    ``rollback`` of the last data set is the last one, so its fresh ``updated`` time
    means every deployment is there.
    """
    from deployments import served_timeframes

    timeframes = served_timeframes(cfg, list(timeframes) or None)
    home = cfg.home.resolve()
    argv = [sys.executable, "-m", "coincast_cli", "serve", "--home", str(home)]
    for tf in timeframes:
        argv += ["--timeframe", tf]
    if config_path:
        argv += ["--config", str(config_path)]
    since = datetime.now(UTC).replace(microsecond=0)
    return ManagedProcess(
        name="deployment-server",
        argv=argv,
        env={"PREFECT_API_URL": api_url, "PREFECT_HOME": str(home / "prefect")},
        ready=lambda: deployment_registered_since(api_url, last_registered(timeframes), since),
        # prefect's runner shuts down cleanly (schedules paused) on SIGINT; on SIGTERM
        # 3.8.8 leaves its stop coroutine un-awaited and hangs until killed
        stop_signal=signal.SIGINT,
        needs_previous=True,
        log_path=None if log_dir is None else log_dir / "deployment-server.log",
    )


def ui_processes(
    cfg: CoincastConfig,
    config_path: str | None = None,
    *,
    serve: bool = True,
    timeframes: Sequence[str] = (),
) -> list[ManagedProcess]:
    """Prefect server, MLflow UI and (``serve``) the deployment server, in start order."""
    d = cfg.deployments
    home = cfg.home.resolve()
    for name, port in (("prefect_port", d.prefect_port), ("mlflow_port", d.mlflow_port)):
        if not port_is_free(_probe_host(d.host), port):
            raise ConfigError(
                f"Port {port} on {d.host} is already in use (another Prefect or MLflow server?). "
                f"Stop it, or pick another: COINCAST_DEPLOYMENTS__{name.upper()}=PORT "
                f"(or --{name.replace('_', '-')})."
            )
    logs = home / "logs"
    procs = [
        prefect_server(home, d.host, d.prefect_port, logs),
        mlflow_server(cfg, d.host, d.mlflow_port, logs),
    ]
    if serve:
        api_url = f"http://{_probe_host(d.host)}:{d.prefect_port}/api"
        procs.append(deployment_server(cfg, api_url, config_path, logs, timeframes))
    return procs


# ------------------------------------------------------------------ supervision
@contextmanager
def supervised(procs: Sequence[ManagedProcess], timeout_s: float = 120.0) -> Iterator[dict]:
    """Start ``procs`` in order (side by side unless ``needs_previous``), stop all in reverse.

    Yields ``{name: seconds from its start to ready}`` once every process is ready.
    """
    started: list[ManagedProcess] = []
    ready_s: dict[str, float] = {}

    def _wait_all() -> None:
        for proc in started:
            if proc.name not in ready_s:
                ready_s[proc.name] = round(proc.wait_ready(timeout_s), 1)

    try:
        for proc in procs:
            if proc.needs_previous:
                _wait_all()
            proc.start()
            started.append(proc)
        _wait_all()
        yield ready_s
    finally:
        for proc in reversed(started):
            proc.stop()


def ui_state_file(home: Path) -> Path:
    """Where a running `coincast ui` names its Prefect API for the commands of ``home``."""
    return home.resolve() / "prefect" / "ui-server.json"


def _announced(cfg: CoincastConfig) -> AbstractContextManager[None]:
    """While the servers run, ``ui_state_file`` names this Prefect API and this process."""
    d = cfg.deployments
    api_url = f"http://{_probe_host(d.host)}:{d.prefect_port}/api"
    return live_record(ui_state_file(cfg.home), {"api_url": api_url})


def running_ui_api(home: Path) -> str | None:
    """The Prefect API of a live `coincast ui` of ``home`` that answers its health check,
    else None (no file, its process gone, or no answer within a second)."""
    info = read_live_record(ui_state_file(home))
    url = str((info or {}).get("api_url", ""))
    return url if url and http_ok(f"{url}/health", timeout_s=1.0) else None


def run_ui(
    cfg: CoincastConfig,
    config_path: str | None = None,
    *,
    serve: bool = True,
    echo: Callable[[str], None] = print,
    timeout_s: float = 300.0,
    timeframes: Sequence[str] = (),
) -> None:
    """Start the local servers, print their URLs, block until SIGINT/SIGTERM, stop them all.

    ``timeframes``: the data sets whose deployments are served (default: see
    ``deployments.served_timeframes``)."""
    procs = ui_processes(cfg, config_path, serve=serve, timeframes=timeframes)
    stop = threading.Event()
    running = threading.Event()
    received: list[int] = []

    def _on_signal(signum: int, _frame: object) -> None:
        received.append(signum)
        stop.set()
        if not running.is_set():  # still starting: unwind, `supervised` stops what started
            raise KeyboardInterrupt

    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        echo(f"Starting {', '.join(p.name for p in procs)} (logs in {cfg.home.resolve()}/logs)")
        with supervised(procs, timeout_s=timeout_s) as ready_s, _announced(cfg):
            for proc in procs:
                where = proc.url or f"serving deployments to {proc.env.get('PREFECT_API_URL')}"
                echo(f"  {proc.name:<18} {where}  (ready in {ready_s[proc.name]} s)")
            echo("coincast commands on this home run their flows on this Prefect server.")
            echo("Press Ctrl-C to stop all of them.")
            running.set()
            while not stop.wait(1.0):
                dead = [p for p in procs if not p.alive]
                if dead:
                    raise ServerError(
                        f"{dead[0].name} exited unexpectedly (code {dead[0].proc.returncode}); "
                        f"stopping the others.{dead[0]._log_hint()}"
                    )
            echo(f"Got {signal.Signals(received[0]).name}: stopping servers ...")
    except KeyboardInterrupt:  # a Ctrl-C that arrives while still starting up
        echo("Interrupted: stopping servers ...")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    echo("All servers stopped.")
