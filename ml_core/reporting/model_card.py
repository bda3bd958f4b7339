"""The model card of a registered version: what MLflow shows as its description.

A user who opens a version in the MLflow UI reads, without opening a run: the data it
was trained and judged on, the candidates and their held-out numbers, what it serves
(horizons, calibration) and the week's decision with its reason and after-fee result.

Example::

    text = model_card(name="coincast-1h", verdict=verdict, chosen=result,
                      results=results, parts=parts, final_fit="train_val", fee_bps=4.0)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from ml_core.evaluation.weekly import after_fee_text

if TYPE_CHECKING:
    from ml_core.evaluation.weekly import WeeklyVerdict
    from ml_core.models.training import CandidateResult
    from ml_core.validation.split import SplitParts


def model_card(
    *,
    name: str,
    verdict: WeeklyVerdict,
    chosen: CandidateResult,
    results: list[CandidateResult],
    parts: SplitParts,
    final_fit: str,
    fee_bps: float,
) -> str:
    """Markdown: data window, candidates, what is served, the decision and its numbers."""
    pipe = chosen.pipeline
    gate = verdict.gate
    served = gate.edge_horizons
    lines = [
        f"**{name}**: `{chosen.name}` ({pipe.timeframe} bars, feature set `{pipe.feature_set}`)",
        "",
        f"**Decision ({verdict.kind}):** {'promoted' if gate.promote else 'not promoted'}: "
        f"{gate.reason}",
        "",
        "**Data:** "
        + "; ".join(_window(getattr(parts, p), p) for p in ("train", "val", "test"))
        + f"; the served model is fit on {final_fit}.",
        "",
        f"**Serves:** {_served(served)}",
        "",
        "| candidate | val AUC | test AUC |",
        "|---|---|---|",
        *(
            f"| {r.name}{' (this)' if r is chosen else ''} | {r.val_auc:.4f} | {r.test_auc:.4f} |"
            for r in results
        ),
    ]
    if not chosen.calibration.empty:
        cal = chosen.calibration
        lines += [
            "",
            "**Calibration** (test ECE raw -> calibrated): "
            + ", ".join(
                f"h={int(r.horizon)} {r.method} {r.test_ece_raw:.3f} -> {r.test_ece:.3f}"
                for r in cal.itertuples()
            ),
        ]
    if (after := after_fee_text(gate.metrics)) is not None:
        lines += ["", f"**{after[0].upper()}{after[1:]}**"]
    return "\n".join(lines)


def _served(horizons: tuple[int, ...] | None) -> str:
    if horizons is None:
        return "every horizon (skill not assessed)"
    if not horizons:
        return "no horizon (no skill shown: predictions say 'no edge')"
    return ", ".join(f"h={h}" for h in horizons)


def _window(frame: pd.DataFrame, name: str) -> str:
    if frame.empty:
        return f"{name}: none"
    ts, n_sym = frame["ts"], frame["symbol"].nunique()
    return (
        f"{name} {ts.min():%Y-%m-%d} to {ts.max():%Y-%m-%d} ({len(frame):,} rows, {n_sym} symbols)"
    )
