"""Which fit should be served: train only, train + validation, or every row? (registry.final_fit)

A walk-forward over real 1h candles: every week the candidates are fitted on the
training part of the data known by then and the best on validation is chosen,
exactly as the weekly retrain does; its recipe is then served three ways
(``train`` = the evaluated fit, ``train_val``, ``all``: ``refit_for_serving``)
and each is scored on the following week's bars (realized outcomes). Prints the
weekly AUC per final_fit, the mean, and the paired block bootstrap of
(all - train) and (train_val - train) over the weeks.

    python benchmarks/bench_final_fit.py [--data ../shared/data/candles_1h.parquet]
        [--weeks 26] [--symbols 8] [--warmup-weeks 26]

Training rows of week k are only those whose labels ended by the week's cut,
so no step sees a bar that had not closed.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from ml_core.config import load_config
from ml_core.evaluation.paired import paired_bootstrap
from ml_core.features import FEATURE_COLUMNS
from ml_core.features.labels import build_model_frame
from ml_core.models.pipeline import refit_for_serving
from ml_core.models.training import select_best, train_candidates
from ml_core.validation.cpcv_eval import auc_score
from ml_core.validation.split import chronological_split

ROOT = Path(__file__).resolve().parents[1]
FITS = ("train", "train_val", "all")


def longest_common(candles: pd.DataFrame, n: int) -> list[str]:
    """The ``n`` symbols with the most bars (ties: alphabetical)."""
    counts = candles.groupby("symbol").size().sort_values(ascending=False, kind="stable")
    return sorted(counts.index[:n])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/candles_1h.parquet"))
    ap.add_argument("--weeks", type=int, default=26)
    ap.add_argument("--symbols", type=int, default=8)
    ap.add_argument("--warmup-weeks", type=int, default=26)
    args = ap.parse_args()
    cfg = load_config(
        None,
        data={"timeframe": "1h"},
        models={"regressors": []},
        regime={"enabled": False},
        labels={"triple_barrier": {"enabled": False}},
    )
    raw = pd.read_parquet(args.data)
    symbols = longest_common(raw, args.symbols)
    raw = raw.assign(ts=raw["ts"].dt.tz_localize(None))
    end = raw[raw["symbol"].isin(symbols)].groupby("symbol")["ts"].max().min()
    span = pd.Timedelta(weeks=args.weeks + args.warmup_weeks)
    bars = raw[raw["symbol"].isin(symbols) & (raw["ts"] > end - span) & (raw["ts"] <= end)]
    bars = bars.assign(timeframe="1h")
    con = duckdb.connect()
    con.register("c", bars)
    frame = build_model_frame(
        con, timeframe="1h", horizons=cfg.horizons, cfg=cfg.features, relation="c"
    )
    con.close()
    t1_max = frame[[f"t1_{h}" for h in cfg.horizons]].max(axis=1)
    first_cut = end - pd.Timedelta(weeks=args.weeks)
    print(f"{len(symbols)} symbols {symbols}, {len(bars)} bars, weeks from {first_cut}")
    rows = []
    for k in range(args.weeks):
        cut = first_cut + pd.Timedelta(weeks=k)
        start = time.perf_counter()
        known = frame[(frame["ts"] <= cut) & (t1_max.isna() | (t1_max <= cut))]
        parts = chronological_split(
            known,
            horizons=cfg.horizons,
            cfg=cfg.split,
            complete_columns=list(FEATURE_COLUMNS),
            timeframe="1h",
        )
        best = select_best(train_candidates(parts, cfg))
        nxt = frame[(frame["ts"] > cut) & (frame["ts"] <= cut + pd.Timedelta(weeks=1))]
        nxt = nxt.dropna(subset=list(FEATURE_COLUMNS))
        row = {"week": k, "cut": cut, "candidate": best.name, "n": len(nxt)}
        for fit in FITS:
            pipe = refit_for_serving(best.pipeline, parts, fit, cfg.models)
            probs = pipe.predict_features(nxt)
            aucs = [auc_score(nxt[f"up_{h}"].to_numpy(dtype=float), probs[h]) for h in cfg.horizons]
            row[fit] = float(np.nanmean(aucs))
        row["seconds"] = time.perf_counter() - start
        rows.append(row)
        print(
            f"week {k:2d} {cut:%Y-%m-%d} {best.name:9s} "
            + " ".join(f"{f}={row[f]:.4f}" for f in FITS)
            + f" ({row['seconds']:.1f}s)",
            flush=True,
        )
    table = pd.DataFrame(rows)
    print("\nmean realized AUC of the served predictions (next week, mean over horizons):")
    for fit in FITS:
        print(f"  {fit:9s} {table[fit].mean():.4f}  (weeks above 0.5: {(table[fit] > 0.5).sum()})")
    for fit in ("train_val", "all"):
        res = paired_bootstrap(table[fit], table["train"], confidence=0.9, seed=0)
        print(
            f"  {fit} - train: {res.mean_diff:+.4f}, 90% interval [{res.ci_low:+.4f}, "
            f"{res.ci_high:+.4f}], p={res.p_value:.3f} over {res.n_units} weeks"
        )
    print(f"seconds per week: {table['seconds'].mean():.1f}")


if __name__ == "__main__":
    main()
