"""The replay report: a CSV of weekly metrics and one self-contained HTML page.

Built from plain data (the weekly table of :mod:`ml_core.replay.metrics`, the
timeline of :mod:`ml_core.replay.timeline`, coverage and step timings) with
the run report's helpers (``ml_core.reporting``: value formatting, Agg
figures as embedded PNGs, the same stylesheet), so it opens offline.

Example::

    paths = write_replay_report(ReplayReport(title=..., spec=..., weekly=table,
                                             timeline=events), out_dir)
    paths["html"], paths["csv"]
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd

from ml_core.replay.metrics import SUMMARY_HORIZON, WEEKLY_COLUMNS
from ml_core.replay.served import Coverage
from ml_core.replay.timeline import MOVES, TIMELINE_COLUMNS, event_counts
from ml_core.reporting import plots
from ml_core.reporting.report import format_value

TEMPLATE_NAME = "replay.html.j2"
#: Colours per policy in the plot (the others cycle through the run report's palette).
POLICY_COLORS = {"coincast": "#1f77b4", "latest": "#d62728", "frozen": "#2ca02c"}
WEEK_TABLE_COLUMNS = [
    "policy",
    "week",
    "week_start",
    "versions",
    "n",
    "auc",
    "log_loss",
    "brier",
    "hit_rate_confident",
    "trading_return",
    "bh_return",
    "best_baseline",
    "baseline_auc",
    "auc_vs_baseline",
    "worse_than_baseline",
]
_PERCENT = {"trading_return", "bh_return", "total_trading_return", "hit_rate_confident"}


@dataclass
class ReplayReport:
    """Everything the replay report shows, as plain data.

    ``spec``: the replay's parameters (shown as given). ``weekly``: the
    ``WEEKLY_COLUMNS`` table. ``timeline``: ``TIMELINE_COLUMNS`` rows.
    ``coverage``: one :class:`Coverage` per policy. ``timings``: one row per
    step (``kind``, ``seconds``; ``policy`` optional). ``notes``: free lines.
    ``served``: the served predictions with their outcomes (written as Parquet).
    """

    title: str
    spec: dict[str, Any]
    weekly: pd.DataFrame
    timeline: pd.DataFrame
    policies: list[str]
    coverage: list[Coverage] = field(default_factory=list)
    timings: pd.DataFrame = field(default_factory=pd.DataFrame)
    notes: list[str] = field(default_factory=list)
    served: pd.DataFrame | None = None
    run_time: datetime = field(default_factory=lambda: datetime.now(UTC))


def policy_summary(report: ReplayReport) -> pd.DataFrame:
    """Per policy over all weeks: mean weekly skill, compounded return, events, weeks worse."""
    summary = report.weekly[report.weekly["horizon"] == SUMMARY_HORIZON]
    counts = event_counts(report.timeline, report.policies).set_index("policy")
    rows = []
    for policy in report.policies:
        weeks = summary[summary["policy"] == policy]
        scored = weeks[weeks["n"] > 0]
        flags = scored["worse_than_baseline"].dropna().astype(bool)
        ret = scored["trading_return"].dropna().to_numpy(dtype=float)
        row = {
            "policy": policy,
            "weeks": len(weeks),
            "weeks_scored": len(scored),
            "n": int(scored["n"].sum()),
            "auc": _mean(scored["auc"]),
            "log_loss": _mean(scored["log_loss"]),
            "brier": _mean(scored["brier"]),
            "hit_rate_confident": _mean(scored["hit_rate_confident"]),
            "total_trading_return": float(np.prod(1.0 + ret) - 1.0) if ret.size else math.nan,
            "weeks_worse_than_baseline": f"{int(flags.sum())} of {len(flags)}",
        }
        for event in ("first", "refresh", "replace", "latest", "reject", "keep", "rollback"):
            if event in counts.columns:
                row[f"n_{event}"] = int(counts.loc[policy, event]) if policy in counts.index else 0
        row["champions"] = _champions(report.timeline, policy)
        rows.append(row)
    return pd.DataFrame(rows)


def plot_weekly_skill(weekly: pd.DataFrame, policies: Sequence[str]) -> bytes | None:
    """Two panels over the weeks, one line per policy: served AUC (best baseline dashed)
    and served AUC minus the best baseline's on the same rows (mean over horizons)."""
    summary = weekly[(weekly["horizon"] == SUMMARY_HORIZON) & (weekly["n"] > 0)]
    if summary.empty:
        return None
    from matplotlib.ticker import MaxNLocator

    fig = plots.new_figure(9.6, 3.4)
    ax_auc, ax_diff = fig.subplots(1, 2)
    for i, policy in enumerate(policies):
        rows = summary[summary["policy"] == policy].sort_values("week")
        if rows.empty:
            continue
        color = POLICY_COLORS.get(policy, plots.CANDIDATE_COLORS[i % len(plots.CANDIDATE_COLORS)])
        x = rows["week"].to_numpy()
        ax_auc.plot(
            x, rows["auc"].to_numpy(dtype=float), marker="o", ms=4, color=color, label=policy
        )
        ax_diff.plot(
            x,
            rows["auc_vs_baseline"].to_numpy(dtype=float),
            marker="o",
            ms=4,
            color=color,
            label=policy,
        )
    base = summary.groupby("week")["baseline_auc"].mean()
    ax_auc.plot(
        base.index,
        base.to_numpy(dtype=float),
        color="#7f7f7f",
        ls="--",
        lw=1.2,
        marker="s",
        ms=3,
        label="best baseline",
    )
    ax_auc.axhline(0.5, color="#444444", lw=1, ls=":")
    ax_diff.axhline(0.0, color="#444444", lw=1, ls=":")
    ax_auc.set_title("served AUC (mean over horizons)", fontsize=9)
    ax_diff.set_title("AUC minus best naive baseline, same rows", fontsize=9)
    for ax in (ax_auc, ax_diff):
        ax.set_xlabel("week", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_auc.legend(fontsize=7, frameon=False)
    return plots.figure_to_png(fig)


def render_replay_report(report: ReplayReport) -> str:
    """The report as one HTML string (the plot embedded)."""
    env = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True
    )
    template = env.from_string(_template_text())
    weekly = report.weekly[report.weekly["horizon"] == SUMMARY_HORIZON]
    worse = weekly[weekly["worse_than_baseline"].fillna(False).astype(bool)]
    png = plot_weekly_skill(report.weekly, report.policies)
    timings = _timing_table(report.timings)
    return template.render(
        title=report.title,
        style=_stylesheet(),
        run_time=report.run_time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        spec=_spec_view(report.spec),
        summary=_table(policy_summary(report)),
        plot=plots.png_data_uri(png) if png else None,
        weeks=_table(weekly.reindex(columns=WEEK_TABLE_COLUMNS)),
        worse=_table(worse.reindex(columns=WEEK_TABLE_COLUMNS)),
        timeline=_table(report.timeline.reindex(columns=TIMELINE_COLUMNS)),
        coverage=[c.summary() for c in report.coverage],
        timings=_table(timings),
        notes=report.notes,
    )


