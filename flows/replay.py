"""Flow `replay`: the deployed weekly loop run over history on a clock, one home per policy.

Each policy (``coincast``, ``latest``, ``frozen``) gets its own COINCAST_HOME
under ``out_dir``. The clock walks the deployments' cron schedules; before
each step every home is fed the candles that closed since the last step
(through the ingest path and its quality gate), then the step runs the same
flow as the deployment (``retrain_flow``, ``predict_flow``, ``monitor_flow``),
and the clock rule is checked. At the end the served predictions are scored
week by week into a CSV and an HTML report (plus an MLflow run and artifacts).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from prefect import flow, get_run_logger
from pydantic import BaseModel, Field

from flows.monitor import monitor_flow
from flows.naming import run_name
from flows.orphans import PROCESS_HOOKS
from flows.params import MonitorParams, PredictParams, RetrainParams
from flows.predict import predict_flow
from flows.retrain import retrain_flow
from ml_core.config import CoincastConfig, load_config
from ml_core.replay import clock, homes
from ml_core.replay.assemble import assemble_report
from ml_core.replay.dataset import check_range
from ml_core.replay.report import ReplayReport, policy_summary
from ml_core.replay.served import empty_served, served_rows
from ml_core.replay.timeline import TIMELINE_COLUMNS, frozen_event, step_events
from tasks.replay import (
    champion_version,
    check_home_clock,
    feed_candles,
    load_replay_data,
    log_replay,
    new_audit_rows,
    prepare_home,
    publish_replay,
    replay_model_frame,
    wall_clock,
    write_report,
    written_predictions,
)

FEED_NOTE = (
    "Candles are fed before every step through the ingest path (ml_core.data.ingest."
    "ingest_frame) with the full Great Expectations candle suite, now = the clock time; "
    "measured at 0.3-0.5 s per slice, cheap beside the flows themselves."
)


class ReplayParams(BaseModel):
    """What to replay, on which clock, for which policies, and where to write it."""

    data: str = Field(description="Candle file (CSV/Parquet/...) or a warehouse .duckdb.")
    start: str = Field(description="First clock time (UTC); earlier candles are the history.")
    end: str | None = Field(default=None, description="Last clock time (default: data's end).")
    weeks: int | None = Field(
        default=None, ge=1, description="Weekly cycles to replay instead of an end."
    )
    out_dir: str | None = Field(
        default=None, description="One home per policy + the report (default: <home>/replay)."
    )
    home: str | None = Field(
        default=None, description="COINCAST_HOME; the default output folder is <home>/replay."
    )
    timeframe: str | None = Field(default=None, description="Timeframe (default: the data's).")
    symbols: list[str] | None = Field(default=None, description="Symbols (default: all).")
    policies: list[str] = Field(default_factory=lambda: list(homes.POLICIES))
    config_path: str | None = Field(default=None, description="The user's config file.")
    profile: str | None = Field(default=None, description="Settings profile (default, full).")
    weekly_retrain_cron: str | None = Field(default=None, description="None: the config's.")
    daily_predict_cron: str | None = Field(default=None, description="None: the config's.")
    daily_monitor_cron: str | None = Field(default=None, description="None: the config's.")
    timezone: str | None = Field(default=None, description="Cron timezone (None: config's).")
    warmup_days: float = Field(default=0.0, ge=0, description="History days before retrain 1.")
    overwrite: bool = Field(default=False, description="Start over in used replay homes.")

    def output_dir(self) -> Path:
        """``out_dir``, else ``<home>/replay``, else ``./replay``."""
        if self.out_dir:
            return Path(self.out_dir).resolve()
        return (Path(self.home) if self.home else Path(".")).resolve() / "replay"


@dataclass
class _Home:
    """One policy's home and what the replay recorded there."""

    policy: str
    path: Path
    config_path: str
    cfg: CoincastConfig
    champion: str | None = None
    seen: set[str] = field(default_factory=set)
    served: list[pd.DataFrame] = field(default_factory=list)
    windows: list[tuple[pd.Timestamp | None, pd.Timestamp]] = field(default_factory=list)

    def fields(self) -> dict[str, str | None]:
        return {"home": str(self.path), "config_path": self.config_path}


