"""Read-side helpers for the CLI: score the latest candles, summarize the state."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ml_core.config import CoincastConfig
from ml_core.data.warehouse import Warehouse
from ml_core.errors import DataContractError, RegistryError

ALIASES = ("champion", "challenger", "previous")


def predict_latest(
    cfg: CoincastConfig, *, symbol: str | None, alias: str = "champion"
) -> pd.DataFrame:
    """P(up) per horizon (with uncertainty, expected return, edge and regime) at each
    symbol's latest candle, from the registered pipeline (the pyfunc's own predict)."""
    from ml_core.registry.store import RegistryStore

    store = RegistryStore(cfg.tracking_uri, cfg.model_name)
    info = store.get_alias(alias) if store.exists() else None
    if info is None:
        raise RegistryError(
            f"No {alias} for model {cfg.model_name!r} yet. Run `coincast retrain` (or `make run`) first."
        )
    lookback = int(info.tags.get("coincast.lookback_bars", "0")) or 1000
    candles = recent_candles(cfg, symbol=symbol, n_bars=lookback + 5)
    pipeline = store.load_pipeline(info.version)  # the version read above, though the alias moves
    preds = pipeline.predict(candles.drop(columns="timeframe"), latest_only=True, with_regime=True)
    preds.insert(0, "model_version", info.version)
    return preds


def stale_symbols(
    preds: pd.DataFrame, timeframe: str, *, now: pd.Timestamp | None = None
) -> dict[str, str]:
    """Symbols whose latest scored candle closed more than two bars before ``now``, with the
    age (e.g. '3 days 02:00:00'), oldest first."""
    from ml_core.config import timeframe_seconds

    if preds.empty:
        return {}
    now = now if now is not None else pd.Timestamp.now(tz="UTC").tz_localize(None)
    bar = pd.Timedelta(seconds=timeframe_seconds(timeframe))
    latest = pd.to_datetime(preds.groupby("symbol")["ts"].max())
    if getattr(latest.dt, "tz", None) is not None:
        latest = latest.dt.tz_convert("UTC").dt.tz_localize(None)
    age = now - (latest + bar)
    old = age[age > 2 * bar].sort_values(ascending=False)
    return {str(sym): str(a.floor("s")) for sym, a in old.items()}


def recent_candles(cfg: CoincastConfig, *, symbol: str | None, n_bars: int) -> pd.DataFrame:
    wh = Warehouse(cfg.warehouse_path)
    with wh.connect(read_only=True) as con:
        params: list[Any] = [cfg.data.timeframe]
        where = "timeframe = ?"
        if symbol:
            where += " AND symbol = ?"
            params.append(symbol)
        frame = con.execute(
            f"""SELECT symbol, timeframe, ts, open, high, low, close, volume FROM (
                  SELECT *, row_number() OVER (PARTITION BY symbol ORDER BY ts DESC) AS rn
                  FROM candles WHERE {where}) WHERE rn <= ? ORDER BY symbol, ts""",
            [*params, n_bars],
        ).df()
    if frame.empty:
        what = f"symbol {symbol!r}" if symbol else "any symbol"
        raise DataContractError(
            f"No {cfg.data.timeframe} candles for {what} in {wh.path}; "
            "ingest some with `coincast ingest PATH`."
        )
    return frame


def collect_status(cfg: CoincastConfig) -> dict[str, Any]:
    """Warehouse contents, aliases with their metrics, last decisions, latest report."""
    from ml_core.registry.promotion import read_audit

    wh = Warehouse(cfg.warehouse_path)
    info: dict[str, Any] = {
        "candles": None,
        "aliases": [],
        "decisions": [],
        "quarantine": 0,
        "unfinished_moves": [],
    }
    if wh.exists:
        with wh.connect(read_only=True) as con:
            info["candles"] = (
                con.execute(
                    """SELECT timeframe, count(DISTINCT symbol) AS symbols, count(*) AS rows,
                          min(ts) AS first, max(ts) AS last
                   FROM candles GROUP BY timeframe ORDER BY timeframe"""
                )
                .df()
                .to_dict(orient="records")
            )
            info["quarantine"] = int(con.execute("SELECT count(*) FROM quarantine").fetchone()[0])
    info["models"] = _registered_models(cfg)
    names = [m["name"] for m in info["models"]] or [cfg.model_name]
    own = [m for m in info["models"] if m["name"] == cfg.model_name]
    info["aliases"] = own[0]["aliases"] if own else []
    if wh.exists:
        decisions = [
            {"model_name": n, **r}
            for n in names
            for r in read_audit(wh, n, limit=5).to_dict(orient="records")
        ]
        decisions.sort(key=lambda r: r["created_at"], reverse=True)
        info["decisions"] = decisions[:8]
        from ml_core.registry.moves import unfinished_moves

        info["unfinished_moves"] = [
            {
                "id": m.id,
                "created_at": m.created_at,
                "action": m.action,
                "actor": m.actor,
                "pid": m.pid,
                "planned": m.planned,
            }
            for n in names
            for m in unfinished_moves(wh, n)
        ]
    from ml_core.service import running_services

    info["services"] = running_services(cfg)
    reports = [cfg.reports_dir / n / "latest.html" for n in names]
    info["reports"] = [str(r) for r in reports if r.exists()]
    info["report"] = info["reports"][0] if len(info["reports"]) == 1 else None
    return info


def _registered_models(cfg: CoincastConfig) -> list[dict[str, Any]]:
    """Every registered model with its aliases (name, aliases: [alias rows]); only
    ``cfg.model_name`` when the timeframe was given explicitly."""
    from ml_core.data.datasets import timeframe_is_explicit
    from ml_core.registry.moves import serving_aliases
    from ml_core.registry.store import RegistryStore, registered_model_names

    if not ((cfg.home / "mlflow.db").exists() or cfg.registry.tracking_uri):
        return []
    names = registered_model_names(cfg.tracking_uri)
    if timeframe_is_explicit(cfg) or cfg.registry.model_name:
        names = [n for n in names if n == cfg.model_name]
    out = []
    for name in names:
        store = RegistryStore(cfg.tracking_uri, name)
        rows = []
        for alias, version in serving_aliases(store, Warehouse(cfg.warehouse_path)).items():
            tags = store.version_tags(version)
            rows.append(
                {
                    "alias": alias,
                    "version": version,
                    "candidate": tags.get("coincast.candidate", ""),
                    "val_auc": _metric(tags, "val_auc_mean"),
                    "test_auc": _metric(tags, "test_auc_mean"),
                    "feature_set": tags.get("coincast.feature_set", ""),
                    "edge_horizons": tags.get("coincast.edge_horizons", "all"),
                    "final_fit": tags.get("coincast.final_fit", "train"),
                    "timeframe": tags.get("coincast.timeframe", ""),
                    "missing": store.missing_artifacts(version),
                }
            )
        out.append({"name": name, "aliases": rows})
    return out


def _metric(tags: dict[str, str], key: str) -> str:
    import json

    try:
        return f"{float(json.loads(tags.get('coincast.metrics', '{}'))[key]):.4f}"
    except (KeyError, ValueError, TypeError):
        return ""
