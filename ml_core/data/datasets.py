"""Which data set (timeframe) a command works on when the user did not say.

A data set is one timeframe of the warehouse: the models of ``1h`` candles are
``coincast-1h``. A user with only hourly candles should never have to type
``--timeframe 1h``, and a user with several timeframes should be told which exist
rather than get the 1m default's "no candles" after a long start. So, when the
timeframe is not set explicitly (``--timeframe``, a config file, the environment,
a deployment's parameters):

- one timeframe among the stored candles and configured download sources: use it;
- none (a fresh home): keep the default, the command then says what to ingest;
- several: ``ConfigError`` naming them and how to choose.

Example::

    cfg = resolve_timeframe(load_config())      # 'coincast-1h' in a 1h-only home
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ml_core.config import TIMEFRAME_SECONDS, CoincastConfig, SourceConfig
from ml_core.data.warehouse import Warehouse
from ml_core.errors import CoincastError, ConfigError, DataContractError


def stored_timeframes(warehouse: Warehouse) -> list[str]:
    """Timeframes that have candles in the warehouse, shortest bar first; [] without one."""
    if not warehouse.exists:
        return []
    with warehouse.connect(read_only=True) as con:
        found = [r[0] for r in con.execute("SELECT DISTINCT timeframe FROM candles").fetchall()]
    return sorted(found, key=lambda tf: TIMEFRAME_SECONDS.get(tf, 0))


def timeframe_is_explicit(cfg: CoincastConfig) -> bool:
    """Whether ``data.timeframe`` was given (file, environment or override), not defaulted."""
    return "timeframe" in cfg.data.model_fields_set


def available_timeframes(cfg: CoincastConfig) -> list[str]:
    """Stored timeframes plus those of the configured download sources."""
    found = set(stored_timeframes(Warehouse(cfg.warehouse_path)))
    found |= {s.timeframe for s in cfg.sources}
    return sorted(found, key=lambda tf: TIMEFRAME_SECONDS.get(tf, 0))


def file_timeframes(paths: Iterable[Path | str]) -> set[str]:
    """Timeframes of the candle files (or folders) about to be ingested, as the ingest will
    store them: from each file's first rows (a column, else the bar spacing). Files that
    cannot be read are left to the ingest, which reports them."""
    from ml_core.data.sources import candle_files, iter_candle_file

    found: set[str] = set()
    for entry in candle_files(list(paths)):
        if entry.skip_reason is not None:
            continue
        try:
            head = next(iter_candle_file(entry.path, chunk_rows=20_000))
        except (CoincastError, StopIteration):
            continue
        found |= set(head["timeframe"].astype(str).unique())
    return found


def resolve_timeframe(cfg: CoincastConfig, files: Iterable[Path | str] = ()) -> CoincastConfig:
    """``cfg`` with the data set's timeframe filled in when it was not explicit (module doc);
    ``files``: candle files about to be ingested count as stored (a retrain of a fresh home
    with ``--ingest sample_1h.parquet`` is the 1h data set)."""
    if timeframe_is_explicit(cfg):
        return cfg
    incoming = file_timeframes(files) if files else set()
    found = sorted(
        set(available_timeframes(cfg)) | incoming, key=lambda tf: TIMEFRAME_SECONDS.get(tf, 0)
    )
    if not found:
        return cfg
    if len(found) > 1:
        where = " and the files to ingest" if incoming else ""
        raise ConfigError(
            f"{cfg.warehouse_path} (its candles and download sources{where}) holds "
            f"{len(found)} timeframes: {', '.join(found)}. Say which data set to use with "
            f"--timeframe (e.g. -t {found[0]}), or set data.timeframe in the config file."
        )
    data = cfg.data.model_copy(update={"timeframe": found[0]})
    data.model_fields_set.add("timeframe")
    return cfg.model_copy(update={"data": data})


def sources_for(cfg: CoincastConfig) -> list[SourceConfig]:
    """The configured download sources of this data set's timeframe."""
    return [s for s in cfg.sources if s.timeframe == cfg.data.timeframe]


def require_candles(cfg: CoincastConfig) -> None:
    """``DataContractError`` at once (before any flow starts) when the data set has no
    candles and no download source would bring some; names the timeframes that exist."""
    stored = stored_timeframes(Warehouse(cfg.warehouse_path))
    if cfg.data.timeframe in stored or sources_for(cfg):
        return
    tf = cfg.data.timeframe
    if stored:
        choose = " or ".join(f"-t {t}" for t in stored)
        raise DataContractError(
            f"No {tf} candles in {cfg.warehouse_path}; it holds {', '.join(stored)}. "
            f"Use {choose}, or ingest {tf} candles (`coincast ingest PATH`, `coincast download`)."
        )
    raise DataContractError(
        f"No candles in {cfg.warehouse_path} yet. Ingest some (`coincast ingest PATH`, "
        "`coincast download --symbols BTC/USDT -t 1h`, or `make run` for the sample)."
    )


def model_symbols(cfg: CoincastConfig) -> list[str] | None:
    """The symbols models train on and score: ``data.symbols`` when set, else every trade
    series of the timeframe (``@mark``/``@index``/``@premium`` series are reference
    prices, not assets), less ``data.exclude_symbols``. None means 'every stored symbol'."""
    left_out = set(cfg.data.exclude_symbols)
    if cfg.data.symbols:
        return [s for s in cfg.data.symbols if s not in left_out]
    from ml_core.data.symbols import is_trade_series

    wh = Warehouse(cfg.warehouse_path)
    if not wh.exists:
        return None
    with wh.connect(read_only=True) as con:
        stored = [
            r[0]
            for r in con.execute(
                "SELECT DISTINCT symbol FROM candles WHERE timeframe = ? ORDER BY symbol",
                [cfg.data.timeframe],
            ).fetchall()
        ]
    trade = [s for s in stored if is_trade_series(s) and s not in left_out]
    return None if len(trade) == len(stored) else trade