@dataclass
class _Plan:
    cfg: CoincastConfig
    candles: pd.DataFrame
    start: pd.Timestamp
    end: pd.Timestamp
    steps: list[clock.ClockStep]
    windows: dict[pd.Timestamp, tuple[pd.Timestamp | None, pd.Timestamp]]
    spec: dict


@dataclass
class _Record:
    timeline: list[pd.DataFrame] = field(default_factory=list)
    timings: list[dict] = field(default_factory=list)


@flow(name="replay", flow_run_name=run_name, log_prints=True, on_running=PROCESS_HOOKS)
def replay_flow(params: ReplayParams) -> dict:
    """Feed, retrain, predict, monitor on the clock for each policy; then the report."""
    plan = _plan(params)
    policy_homes = [_home(params, plan, p) for p in homes.check_policies(params.policies)]
    record = _Record()
    _feed_all(
        policy_homes,
        clock.closed_by(plan.candles, plan.start, plan.cfg.data.timeframe),
        plan.start,
        record,
    )
    fed_until = plan.start
    for step in plan.steps:
        fresh = clock.closed_between(plan.candles, fed_until, step.at, plan.cfg.data.timeframe)
        _feed_all(policy_homes, fresh, step.at, record)
        fed_until = step.at
        for home in policy_homes:
            _run_step(step, home, plan, record)
    return _report(params, plan, policy_homes, record)


def _plan(params: ReplayParams) -> _Plan:
    """The data, the config every home starts from, and the clock."""
    user = load_config(params.config_path, profile=params.profile)
    symbols = params.symbols or user.data.symbols
    candles = load_replay_data(params.data, params.timeframe, symbols)
    tf = str(candles["timeframe"].iloc[0])
    cfg = user.model_copy(
        update={"data": user.data.model_copy(update={"timeframe": tf, "symbols": symbols})}
    )
    d = cfg.deployments
    crons = {
        "retrain_cron": params.weekly_retrain_cron or d.weekly_retrain_cron,
        "predict_cron": params.daily_predict_cron or d.daily_predict_cron,
        "monitor_cron": params.daily_monitor_cron or d.daily_monitor_cron,
    }
    tz = params.timezone or d.timezone
    start, warmup = clock.to_clock(params.start), pd.Timedelta(days=params.warmup_days)
    end = _end(params, candles, tf, start=start, warmup=warmup, tz=tz, cron=crons["retrain_cron"])
    check_range(candles, start=start, end=end, timeframe=tf)
    steps = clock.replay_schedule(start=start, end=end, timezone=tz, warmup=warmup, **crons)
    spec = {
        "data": params.data,
        "timeframe": tf,
        "symbols": sorted(candles["symbol"].unique()),
        "start": start,
        "end": end,
        **crons,
        "timezone": tz,
        "warmup_days": params.warmup_days,
        "policies": params.policies,
        "config": params.config_path,
        "profile": cfg.profile,
        "n_steps": len(steps),
        "out_dir": str(params.output_dir()),
    }
    windows = clock.scoring_windows(steps, predict_cron=crons["predict_cron"], timezone=tz)
    return _Plan(cfg, candles, start, end, steps, windows, spec)


def _end(
    params: ReplayParams,
    candles: pd.DataFrame,
    tf: str,
    *,
    start: pd.Timestamp,
    warmup: pd.Timedelta,
    tz: str,
    cron: str,
) -> pd.Timestamp:
    """``end``, else the end of ``weeks`` cycles, else the data's last bar close."""
    if params.end:
        return clock.to_clock(params.end)
    if params.weeks:
        return clock.cycles_end(
            start=start, retrain_cron=cron, n_cycles=params.weeks, timezone=tz, warmup=warmup
        )
    return pd.Timestamp(candles["ts"].max()) + clock.bar_length(tf)