def write_replay_report(report: ReplayReport, out_dir: Path | str) -> dict[str, Path]:
    """Write ``replay_weekly.csv`` (every horizon), ``replay_timeline.csv``, ``replay.html``
    and, with ``served``, ``replay_served.parquet``; returns the paths by kind."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "csv": out / "replay_weekly.csv",
        "timeline_csv": out / "replay_timeline.csv",
        "html": out / "replay.html",
    }
    report.weekly.reindex(columns=WEEKLY_COLUMNS).to_csv(paths["csv"], index=False)
    report.timeline.reindex(columns=TIMELINE_COLUMNS).to_csv(paths["timeline_csv"], index=False)
    paths["html"].write_text(render_replay_report(report), encoding="utf-8")
    if report.served is not None:
        paths["served"] = out / "replay_served.parquet"
        report.served.to_parquet(paths["served"], index=False)
    return paths


# ---- helpers ------------------------------------------------------------------------------


def _timing_table(timings: pd.DataFrame) -> pd.DataFrame:
    if timings.empty or "kind" not in timings.columns:
        return pd.DataFrame()
    g = timings.groupby("kind", sort=False)["seconds"]
    table = pd.DataFrame({"n": g.size(), "total_s": g.sum(), "mean_s": g.mean()})
    total = float(timings["seconds"].sum())
    table["share"] = table["total_s"] / total if total > 0 else math.nan
    return table.reset_index()


def _table(frame: pd.DataFrame) -> dict[str, Any]:
    columns = [str(c) for c in frame.columns]
    rows = [
        [_fmt(v, c) for c, v in zip(columns, row, strict=True)]
        for row in frame.itertuples(index=False)
    ]
    return {"columns": columns, "rows": rows}


def _fmt(value: Any, column: str) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if column in _PERCENT and isinstance(value, float):
        return f"{value * 100:+.2f}%" if "return" in column else f"{value * 100:.1f}%"
    if column in ("week", "weeks", "weeks_scored") or column.startswith("n"):
        return format_value(value, "n")
    if column.endswith("_s") and isinstance(value, float):
        return f"{value:,.1f}"
    if column == "share" and isinstance(value, float):
        return f"{value * 100:.0f}%"
    return format_value(value, column)


def _champions(timeline: pd.DataFrame, policy: str) -> str:
    """Champion versions in the order they took over (``v1 -> v3 -> v2``)."""
    mine = timeline[(timeline["policy"] == policy) & timeline["event"].isin(MOVES)]
    chain: list[str] = []
    for version in mine["champion_after"]:
        if version and (not chain or chain[-1] != str(version)):
            chain.append(str(version))
    return " -> ".join(f"v{v}" for v in chain) or "none"


def _mean(values: pd.Series) -> float:
    arr = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    return float(np.nanmean(arr)) if np.isfinite(arr).any() else math.nan


def _stylesheet() -> str:
    """The run report's stylesheet (``ml_core/reporting/templates/report.html.j2``)."""
    text = (resources.files("ml_core.reporting") / "templates" / "report.html.j2").read_text(
        "utf-8"
    )
    found = re.search(r"<style>(.*?)</style>", text, flags=re.S)
    return found.group(1) if found else ""


def _template_text() -> str:
    return (resources.files("ml_core.replay") / "templates" / TEMPLATE_NAME).read_text("utf-8")


def _spec_view(spec: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(str(k), _fmt(v, str(k))) for k, v in spec.items()]
