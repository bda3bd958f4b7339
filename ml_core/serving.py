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
    """P(up) per horizon at each symbol's latest candle, through the registered pyfunc."""
    from ml_core.registry.store import RegistryStore

    store = RegistryStore(cfg.tracking_uri, cfg.model_name)
    info = store.get_alias(alias) if store.exists() else None
    if info is None:
        raise RegistryError(
            f"No {alias} for model {cfg.model_name!r} yet. Run `coincast retrain` (or `make run`) first."
        )
    lookback = int(info.tags.get("coincast.lookback_bars", "0")) or 1000
    candles = _recent_candles(cfg, symbol=symbol, n_bars=lookback + 5)
    model = store.load_pyfunc(alias)
    preds = model.predict(candles.drop(columns="timeframe"), params={"latest_only": True})
    preds = pd.DataFrame(preds)
    preds.insert(0, "model_version", info.version)
    return preds


def _recent_candles(cfg: CoincastConfig, *, symbol: str | None, n_bars: int) -> pd.DataFrame:
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
    from ml_core.registry.store import RegistryStore

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
        info["decisions"] = read_audit(wh, cfg.model_name, limit=5).to_dict(orient="records")
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
            for m in unfinished_moves(wh, cfg.model_name)
        ]
    store = RegistryStore(cfg.tracking_uri, cfg.model_name)
    if ((cfg.home / "mlflow.db").exists() or cfg.registry.tracking_uri) and store.exists():
        for alias, version in store.aliases().items():
            tags = store.version_tags(version)
            info["aliases"].append(
                {
                    "alias": alias,
                    "version": version,
                    "candidate": tags.get("coincast.candidate", ""),
                    "val_auc": _metric(tags, "val_auc_mean"),
                    "test_auc": _metric(tags, "test_auc_mean"),
                    "feature_set": tags.get("coincast.feature_set", ""),
                    "edge_horizons": tags.get("coincast.edge_horizons", "all"),
                    "final_fit": tags.get("coincast.final_fit", "train"),
                }
            )
    latest = cfg.reports_dir / cfg.model_name / "latest.html"
    info["report"] = str(latest) if latest.exists() else None
    return info


def _metric(tags: dict[str, str], key: str) -> str:
    import json

    try:
        return f"{float(json.loads(tags.get('coincast.metrics', '{}'))[key]):.4f}"
    except (KeyError, ValueError, TypeError):
        return ""
