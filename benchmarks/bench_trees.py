"""Fit time of the LightGBM and XGBoost direction models on a large synthetic matrix.

Usage: python benchmarks/bench_trees.py [--rows 1000000] [--features 60]
       [--n-estimators 200] [--n-jobs 2]

One fit each (no early stopping: both grow exactly ``n_estimators`` trees), on
the coincast model classes with their default tree settings, over a seeded
float64 matrix (what the pipeline's scaler hands the models) whose label
depends on a few features plus noise. Prints a table: fit seconds, rows/s
(rows x trees / s is ``rows/s`` x ``n_estimators``), CPU seconds of the
process during the fit (all threads: on a busy machine wall time overstates
the cost, CPU time does not), predict seconds, the
held-out AUC as a sanity check, and the XGBoost / LightGBM time ratio.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from sklearn.metrics import roc_auc_score

from ml_core.config import ModelConfig
from ml_core.models.trees import LightGBMDirectionModel, XGBoostDirectionModel


def make_data(n_rows: int, n_features: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Standard normal features; P(up) rises with a few of them (and one interaction)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_rows, n_features))
    score = 0.3 * x[:, 0] - 0.2 * x[:, 1] + 0.2 * x[:, 2] * x[:, 3]
    y = (score + rng.logistic(size=n_rows) > 0).astype(float)
    return x, y


def bench(model: LightGBMDirectionModel | XGBoostDirectionModel, x, y, x_te, y_te) -> dict:
    start, cpu_start = time.perf_counter(), time.process_time()
    model.fit(x, y)
    fit_s = time.perf_counter() - start
    cpu_s = time.process_time() - cpu_start
    start = time.perf_counter()
    p = model.predict_proba(x_te)
    predict_s = time.perf_counter() - start
    return {
        "fit_s": fit_s,
        "cpu_s": cpu_s,
        "rows_per_s": len(y) / fit_s,
        "predict_s": predict_s,
        "auc": roc_auc_score(y_te, p),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--features", type=int, default=60)
    ap.add_argument("--n-estimators", type=int, default=200)
    ap.add_argument("--n-jobs", type=int, default=2)
    args = ap.parse_args()

    start = time.perf_counter()
    x, y = make_data(args.rows, args.features)
    x_te, y_te = make_data(100_000, args.features, seed=1)
    print(
        f"data: {args.rows:,} x {args.features} float64 ({x.nbytes / 2**20:,.0f} MiB) in "
        f"{time.perf_counter() - start:.1f} s; {args.n_estimators} trees, n_jobs={args.n_jobs}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    cfg = ModelConfig()
    lgb_params = {**cfg.lightgbm_params, "n_estimators": args.n_estimators}
    models = {
        "lightgbm": LightGBMDirectionModel(params=lgb_params, seed=0, n_jobs=args.n_jobs),
        "xgboost": XGBoostDirectionModel(
            params={"n_estimators": args.n_estimators}, seed=0, n_jobs=args.n_jobs
        ),
    }
    results = {name: bench(m, x, y, x_te, y_te) for name, m in models.items()}
    head = f"{'model':<10} {'fit s':>8} {'cpu s':>8} {'rows/s':>12}"
    print(f"{head} {'predict 100k s':>15} {'test AUC':>9}")
    for name, r in results.items():
        print(
            f"{name:<10} {r['fit_s']:>8.1f} {r['cpu_s']:>8.1f} {r['rows_per_s']:>12,.0f} "
            f"{r['predict_s']:>15.2f} {r['auc']:>9.4f}"
        )
    ratio = results["xgboost"]["fit_s"] / results["lightgbm"]["fit_s"]
    print(f"fit time ratio xgboost / lightgbm: {ratio:.2f}")


if __name__ == "__main__":
    main()
