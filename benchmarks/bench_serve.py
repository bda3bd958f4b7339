"""The warm scoring service (`coincast serve-model`) against a process per request.

Usage::

    python benchmarks/bench_serve.py                        # logistic, lightgbm, lstm, stacking
    python benchmarks/bench_serve.py --models logistic --calls 50

For each model a pipeline is fitted on a slice of the embedded 1m sample,
registered in a temporary sqlite registry as ``champion`` and served by a real
``ScoringService`` behind uvicorn on 127.0.0.1 (one keep-alive HTTP connection,
as a polling bot holds). Figures, median (p50) and p95 over ``--calls``:

* ``new bar``: POST one symbol's last ``lookback + 5`` candles, a new bar each call
  (the window slides by one bar, so no answer is cached): the real cost per bar;
* ``repeat``: the same candles again (a poll before the next bar closes);
* ``GET``: ``/predict/SYMBOL`` from the warehouse while it is unchanged;
* ``50 symbols``: one POST with 50 symbols' windows, a new bar each call;
* ``pyfunc``: the reference, the registered pyfunc loaded in this process and asked
  for the same sliding windows (no HTTP, no JSON).

Then the `coincast predict` command as a whole process, for the logistic model:
with the service running (it answers through it) and without (it loads the
model itself), and their ratio.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_models import fit, load_candles, make_parts  # noqa: E402
from ml_core.config import CoincastConfig, ModelConfig, SequenceConfig  # noqa: E402
from ml_core.data.warehouse import CANDLE_COLUMNS, Warehouse  # noqa: E402
from ml_core.registry import RegistryStore, TrackingContext, log_pipeline  # noqa: E402
from ml_core.service import ScoringService  # noqa: E402
from ml_core.service_app import create_app  # noqa: E402

HORIZONS = [15, 60]


def _serve(service: ScoringService, port: int) -> object:
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server


def _body(window: pd.DataFrame) -> bytes:
    rows = window.assign(ts=window["ts"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"))[
        ["symbol", "ts", "open", "high", "low", "close", "volume"]
    ]
    return json.dumps({"candles": rows.to_dict(orient="records")}).encode()


def _timed(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None) -> float:
    start = time.perf_counter()
    conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
    reply = conn.getresponse()
    data = reply.read()
    elapsed = (time.perf_counter() - start) * 1e3
    if reply.status != 200:
        raise RuntimeError(f"{method} {path}: {reply.status} {data[:300]!r}")
    return elapsed


def _stats(ms: list[float]) -> str:
    q = statistics.quantiles(ms, n=20)
    return f"p50 {statistics.median(ms):7.1f} ms  p95 {q[18]:7.1f} ms"


def bench_model(name: str, pipe: object, candles: pd.DataFrame, root: Path, calls: int) -> dict:
    cfg = CoincastConfig(
        home=root / name,
        labels={"horizons": {"1m": HORIZONS}},
        registry={"model_name": f"bench-{name}"},
    )
    with Warehouse(cfg.warehouse_path).connect() as con:
        con.register("c_in", candles.assign(timeframe="1m")[CANDLE_COLUMNS])
        con.execute("INSERT INTO candles BY NAME SELECT * FROM c_in")
    tracking = TrackingContext(cfg.tracking_uri, cfg.artifact_location, "bench-serve")
    lookback = pipe.lookback_bars + 5
    example = candles.groupby("symbol").tail(lookback).reset_index(drop=True)
    with tracking.start_run(f"bench-{name}"):
        log_pipeline(pipe, tracking=tracking, model_name=cfg.model_name, input_example=example)
    RegistryStore(cfg.tracking_uri, cfg.model_name).set_alias("champion", "1")
    service = ScoringService(cfg, poll_s=3600)
    service.refresh()
    port = 18700 + len(os.listdir(root))
    server = _serve(service, port)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    symbol = sorted(candles["symbol"].unique())[0]
    one = candles[candles["symbol"] == symbol].reset_index(drop=True)
    n = len(one)
    windows = [one.iloc[n - lookback - i : n - i] for i in range(calls + 3)][::-1]
    out: dict[str, list[float]] = {"new bar": [], "repeat": [], "GET": [], "50 symbols": []}
    # the reference: the registered pyfunc in this process, the same sliding windows
    pyfunc = RegistryStore(cfg.tracking_uri, cfg.model_name).load_pyfunc("1")
    out["pyfunc"] = []
    for i, w in enumerate(windows):
        start = time.perf_counter()
        pyfunc.predict(w, params={"latest_only": True})
        if i >= 3:
            out["pyfunc"].append((time.perf_counter() - start) * 1e3)
    for i, w in enumerate(windows):
        t = _timed(conn, "POST", "/predict", _body(w))
        if i >= 3:
            out["new bar"].append(t)
    body = _body(windows[-1])
    out["repeat"] = [_timed(conn, "POST", "/predict", body) for _ in range(calls)]
    path = "/predict/" + symbol.replace("/", "-", 1)
    _timed(conn, "GET", path, None)
    out["GET"] = [_timed(conn, "GET", path, None) for _ in range(calls)]
    # 50 symbols: the sample's symbols copied under new names, each sliding per call
    syms = sorted(candles["symbol"].unique())
    panel_calls = max(5, calls // 5)
    tails = candles.groupby("symbol").tail(lookback + panel_calls + 3)
    copies = [
        tails[tails["symbol"] == syms[k % len(syms)]].assign(symbol=f"S{k:02d}/USDT")
        for k in range(50)
    ]
    for i in range(panel_calls + 3):
        frame = pd.concat([c.iloc[i : i + lookback] for c in copies], ignore_index=True)
        t = _timed(conn, "POST", "/predict", _body(frame))
        if i >= 3:
            out["50 symbols"].append(t)
    conn.close()
    server.should_exit = True
    return {k: v for k, v in out.items()} | {"cfg": cfg}


def bench_cli(cfg: CoincastConfig, port: int) -> tuple[float, float]:
    """Whole-process seconds of `coincast predict` with and without a running service."""
    config = cfg.home / "bench.json"
    config.write_text(
        json.dumps(
            {
                "home": str(cfg.home),
                "labels": {"horizons": {"1m": HORIZONS}},
                "registry": {"model_name": cfg.model_name},
            }
        )
    )
    cli = [sys.executable, "-m", "coincast_cli"]
    args = ["--config", str(config), "--json"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def once() -> float:
        start = time.perf_counter()
        subprocess.run([*cli, "predict", *args], cwd=ROOT, env=env, check=True, capture_output=True)
        return time.perf_counter() - start

    once()
    alone = statistics.median(once() for _ in range(3))
    proc = subprocess.Popen(
        [*cli, "serve-model", "--config", str(config), "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                http.client.HTTPConnection("127.0.0.1", port, timeout=2).request("GET", "/health")
                break
            except OSError:
                time.sleep(0.3)
        time.sleep(1)
        served = statistics.median(once() for _ in range(3))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return alone, served


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="logistic,lightgbm,lstm,stacking")
    ap.add_argument("--calls", type=int, default=40)
    args = ap.parse_args()
    names = args.models.split(",")
    candles = load_candles(n_symbols=3, n_bars=4 * 1440)
    parts = make_parts(candles, HORIZONS)
    model_cfg = ModelConfig(sequence=SequenceConfig(epochs=1))
    print(f"load average {os.getloadavg()[0]:.1f}", flush=True)
    results = {}
    with tempfile.TemporaryDirectory(prefix="coincast-bench-serve-") as tmp:
        root = Path(tmp)
        for name in names:
            pipe = fit(name, parts, HORIZONS, model_cfg)
            results[name] = bench_model(name, pipe, candles, root, args.calls)
            print(f"\n{name} (lookback {pipe.lookback_bars} bars)", flush=True)
            for what, ms in results[name].items():
                if what != "cfg":
                    print(f"  {what:<11} {_stats(ms)}", flush=True)
        if "logistic" in results:
            alone, served = bench_cli(results["logistic"]["cfg"], 18790)
            print(
                f"\n`coincast predict --json`, whole process: {alone:.2f} s loading the model "
                f"itself, {served:.2f} s through the service ({alone / served:.1f}x)"
            )
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
