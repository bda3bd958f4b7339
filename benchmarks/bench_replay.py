"""Replay benchmark: weekly cycles of the real flows on 1h candles, and where the time goes.

Usage: python benchmarks/bench_replay.py [--weeks 26] [--n-symbols 8] [--history-days 365]
       [--data ../shared/data/candles_1h.parquet] [--policy coincast ...] [--out DIR]

Picks the ``n_symbols`` symbols with the longest common history (earliest
first candle, then the fewest missing bars), keeps ``history_days`` of
history before the start, and replays the last ``weeks`` weekly cycles of
their common span with the default profile and the deployments' schedules
(Monday 03:00 retrain, daily 00:10 predict and 00:30 monitor) for every
policy. Prints the seconds per step kind (feed, retrain, predict, monitor,
report), per weekly cycle, and the replay's summary.

The full 26 weeks takes hours on a 2-core machine; ``--weeks 2`` checks it works.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "candles_1h.parquet"


def pick_symbols(candles: pd.DataFrame, n: int) -> list[str]:
    """The ``n`` symbols with the earliest first candle, then the most rows (fewest gaps)."""
    stats = candles.groupby("symbol")["ts"].agg(first="min", n_rows="size")
    ranked = stats.sort_values(["first", "n_rows"], ascending=[True, False])
    return sorted(ranked.index[:n].tolist())


def prepare_data(path: Path, n_symbols: int, weeks: int, history_days: float, out: Path):
    """Write the chosen slice to ``out`` and return (file, symbols, start)."""
    from ml_core.data.sources import read_candle_file

    candles = read_candle_file(path)
    symbols = pick_symbols(candles, n_symbols)
    mine = candles[candles["symbol"].isin(symbols)]
    common_end = mine.groupby("symbol")["ts"].max().min()
    # a Monday with room for the weekly cycles (and a day of outcomes) before the common end
    start = (common_end - pd.Timedelta(weeks=weeks, days=2)).normalize()
    start -= pd.Timedelta(days=start.weekday())
    mine = mine[
        (mine["ts"] >= start - pd.Timedelta(days=history_days)) & (mine["ts"] <= common_end)
    ]
    data = out / "bench_candles_1h.parquet"
    mine.to_parquet(data, index=False)
    return data, symbols, start, len(mine)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--weeks", type=int, default=26)
    ap.add_argument("--n-symbols", type=int, default=8)
    ap.add_argument("--history-days", type=float, default=365.0)
    ap.add_argument("--policy", action="append", default=None)
    ap.add_argument("--out", type=Path, default=None, help="Keep the replay here (default: tmp).")
    args = ap.parse_args()

    out = args.out or Path(tempfile.mkdtemp(prefix="bench-replay-"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "prefect").mkdir(exist_ok=True)
    os.environ.setdefault("PREFECT_HOME", str(out.resolve() / "prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    data, symbols, start, n_rows = prepare_data(
        args.data, args.n_symbols, args.weeks, args.history_days, out
    )
    print(f"data: {n_rows:,} candles of {len(symbols)} symbols {symbols}")
    print(f"replay: {args.weeks} weekly cycles from {start:%Y-%m-%d}, default profile")

    from flows.replay import ReplayParams, replay_flow
    from ml_core.replay.homes import POLICIES

    began = time.perf_counter()
    summary = replay_flow(
        ReplayParams(
            data=str(data),
            start=str(start),
            weeks=args.weeks,
            out_dir=str(out / "replay"),
            policies=args.policy or list(POLICIES),
        )
    )
    wall = time.perf_counter() - began
    seconds, counts = summary["seconds_by_kind"], summary["steps_by_kind"]
    total = sum(seconds.values())
    print(f"\nwall {wall:.0f} s ({wall / args.weeks:.0f} s per weekly cycle, incl. Prefect start)")
    print(f"{'step':<9}{'runs':>6}{'total s':>10}{'mean s':>9}{'per cycle s':>13}{'share':>8}")
    for kind in ("feed", "retrain", "predict", "monitor", "report"):
        s, n = seconds.get(kind, 0.0), counts.get(kind, 0)
        print(
            f"{kind:<9}{n:>6}{s:>10.1f}{(s / n if n else 0):>9.2f}{s / args.weeks:>13.1f}"
            f"{(s / total if total else 0):>8.0%}"
        )
    for row in summary["policies"]:
        if not row["n"]:
            print(f"  {row['policy']:<9} served nothing (no champion): {row['champions']}")
            continue
        print(
            f"  {row['policy']:<9} AUC {row['auc']:.4f}  log loss {row['log_loss']:.4f}  "
            f"hit {row['hit_rate_confident']:.3f}  return {row['total_trading_return']:+.2%}  "
            f"worse {row['weeks_worse_than_baseline']}  champions {row['champions']}"
        )
    kept = "" if args.out else " (removed; pass --out DIR to keep it)"
    print(f"report: {summary['paths']['html']}{kept}")
    if args.out is None:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
