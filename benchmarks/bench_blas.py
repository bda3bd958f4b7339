"""The training steps with one BLAS thread against the library default, in one run.

Usage: python benchmarks/bench_blas.py [--rounds 2]

Loads the embedded 1h sample into a temporary warehouse, builds the model frame once,
then times, interleaved per round, the HMM regime fit, the candidates (logistic and
LightGBM, with their return models) and the multinomial triple-barrier fit, with
``threadpool_limits(1, "blas")`` (what a retrain does, ``models.blas_threads``) and
with the BLAS library's default (one thread per core). Prints seconds and the ratio
default / one thread per step (above 1: one thread is faster).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

from threadpoolctl import threadpool_info, threadpool_limits

from ml_core.config import load_config
from ml_core.data.ingest import ingest_paths
from ml_core.data.warehouse import Warehouse
from ml_core.features import FEATURE_COLUMNS
from ml_core.features.dataset import build_dataset
from ml_core.models.multiclass import fit_triple_barrier
from ml_core.models.pipeline import regime_columns
from ml_core.models.training import train_candidates
from ml_core.regime import add_regime_features, fit_regimes
from ml_core.validation.split import chronological_split

ROOT = Path(__file__).resolve().parents[1]
STEPS = ("regimes", "candidates", "triple_barrier")


def one_round(cfg, parts0) -> dict[str, float]:  # noqa: ANN001 - config and SplitParts
    t0 = time.perf_counter()
    regime = fit_regimes(parts0.train, cfg.regime)
    t1 = time.perf_counter()
    parts = replace(
        parts0,
        train=add_regime_features(parts0.train, regime),
        val=add_regime_features(parts0.val, regime),
        test=add_regime_features(parts0.test, regime),
    )
    t2 = time.perf_counter()
    train_candidates(parts, cfg, regime)
    t3 = time.perf_counter()
    fit_triple_barrier(
        parts,
        horizons=cfg.horizons,
        feature_columns=list(FEATURE_COLUMNS) + regime_columns(regime),
        cfg=cfg.labels.triple_barrier,
        seed=cfg.models.seed,
    )
    t4 = time.perf_counter()
    return {"regimes": t1 - t0, "candidates": t3 - t2, "triple_barrier": t4 - t3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="coincast-bench-blas-"))
    cfg = load_config(None, home=home, data={"timeframe": "1h"})
    ingest_paths(Warehouse(cfg.warehouse_path), [ROOT / "data" / "sample_1h.parquet"], cfg.quality)
    frame = build_dataset(Warehouse(cfg.warehouse_path), cfg).frame
    parts = chronological_split(
        frame,
        horizons=cfg.horizons,
        cfg=cfg.split,
        complete_columns=list(FEATURE_COLUMNS),
        timeframe="1h",
    )
    blas = [i for i in threadpool_info() if i["user_api"] == "blas"]
    print(
        f"{len(frame):,} model-frame rows; BLAS: "
        + ", ".join(f"{i['internal_api']} {i['num_threads']} threads" for i in blas)
    )
    times: dict[str, dict[str, list[float]]] = {"one": {}, "default": {}}
    for _ in range(args.rounds):
        for label, limit in (
            ("one", lambda: threadpool_limits(1, "blas")),
            ("default", nullcontext),
        ):
            with limit():
                for step, seconds in one_round(cfg, parts).items():
                    times[label].setdefault(step, []).append(seconds)
    print(f"{'step':<16}{'1 thread s':>12}{'default s':>12}{'default/1':>11}")
    for step in (*STEPS, "total"):
        if step == "total":
            one = sum(statistics.median(times["one"][s]) for s in STEPS)
            default = sum(statistics.median(times["default"][s]) for s in STEPS)
        else:
            one = statistics.median(times["one"][step])
            default = statistics.median(times["default"][step])
        print(f"{step:<16}{one:>12.1f}{default:>12.1f}{default / one:>11.2f}")


if __name__ == "__main__":
    main()