def _home(params: ReplayParams, plan: _Plan, policy: str) -> _Home:
    path = params.output_dir() / policy
    base = plan.cfg.model_dump(mode="json")
    config_path, cfg = prepare_home(base, policy, str(path), params.overwrite)
    return _Home(policy, path, config_path, cfg)


def _feed_all(
    policy_homes: list[_Home], fresh: pd.DataFrame, at: pd.Timestamp, record: _Record
) -> None:
    """Every home gets the same bars (those closed since the last feed), then the clock check."""
    if fresh.empty:
        return
    for home in policy_homes:
        began = time.perf_counter()
        feed_candles(home.cfg, fresh, at)
        check_home_clock(home.cfg, at, f"{home.policy} feed")
        record.timings.append(_timing(home, "feed", at, began))


def _run_step(step: clock.ClockStep, home: _Home, plan: _Plan, record: _Record) -> None:
    """One scheduled flow run in one home, the clock check after it, and its progress line."""
    began = time.perf_counter()
    try:
        if step.kind == "retrain":
            result = _retrain(step, home, record)
        elif step.kind == "predict":
            result = _predict(step, home, plan)
        else:
            result = _monitor(step, home, record)
    except Exception as exc:
        get_run_logger().error("%s %s %s failed: %s", step, home.policy, home.path, exc)
        raise
    check_home_clock(home.cfg, step.at, f"{home.policy} {step.kind}")
    timing = _timing(home, step.kind, step.at, began)
    record.timings.append(timing)
    get_run_logger().info(
        "%s %-8s %-7s %s [%.1fs]",
        f"{step.at:%Y-%m-%d %H:%M}",
        home.policy,
        step.kind,
        result,
        timing["seconds"],
    )


def _retrain(step: clock.ClockStep, home: _Home, record: _Record) -> str:
    if home.policy == "frozen" and home.champion is not None:
        record.timeline.append(frozen_event(at=step.at, champion=home.champion))
        return f"not run: frozen keeps v{home.champion}"
    out = retrain_flow(RetrainParams(**home.fields()))
    decision = out["decision"]
    events = _note_audit(step, home, record, decision.get("kind") or out.get("kind"))
    home.champion = champion_version(home.cfg)
    what = " / ".join(
        f"{e.event}" + (f" ({e.attempted})" if e.event == "reject" else "")
        for e in events.itertuples()
    )
    challenger = decision.get("challenger_version")
    return f"{what or 'no decision'}: challenger v{challenger}; champion v{home.champion}"


def _predict(step: clock.ClockStep, home: _Home, plan: _Plan) -> str:
    if home.champion is None:
        return "skipped: no champion yet"
    since = wall_clock()
    summary = predict_flow(PredictParams(**home.fields()))
    after, at = plan.windows[step.at]
    written = written_predictions(home.cfg, since)
    served = served_rows(
        written, policy=home.policy, after=after, at=at, timeframe=plan.cfg.data.timeframe
    )
    home.served.append(served)
    home.windows.append((after, at))
    return f"{len(served):,} served by v{home.champion} ({summary['n_scored']:,} rows scored)"


def _monitor(step: clock.ClockStep, home: _Home, record: _Record) -> str:
    if home.champion is None:
        return "skipped: no champion yet"
    out = monitor_flow(MonitorParams(**home.fields(), allow_rollback=home.policy != "frozen"))
    _note_audit(step, home, record, None)
    home.champion = champion_version(home.cfg)
    verdict = f"ROLLED BACK to v{home.champion}" if out["rolled_back"] else "no rollback"
    return f"{out['n_outcomes']:,} outcomes, {verdict}"


