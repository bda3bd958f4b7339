"""Cost of promotion gate v2 (CPCV refits) on the embedded 1m sample.

Usage: python benchmarks/bench_gate.py [--retrain] [--horizons 15,60]

Part 1 (in process, always): ingest the 1m sample into a temporary home, build
the model frame and split as a retrain does, fit the configured candidates,
then time ``evaluate_on_cpcv`` on the train + val rows for the first retrain
(challenger only) and a later one (challenger and champion: two configs).

Part 2 (``--retrain``): wall time of ``coincast retrain`` in two fresh homes,
one with gate v1 and one with gate v2, and their ratio (the first retrain of
``make run``; a later retrain adds the champion's refits, part 1's second line).
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
SAMPLE = ROOT / "data" / "sample_1m.parquet"


def cpcv_times(home: Path, horizons: list[int] | None) -> list[tuple[str, float, float]]:
    import pandas as pd

    from ml_core.config import CoincastConfig
    from ml_core.data.ingest import ingest_paths
    from ml_core.data.warehouse import Warehouse
    from ml_core.features import FEATURE_COLUMNS, refresh_features
    from ml_core.features.dataset import build_dataset
    from ml_core.models.training import select_best, train_candidates
    from ml_core.regime.hmm import add_regime_features, fit_regimes
    from ml_core.validation.cpcv_eval import evaluate_on_cpcv
    from ml_core.validation.split import chronological_split

    cfg = CoincastConfig(home=home)
    wh = Warehouse(cfg.warehouse_path)
    ingest_paths(wh, [SAMPLE], cfg.quality)
    with wh.connect() as con:
        refresh_features(con, timeframe="1m", cfg=cfg.features)
    frame = build_dataset(wh, cfg).frame
    parts = chronological_split(
        frame, horizons=cfg.horizons, cfg=cfg.split, complete_columns=list(FEATURE_COLUMNS)
    )
    regimes = fit_regimes(parts.train, cfg.regime)
    fitted = type(parts)(
        train=add_regime_features(parts.train, regimes),
        val=add_regime_features(parts.val, regimes),
        test=add_regime_features(parts.test, regimes),
        gap_bars=parts.gap_bars,
        first_ts=parts.first_ts,
    )
    clock = Clock()
    results = train_candidates(fitted, cfg, regimes)
    t_train = clock.lap()
    best = select_best(results).pipeline
    other = next((r.pipeline for r in results if r.pipeline is not best), best)
    gate = cfg.registry.gate
    dev = pd.concat([parts.train, parts.val], ignore_index=True)
    use = horizons or gate.cpcv_horizons or cfg.horizons
    kw = {
        "horizons": use,
        "n_groups": gate.cpcv_groups,
        "n_test_groups": gate.cpcv_test_groups,
        "embargo": gate.cpcv_embargo,
        "max_train_rows": gate.cpcv_max_train_rows,
        "blocks_per_group": gate.cpcv_blocks_per_group,
        "inner_val_frac": gate.cpcv_inner_val_frac,
    }
    out = [(f"fit candidates {cfg.models.candidates} (retrain)", *t_train)]
    clock = Clock()
    one = evaluate_on_cpcv(dev, {"challenger": best}, **kw)
    out.append((f"CPCV {best.candidate} only, {len(use)} horizons", *clock.lap()))
    two = evaluate_on_cpcv(dev, {"challenger": best, "champion": other}, **kw)
    out.append((f"CPCV {best.candidate} + {other.candidate}", *clock.lap()))
    print(f"dev rows {len(dev):,}; splits {one.n_splits}, paths {one.n_paths}")
    for name in two.configs:
        print(f"  {name}: path AUCs {two.summary(name)['path_auc']} ({two.fit_seconds[name]:.1f}s)")
    return out


class Clock:
    """Wall and CPU seconds (this process, all threads) since the last lap.

    CPU seconds matter on a shared machine where the wall clock also counts waiting.
    """

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def lap(self) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        out = (wall - self.wall, cpu - self.cpu)
        self.wall, self.cpu = wall, cpu
        return out


def retrain_time(gate_version: int) -> float:
    home = Path(tempfile.mkdtemp(prefix=f"coincast-gate{gate_version}-"))
    env = {
        **os.environ,
        "COINCAST_HOME": str(home),
        "COINCAST_REGISTRY__GATE__GATE_VERSION": str(gate_version),
    }
    coincast = str(BIN / "coincast")
    try:
        run([coincast, "ingest", str(SAMPLE)], env)
        start = time.perf_counter()
        run([coincast, "retrain"], env)
        return time.perf_counter() - start
    finally:
        shutil.rmtree(home, ignore_errors=True)


def run(cmd: list[str], env: dict[str, str]) -> None:
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {proc.returncode}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--retrain", action="store_true", help="Also time coincast retrain.")
    parser.add_argument("--horizons", default="", help="Comma list of CPCV horizons.")
    args = parser.parse_args()
    horizons = [int(h) for h in args.horizons.split(",") if h] or None
    home = Path(tempfile.mkdtemp(prefix="coincast-bench-gate-"))
    try:
        rows = cpcv_times(home, horizons)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    if args.retrain:
        v1, v2 = retrain_time(1), retrain_time(2)
        rows += [
            ("retrain, gate v1 (first, cold)", v1, float("nan")),
            ("retrain, gate v2 (first, cold)", v2, float("nan")),
        ]
    print(f"{'step':<52}{'wall s':>10}{'cpu s':>10}")
    for name, wall, cpu in rows:
        print(f"{name:<52}{wall:>10.1f}{cpu:>10.1f}")
    if args.retrain:
        print(f"{'ratio retrain v2 / v1 (wall)':<52}{v2 / v1:>10.2f}")
    ratio = [rows[2][i] / rows[0][i] for i in (1, 2)]
    print(
        f"{'ratio CPCV (2 configs) / fitting the candidates':<52}{ratio[0]:>10.2f}{ratio[1]:>10.2f}"
    )


if __name__ == "__main__":
    main()
