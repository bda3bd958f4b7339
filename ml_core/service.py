"""A warm scoring service: the champion loaded once, scores answered without a process start.

``ScoringService`` holds the pipeline behind one registry alias (``champion`` by
default), checks the alias every ``poll_s`` seconds and swaps to the new version
without a restart after a promotion or rollback. It answers for candles a client
sends (``predict_candles``) or for the latest candles in the warehouse
(``predict_symbols``). The same candles always give the values of the registered
pyfunc; an answer is cached per (version, candles) so a bot polling before the
next bar closes gets it back at once.

``ml_core.service_app.create_app`` wraps it in FastAPI (``coincast serve-model`` runs it with uvicorn)::

    GET  /health                  model, version, last alias check, last error
    GET  /predict                 every symbol of the warehouse, latest candle
    GET  /predict/{symbol}        one symbol (``BTC/USDT`` or ``BTC-USDT``)
    POST /predict                 {"candles": [{"symbol", "ts", "open", ...}, ...]}

Replies are strict JSON: a horizon without shown skill, or a value the model does
not make, is ``null``, never ``NaN``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml_core.config import CoincastConfig
from ml_core.errors import DataContractError, RegistryError

log = logging.getLogger(__name__)

CANDLE_FIELDS = ["symbol", "ts", "open", "high", "low", "close", "volume"]
#: Largest request a client may send (candles), so one request cannot take the memory.
MAX_CANDLES = 200_000
#: Answers kept per service (one per distinct candle window and version).
CACHE_SIZE = 2048
#: A version that failed to load is tried again after this many seconds (not every poll).
RETRY_FAILED_S = 60.0


class NoModelError(RegistryError):
    """The alias has no version yet (nothing to serve): HTTP 503."""


@dataclass(frozen=True)
class Served:
    """The version being served and its pipeline."""

    version: str
    pipeline: Any
    lookback: int
    loaded_at: datetime


class ScoringService:
    """One alias of one registered model, kept loaded and current."""

    def __init__(self, cfg: CoincastConfig, *, alias: str = "champion", poll_s: float = 5.0):
        from ml_core.registry.store import RegistryStore

        self.cfg = cfg
        self.alias = alias
        self.poll_s = float(poll_s)
        self.store = RegistryStore(cfg.tracking_uri, cfg.model_name)
        self._served: Served | None = None
        self._swap = threading.Lock()  # one load at a time; readers never wait on it
        self._cache: OrderedDict[tuple[str, str], list[dict[str, Any]]] = OrderedDict()
        self._replies: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
        self._cache_lock = threading.Lock()
        #: Warehouse candles read per (file stamp, lookback, symbol): no DuckDB round trip
        #: while the warehouse file is unchanged.
        self._candles: dict[tuple[Any, int, str | None], pd.DataFrame] = {}
        self._failed: tuple[str | None, float] = (None, 0.0)  # version, monotonic time
        self.last_check: datetime | None = None
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    # ---- the model ----
    def refresh(self) -> bool:
        """Load the alias's version if it moved; True when a new version is now served.

        A failed load (artifacts gone, digest mismatch) keeps the version being served
        and is reported in ``health()``.
        """
        with self._swap:
            self.last_check = datetime.now().astimezone()
            try:
                info = self.store.get_alias(self.alias) if self.store.exists() else None
            except Exception as exc:  # noqa: BLE001 - keep serving what is loaded
                self.last_error = f"alias check failed: {type(exc).__name__}: {exc}"
                log.warning("%s", self.last_error)
                return False
            if info is None or (self._served and self._served.version == info.version):
                if info is not None:
                    self.last_error = None
                return False
            failed_version, failed_at = self._failed
            if failed_version == info.version and time.monotonic() - failed_at < RETRY_FAILED_S:
                return False  # do not reload a broken version on every poll
            try:
                pipeline = self.store.load_pipeline(info.version)
            except Exception as exc:  # noqa: BLE001 - keep serving what is loaded
                self._failed = (info.version, time.monotonic())
                self.last_error = f"v{info.version} could not be loaded: {exc}"
                log.error("%s", self.last_error)
                return False
            self._failed = (None, 0.0)
            lookback = int(info.tags.get("coincast.lookback_bars", "0") or 0)
            before = self._served.version if self._served else None
            self._served = Served(
                info.version,
                pipeline,
                lookback or int(pipeline.lookback_bars),
                datetime.now().astimezone(),
            )
            self.last_error = None
            with self._cache_lock:
                self._cache.clear()
                self._replies.clear()
            log.info(
                "%s@%s: now serving v%s%s",
                self.cfg.model_name,
                self.alias,
                info.version,
                f" (was v{before})" if before else "",
            )
            return True

    def served(self) -> Served:
        """The version being served; ``NoModelError`` when the alias has none yet."""
        served = self._served
        if served is None:
            raise NoModelError(
                f"No {self.alias} for model {self.cfg.model_name!r} yet"
                + (f" ({self.last_error})" if self.last_error else "")
                + ". Run `coincast retrain` (or `make run`); this service picks it up "
                f"within {self.poll_s:g} s."
            )
        return served

    def start_watching(self) -> None:
        """Check the alias every ``poll_s`` seconds in a daemon thread."""
        if self._watcher is not None:
            return

        def watch() -> None:
            while not self._stop.wait(self.poll_s):
                self.refresh()

        self._watcher = threading.Thread(target=watch, name="coincast-alias-watch", daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=self.poll_s + 5)
            self._watcher = None

    def health(self) -> dict[str, Any]:
        served = self._served
        status = "ok" if served and not self.last_error else "degraded" if served else "no_model"
        return {
            "status": status,
            "model": self.cfg.model_name,
            "alias": self.alias,
            "version": served.version if served else None,
            "candidate": served.pipeline.candidate if served else None,
            "timeframe": self.cfg.data.timeframe,
            "loaded_at": served.loaded_at.isoformat() if served else None,
            "last_check": self.last_check.isoformat() if self.last_check else None,
            "poll_seconds": self.poll_s,
            "error": self.last_error,
            "pid": os.getpid(),
        }

    # ---- scoring ----
    def predict_candles(self, candles: pd.DataFrame) -> dict[str, Any]:
        """The latest bar of each symbol in ``candles`` (the columns of ``CANDLE_FIELDS``)."""
        served = self.served()
        candles = check_candles(candles, timeframe=served.pipeline.timeframe)
        records = self._scored(served, candles)
        missing = sorted(set(candles["symbol"]) - {r["symbol"] for r in records})
        if missing and not records:
            raise DataContractError(
                f"Too few candles to score {missing[:5]}: the model needs the last "
                f"{served.lookback} bars of a symbol (its longest feature window); send "
                "at least that many, oldest first or in any order."
            )
        return self._reply(served, records, unscored=missing)

    def cached_reply(self, body: bytes) -> dict[str, Any] | None:
        """The reply already given to this exact request body by the version now served
        (a client polling before the next bar closes): no parsing, no scoring."""
        served = self._served
        if served is None:
            return None
        with self._cache_lock:
            return self._replies.get((served.version, _digest(body)))

    def remember_reply(self, body: bytes, reply: dict[str, Any]) -> None:
        with self._cache_lock:
            self._replies[(reply["version"], _digest(body))] = reply
            while len(self._replies) > CACHE_SIZE:
                self._replies.popitem(last=False)

    def predict_symbols(self, symbols: list[str] | None = None) -> dict[str, Any]:
        """The latest warehouse bar of ``symbols`` (all symbols when None)."""
        from ml_core.serving import recent_candles

        served = self.served()
        stamp = _file_stamp(self.cfg.warehouse_path)
        frames = []
        for symbol in symbols or [None]:
            key = (stamp, served.lookback, symbol)
            with self._cache_lock:
                frame = self._candles.get(key)
            if frame is None:  # the warehouse changed since the last read (or first read)
                frame = recent_candles(self.cfg, symbol=symbol, n_bars=served.lookback + 5)
                frame = frame.drop(columns="timeframe")
                with self._cache_lock:
                    if any(k[0] != stamp for k in self._candles):
                        self._candles.clear()
                    self._candles[key] = frame
            frames.append(frame)
        candles = pd.concat(frames, ignore_index=True)
        records = self._scored(served, candles)
        missing = sorted(set(candles["symbol"]) - {r["symbol"] for r in records})
        return self._reply(served, records, unscored=missing)

    def _scored(self, served: Served, candles: pd.DataFrame) -> list[dict[str, Any]]:
        key = (served.version, _fingerprint(candles))
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        preds = served.pipeline.predict(candles, latest_only=True, with_regime=True)
        records = _records(preds)
        with self._cache_lock:
            self._cache[key] = records
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return records

    def _reply(
        self, served: Served, records: list[dict[str, Any]], *, unscored: list[str]
    ) -> dict[str, Any]:
        return {
            "model": self.cfg.model_name,
            "alias": self.alias,
            "version": served.version,
            "candidate": served.pipeline.candidate,
            "timeframe": served.pipeline.timeframe,
            "predictions": records,
            "unscored": unscored,
        }


def check_candles(candles: pd.DataFrame, *, timeframe: str) -> pd.DataFrame:
    """Client candles as a clean frame, or ``DataContractError`` naming the first problem."""
    if candles.empty:
        raise DataContractError("no candles sent; send the latest bars of each symbol.")
    missing = [c for c in CANDLE_FIELDS if c not in candles.columns]
    if missing:
        raise DataContractError(f"candles lack fields {missing}; each needs {CANDLE_FIELDS}.")
    if len(candles) > MAX_CANDLES:
        raise DataContractError(
            f"{len(candles)} candles in one request; at most {MAX_CANDLES}. Send the last "
            "bars the model needs (see GET /health for the model, its lookback in the reply)."
        )
    out = candles[CANDLE_FIELDS].copy()
    out["symbol"] = out["symbol"].astype(str)
    try:
        ts = pd.to_datetime(out["ts"], utc=True, format="ISO8601")
    except (ValueError, TypeError) as exc:
        bad_ts = pd.to_datetime(out["ts"], utc=True, format="ISO8601", errors="coerce").isna()
        example = out.loc[bad_ts, "ts"].iloc[0] if bad_ts.any() else "?"
        raise DataContractError(
            f"a candle ts is not a time ({example!r}); send ISO 8601, e.g. 2024-09-06T03:00:00Z."
        ) from exc
    out["ts"] = ts.dt.tz_localize(None).astype("datetime64[us]")
    prices = ["open", "high", "low", "close", "volume"]
    try:
        out[prices] = out[prices].astype("float64")
    except (ValueError, TypeError) as exc:
        raise DataContractError(f"a candle price or volume is not a number ({exc}).") from exc
    bad = ~np.isfinite(out[prices].to_numpy()).all(axis=1)
    bad |= (out[["open", "high", "low", "close"]] <= 0).any(axis=1).to_numpy()
    bad |= (out["volume"] < 0).to_numpy()
    bad |= (out["high"] < out[["open", "close", "low"]].max(axis=1)).to_numpy()
    bad |= (out["low"] > out[["open", "close"]].min(axis=1)).to_numpy()
    if bad.any():
        row = out[bad].iloc[0]
        raise DataContractError(
            f"{int(bad.sum())} candle(s) are not valid OHLCV bars, e.g. {row['symbol']} at "
            f"{row['ts']}: prices must be finite and > 0, volume >= 0, low <= open, close "
            "<= high."
        )
    dup = out.duplicated(["symbol", "ts"])
    if dup.any():
        row = out[dup].iloc[0]
        raise DataContractError(
            f"{int(dup.sum())} duplicate candle(s), e.g. {row['symbol']} at {row['ts']}: "
            "send one bar per symbol and time."
        )
    off_grid = _off_grid(out["ts"], timeframe)
    if off_grid is not None:
        raise DataContractError(
            f"candle ts {off_grid} is not on the {timeframe} grid of this model; send "
            f"{timeframe} bars (their open times)."
        )
    return out.sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True)


def _off_grid(ts: pd.Series, timeframe: str) -> pd.Timestamp | None:
    from ml_core.config import timeframe_seconds

    step = timeframe_seconds(timeframe)
    seconds = ts.astype("int64") // 1_000_000  # datetime64[us]
    off = (seconds % step) != 0
    return ts[off].iloc[0] if off.any() else None


def _file_stamp(path: Path) -> tuple[int, int, int, int]:
    """Changes whenever DuckDB writes ``path`` or its write-ahead log (mtime, size of both)."""
    stamp = []
    for p in (path, path.with_name(path.name + ".wal")):
        try:
            st = p.stat()
            stamp += [st.st_mtime_ns, st.st_size]
        except FileNotFoundError:
            stamp += [0, 0]
    return (stamp[0], stamp[1], stamp[2], stamp[3])


def _digest(body: bytes) -> str:
    return hashlib.blake2b(body, digest_size=16).hexdigest()


def _fingerprint(candles: pd.DataFrame) -> str:
    digest = hashlib.blake2b(digest_size=16)
    digest.update(pd.util.hash_pandas_object(candles[CANDLE_FIELDS], index=False).to_numpy())
    return digest.hexdigest()


def _records(preds: pd.DataFrame) -> list[dict[str, Any]]:
    """Prediction rows as strict-JSON records: no-edge horizons and NaN become None."""
    out = []
    for row in preds.to_dict(orient="records"):
        edge = bool(row.get("edge", True))
        rec: dict[str, Any] = {
            "symbol": row["symbol"],
            "ts": pd.Timestamp(row["ts"]).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "horizon": int(row["horizon"]),
            "edge": edge,
            "regime": row.get("regime"),
            # the conformal direction set: up, down or both (abstain); None without edge
            "p_set": row.get("p_set") if edge else None,
        }
        for k in ("p_up", "uncertainty", "exp_ret"):
            v = row.get(k)
            rec[k] = float(v) if edge and v is not None and math.isfinite(v) else None
        out.append(rec)
    return out


def state_file(cfg: CoincastConfig, alias: str = "champion") -> Path:
    """Where a running service of this home, model and alias records its address."""
    safe = cfg.model_name.replace("/", "_")
    return cfg.home.resolve() / "serve" / f"{safe}@{alias}.json"


def running_service(cfg: CoincastConfig, alias: str = "champion") -> str | None:
    """The URL of a live service for this home, model and alias (None if none runs)."""
    from ml_core.processes import read_live_record

    info = read_live_record(state_file(cfg, alias))
    return None if info is None else str(info["url"])


def running_services(cfg: CoincastConfig) -> list[dict[str, Any]]:
    """Every live `coincast serve-model` of this home: model, alias, url, pid."""
    from ml_core.processes import read_live_record

    out = []
    for path in sorted((cfg.home.resolve() / "serve").glob("*@*.json")):
        if (info := read_live_record(path)) is not None:
            out.append({"model": "", **info, "alias": path.stem.rsplit("@", 1)[1]})
    return out


def fetch_latest(url: str, *, symbol: str | None, timeout_s: float = 10.0) -> pd.DataFrame:
    """``predict_latest``'s frame from a running service at ``url`` (``OSError`` when it
    does not answer; a ``DataContractError``/``RegistryError`` with its message on 4xx/5xx)."""
    import json
    import urllib.error
    import urllib.parse
    import urllib.request

    path = "/predict" + (f"/{urllib.parse.quote(symbol, safe='')}" if symbol else "")
    try:
        with urllib.request.urlopen(url + path, timeout=timeout_s) as reply:
            body = json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read()).get("detail", str(exc))
        except ValueError:
            detail = str(exc)
        error = NoModelError if exc.code == 503 else DataContractError
        raise error(f"{detail} (from the service at {url})") from exc
    frame = pd.DataFrame.from_records(
        body["predictions"],
        columns=[
            "symbol",
            "ts",
            "horizon",
            "p_up",
            "uncertainty",
            "exp_ret",
            "edge",
            "p_set",
            "regime",
        ],
    )
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True).dt.tz_localize(None)
    frame.insert(0, "model_version", body["version"])
    return frame.astype({"p_up": float, "uncertainty": float, "exp_ret": float})
