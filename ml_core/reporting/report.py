"""The HTML run report of a retrain: one self-contained file, no external assets.

A :class:`RunReport` holds plain data (frames, series, dicts, strings) that
the evaluation produced; :func:`write_report` renders it with plots embedded
as base64 PNGs and a small inline stylesheet, so the file can be attached to
a Prefect artifact, mailed or opened offline.

Example::

    report = RunReport(title="Weekly retrain", metrics=table, decision={
        "promoted": True, "reason": "challenger beats champion", "auc_gain": 0.004})
    path = write_report(report, cfg.reports_dir)   # .../report-20240101T000000Z.html
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd

from ml_core.errors import DataContractError
from ml_core.evaluation.baselines import BASELINE_NAMES
from ml_core.evaluation.weekly import after_fee_text
from ml_core.reporting import plots

#: Template file inside the package (must ship as package data).
TEMPLATE_NAME = "report.html.j2"

#: Metric columns shown in the tables (when present), and which way is better.
HIGHER_IS_BETTER = (
    "auc",
    "accuracy",
    "f1",
    "total_return",
    "sharpe",
    "max_drawdown",
    "win_rate",
    "excess_return",
)
LOWER_IS_BETTER = ("brier", "log_loss")
TABLE_COLUMNS = (
    "auc",
    "accuracy",
    "f1",
    "brier",
    "log_loss",
    "n",
    "total_return",
    "sharpe",
    "max_drawdown",
    "win_rate",
    "n_trades",
    "exposure",
    "excess_return",
)
PERCENT_COLUMNS = frozenset(
    {
        "total_return",
        "max_drawdown",
        "win_rate",
        "exposure",
        "excess_return",
        "bh_total_return",
        "bh_max_drawdown",
    }
)


@dataclass
class RunReport:
    """Everything a run report shows, as plain data.

    ``metrics``: the candidates' test metrics, one row per (candidate, horizon)
    with columns ``candidate``, ``horizon`` and metric columns (``auc``,
    ``brier``, ``total_return``, ``bh_total_return``, ...).
    ``baseline_metrics``: the same per (baseline, horizon), column ``baseline``
    instead of ``candidate`` (the frame ``score_baselines`` returns).
    ``equity_curves`` and ``calibration`` are keyed by ``(name, horizon)``
    (candidates and baselines alike); ``buy_and_hold`` by horizon.
    ``decision`` holds ``promoted`` (bool; ``promote`` is read too), ``reason``
    (str) and the numbers behind it (nested dicts are flattened).
    ``data_summary`` is free-form; :func:`summarize_data` builds the usual one.
    Optional parts left empty are shown as "not available for this run".
    """

    title: str
    metrics: pd.DataFrame
    decision: dict[str, Any]
    baseline_metrics: pd.DataFrame | None = None
    data_summary: dict[str, Any] = field(default_factory=dict)
    run_time: datetime = field(default_factory=lambda: datetime.now(UTC))
    equity_curves: dict[tuple[str, int], pd.Series] = field(default_factory=dict)
    buy_and_hold: dict[int, pd.Series] = field(default_factory=dict)
    calibration: dict[tuple[str, int], pd.DataFrame] = field(default_factory=dict)
    feature_importance: pd.Series | None = None
    extra_tables: list[tuple[str, str, pd.DataFrame]] = field(default_factory=list)


def summarize_data(splits: Mapping[str, pd.DataFrame], *, timeframe: str) -> dict[str, Any]:
    """Data summary for the report from the split frames (``{"train": df, ...}``).

    Returns ``{"timeframe", "symbols", "splits": {name: {"rows", "start", "end"}}}``;
    each frame needs ``symbol`` and ``ts`` columns.
    """
    symbols: set[str] = set()
    parts: dict[str, dict[str, Any]] = {}
    for name, frame in splits.items():
        missing = [c for c in ("symbol", "ts") if c not in frame.columns]
        if missing:
            raise DataContractError(
                f"split {name!r} lacks columns {missing}; pass frames with symbol and ts."
            )
        symbols.update(frame["symbol"].astype(str).unique().tolist())
        parts[name] = {
            "rows": len(frame),
            "start": frame["ts"].min() if len(frame) else None,
            "end": frame["ts"].max() if len(frame) else None,
        }
    return {"timeframe": timeframe, "symbols": sorted(symbols), "splits": parts}


def render_report(report: RunReport) -> str:
    """The report as one HTML string (plots embedded)."""
    metrics, baselines = _all_metrics(report)
    images = _images(report, metrics, baselines)
    env = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True
    )
    env.filters["fmt"] = format_value
    template = env.from_string(_template_text())
    summary = dict(report.data_summary)
    return template.render(
        title=report.title,
        run_time=_utc(report.run_time).strftime("%Y-%m-%d %H:%M:%S UTC"),
        decision=_decision_view(report.decision),
        summary_splits=summary.pop("splits", {}),
        summary=summary,
        tables=_metric_tables(metrics, baselines),
        extra_tables=[_extra_table(t, n, f) for t, n, f in report.extra_tables if not f.empty],
        images=images,
    )


def write_report(report: RunReport, out_dir: Path) -> Path:
    """Write ``report-<UTC timestamp>.html`` and a ``latest.html`` copy; return the former."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    html = render_report(report)
    path = out_dir / f"report-{_utc(report.run_time).strftime('%Y%m%dT%H%M%SZ')}.html"
    _atomic_write(path, html)
    latest = out_dir / "latest.html"
    tmp = out_dir / ".latest.html.tmp"
    shutil.copyfile(path, tmp)
    os.replace(tmp, latest)
    return path


