"""Model benchmarks: torch training throughput and single-request pyfunc latency.

Usage::

    python benchmarks/bench_models.py                       # everything, default sizes
    python benchmarks/bench_models.py --skip-train          # latency only
    python benchmarks/bench_models.py --models lstm,transformer --json out.json

1. **Training** (torch models, default ``SequenceConfig``): ``fit_pipeline`` on
   the embedded 1m sample (all symbols, default 1m horizons), which keeps the
   most recent ``max_train_windows`` windows; prints windows, epochs, fit
   seconds and samples/s (windows x epochs per second of the training loop).
2. **Latency** (every name in ``MODEL_FACTORIES``): each model's pipeline is
   logged to a temporary sqlite MLflow registry, loaded back with
   ``load_pyfunc`` and asked for one symbol's latest bar
   (``predict(tail, params={"latest_only": True})``); the median of ``--calls``
   calls after a warm-up, with a breakdown: feature SQL (DuckDB) vs model
   (``predict_details`` on the already-featured rows).

Non-torch pipelines for the latency part are fitted on a smaller slice (their
quality does not change latency). Torch models reuse the pipelines of part 1
(or are fitted with one epoch when ``--skip-train``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import duckdb
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ml_core.config import FeatureConfig, ModelConfig, SplitConfig, load_config  # noqa: E402
from ml_core.features import FEATURE_COLUMNS, features_from_candles  # noqa: E402
from ml_core.features.labels import build_model_frame  # noqa: E402
from ml_core.models.base import MODEL_FACTORIES  # noqa: E402
from ml_core.models.pipeline import CandlePipeline, fit_pipeline  # noqa: E402
from ml_core.validation.split import SplitParts, chronological_split  # noqa: E402

LATEST = {"latest_only": True}
TORCH_MODELS = ["lstm", "attention_lstm", "transformer", "multiscale_lstm"]


def load_candles(n_symbols: int, n_bars: int) -> pd.DataFrame:
    """The first ``n_bars`` 1m bars of ``n_symbols`` sample symbols, naive-UTC ts."""
    raw = pd.read_parquet(ROOT / "data" / "sample_1m.parquet")
    symbols = sorted(raw["symbol"].unique())[:n_symbols]
    candles = raw[raw["symbol"].isin(symbols)].sort_values(["symbol", "ts"])
    candles = candles.groupby("symbol").head(n_bars)
    ts = candles["ts"].dt.tz_convert("UTC").dt.tz_localize(None)
    return candles.assign(ts=ts).reset_index(drop=True)


def make_parts(candles: pd.DataFrame, horizons: list[int]) -> SplitParts:
    con = duckdb.connect()
    con.register("candles_in", candles.assign(timeframe="1m"))
    frame = build_model_frame(
        con, timeframe="1m", horizons=horizons, cfg=FeatureConfig(), relation="candles_in"
    )
    con.close()
    return chronological_split(
        frame, horizons=horizons, cfg=SplitConfig(), complete_columns=list(FEATURE_COLUMNS)
    )


def fit(name: str, parts: SplitParts, horizons: list[int], cfg: ModelConfig) -> CandlePipeline:
    return fit_pipeline(
        name,
        parts,
        horizons=horizons,
        timeframe="1m",
        feature_cfg=FeatureConfig(),
        model_cfg=cfg,
    )


def bench_training(
    names: list[str], parts: SplitParts, horizons: list[int], cfg: ModelConfig
) -> dict:
    """Fit each torch model at default sizes; throughput from its training report."""
    results, pipes = {}, {}
    for name in names:
        start = time.perf_counter()
        cpu0 = time.process_time()
        pipe = fit(name, parts, horizons, cfg)
        report = pipe.frame_model.report_
        results[name] = {
            "windows": report.n_train_windows,
            "val_windows": report.n_val_windows,
            "epochs": report.epochs_run,
            "best_epoch": report.best_epoch,
            "loop_s": round(report.train_seconds, 1),
            "fit_pipeline_s": round(time.perf_counter() - start, 1),
            "cpu_s": round(time.process_time() - cpu0, 1),
            "samples_per_s": round(report.samples_per_second),
        }
        pipes[name] = pipe
        print(f"trained {name}: {results[name]}", flush=True)
    return {"results": results, "pipelines": pipes}


def bench_latency(
    pipes: dict[str, CandlePipeline], candles: pd.DataFrame, calls: int, workdir: Path
) -> dict:
    """Median pyfunc latency of one symbol's latest bar, plus a features/model breakdown."""
    from ml_core.registry import RegistryStore, TrackingContext, log_pipeline

    tracking = TrackingContext(
        f"sqlite:///{workdir / 'mlflow.db'}", (workdir / "artifacts").as_uri(), "bench-models"
    )
    symbol = sorted(candles["symbol"].unique())[0]
    one = candles[candles["symbol"] == symbol]
    results = {}
    for name, pipe in pipes.items():
        tail = one.tail(pipe.lookback_bars + 5).reset_index(drop=True)
        example = candles.groupby("symbol").tail(pipe.lookback_bars + 5).reset_index(drop=True)
        with tracking.start_run(f"bench-{name}"):
            log_pipeline(pipe, tracking=tracking, model_name=f"bench-{name}", input_example=example)
        model = RegistryStore(tracking.tracking_uri, f"bench-{name}").load_pyfunc("1")
        for _ in range(3):
            out = model.predict(tail, params=LATEST)
        assert len(out) == len(pipe.horizons), (name, len(out))
        total = _median_ms(lambda m=model, t=tail: m.predict(t, params=LATEST), calls)
        feats = features_from_candles(
            tail, pipe.feature_cfg, timeframe="1m", first_ts=pipe.first_ts
        )
        feats = feats.dropna(subset=[c for c in pipe.feature_columns if c in feats.columns])
        rows = feats.tail(pipe.history_bars + 1).reset_index(drop=True)
        features_ms = _median_ms(
            lambda t=tail, p=pipe: features_from_candles(
                t, p.feature_cfg, timeframe="1m", first_ts=p.first_ts
            ),
            calls,
        )
        model_ms = _median_ms(lambda p=pipe, r=rows: p.predict_details(r), calls)
        results[name] = {
            "tail_bars": len(tail),
            "scored_rows": len(rows),
            "pyfunc_ms": round(total, 1),
            "features_ms": round(features_ms, 1),
            "model_ms": round(model_ms, 1),
        }
        print(f"latency {name}: {results[name]}", flush=True)
    return results


