"""Plots of a retrain, rendered to PNG bytes for the self-contained HTML report.

Figures are built on matplotlib's object API with an explicit Agg canvas,
created inside :func:`new_figure`: nothing touches pyplot's global backend or
figure registry, so plotting is safe at import time and from worker threads.
Every ``plot_*`` function takes plain data and returns PNG bytes, or ``None``
when there is nothing to draw.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Colours of candidates (cycled); baselines are drawn dashed in greys.
CANDIDATE_COLORS = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#9467bd",
    "#ff7f0e",
    "#17becf",
    "#8c564b",
    "#e377c2",
)
BASELINE_COLORS = ("#7f7f7f", "#a0a0a0", "#bcbd22", "#c7a17a")
BUY_AND_HOLD_COLOR = "#000000"


def new_figure(width: float, height: float) -> Figure:
    """A figure on its own Agg canvas (no pyplot, no global backend switch)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_to_png(fig: Figure) -> bytes:
    """Render ``fig`` to PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", facecolor="white")
    return buffer.getvalue()


def png_data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` URI for an ``<img src>``."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def series_styles(names: Sequence[str], baselines: Collection[str]) -> dict[str, dict]:
    """Stable line style per name: coloured solid candidates, grey dashed baselines."""
    styles: dict[str, dict] = {}
    n_cand = n_base = 0
    for name in names:
        if name in styles:
            continue
        if name in baselines:
            color = BASELINE_COLORS[n_base % len(BASELINE_COLORS)]
            styles[name] = {"color": color, "linestyle": "--", "linewidth": 1.2}
            n_base += 1
        else:
            color = CANDIDATE_COLORS[n_cand % len(CANDIDATE_COLORS)]
            styles[name] = {"color": color, "linestyle": "-", "linewidth": 1.8}
            n_cand += 1
    return styles


def _grid(n_panels: int, max_cols: int = 3) -> tuple[int, int]:
    n_cols = min(max_cols, n_panels)
    return math.ceil(n_panels / n_cols), n_cols


def _shared_legend(fig: Figure, axes: Sequence[Axes], max_cols: int = 6) -> None:
    handles, labels = {}, []
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in handles:
                handles[label] = handle
                labels.append(label)
    if labels:
        fig.legend(
            [handles[label] for label in labels],
            labels,
            loc="outside upper center",
            ncols=min(len(labels), max_cols),
            frameon=False,
            fontsize=8,
        )


def plot_equity_curves(
    curves: Mapping[tuple[str, int], pd.Series],
    buy_and_hold: Mapping[int, pd.Series],
    baselines: Collection[str] = (),
) -> bytes | None:
    """Small multiples, one panel per horizon: equity of each candidate and baseline
    (keyed by ``(name, horizon)``) against buy-and-hold (keyed by horizon)."""
    horizons = sorted({h for _, h in curves} | set(buy_and_hold))
    if not horizons:
        return None
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    n_rows, n_cols = _grid(len(horizons))
    fig = new_figure(4.2 * n_cols, 2.8 * n_rows + 0.4)
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    styles = series_styles([name for name, _ in curves], baselines)
    for ax, h in zip(axes, horizons, strict=False):
        for (name, horizon), curve in curves.items():
            if horizon == h and not curve.empty:
                ax.plot(curve.index, curve.to_numpy(), label=name, **styles[name])
        bh = buy_and_hold.get(h)
        if bh is not None and not bh.empty:
            ax.plot(bh.index, bh.to_numpy(), label="buy & hold", color=BUY_AND_HOLD_COLOR, lw=1.4)
        ax.axhline(1.0, color="#cccccc", lw=0.8, zorder=0)
        ax.set_title(_horizon_title(h), fontsize=9)
        ax.tick_params(labelsize=7)
        locator = AutoDateLocator(minticks=3, maxticks=6)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
        ax.xaxis.get_offset_text().set_fontsize(7)
        ax.grid(alpha=0.3)
    for ax in axes[len(horizons) :]:
        ax.set_visible(False)
    axes[0].set_ylabel("equity (start = 1)", fontsize=8)
    _shared_legend(fig, axes[: len(horizons)])
    return figure_to_png(fig)


def plot_calibration(
    tables: Mapping[tuple[str, int], pd.DataFrame], max_horizons: int = 4
) -> bytes | None:
    """Reliability diagrams (mean forecast vs observed up share) per candidate, for every
    horizon (at most ``max_horizons``, spread from the shortest to the longest)."""
    available = sorted({h for _, h in tables})
    if not available:
        return None
    horizons = available if len(available) <= max_horizons else _spread(available, max_horizons)
    fig = new_figure(3.6 * len(horizons), 3.4)
    axes = fig.subplots(1, len(horizons), squeeze=False).ravel()
    styles = series_styles([name for name, _ in tables], ())
    for ax, h in zip(axes, horizons, strict=True):
        ax.plot([0, 1], [0, 1], color="#999999", ls=":", lw=1, label="perfect")
        for (name, horizon), table in tables.items():
            if horizon == h and not table.empty:
                ax.plot(
                    table["mean_p"],
                    table["frac_up"],
                    marker="o",
                    ms=3.5,
                    label=name,
                    color=styles[name]["color"],
                    lw=1.4,
                )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.set_title(_horizon_title(h), fontsize=9)
        ax.set_xlabel("mean forecast P(up)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("observed up share", fontsize=8)
    _shared_legend(fig, axes)
    return figure_to_png(fig)


def _horizon_title(horizon: int) -> str:
    return f"h = {horizon} bar" + ("" if horizon == 1 else "s")


def _spread(values: Sequence[int], k: int) -> list[int]:
    """``k`` values spread evenly over sorted ``values``, ends included."""
    picks = np.linspace(0, len(values) - 1, k).round().astype(int)
    return [values[i] for i in sorted(set(picks.tolist()))]


def plot_metric_by_horizon(
    metrics: pd.DataFrame,
    metric: str = "auc",
    baselines: Collection[str] = (),
    reference: float | None = 0.5,
) -> bytes | None:
    """``metric`` against horizon, one line per candidate (baselines dashed),
    with a reference line (0.5 for AUC: a coin flip)."""
    if metric not in metrics.columns or metrics.empty:
        return None
    horizons = sorted(metrics["horizon"].unique().tolist())
    positions = {h: i for i, h in enumerate(horizons)}
    fig = new_figure(6.4, 3.4)
    ax = fig.subplots()
    names = list(dict.fromkeys(metrics["candidate"].tolist()))
    styles = series_styles(names, baselines)
    for name in names:
        rows = metrics[metrics["candidate"] == name].sort_values("horizon")
        x = [positions[h] for h in rows["horizon"]]
        ax.plot(x, rows[metric].to_numpy(dtype=float), marker="o", ms=4, label=name, **styles[name])
    if reference is not None:
        ax.axhline(reference, color="#444444", lw=1, ls=":", label=f"{metric} = {reference:g}")
    ax.set_xticks(range(len(horizons)), [str(h) for h in horizons])
    ax.set_xlabel("horizon (bars)", fontsize=8)
    ax.set_ylabel(metric, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    _shared_legend(fig, [ax], max_cols=4)
    return figure_to_png(fig)


def plot_feature_importance(importance: pd.Series | None, top_n: int = 20) -> bytes | None:
    """Horizontal bars of the ``top_n`` features by absolute importance, largest on top."""
    if importance is None or importance.dropna().empty:
        return None
    values = importance.dropna().astype(float)
    top = values.reindex(values.abs().sort_values(ascending=False).index[:top_n])[::-1]
    fig = new_figure(6.4, 0.28 * len(top) + 0.9)
    ax = fig.subplots()
    colors = ["#1f77b4" if v >= 0 else "#d62728" for v in top.to_numpy()]
    ax.barh([str(i) for i in top.index], top.to_numpy(), color=colors)
    ax.set_xlabel(str(importance.name or "importance"), fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(axis="x", alpha=0.3)
    return figure_to_png(fig)


def plot_cpcv_paths(
    path_aucs: Mapping[str, Sequence[float]], reference: float | None = 0.5
) -> bytes | None:
    """Box plot of the CPCV path AUCs per configuration (e.g. challenger vs champion),
    each path drawn as a dot on its box, with a reference line (0.5: a coin flip)."""
    data = {
        name: np.asarray(values, dtype=float)[np.isfinite(np.asarray(values, dtype=float))]
        for name, values in path_aucs.items()
        if values is not None and len(values)
    }
    data = {name: values for name, values in data.items() if values.size}
    if not data:
        return None
    fig = new_figure(5.2, 3.0)
    ax = fig.subplots()
    names = list(data)
    ax.boxplot([data[n] for n in names], widths=0.5, showmeans=True)
    for i, name in enumerate(names, start=1):
        color = CANDIDATE_COLORS[(i - 1) % len(CANDIDATE_COLORS)]
        jitter = np.linspace(-0.08, 0.08, data[name].size)
        ax.scatter(i + jitter, data[name], s=14, color=color, zorder=3)
    if reference is not None:
        ax.axhline(reference, color="#444444", lw=1, ls=":")
    ax.set_xticks(range(1, len(names) + 1), names)
    ax.set_ylabel("path AUC (mean over horizons)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(axis="y", alpha=0.3)
    return figure_to_png(fig)


def cpcv_path_aucs(decision: Mapping[str, object]) -> dict[str, list[float]]:
    """``{"challenger": [...], "champion": [...]}`` path AUCs from a gate v2 decision record
    (its ``metrics`` keys ``cpcv_<name>_path_auc``); empty for a gate v1 decision."""
    metrics = decision.get("metrics") or {}
    if not isinstance(metrics, Mapping):
        return {}
    out: dict[str, list[float]] = {}
    for name in ("challenger", "champion"):
        values = metrics.get(f"cpcv_{name}_path_auc")
        if isinstance(values, Sequence) and not isinstance(values, str) and len(values):
            out[name] = [float("nan") if v is None else float(v) for v in values]
    return out
