"""False alarms and detection delays of the change detector on simulated streams.

``calibrate`` runs one detector over many seeds of a stable stream (any alarm
is a false one) and of the same stream with the champion flipped at
``flip_day`` (the delay from the flip to the alarm). The table in
docs/operations.md comes from::

    python -m ml_core.monitoring.calibration --seeds 100 [--detector cusum]
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import pandas as pd

from ml_core.evaluation.metrics import classification_metrics
from ml_core.monitoring.detector import Cusum, PageHinkley, make_detector
from ml_core.monitoring.loss_stream import feed_outcomes
from ml_core.monitoring.simulate import StreamSpec, simulate_stream


@dataclass(frozen=True)
class Calibration:
    """False alarms on stable streams and detection delays after a planted flip."""

    n_seeds: int
    n_days: int
    outcomes_per_day: float
    false_alarms: int  # stable streams with any alarm over n_days
    early_alarms: int  # flipped streams that alarmed before the flip
    missed: int  # flipped streams never alarmed
    delays_days: list[float]  # alarm time - flip time
    delays_outcomes: list[int]
    auc: float  # mean realized champion AUC of the stable streams (before the flip)

    def row(self) -> dict[str, float]:
        d = np.asarray(self.delays_days, dtype=float)
        return {
            "seeds": self.n_seeds,
            "outcomes/day": round(self.outcomes_per_day),
            "champion AUC": round(self.auc, 3),
            "false alarms": self.false_alarms,
            "early": self.early_alarms,
            "missed": self.missed,
            "delay mean (days)": round(float(d.mean()), 2) if d.size else math.nan,
            "delay p95 (days)": round(float(np.quantile(d, 0.95)), 2) if d.size else math.nan,
            "delay max (days)": round(float(d.max()), 2) if d.size else math.nan,
            "delay mean (outcomes)": round(float(np.mean(self.delays_outcomes)))
            if self.delays_outcomes
            else math.nan,
        }


def calibrate(
    spec: StreamSpec,
    detector: PageHinkley | Cusum,
    *,
    seeds: Sequence[int],
    flip_day: float,
    reference: Literal["previous", "naive"] = "previous",
) -> Calibration:
    """Run ``detector`` over a stable and a flipped stream per seed (one pass each, which
    equals daily feeding: see ``DetectorState``)."""
    false_alarms = early = missed = 0
    delays, delays_n, aucs, per_day = [], [], [], []
    for seed in seeds:
        stable = simulate_stream(replace(spec, flip_day=None), seed)
        paired = stable.paired(reference)
        per_day.append(len(paired) / spec.n_days)
        aucs.append(
            np.mean(
                [
                    classification_metrics(g["up"], g["p_champion"])["auc"]
                    for _, g in stable.outcomes.groupby("horizon")
                ]
            )
        )
        if feed_outcomes(detector, detector.new_state(), paired).alarm is not None:
            false_alarms += 1
        flipped = simulate_stream(replace(spec, flip_day=flip_day), seed)
        state = feed_outcomes(detector, detector.new_state(), flipped.paired(reference))
        if state.alarm is None:
            missed += 1
        elif state.alarm.at < flipped.flip_at:
            early += 1
        else:
            delays.append((state.alarm.at - flipped.flip_at) / pd.Timedelta(days=1))
            n_before = int((flipped.outcomes["t1"] < flipped.flip_at).sum())
            delays_n.append(state.alarm.n_outcomes - n_before)
    return Calibration(
        n_seeds=len(seeds),
        n_days=spec.n_days,
        outcomes_per_day=float(np.mean(per_day)),
        false_alarms=false_alarms,
        early_alarms=early,
        missed=missed,
        delays_days=delays,
        delays_outcomes=delays_n,
        auc=float(np.mean(aucs)),
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Print false alarms and delays for the configured defaults (or given settings)."""
    from ml_core.config import MonitorConfig

    cfg = MonitorConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--detector", default=cfg.detector)
    parser.add_argument("--delta", type=float, default=cfg.detector_delta)
    parser.add_argument("--threshold", type=float, default=cfg.detector_threshold)
    parser.add_argument("--min-outcomes", type=int, default=cfg.detector_min_outcomes)
    parser.add_argument("--flip-day", type=float, default=42.0)
    parser.add_argument("--only", default="", help="run the scenarios whose name contains this")
    args = parser.parse_args(argv)
    det = make_detector(
        args.detector, delta=args.delta, threshold=args.threshold, min_outcomes=args.min_outcomes
    )
    if det is None:
        raise SystemExit("detector is off")
    seeds = range(args.seeds)
    print(f"{det!r}, flip at day {args.flip_day:g} of 84, {args.seeds} seeds")
    for name, spec, ref in _scenarios():
        if args.only in name:
            cal = calibrate(spec, det, seeds=seeds, flip_day=args.flip_day, reference=ref)
            print(f"{name}: {cal.row()}", flush=True)


def _scenarios() -> list[tuple[str, StreamSpec, Literal["previous", "naive"]]]:
    hourly = StreamSpec()
    minute = replace(
        hourly,
        timeframe="1m",
        n_symbols=6,
        horizons=(15, 30, 60, 120, 240, 360, 720),
        warmup_days=2,
    )
    return [
        ("1h x 3 symbols", hourly, "previous"),
        ("1h x 9 symbols", replace(hourly, n_symbols=9), "previous"),
        ("1h x 30 symbols", replace(hourly, n_symbols=30), "previous"),
        ("1m x 6 symbols (defaults)", minute, "previous"),
        ("1h x 9, weak model", replace(hourly, n_symbols=9, signal=0.035), "previous"),
        ("1h x 9, strong model", replace(hourly, n_symbols=9, signal=0.09), "previous"),
        ("1h x 9, 1.5x over-confident", replace(hourly, n_symbols=9, confidence=1.5), "previous"),
        ("1h x 9, market flips, vs naive", replace(hourly, n_symbols=9, flip="market"), "naive"),
    ]


if __name__ == "__main__":
    main()
