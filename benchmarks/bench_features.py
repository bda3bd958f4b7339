"""Benchmark: feature set v1 in DuckDB vs plain pandas, and incremental refresh.

Run from the repository root::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_features.py [--data PATH] [--runs 3]

1. Loads the real candles (default ``../shared/data/candles_1m.parquet``) into
   a temporary DuckDB warehouse.
2. Times (best of ``--runs``) ``compute_features`` on the warehouse and
   ``pandas_features`` (groupby + rolling, no row-wise apply) on the same
   candles in memory, and reports rows/s, the ratio and the largest absolute
   difference between the two outputs.
3. Holds out the last day (1440 bars) of every symbol, builds ``features_v1``
   on the rest, appends the day and times the incremental refresh against a
   full rebuild of the table; checks the two tables are identical.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.pandas_reference import pandas_features  # noqa: E402
from ml_core.config import FeatureConfig  # noqa: E402
from ml_core.data.warehouse import Warehouse  # noqa: E402
from ml_core.features import (  # noqa: E402
    FEATURE_COLUMNS,
    compute_features,
    read_features,
    refresh_features,
)

DAY_BARS = 1440


def timed(fn: Callable[[], object]) -> tuple[float, float, object]:
    """Wall time, CPU time (all threads of this process) and result of one call."""
    start, cpu_start = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - start, time.process_time() - cpu_start, out


def best_of(runs: int, fn: Callable[[], object]) -> tuple[float, object]:
    """Smallest wall time of ``runs`` calls, and the last result."""
    best, out = float("inf"), None
    for _ in range(runs):
        wall, _, out = timed(fn)
        best = min(best, wall)
    return best, out


def load_warehouse(path: Path, data: Path, timeframe: str, *, hold_out_bars: int = 0) -> None:
    """Candles of ``data`` into a warehouse file, minus the last ``hold_out_bars`` per symbol."""
    with Warehouse(path).connect() as con:
        con.execute(
            f"""
            INSERT INTO candles (symbol, timeframe, ts, open, high, low, close, volume)
            SELECT symbol, '{timeframe}', timezone('UTC', ts)::TIMESTAMP, open, high, low,
                   close, volume
            FROM read_parquet(?)
            QUALIFY row_number() OVER (PARTITION BY symbol ORDER BY ts DESC) > ?
            ORDER BY symbol, ts
            """,
            [str(data), hold_out_bars],
        )


def read_all(path: Path, timeframe: str) -> pd.DataFrame:
    with Warehouse(path).connect(read_only=True) as con:
        sql = "SELECT * FROM candles WHERE timeframe = $tf ORDER BY symbol, ts"
        return con.sql(sql, params={"tf": timeframe}).to_arrow_table().to_pandas()


def bench_build(path: Path, timeframe: str, cfg: FeatureConfig, runs: int) -> dict[str, object]:
    """DuckDB feature build vs the pandas reference on the same candles."""
    candles = read_all(path, timeframe)
    best_duck = best_pd = (float("inf"), 0.0)
    with Warehouse(path).connect(read_only=True) as con:
        for _ in range(runs):  # alternate, so both see the same load on a shared machine
            wall, cpu, duck = timed(lambda: compute_features(con, timeframe=timeframe, cfg=cfg))
            best_duck = min(best_duck, (wall, cpu))
            wall, cpu, ref = timed(lambda: pandas_features(candles, cfg, timeframe))
            best_pd = min(best_pd, (wall, cpu))
    (t_duck, cpu_duck), (t_pd, cpu_pd) = best_duck, best_pd
    x, y = duck[FEATURE_COLUMNS].to_numpy(float), ref[FEATURE_COLUMNS].to_numpy(float)
    assert (np.isnan(x) == np.isnan(y)).all(), "DuckDB and pandas disagree on NULLs"
    diff = np.nanmax(np.abs(x - y), axis=0)
    worst = int(np.argmax(diff))
    return {
        "rows": len(candles),
        "duckdb_s": t_duck,
        "duckdb_cpu_s": cpu_duck,
        "pandas_s": t_pd,
        "pandas_cpu_s": cpu_pd,
        "max_abs_diff": float(diff[worst]),
        "worst_feature": FEATURE_COLUMNS[worst],
        "median_abs_diff": float(np.nanmedian(np.abs(x - y))),
    }


def bench_refresh(
    workdir: Path, data: Path, timeframe: str, cfg: FeatureConfig, runs: int
) -> dict[str, object]:
    """Incremental refresh after one new day per symbol vs a full rebuild."""
    base = workdir / "base.duckdb"
    load_warehouse(base, data, timeframe, hold_out_bars=DAY_BARS)
    full_data = workdir / "full.duckdb"
    load_warehouse(full_data, data, timeframe)
    with Warehouse(base).connect() as con:
        refresh_features(con, timeframe=timeframe, cfg=cfg)
        con.execute("ATTACH ? AS src (READ_ONLY)", [str(full_data)])
        con.execute(
            "CREATE TABLE new_day AS SELECT * FROM src.candles s WHERE NOT EXISTS "
            "(SELECT 1 FROM candles c WHERE c.symbol = s.symbol AND c.timeframe = s.timeframe "
            "AND c.ts = s.ts)"
        )
        con.execute("DETACH src")
        con.execute(
            "CREATE TABLE new_hour AS SELECT * FROM new_day "
            "QUALIFY row_number() OVER (PARTITION BY symbol ORDER BY ts) <= 60"
        )
        con.execute("CHECKPOINT")
    best_inc, stats, run = _time_append(workdir, base, "new_day", timeframe, cfg, runs)
    best_hour, hour_stats, _ = _time_append(workdir, base, "new_hour", timeframe, cfg, runs)
    assert stats["mode"] == "incremental"
    with Warehouse(run).connect() as con:
        incremental = read_features(con, timeframe=timeframe)
        t_full, full_stats = best_of(
            runs, lambda: refresh_features(con, timeframe=timeframe, cfg=cfg, full=True)
        )
        rebuilt = read_features(con, timeframe=timeframe)
    a, b = incremental[FEATURE_COLUMNS].to_numpy(float), rebuilt[FEATURE_COLUMNS].to_numpy(float)
    identical = np.array_equal(a, b, equal_nan=True) and incremental["segment_start"].equals(
        rebuilt["segment_start"]
    )
    return {
        "new_rows": stats["n_rows_written"],
        "recomputed_rows": stats["n_rows_recomputed"],
        "incremental_s": best_inc,
        "hour_rows": hour_stats["n_rows_written"],
        "hour_recomputed": hour_stats["n_rows_recomputed"],
        "hour_s": best_hour,
        "full_rows": full_stats["n_rows_written"],
        "full_s": t_full,
        "identical": identical,
    }


def _time_append(
    workdir: Path, base: Path, table: str, timeframe: str, cfg: FeatureConfig, runs: int
) -> tuple[float, dict, Path]:
    """Best time of an incremental refresh after appending ``table`` to a copy of ``base``."""
    best, stats, run = float("inf"), {}, base
    for i in range(runs):
        run = workdir / f"{table}{i}.duckdb"
        shutil.copy(base, run)
        with Warehouse(run).connect() as con:
            con.execute(f"INSERT INTO candles BY NAME SELECT * FROM {table}")
            start = time.perf_counter()
            stats = refresh_features(con, timeframe=timeframe, cfg=cfg)
            best = min(best, time.perf_counter() - start)
    return best, stats, run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/candles_1m.parquet")
    parser.add_argument("--timeframe", default="1m")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    cfg = FeatureConfig()
    with tempfile.TemporaryDirectory(prefix="bench_features_") as tmp:
        work = Path(tmp)
        load_warehouse(work / "warehouse.duckdb", args.data, args.timeframe)
        build = bench_build(work / "warehouse.duckdb", args.timeframe, cfg, args.runs)
        refresh = bench_refresh(work, args.data, args.timeframe, cfg, args.runs)
    print_report(build, refresh, args)


def print_report(build: dict, refresh: dict, args: argparse.Namespace) -> None:
    """The figures as two small tables."""
    rows = build["rows"]
    print(
        f"\nfeature set v1: {len(FEATURE_COLUMNS)} features, {rows:,} {args.timeframe} rows "
        f"from {args.data}, best of {args.runs}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    table = [
        ("", "wall s", "CPU s", "rows/s"),
        (
            "DuckDB compute_features",
            build["duckdb_s"],
            build["duckdb_cpu_s"],
            rows / build["duckdb_s"],
        ),
        (
            "pandas groupby+rolling",
            build["pandas_s"],
            build["pandas_cpu_s"],
            rows / build["pandas_s"],
        ),
    ]
    for name, *vals in table[:1]:
        print(f"{name:30s}" + "".join(f"{v:>12s}" for v in vals))
    for name, *vals in table[1:]:
        print(f"{name:30s}{vals[0]:12.3f}{vals[1]:12.3f}{vals[2]:12,.0f}")
    print(f"{'speed-up DuckDB / pandas':30s}{build['pandas_s'] / build['duckdb_s']:>11.2f}x")
    print(
        f"max |DuckDB - pandas| = {build['max_abs_diff']:.1e} ({build['worst_feature']}), "
        f"median {build['median_abs_diff']:.1e}"
    )
    head = ("wall s", "rows in", "rows out", "speed-up")
    print(f"\n{'features_v1 refresh':30s}" + "".join(f"{h:>12s}" for h in head))
    lines = [
        (
            "incremental (+1 day)",
            refresh["incremental_s"],
            refresh["recomputed_rows"],
            refresh["new_rows"],
        ),
        (
            "incremental (+1 hour)",
            refresh["hour_s"],
            refresh["hour_recomputed"],
            refresh["hour_rows"],
        ),
        ("full rebuild", refresh["full_s"], refresh["full_rows"], refresh["full_rows"]),
    ]
    for name, secs, n_in, n_out in lines:
        print(f"{name:30s}{secs:12.3f}{n_in:12,d}{n_out:12,d}{refresh['full_s'] / secs:9.1f}x")
    print(f"incremental table identical to a full rebuild: {refresh['identical']}")


if __name__ == "__main__":
    main()