def _note_audit(
    step: clock.ClockStep, home: _Home, record: _Record, kind: str | None
) -> pd.DataFrame:
    """The timeline events of the audit rows this step wrote (also kept in ``record``)."""
    rows = new_audit_rows(home.cfg, home.seen)
    home.seen.update(rows["id"])
    events = step_events(
        policy=home.policy, at=step.at, step=step.kind, audit_rows=rows, decision_kind=kind
    )
    if not events.empty:
        record.timeline.append(events)
    return events


def _report(params: ReplayParams, plan: _Plan, policy_homes: list[_Home], record: _Record) -> dict:
    began = time.perf_counter()
    cfg = plan.cfg
    tf = cfg.data.timeframe
    horizon_end = plan.end + max(cfg.horizons) * clock.bar_length(tf)
    frame = replay_model_frame(cfg, plan.candles[plan.candles["ts"] <= horizon_end])
    served = [s for h in policy_homes for s in h.served]
    timeline = [t for t in record.timeline if not t.empty]
    report = assemble_report(
        title=f"coincast replay: {', '.join(h.policy for h in policy_homes)} "
        f"({plan.start:%Y-%m-%d} to {plan.end:%Y-%m-%d}, {tf})",
        spec=plan.spec,
        served=pd.concat(served, ignore_index=True) if served else empty_served(),
        candles=plan.candles,
        model_frame=frame,
        weeks=clock.replay_weeks(plan.steps, plan.end),
        windows={h.policy: h.windows for h in policy_homes},
        timeline=pd.concat(timeline, ignore_index=True)
        if timeline
        else pd.DataFrame(columns=TIMELINE_COLUMNS),
        policies=[h.policy for h in policy_homes],
        horizons=cfg.horizons,
        eval_cfg=cfg.evaluation,
        timeframe=tf,
        timings=pd.DataFrame(record.timings),
        notes=[FEED_NOTE],
    )
    paths = write_report(report, str(params.output_dir()))
    tracking = _replay_tracking(params, policy_homes)
    run_id = log_replay(*tracking, report, paths)
    publish_replay(report, paths)
    record.timings.append(
        {"policy": "", "kind": "report", "at": plan.end, "seconds": time.perf_counter() - began}
    )
    return _summary(plan, policy_homes, record, report, paths, run_id, tracking[0])


def _replay_tracking(params: ReplayParams, policy_homes: list[_Home]) -> tuple[str, str | None]:
    """The coincast policy's registry, or a tracking database in the output folder."""
    for home in policy_homes:
        if home.policy == "coincast":
            return home.cfg.tracking_uri, home.cfg.artifact_location
    out = params.output_dir()
    return f"sqlite:///{out / 'mlflow.db'}", (out / "mlartifacts").as_uri()


def _timing(home: _Home, kind: str, at: pd.Timestamp, began: float) -> dict:
    return {"policy": home.policy, "kind": kind, "at": at, "seconds": time.perf_counter() - began}


def _summary(
    plan: _Plan,
    policy_homes: list[_Home],
    record: _Record,
    report: ReplayReport,
    paths: dict[str, str],
    run_id: str,
    tracking_uri: str,
) -> dict:
    timings = pd.DataFrame(record.timings)
    return {
        "out_dir": plan.spec["out_dir"],
        "start": str(plan.start),
        "end": str(plan.end),
        "n_steps": len(plan.steps),
        "paths": paths,
        "homes": {h.policy: str(h.path) for h in policy_homes},
        "policies": policy_summary(report).to_dict(orient="records"),
        "coverage": {c.policy: c.summary() for c in report.coverage},
        "seconds_by_kind": timings.groupby("kind", sort=False)["seconds"].sum().round(1).to_dict(),
        "steps_by_kind": timings.groupby("kind", sort=False).size().to_dict(),
        "mlflow_run_id": run_id,
        "tracking_uri": tracking_uri,
    }