def _median_ms(fn, calls: int) -> float:
    fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def print_table(title: str, rows: dict[str, dict]) -> None:
    if not rows:
        return
    cols = list(next(iter(rows.values())))
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows.values())) for c in cols}
    name_w = max(len("model"), *(len(n) for n in rows))
    print(f"\n{title}")
    print("model".ljust(name_w) + "  " + "  ".join(c.rjust(widths[c]) for c in cols))
    for name, r in rows.items():
        print(
            name.ljust(name_w) + "  " + "  ".join(str(r.get(c, "")).rjust(widths[c]) for c in cols)
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=None, help="Comma-separated names (default: all).")
    parser.add_argument("--skip-train", action="store_true", help="Latency only.")
    parser.add_argument("--skip-latency", action="store_true", help="Training only.")
    parser.add_argument("--calls", type=int, default=20, help="Timed pyfunc calls per model.")
    parser.add_argument("--json", type=Path, default=None, help="Also write the figures here.")
    parser.add_argument(
        "--threads", type=int, default=None, help="sequence.num_threads (default: config's)."
    )
    parser.add_argument("--epochs", type=int, default=None, help="sequence.epochs override.")
    parser.add_argument(
        "--max-windows", type=int, default=None, help="sequence.max_train_windows override."
    )
    args = parser.parse_args()
    names = args.models.split(",") if args.models else sorted(MODEL_FACTORIES)
    horizons = load_config().horizons
    torch_names = [n for n in names if n in TORCH_MODELS]
    base = ModelConfig()
    overrides = {
        "num_threads": args.threads,
        "epochs": args.epochs,
        "max_train_windows": args.max_windows,
    }
    seq = base.sequence.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    base = base.model_copy(update={"sequence": seq})
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, horizons {horizons}")

    train_rows, pipes = {}, {}
    if torch_names and not args.skip_train:
        parts = make_parts(load_candles(6, 43_200), horizons)
        print(f"training rows: {len(parts.train)} (6 symbols x 30 days, 60% train)")
        trained = bench_training(torch_names, parts, horizons, base)
        train_rows, pipes = trained["results"], trained["pipelines"]

    latency_rows = {}
    if not args.skip_latency:
        small = make_parts(load_candles(3, 4 * 1440), horizons)
        quick = ModelConfig(
            lightgbm_params={"n_estimators": 60, "num_leaves": 15, "learning_rate": 0.05}
        )
        quick = quick.model_copy(
            update={"sequence": base.sequence.model_copy(update={"epochs": 1})}
        )
        for name in names:
            if name in pipes:
                continue
            try:
                pipes[name] = fit(name, small, horizons, quick)
            except Exception:  # noqa: BLE001 - report and go on with the other models
                print(f"could not fit {name} for the latency run:\n{traceback.format_exc()}")
        candles = load_candles(6, 43_200)
        with tempfile.TemporaryDirectory(prefix="bench-models-") as tmp:
            ordered = {n: pipes[n] for n in names if n in pipes}
            latency_rows = bench_latency(ordered, candles, args.calls, Path(tmp))

    print_table("Training at default sizes (CPU)", train_rows)
    print_table("Single-request latency through the pyfunc (one symbol, latest bar)", latency_rows)
    if args.json:
        args.json.write_text(json.dumps({"train": train_rows, "latency": latency_rows}, indent=2))


if __name__ == "__main__":
    main()