def format_value(value: Any, column: str = "") -> str:
    """Human format of one table or decision value (percent for return-like columns)."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float) and not isinstance(value, bool):
        if isinstance(value, float) and math.isnan(value):
            return "—"
        if column in PERCENT_COLUMNS:
            return f"{value * 100:+.2f}%" if "return" in column else f"{value * 100:.1f}%"
        if column.startswith("n") and float(value).is_integer():
            return f"{int(value):,}"
        if isinstance(value, float):
            return f"{value:.2f}" if column.endswith("sharpe") else f"{value:.4g}"
        return f"{value:,}"
    if isinstance(value, pd.Timestamp | datetime):
        return pd.Timestamp(value).strftime("%Y-%m-%d %H:%M")
    if isinstance(value, list | tuple | set):
        return ", ".join(str(v) for v in value)
    return str(value)


def _all_metrics(report: RunReport) -> tuple[pd.DataFrame, set[str]]:
    """Candidates' and baselines' rows in one frame keyed by ``candidate``; baseline names."""
    frames = [_checked(report.metrics, "candidate", "metrics")]
    names = set(BASELINE_NAMES)
    if report.baseline_metrics is not None and not report.baseline_metrics.empty:
        base = _checked(report.baseline_metrics, "baseline", "baseline_metrics")
        names |= set(base["baseline"].astype(str))
        frames.append(base.rename(columns={"baseline": "candidate"}))
    non_empty = [f for f in frames if not f.empty]
    merged = pd.concat(non_empty, ignore_index=True) if non_empty else frames[0]
    return merged, names


def _checked(metrics: pd.DataFrame, name_column: str, field_name: str) -> pd.DataFrame:
    missing = [c for c in (name_column, "horizon") if c not in metrics.columns]
    if missing:
        raise DataContractError(
            f"RunReport.{field_name} lacks columns {missing}; pass one row per "
            f"({name_column}, horizon) with metric columns (auc, brier, total_return, ...)."
        )
    return metrics


def _images(report: RunReport, metrics: pd.DataFrame, baselines: set[str]) -> dict[str, str]:
    """Data URIs of the plots that have data, keyed by section."""
    pngs = {
        "equity": plots.plot_equity_curves(report.equity_curves, report.buy_and_hold, baselines),
        "auc": plots.plot_metric_by_horizon(metrics, "auc", baselines, reference=0.5),
        "calibration": plots.plot_calibration(report.calibration),
        "cpcv": plots.plot_cpcv_paths(plots.cpcv_path_aucs(report.decision)),
        "importance": plots.plot_feature_importance(report.feature_importance),
    }
    return {key: plots.png_data_uri(png) for key, png in pngs.items() if png is not None}


def _extra_table(title: str, note: str, frame: pd.DataFrame) -> dict[str, Any]:
    """A plain table section (title, note, formatted cells), e.g. metrics by regime."""
    columns = [str(c) for c in frame.columns]
    rows = [
        [format_value(_plain(v), c) for c, v in zip(columns, row, strict=True)]
        for row in frame.itertuples(index=False)
    ]
    return {"title": title, "note": note, "columns": columns, "rows": rows}


def _metric_tables(metrics: pd.DataFrame, baselines: set[str]) -> list[dict[str, Any]]:
    """Per horizon: header, rows of formatted cells with a 'best' flag, buy-and-hold line."""
    columns = [c for c in TABLE_COLUMNS if c in metrics.columns]
    tables = []
    for h, group in metrics.groupby("horizon", sort=True):
        best = {c: _best_value(group[c]) for c in columns}
        group = group.assign(_base=group["candidate"].astype(str).isin(baselines))
        group = group.sort_values("_base", kind="stable")  # candidates first
        rows = []
        for _, row in group.iterrows():
            cells = [
                {"text": format_value(_plain(row[c]), c), "best": _is_best(row[c], best[c])}
                for c in columns
            ]
            rows.append(
                {"name": str(row["candidate"]), "baseline": bool(row["_base"]), "cells": cells}
            )
        tables.append({"horizon": h, "columns": columns, "rows": rows, "bh": _bh_line(group)})
    return tables


def _best_value(values: pd.Series) -> float | None:
    name = values.name
    numeric = pd.to_numeric(values, errors="coerce").dropna()
    if numeric.empty or numeric.nunique() < 2:
        return None
    if name in HIGHER_IS_BETTER:
        return float(numeric.max())
    if name in LOWER_IS_BETTER:
        return float(numeric.min())
    return None


def _is_best(value: Any, best: float | None) -> bool:
    if best is None:
        return False
    try:
        return math.isclose(float(value), best, rel_tol=0.0, abs_tol=1e-12)
    except (TypeError, ValueError):
        return False


def _bh_line(group: pd.DataFrame) -> str | None:
    parts = []
    for col, label in (
        ("bh_total_return", "return"),
        ("bh_sharpe", "Sharpe"),
        ("bh_max_drawdown", "max drawdown"),
    ):
        if col in group.columns and group[col].notna().any():
            parts.append(f"{label} {format_value(_plain(group[col].dropna().iloc[0]), col)}")
    return ", ".join(parts) or None


#: Decision keys left out of the folded table: metrics_json repeats the metrics below it.
_DECISION_HIDDEN = {"promoted", "promote", "reason", "metrics_json"}


def _decision_view(decision: Mapping[str, Any]) -> dict[str, Any]:
    details = {k: v for k, v in decision.items() if k not in _DECISION_HIDDEN}
    return {
        "promoted": decision.get("promoted", decision.get("promote")),
        "reason": str(decision.get("reason", "no reason given")),
        "summary": decision_summary(decision),
        "details": [(str(k), format_value(_plain(v), str(k))) for k, v in _flatten(details)],
    }


def decision_summary(decision: Mapping[str, Any]) -> list[str]:
    """The decision in a few plain lines, each saying what its numbers are averaged over:
    the kind and the rule that decided, champion before and after, the served horizons
    and their skill bounds, PBO, the after-fee result."""
    m = decision.get("metrics") or {}
    lines = []
    kind = decision.get("kind") or m.get("kind") or "on demand"
    rule = m.get("rule") or decision.get("rule")
    lines.append(f"Week: {kind}" + (f"; decided by the {rule} rule" if rule else ""))
    before, after = decision.get("champion_before"), decision.get("champion_after")
    if before is not None or after is not None or decision.get("challenger_version"):
        who = decision.get("candidate")
        lines.append(
            f"Champion {_v(before)} -> {_v(after)}; challenger {_v(decision.get('challenger_version'))}"
            + (f" ({who})" if who else "")
        )
    horizons = sorted({int(k[len("skill_h") :]) for k in m if re.fullmatch(r"skill_h\d+", k)})
    edge = m.get("edge_horizons")
    if horizons:
        served = [h for h in horizons if edge is None or h in (edge or [])]
        lines.append(
            "Serves: "
            + (", ".join(f"h={h}" for h in served) if served else "no horizon")
            + (
                f" (no edge at {', '.join(f'h={h}' for h in horizons if h not in served)})"
                if len(served) < len(horizons)
                else ""
            )
        )
        for h in served:
            test = m.get(f"skill_h{h}_test_mean_diff")
            if test is None:
                continue
            lines.append(
                f"h={h}: AUC {test:+.4f} over {m.get(f'skill_h{h}_baseline')} on the test window "
                f"(lower bound {m.get(f'skill_h{h}_test_ci_low', float('nan')):+.4f}, over "
                f"{m.get(f'skill_h{h}_test_n_units')} time blocks); on CPCV paths "
                f"{m.get(f'skill_h{h}_cpcv_mean_diff', float('nan')):+.4f} (lower "
                f"{m.get(f'skill_h{h}_cpcv_ci_low', float('nan')):+.4f}, over "
                f"{m.get(f'skill_h{h}_cpcv_n_units')} blocks)"
            )
    if m.get("pbo") is not None:
        lines.append(
            f"PBO {m['pbo']:.3f} over {m.get('pbo_n_configs')} configurations and "
            f"{m.get('pbo_n_periods')} periods; deflated Sharpe "
            f"{_num(m.get('dsr'))}"
        )
    if (after := after_fee_text(m)) is not None:
        lines.append(after[0].upper() + after[1:])
    return lines


def _v(version: Any) -> str:
    return "none" if version is None or version != version else f"v{version}"


def _num(value: Any) -> str:
    return "n/a" if value is None or value != value else f"{float(value):.3f}"


def _flatten(values: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in values.items():
        if isinstance(value, Mapping):
            out.extend(_flatten(value, f"{prefix}{key}."))
        else:
            out.append((f"{prefix}{key}", value))
    return out


def _plain(value: Any) -> Any:
    """numpy scalars -> Python scalars, so formatting sees int/float/bool/Timestamp."""
    if isinstance(value, np.datetime64):
        return pd.Timestamp(value)
    return value.item() if isinstance(value, np.generic) else value


def _template_text() -> str:
    """The Jinja template shipped as package data (``templates/report.html.j2``)."""
    return (resources.files("ml_core.reporting") / "templates" / TEMPLATE_NAME).read_text("utf-8")


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".report-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; reports are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
