"""Wall time of the main job on the embedded sample, in a fresh temporary home.

Usage: python benchmarks/bench_retrain.py [--keep]
Prints the time of `coincast ingest` (all three sample files) and of two
consecutive `coincast retrain` runs (cold: new MLflow database and Prefect
home; warm: second run, re-scoring the champion).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {proc.returncode}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", action="store_true", help="Keep the temporary home.")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="coincast-bench-"))
    env = {**os.environ, "COINCAST_HOME": str(home)}
    samples = [str(ROOT / "data" / f"sample_{tf}.parquet") for tf in ("1m", "1h", "1d")]
    coincast = str(BIN / "coincast")
    try:
        t_ingest = timed([coincast, "ingest", *samples], env)
        t_cold = timed([coincast, "retrain", "--timeframe", "1h"], env)
        t_warm = timed([coincast, "retrain", "--timeframe", "1h"], env)
    finally:
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    print(f"{'step':<34}{'seconds':>10}")
    print(f"{'ingest 3 sample files':<34}{t_ingest:>10.1f}")
    print(f"{'retrain (cold: new registry)':<34}{t_cold:>10.1f}")
    print(f"{'retrain (warm: re-score champion)':<34}{t_warm:>10.1f}")
    print(f"{'make run equivalent':<34}{t_ingest + t_cold:>10.1f}")


if __name__ == "__main__":
    main()
