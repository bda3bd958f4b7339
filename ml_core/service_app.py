"""The HTTP face of ``ml_core.service.ScoringService``: FastAPI routes and the uvicorn loop.

Kept apart from ``ml_core.service`` so that finding a running service (what
``coincast predict`` does first) does not import the web stack.
"""

from __future__ import annotations

import json
import logging
import signal
import socket
from typing import Any

import pandas as pd
import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ml_core.errors import DataContractError, WarehouseError
from ml_core.processes import live_record
from ml_core.service import NoModelError, ScoringService, state_file


def create_app(service: ScoringService) -> Any:
    """The FastAPI app over ``service`` (routes in the module docstring)."""
    app = FastAPI(  # no /docs: its pages load assets from a CDN; /openapi.json is served
        title="coincast scoring service",
        description=f"{service.cfg.model_name}@{service.alias}: P(up) per horizon.",
        docs_url=None,
        redoc_url=None,
    )

    def answer(call: Any, *, not_found: bool = False) -> Any:
        try:
            return call()
        except NoModelError as exc:
            raise HTTPException(503, str(exc)) from exc
        except WarehouseError as exc:
            raise HTTPException(503, str(exc)) from exc
        except DataContractError as exc:
            raise HTTPException(404 if not_found else 422, str(exc)) from exc

    @app.get("/health")
    def health() -> JSONResponse:
        info = service.health()
        return JSONResponse(info, status_code=200 if info["status"] != "no_model" else 503)

    @app.get("/predict")
    def predict_all() -> Any:
        return answer(lambda: service.predict_symbols(None))

    @app.get("/predict/{symbol:path}")
    def predict_one(symbol: str) -> Any:
        return answer(lambda: service.predict_symbols([_symbol(symbol)]), not_found=True)

    @app.post("/predict")
    async def predict_posted(request: Request) -> Any:
        raw = await request.body()
        if (hit := service.cached_reply(raw)) is not None:
            return hit
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise HTTPException(400, f"the body is not JSON ({exc}).") from exc
        rows = body.get("candles") if isinstance(body, dict) else body
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise HTTPException(
                422,
                'send {"candles": [{"symbol": "BTC/USDT", "ts": "2024-09-06T03:00:00Z", '
                '"open": ..., "high": ..., "low": ..., "close": ..., "volume": ...}, ...]}',
            )
        frame = pd.DataFrame.from_records(rows)
        # scoring takes tens of ms: off the event loop, so /health and others still answer
        reply = await run_in_threadpool(answer, lambda: service.predict_candles(frame))
        service.remember_reply(raw, reply)
        return reply

    return app


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _symbol(text: str) -> str:
    """``BTC-USDT`` (URL-friendly) as ``BTC/USDT``; a symbol with a slash stays as it is."""
    return text if "/" in text else text.replace("-", "/", 1)


def serve(
    service: ScoringService, *, host: str = "127.0.0.1", port: int = 8765, echo: Any = print
) -> None:
    """Run ``service`` with uvicorn until Ctrl-C; while it runs, ``state_file`` names it so
    ``coincast predict`` on the same home answers through it."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise DataContractError(
                f"Cannot listen on {host}:{port} ({exc.strerror or exc}); another service may "
                "run there. Pick another with --port."
            ) from exc
    handler = logging.StreamHandler()  # swaps and failed loads, as they happen
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logging.getLogger("ml_core.service").addHandler(handler)
    logging.getLogger("ml_core.service").setLevel(logging.INFO)
    service.refresh()
    service.start_watching()
    url = f"http://{host}:{port}"
    info = service.health()
    what = f"v{info['version']} ({info['candidate']})" if info["version"] else "no version yet"
    echo(f"Serving {service.cfg.model_name}@{service.alias} {what} at {url}")
    echo(
        f"  GET {url}/predict/SYMBOL   GET {url}/predict   POST {url}/predict   "
        f"GET {url}/health   (API: {url}/openapi.json)"
    )
    echo(f"  the alias is checked every {service.poll_s:g} s; Ctrl-C stops.")
    # uvicorn re-raises a SIGTERM it caught once it has shut down: end through `finally`
    signal.signal(signal.SIGTERM, _exit_on_signal)
    record = {"url": url, "model": service.cfg.model_name}
    try:
        with live_record(state_file(service.cfg, service.alias), record):
            uvicorn.run(create_app(service), host=host, port=port, log_level="warning")
    finally:
        service.stop()
