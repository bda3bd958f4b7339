"""Prefect deployments of the coincast flows, and serving them.

One set of deployments per data set (timeframe), named ``<deployment>-<timeframe>``,
each with that timeframe as the default of its form. Scheduled (cron in
``cfg.deployments.timezone``, UTC by default), e.g. for ``1h``:

- ``retrain/weekly-retrain-1h``  Monday 03:00 (``weekly_retrain_cron``)
- ``predict/daily-predict-1h``   00:10, after the daily candle closes (``daily_predict_cron``)
- ``monitor/daily-monitor-1h``   00:30, after predict (``daily_monitor_cron``)

On demand (run from the UI form or ``prefect deployment run``): ``ingest/ingest-1h``,
``promote/promote-1h``, ``replay/replay-1h``, ``rollback/rollback-1h`` and ``tune/tune-1h``.

The data sets served: those given (``coincast serve -t 1h -t 1d``), else the timeframe
set in config, else every timeframe in the warehouse and the download sources, else
the default.

Flows that are not importable yet (predict, monitor, tune) are skipped with a log
line, so ``coincast serve`` works before they land. Every deployment's default
parameters point at this config's home, so a run started from the UI writes to the
same warehouse and registry as the CLI.

Example::

    cfg = load_config()
    serve(cfg)      # blocks; PREFECT_API_URL says which server
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ml_core.config import CoincastConfig
from ml_core.errors import ConfigError

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment

log = logging.getLogger(__name__)

TAGS = ["coincast"]


@dataclass(frozen=True)
class DeploymentSpec:
    """One deployment: which flow (module, attribute), its name and its schedule."""

    name: str
    module: str
    attr: str
    description: str
    cron: str | None = None
    extra_parameters: dict[str, Any] = field(default_factory=dict)


def deployment_specs(cfg: CoincastConfig) -> list[DeploymentSpec]:
    """What ``coincast serve`` offers, schedules taken from ``cfg.deployments``."""
    d = cfg.deployments
    return [
        DeploymentSpec(
            "weekly-retrain",
            "flows.retrain",
            "retrain_flow",
            "Weekly retrain: validate, features, train, promote only if better, report.",
            cron=d.weekly_retrain_cron,
        ),
        DeploymentSpec(
            "daily-predict",
            "flows.predict",
            "predict_flow",
            "Daily scoring of the latest candles with the champion.",
            cron=d.daily_predict_cron,
        ),
        DeploymentSpec(
            "daily-monitor",
            "flows.monitor",
            "monitor_flow",
            "Daily monitor: realized performance, drift, rollback on degradation.",
            cron=d.daily_monitor_cron,
        ),
        DeploymentSpec(
            "ingest",
            "flows.ingest",
            "ingest_flow",
            "Ingest CSV/Parquet candle files behind the quality gate (fill in `paths`).",
        ),
        DeploymentSpec("tune", "flows.tune", "tune_flow", "Optuna tuning of the candidate models."),
        DeploymentSpec(
            "promote",
            "flows.promote",
            "promote_flow",
            "Judge a registered version (default: newest) by the weekly rules: first champion, refresh or replace.",
            extra_parameters={"actor": "prefect:promote"},
        ),
        DeploymentSpec(
            "replay",
            "flows.replay",
            "replay_flow",
            "Replay the weekly loop over history on the clock, one home per policy (fill in "
            "`data` and `start`); writes under <home>/replay.",
        ),
        DeploymentSpec(
            "rollback",
            "flows.rollback",
            "rollback_flow",
            "Champion back to `previous` (or `to_version`), audited.",
        ),
    ]


def default_run_params(
    cfg: CoincastConfig, config_path: str | None = None, timeframe: str | None = None
) -> dict[str, str | None]:
    """The ``params`` every deployment starts from: this home, config file and timeframe."""
    return {
        "home": str(cfg.home.resolve()),
        "config_path": config_path,
        "timeframe": timeframe or cfg.data.timeframe,
    }


def served_timeframes(cfg: CoincastConfig, timeframes: list[str] | None = None) -> list[str]:
    """The data sets to serve (module doc); each is checked against the known timeframes."""
    from ml_core.config import timeframe_seconds
    from ml_core.data.datasets import available_timeframes, timeframe_is_explicit

    if timeframes:
        for tf in timeframes:
            timeframe_seconds(tf)  # ConfigError listing the known ones
        return list(dict.fromkeys(timeframes))
    if timeframe_is_explicit(cfg):
        return [cfg.data.timeframe]
    return available_timeframes(cfg) or [cfg.data.timeframe]


def deployment_name(spec: DeploymentSpec, timeframe: str) -> str:
    """``weekly-retrain-1h``: one name per deployment and data set."""
    return f"{spec.name}-{timeframe}"


def load_flow(spec: DeploymentSpec) -> Any | None:
    """The flow object of ``spec``, or None when its module does not exist (yet)."""
    try:
        module = importlib.import_module(spec.module)
    except ModuleNotFoundError as exc:
        if exc.name != spec.module:  # a missing dependency of an existing flow is a bug
            raise
        log.info("deployment %s skipped: %s is not available yet", spec.name, spec.module)
        return None
    flow = getattr(module, spec.attr, None)
    if flow is None:
        log.info("deployment %s skipped: %s.%s not found", spec.name, spec.module, spec.attr)
    return flow


def build_deployments(
    cfg: CoincastConfig, config_path: str | None = None, timeframes: list[str] | None = None
) -> list[RunnerDeployment]:
    """Runner deployments of every available flow for every data set served, with typed
    parameters and schedules; ``rollback`` of the last data set comes last."""
    from prefect.deployments.runner import EntrypointType
    from prefect.schedules import Cron

    out = []
    for tf in served_timeframes(cfg, timeframes):
        base = default_run_params(cfg, config_path, tf)
        for spec in deployment_specs(cfg):
            flow = load_flow(spec)
            if flow is None:
                continue
            schedules = [Cron(spec.cron, timezone=cfg.deployments.timezone)] if spec.cron else None
            out.append(
                flow.to_deployment(
                    name=deployment_name(spec, tf),
                    schedules=schedules,
                    parameters={"params": dict(base), **spec.extra_parameters},
                    description=f"[{tf}] {spec.description}",
                    tags=[*TAGS, tf, "scheduled" if spec.cron else "on-demand"],
                    # module path: runs resolve `flows.x.y` from the installed package,
                    # whatever the working directory (also what a process work pool needs)
                    entrypoint_type=EntrypointType.MODULE_PATH,
                )
            )
    return out


def require_api_url() -> None:
    """Deployments need a lasting Prefect server, not the temporary one of a single process."""
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        raise ConfigError(
            "PREFECT_API_URL is not set, so there is no Prefect server to serve the deployments "
            "to. Start one with `coincast ui` (server, MLflow UI and serve in one command), or "
            "export PREFECT_API_URL=http://127.0.0.1:4200/api for a server already running."
        )


def serve(
    cfg: CoincastConfig,
    config_path: str | None = None,
    limit: int | None = None,
    timeframes: list[str] | None = None,
) -> None:
    """Register the deployments with the Prefect API (``PREFECT_API_URL``) and run them.

    Blocks until interrupted. On shutdown the schedules are paused (no late runs
    pile up while nothing serves them); the next ``serve`` resumes them. First, runs that
    a killed process left Running are marked Crashed (``flows.orphans.sweep``).
    """
    from prefect import serve as prefect_serve

    from flows.orphans import sweep

    require_api_url()
    sweep(cfg)  # runs a killed earlier serve (or CLI command) left Running: Crashed
    deployments = build_deployments(cfg, config_path, timeframes)
    names = ", ".join(f"{d.flow_name}/{d.name}" for d in deployments)
    log.info("serving %d deployments: %s", len(deployments), names)
    prefect_serve(*deployments, limit=limit, print_starting_message=True)


def register_in_work_pool(
    cfg: CoincastConfig,
    work_pool: str,
    config_path: str | None = None,
    timeframes: list[str] | None = None,
) -> list[str]:
    """Register the deployments in a (process) work pool instead of serving them here.

    A ``prefect worker start --pool <work_pool>`` started from coincast's environment
    then runs them: entrypoints are module paths (``flows.retrain.retrain_flow``), so
    the worker needs the package installed, not a copy of the code. Returns the names.
    """
    require_api_url()
    names = []
    for deployment in build_deployments(cfg, config_path, timeframes):
        deployment.apply(work_pool_name=work_pool)
        names.append(f"{deployment.flow_name}/{deployment.name}")
    log.info("registered %d deployments in work pool %s", len(names), work_pool)
    return names
