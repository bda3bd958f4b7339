"""Ingest throughput and peak memory for 1M- and 5M-row CSV and Parquet files.

Usage: python benchmarks/bench_ingest.py [--rows 1000000 5000000] [--chunk-rows 500000]

Writes random-walk 1m candles of 10 symbols to a temp folder, then ingests each file
into a fresh DuckDB warehouse in a child process (``coincast ingest``'s code path:
``ml_core.data.ingest.ingest_run``) and prints rows/s and the child's peak resident
set (``ru_maxrss`` of the child itself). The 5M/1M memory ratio is the figure to watch: with chunked
reads it should stay near 1 (flat), where reading whole files grew with the file.
``--chunk-rows 0`` reads each file whole (the reference, measured in the same run).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

CHILD = """
import json, resource, sys, time
import pandas as pd
from ml_core.config import QualityConfig
from ml_core.data.ingest import ingest_run
from ml_core.data.warehouse import Warehouse
path, wh, chunk = sys.argv[1], sys.argv[2], int(sys.argv[3])
t = time.perf_counter()
run = ingest_run(Warehouse(wh), [path], QualityConfig(), chunk_rows=chunk or 10**12,
                 now=pd.Timestamp("2030-01-01"))
run.raise_for_failure()
(r,) = run.results
print(json.dumps({"s": time.perf_counter() - t, "rows": r.n_rows, "new": r.n_new,
                  "batches": r.n_batches,
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make_file(folder: Path, n_rows: int, fmt: str) -> Path:
    n_sym = 10
    per = n_rows // n_sym
    rng = np.random.default_rng(0)
    frames = []
    for i in range(n_sym):
        close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, per)))
        open_ = np.r_[100.0, close[:-1]]
        frames.append(
            pd.DataFrame(
                {
                    "symbol": f"C{i}/USDT",
                    "timestamp": pd.date_range("2020-01-01", periods=per, freq="1min"),
                    "open": open_,
                    "high": np.maximum(open_, close) * 1.0005,
                    "low": np.minimum(open_, close) * 0.9995,
                    "close": close,
                    "volume": rng.uniform(1, 100, per),
                }
            )
        )
    frame = pd.concat(frames, ignore_index=True)
    path = folder / f"candles_{n_rows}.{fmt}"
    frame.to_csv(path, index=False) if fmt == "csv" else frame.to_parquet(path, index=False)
    return path


def ingest_child(path: Path, folder: Path, chunk_rows: int) -> dict:
    wh = folder / f"wh-{path.stem}-{path.suffix[1:]}-{chunk_rows}.duckdb"
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(wh), str(chunk_rows)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000])
    ap.add_argument("--chunk-rows", type=int, default=500_000)
    ap.add_argument("--reference", action="store_true", help="Also read whole files.")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        print(
            f"{'file':<24} {'mode':<14} {'rows':>10} {'seconds':>8} {'rows/s':>9} {'peak MiB':>9}"
        )
        for fmt in ("parquet", "csv"):
            for n in sorted(args.rows):
                path = make_file(folder, n, fmt)
                modes = [("chunked", args.chunk_rows)] + ([("whole", 0)] if args.reference else [])
                for mode, chunk in modes:
                    t = time.perf_counter()
                    r = ingest_child(path, folder, chunk)
                    wall = time.perf_counter() - t
                    label = f"{mode} x{r['batches']}"
                    print(
                        f"{path.name:<24} {label:<14} {r['rows']:>10,} "
                        f"{r['s']:>8.1f} {r['rows'] / r['s']:>9,.0f} {r['peak_mib']:>9,.0f}"
                        f"  (process {wall:.1f} s)"
                    )
                path.unlink()


if __name__ == "__main__":
    main()
