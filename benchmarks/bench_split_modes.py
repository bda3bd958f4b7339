"""Calendar vs per-symbol split on the embedded 1h sample (the numbers in docs/concepts.md).

Usage: python benchmarks/bench_split_modes.py

Ingests ``data/sample_1h.parquet`` into a temporary home, builds the model
frame as a retrain does (``build_dataset``), splits it in both
``split.mode``s, prints each part's date range per symbol and how far the
parts overlap in calendar time across symbols, then fits the logistic
candidate (no regressors, no regimes) on each split and prints its mean
validation / test AUC, plus both models scored on one common window (the
calendar split's test rows) so the two are compared on the same rows.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SAMPLE = ROOT / "data" / "sample_1h.parquet"


def main() -> None:
    from ml_core.config import CoincastConfig
    from ml_core.data.ingest import ingest_paths
    from ml_core.data.warehouse import Warehouse
    from ml_core.features import FEATURE_COLUMNS
    from ml_core.features.dataset import build_dataset
    from ml_core.models.training import score_probabilities, train_candidates
    from ml_core.validation.split import chronological_split

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    pd.set_option("display.width", 160)
    with tempfile.TemporaryDirectory() as home:
        cfg = CoincastConfig(
            home=Path(home),
            data={"timeframe": "1h"},
            models={"candidates": ["logistic"], "regressors": []},
            regime={"enabled": False},
        )
        wh = Warehouse(cfg.warehouse_path)
        ingest_paths(wh, [SAMPLE], cfg.quality)
        frame = build_dataset(wh, cfg).frame
    print(f"model frame: {len(frame)} rows, {frame['symbol'].nunique()} symbols, h={cfg.horizons}")
    results = {}
    for mode in ("per_symbol", "calendar"):
        split_cfg = cfg.split.model_copy(update={"mode": mode})
        parts = chronological_split(
            frame,
            horizons=cfg.horizons,
            cfg=split_cfg,
            complete_columns=list(FEATURE_COLUMNS),
            timeframe=cfg.data.timeframe,
        )
        print(f"\n=== {mode}: cut_ts={parts.cut_ts} notes={parts.notes}")
        summary = parts.summary()
        print(summary.to_string(index=False))
        sizes = {p: len(getattr(parts, p)) for p in ("train", "val", "test")}
        print(
            "rows:",
            sizes,
            "share:",
            {k: round(v / sum(sizes.values()), 3) for k, v in sizes.items()},
        )
        ends = summary.groupby("part")[["start", "end"]].agg({"start": "min", "end": "max"})
        print(
            "max train ts",
            ends.loc["train", "end"],
            "| min val ts",
            ends.loc["val", "start"],
            "| max val ts",
            ends.loc["val", "end"],
            "| min test ts",
            ends.loc["test", "start"],
        )
        run_cfg = cfg.model_copy(update={"split": split_cfg})
        (result,) = train_candidates(parts, run_cfg)
        results[mode] = (parts, result)
        print(f"logistic: val AUC {result.val_auc:.4f}, test AUC {result.test_auc:.4f}")
        print(result.test_metrics[["horizon", "auc"]].to_string(index=False))
    common = results["calendar"][0].test
    print(
        f"\n=== both models on the calendar test window ({len(common)} rows, from "
        f"{common['ts'].min()})"
    )
    for mode, (_, result) in results.items():
        probs = result.pipeline.predict_features(common)
        table = score_probabilities(
            common, probs, eval_cfg=cfg.evaluation, timeframe=cfg.data.timeframe
        )
        per_h = ", ".join(
            f"h{h}={a:.4f}" for h, a in zip(table["horizon"], table["auc"], strict=True)
        )
        print(f"{mode} model: mean AUC {table['auc'].mean():.4f} ({per_h})")


if __name__ == "__main__":
    main()
