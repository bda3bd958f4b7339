"""HTML run report: self-contained file with decision, tables, embedded plots."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml_core.errors import DataContractError
from ml_core.reporting.report import RunReport, format_value, summarize_data, write_report

RUN_TIME = datetime(2024, 3, 4, 5, 6, 7, tzinfo=UTC)
IMG = re.compile(r'<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)">')


def _metrics() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "candidate": ["logistic", "lightgbm", "logistic", "lightgbm"],
            "horizon": [1, 1, 4, 4],
            "auc": [0.61, 0.58, 0.55, 0.57],
            "brier": [0.240, 0.245, 0.249, 0.247],
            "total_return": [0.12, -0.03, 0.01, 0.02],
            "bh_total_return": [0.05, 0.05, 0.04, 0.04],
        }
    )


def _baseline_metrics() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "baseline": ["always_up", "persistence", "always_up", "persistence"],
            "horizon": [1, 1, 4, 4],
            "auc": [0.5, 0.52, 0.5, 0.51],
            "brier": [0.25, 0.2499, 0.25, 0.2498],
            "total_return": [0.05, 0.0, 0.04, 0.01],
            "bh_total_return": [0.05, 0.05, 0.04, 0.04],
        }
    )


def _curve(values: list[float]) -> pd.Series:
    return pd.Series(values, index=pd.date_range("2024-01-01", periods=len(values), freq="D"))


def _full_report() -> RunReport:
    calibration = pd.DataFrame({"mean_p": [0.3, 0.5, 0.7], "frac_up": [0.35, 0.5, 0.6]})
    return RunReport(
        title="Weekly retrain",
        metrics=_metrics(),
        baseline_metrics=_baseline_metrics(),
        decision={
            "promoted": True,
            "reason": "challenger AUC 0.6100 beats the best baseline by 0.09",
            "numbers": {"challenger_auc": 0.61, "best_baseline": "persistence"},
        },
        data_summary=summarize_data(
            {"train": _frame("2024-01-01", 3), "test": _frame("2024-02-01", 2)}, timeframe="1h"
        ),
        run_time=RUN_TIME,
        equity_curves={
            ("logistic", 1): _curve([1.0, 1.05, 1.12]),
            ("persistence", 1): _curve([1.0, 0.99, 1.0]),
            ("lightgbm", 4): _curve([1.0, 1.02]),
        },
        buy_and_hold={1: _curve([1.0, 1.02, 1.05]), 4: _curve([1.0, 1.04])},
        calibration={("logistic", 1): calibration, ("lightgbm", 4): calibration},
        feature_importance=pd.Series([0.5, -0.2, 0.1], index=["rsi_14", "logret_1", "vol_60"]),
    )


def _frame(start: str, n: int) -> pd.DataFrame:
    ts = pd.date_range(start, periods=n, freq="h")
    return pd.DataFrame({"symbol": ["BTC", "ETH"] * n, "ts": ts.repeat(2)}).iloc[: 2 * n]


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out_dir = tmp_path_factory.mktemp("reports") / "nested"
    path = write_report(_full_report(), out_dir)
    return path, path.read_text(encoding="utf-8")


def test_writes_timestamped_file_and_latest_copy(written: tuple[Path, str]) -> None:
    path, html = written
    assert path.name == "report-20240304T050607Z.html"
    assert (path.parent / "latest.html").read_text(encoding="utf-8") == html
    assert html.startswith("<!DOCTYPE html>")


def test_contains_decision_names_and_data_summary(written: tuple[Path, str]) -> None:
    _, html = written
    assert "Promoted" in html and "Not promoted" not in html
    assert "challenger AUC 0.6100 beats the best baseline by 0.09" in html
    assert "numbers.challenger_auc" in html
    for name in ("logistic", "lightgbm", "always_up", "persistence"):
        assert f"<td>{name}</td>" in html
    assert "BTC, ETH" in html
    assert "2024-02-01 00:00" in html and "2024-02-01 01:00" in html


def test_embeds_every_plot_as_png_and_nothing_external(written: tuple[Path, str]) -> None:
    _, html = written
    images = IMG.findall(html)
    assert len(images) == 4  # AUC by horizon, equity, calibration, feature importance
    assert all(base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n" for data in images)
    assert "<link" not in html and "<script" not in html and "http" not in html


def test_best_value_per_horizon_is_highlighted(written: tuple[Path, str]) -> None:
    _, html = written
    assert '<td class="best">0.61</td>' in html  # highest AUC at h = 1
    assert '<td class="best">0.24</td>' in html  # lowest Brier at h = 1
    assert '<td class="best">+12.00%</td>' in html  # best total return at h = 1
    assert '<td class="best">0.5</td>' not in html  # always_up is never best
    assert "Buy &amp; hold on the same blocks: return +5.00%" in html
    assert '<tr class="baseline"><td>always_up</td>' in html


def test_missing_optional_sections_still_render(tmp_path: Path) -> None:
    report = RunReport(
        title="Retrain <nightly>",
        metrics=_metrics(),
        decision={"promote": False, "reason": "AUC gain 0.001 < margin 0.002 <b>"},
        run_time=datetime(2024, 3, 4, 7, 6, 7, tzinfo=timezone(timedelta(hours=2))),
    )
    path = write_report(report, tmp_path)
    html = path.read_text(encoding="utf-8")
    assert path.name == "report-20240304T050607Z.html"  # converted to UTC
    assert "Not promoted" in html
    assert "AUC gain 0.001 &lt; margin 0.002 &lt;b&gt;" in html  # escaped
    assert "Retrain &lt;nightly&gt;" in html
    assert len(IMG.findall(html)) == 1  # only AUC by horizon has data
    assert html.count("Not available for this run.") == 3


def test_metrics_without_candidate_column_are_rejected(tmp_path: Path) -> None:
    report = RunReport(title="x", metrics=_metrics().drop(columns="candidate"), decision={})
    with pytest.raises(DataContractError, match=r"RunReport.metrics lacks columns \['candidate'\]"):
        write_report(report, tmp_path)
    assert not list(tmp_path.iterdir())


def test_summarize_data_counts_rows_and_ranges() -> None:
    summary = summarize_data({"train": _frame("2024-01-01", 3)}, timeframe="1h")
    assert summary["symbols"] == ["BTC", "ETH"]
    assert summary["splits"]["train"] == {
        "rows": 6,
        "start": pd.Timestamp("2024-01-01 00:00"),
        "end": pd.Timestamp("2024-01-01 02:00"),
    }
    with pytest.raises(DataContractError, match=r"split 'val' lacks columns \['ts'\]"):
        summarize_data({"val": pd.DataFrame({"symbol": ["A"]})}, timeframe="1h")


@pytest.mark.parametrize(
    ("value", "column", "text"),
    [
        (0.1234, "total_return", "+12.34%"),
        (-0.05, "max_drawdown", "-5.0%"),
        (1.23456, "sharpe", "1.23"),
        (0.612345, "auc", "0.6123"),
        (12345, "n", "12,345"),
        (12345.0, "n_trades", "12,345"),
        (float("nan"), "auc", "—"),
        (np.float64(0.5), "win_rate", "50.0%"),
        (True, "promoted", "yes"),
        (["BTC", "ETH"], "symbols", "BTC, ETH"),
    ],
)
def test_format_value(value: object, column: str, text: str) -> None:
    from ml_core.reporting.report import _plain

    assert format_value(_plain(value), column) == text


def test_extra_tables_render_with_title_note_and_cells(tmp_path):
    """Extra sections (e.g. metrics by regime) render as plain tables."""
    import pandas as pd

    from ml_core.reporting.report import RunReport, render_report

    by_regime = pd.DataFrame(
        {"candidate": ["logistic"], "horizon": [15], "regime": ["Bull"], "auc": [0.5432]}
    )
    report = RunReport(
        title="t",
        metrics=pd.DataFrame({"candidate": ["logistic"], "horizon": [15], "auc": [0.55]}),
        decision={"promote": False, "reason": "r"},
        extra_tables=[("Metrics by regime", "sliced by regime", by_regime)],
    )
    html = render_report(report)
    assert "Metrics by regime" in html and "sliced by regime" in html
    assert "Bull" in html and "0.5432" in html


def test_the_decision_opens_with_plain_lines_and_folds_the_numbers(tmp_path: Path) -> None:
    from ml_core.reporting.report import decision_summary

    metrics = {
        "kind": "first",
        "rule": "skill",
        "edge_horizons": [12],
        "pbo": 0.0123,
        "pbo_n_configs": 5,
        "pbo_n_periods": 64,
        "dsr": 0.11,
        "after_fee_fee_bps": 4.0,
        "after_fee_return_h12": -0.205,
        "after_fee_bh_return_h12": -0.381,
    }
    for h, diff in ((1, 0.029), (12, 0.0637)):
        metrics |= {
            f"skill_h{h}": "yes" if h == 12 else "no",
            f"skill_h{h}_baseline": "momentum_sign",
            f"skill_h{h}_test_mean_diff": diff,
            f"skill_h{h}_test_ci_low": 0.0078,
            f"skill_h{h}_test_n_units": 24,
            f"skill_h{h}_cpcv_mean_diff": 0.0389,
            f"skill_h{h}_cpcv_ci_low": 0.0204,
            f"skill_h{h}_cpcv_n_units": 24,
        }
    decision = {
        "promote": True,
        "reason": "first champion: skill at h=12",
        "kind": "first",
        "champion_before": None,
        "champion_after": "1",
        "challenger_version": "1",
        "candidate": "logistic",
        "metrics": metrics,
        "metrics_json": "{" + "x" * 5000 + "}",
    }
    lines = decision_summary(decision)
    assert lines[0] == "Week: first; decided by the skill rule"
    assert lines[1] == "Champion none -> v1; challenger v1 (logistic)"
    assert lines[2] == "Serves: h=12 (no edge at h=1)"
    assert lines[3].startswith("h=12: AUC +0.0637 over momentum_sign on the test window")
    assert "over 24 time blocks" in lines[3] and "on CPCV paths +0.0389" in lines[3]
    assert lines[4].startswith("PBO 0.012 over 5 configurations and 64 periods")
    assert lines[5] == ("After fees (4 bps, test window): h=12 -20.5% (buy-and-hold -38.1%)")
    assert len(lines) <= 8

    table = pd.DataFrame({"candidate": ["logistic"], "horizon": [12], "auc": [0.55]})
    path = write_report(RunReport(title="t", metrics=table, decision=decision), tmp_path)
    html = path.read_text()
    assert "<details>" in html and "Every number of the decision" in html
    assert "x" * 200 not in html  # metrics_json (a copy of the metrics) is not dumped
    assert html.index("Serves: h=12") < html.index("<details>")
