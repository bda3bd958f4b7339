"""Candle files into the canonical candle frame.

``read_candle_file`` reads CSV (also ``.csv.gz``), data.binance.vision ``.zip``
dumps (one or many CSVs inside, with or without a header line), Parquet, Feather
(freqtrade) and JSON (freqtrade's list of ``[ms, o, h, l, c, v]``, also
``.json.gz``) files with one or many symbols and returns columns
``symbol, timeframe, ts, open, high, low, close, volume`` with ``ts`` naive UTC
``datetime64[us]`` (candle open time; the unit DuckDB returns for ``TIMESTAMP``),
float64 prices and volume, sorted by (symbol, timeframe, ts). Every symbol is
canonical (``ml_core.data.symbols``: ``BTC/USDT``, ``BTC/USDT:USDT``,
``BTC/USDT:USDT@mark``). It only reads: no row is dropped, fixed or deduplicated;
the quality gate judges values. A file that holds no candles (funding rates,
trades, a README) raises ``NotCandlesError`` with a one-line reason.

``candle_files`` expands files and folders (recursively, in a fixed order) into the
files to read, each with the reason it is skipped when it is not a candle file.
docs/formats.md lists every accepted format.

Example::

    read_candle_file("user_data/data/binance/BTC_USDT-1m.feather")   # symbol BTC/USDT
    read_candle_file("Binance_BTCUSDT_d.csv")                        # BTC/USDT, 1d
    read_candle_file("BTCUSDT-1h-2024-01.zip", market="futures")     # BTC/USDT:USDT, 1h
    read_candle_file("export.csv", symbol="PEPE/USDT", timeframe="1h")
"""

from __future__ import annotations

import gzip
import logging
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from ml_core.config import TIMEFRAME_SECONDS, timeframe_seconds
from ml_core.data.symbols import (
    QUOTES,
    FileName,
    canonical_symbol,
    parse_file_name,
    split_pair,
)
from ml_core.data.warehouse import CANDLE_COLUMNS
from ml_core.errors import DataContractError, NotCandlesError

__all__ = [
    "COLUMN_ALIASES",
    "QUOTES",
    "SUFFIXES",
    "FileEntry",
    "candle_files",
    "infer_timeframe",
    "iter_candle_file",
    "not_candles_reason",
    "parse_timestamps",
    "read_candle_file",
    "split_pair",
    "symbol_from_filename",
    "timeframe_from_filename",
]

log = logging.getLogger(__name__)

#: Accepted spellings (after lower-casing; spaces, '-' and '.' read as '_'), best first.
COLUMN_ALIASES: dict[str, list[str]] = {
    "ts": ["ts", "timestamp", "open_time", "unix", "datetime", "date", "time", "time_open"],
    "open": ["open", "o", "open_price"],
    "high": ["high", "h", "high_price"],
    "low": ["low", "l", "low_price"],
    "close": ["close", "c", "close_price"],
    "volume": ["volume", "v", "vol", "volume_base", "base_volume", "base_asset_volume"],
}
SYMBOL_ALIASES = ["symbol", "pair", "ticker"]
TIMEFRAME_ALIASES = ["timeframe", "interval"]
#: File types ``read_candle_file`` reads (lower-case name endings).
SUFFIXES = (".csv.gz", ".csv", ".zip", ".parquet", ".pq", ".feather", ".json.gz", ".json")
_BINANCE_KLINE = ["open_time", "open", "high", "low", "close", "volume", "close_time"]


@dataclass(frozen=True)
class FileEntry:
    """One file found by ``candle_files``: read it when ``skip_reason`` is None."""

    path: Path
    skip_reason: str | None = None


def read_candle_file(
    path: Path | str,
    *,
    symbol: str | None = None,
    timeframe: str | None = None,
    market: str | None = None,
) -> pd.DataFrame:
    """Read one candle file into the canonical candle frame (see module doc).

    Symbol: a ``symbol``/``pair``/``ticker`` column, else ``symbol``, else the file
    name (``parse_file_name``: ``BTC_USDT-1m.feather`` -> BTC/USDT,
    ``BTC_USDT_USDT-1m-futures.feather`` -> BTC/USDT:USDT, ``Binance_BTCUSDT_d.csv``,
    ``BTCUSDT-1h-2024-01.zip`` and ``BTCUSDT.csv`` -> BTC/USDT), always canonical; an
    explicit ``symbol`` renames a one-symbol file. ``market`` ('spot'/'futures') is a
    hint for names that do not say it (default spot). The file's kind (mark, index,
    premium) is added as a suffix (``BTC/USDT:USDT@mark``). Timeframe: ``timeframe``,
    else a ``timeframe``/``interval`` column, else the most common spacing per symbol.
    Raises ``NotCandlesError`` for files that hold no candles, ``DataContractError``
    naming the file and the fix otherwise.
    """
    p = Path(path)
    if not p.is_file():
        raise DataContractError(f"Candle file {p} does not exist; pass the path of a file.")
    if (reason := not_candles_reason(p)) is not None:
        raise NotCandlesError(f"{p}: {reason}")
    names = parse_file_name(p, market=market)
    if p.name.lower().endswith(".zip"):
        members = _read_zip(p, names, market)
        if symbol is not None and len({m.symbol for _, m, _ in members}) > 1:
            found = sorted({str(m.symbol) for _, m, _ in members})
            raise DataContractError(
                f"{p} holds CSVs of {len(found)} symbols ({found}); symbol={symbol!r} can only "
                "rename a one-symbol file. Drop the symbol argument."
            )
        frames = [_candles(raw, src, m, symbol, timeframe) for src, m, raw in members]
        out = pd.concat(frames, ignore_index=True)
    else:
        out = _candles(_read_table(p), str(p), names, symbol, timeframe)
    return out.sort_values(["symbol", "timeframe", "ts"], kind="mergesort").reset_index(drop=True)


#: Rows per chunk when a large CSV or Parquet file is read in pieces (``iter_candle_file``).
CHUNK_ROWS = 500_000


def iter_candle_file(
    path: Path | str,
    *,
    symbol: str | None = None,
    timeframe: str | None = None,
    market: str | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> Iterator[pd.DataFrame]:
    """``read_candle_file`` in chunks of at most ``chunk_rows`` rows, in file order, so
    memory stays flat however long the file: CSV (also ``.csv.gz``) and Parquet are
    streamed; the other types are small by nature and come as one chunk. Each chunk
    is a canonical candle frame (sorted); a file shorter than ``chunk_rows`` is one
    chunk equal to ``read_candle_file``'s frame. A chunk's timeframe is inferred from
    its own spacing when neither ``timeframe`` nor a column gives it.
    """
    p = Path(path)
    name = p.name.lower()
    streamable = name.endswith((".csv", ".csv.gz", ".parquet", ".pq"))
    if not streamable or not p.is_file() or not_candles_reason(p) is not None:
        yield read_candle_file(p, symbol=symbol, timeframe=timeframe, market=market)
        return
    said = parse_file_name(p, market=market)
    n = 0
    try:
        chunks = (
            _parquet_chunks(p, chunk_rows)
            if "parquet" in name or name.endswith(".pq")
            else (
                _csv_chunks(
                    partial(gzip.open if name.endswith(".gz") else open, p, "rb"), chunk_rows
                )
            )
        )
        for raw in chunks:
            n += 1
            out = _candles(raw, str(p), said, symbol, timeframe)
            yield out.sort_values(["symbol", "timeframe", "ts"], kind="mergesort").reset_index(
                drop=True
            )
    except (DataContractError, NotCandlesError):
        raise
    except Exception as exc:  # noqa: BLE001 - any parser error becomes a contract error
        raise DataContractError(f"Could not read candle file {p}: {exc}") from exc
    if n == 0:
        raise DataContractError(f"{p} holds no rows; nothing to ingest.")


def _parquet_chunks(p: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    import pyarrow.parquet as pq

    with pq.ParquetFile(p) as pf:
        for batch in pf.iter_batches(batch_size=chunk_rows):
            yield batch.to_pandas()


def _csv_chunks(open_binary: Callable[[], IO[bytes]], chunk_rows: int) -> Iterator[pd.DataFrame]:
    """``_read_csv`` in chunks (same header rules)."""
    skiprows, header, names = _csv_layout(open_binary)
    with open_binary() as fh:
        reader = pd.read_csv(fh, skiprows=skiprows, header=header, chunksize=chunk_rows)
        for chunk in reader:
            yield chunk.rename(columns=names) if names else chunk


def candle_files(paths: Iterable[Path | str] | Path | str) -> list[FileEntry]:
    """Files and folders -> the files to read, in order, each with its skip reason.

    Folders are walked recursively, entries sorted by name (so the order is the
    same on every machine); hidden folders are listed as skipped, not entered. A
    file named twice is listed once. A named file that does not exist is listed
    without a reason: reading it raises, naming it.
    """
    items = [paths] if isinstance(paths, str | Path) else list(paths)
    entries: list[FileEntry] = []
    seen: set[Path] = set()
    for item in map(Path, items):
        found = _walk(item, set()) if item.is_dir() else [_entry(item)]
        for entry in found:
            key = entry.path.resolve()
            if key not in seen:
                seen.add(key)
                entries.append(entry)
    return entries


def not_candles_reason(path: Path | str) -> str | None:
    """Why ``path`` is not a candle file (one line), or None when it may be one.

    Judged from the name alone: hidden files, ``.DS_Store``, ``*.CHECKSUM``, types
    not in ``SUFFIXES``, and names that say funding rates or trades.
    """
    p = Path(path)
    name = p.name
    if name == ".DS_Store":
        return "macOS folder metadata (.DS_Store), not candles: skipped"
    if name.startswith("."):
        return "hidden file, not candles: skipped"
    if name.upper().endswith(".CHECKSUM"):
        return "checksum file (.CHECKSUM), not candles: skipped"
    if not name.lower().endswith(SUFFIXES):
        kind = f"{p.suffix!r} file" if p.suffix else "file without a type suffix"
        return f"{kind}, not a candle file type ({', '.join(SUFFIXES)}): skipped"
    return parse_file_name(p).skip_reason


#: Files that mark a folder as a coincast home: its reports and MLflow artifacts hold CSV
#: files that are not candles.
_HOME_MARKERS = ("warehouse.duckdb", "mlflow.db")


def _walk(folder: Path, visited: set[Path]) -> list[FileEntry]:
    real = folder.resolve()
    if real in visited:  # a symlink back up the tree
        return []
    visited.add(real)
    entries: list[FileEntry] = []
    for child in sorted(folder.iterdir(), key=lambda c: c.name):
        if child.is_dir():
            if child.name.startswith(".") or child.name == "__MACOSX":
                entries.append(FileEntry(child, "hidden folder, not searched: skipped"))
            elif any((child / marker).exists() for marker in _HOME_MARKERS):
                entries.append(FileEntry(child, "a coincast home (its own state), not searched"))
            else:
                entries += _walk(child, visited)
        elif child.is_file():
            entries.append(_entry(child))
    return entries


def _entry(path: Path) -> FileEntry:
    return FileEntry(path, not_candles_reason(path) if path.is_file() else None)


# ---- reading ----------------------------------------------------------------------------


def _read_table(p: Path) -> pd.DataFrame:
    name = p.name.lower()
    try:
        if name.endswith(".csv"):
            return _read_csv(partial(open, p, "rb"))
        if name.endswith(".csv.gz"):
            return _read_csv(partial(gzip.open, p, "rb"))
        if name.endswith((".parquet", ".pq")):
            return pd.read_parquet(p)
        if name.endswith(".feather"):
            return pd.read_feather(p)
        if name.endswith((".json", ".json.gz")):
            return _read_json(p)
    except DataContractError:
        raise
    except Exception as exc:  # noqa: BLE001 - any parser error becomes a contract error
        raise DataContractError(f"Could not read candle file {p}: {exc}") from exc
    raise NotCandlesError(f"{p}: not a candle file type; use one of {', '.join(SUFFIXES)}.")


def _read_zip(
    p: Path, names: FileName, market: str | None
) -> list[tuple[str, FileName, pd.DataFrame]]:
    """(source, what its name says, raw table) per candle CSV inside the zip, by member name.

    A member's own name gives symbol and timeframe; the zip's name stands in when it
    does not. Folders, hidden files, checksums and non-CSV members are passed over.
    """
    members: list[tuple[str, FileName, pd.DataFrame]] = []
    passed: list[str] = []
    try:
        with zipfile.ZipFile(p) as zf:
            for info in sorted(zf.infolist(), key=lambda i: i.filename):
                member = Path(info.filename)
                if info.is_dir() or "__MACOSX" in member.parts:
                    continue
                reason = not_candles_reason(member)
                if reason is None and not member.name.lower().endswith(".csv"):
                    reason = "not a CSV"
                if reason is not None:
                    passed.append(f"{info.filename}: {reason.split(', ')[0]}")
                    continue
                said = parse_file_name(p / member, market=market)
                if said.symbol is None:
                    said = replace(names, timeframe=said.timeframe or names.timeframe)
                source = f"{p}[{info.filename}]"
                try:
                    raw = _read_csv(partial(zf.open, info))
                except Exception as exc:  # noqa: BLE001 - any parser error is a contract error
                    raise DataContractError(f"Could not read {source}: {exc}") from exc
                members.append((source, said, raw))
    except zipfile.BadZipFile as exc:
        raise DataContractError(f"{p} is not a readable zip file ({exc}); fetch it again.") from exc
    if not members:
        listing = "; ".join(passed) or "no files"
        raise NotCandlesError(f"{p}: zip without a candle CSV ({listing}): skipped")
    return members


def _read_csv(open_binary: Callable[[], IO[bytes]]) -> pd.DataFrame:
    skiprows, header, names = _csv_layout(open_binary)
    with open_binary() as fh:
        raw = pd.read_csv(fh, skiprows=skiprows, header=header)
    return raw.rename(columns=names) if names else raw


def _csv_layout(open_binary: Callable[[], IO[bytes]]) -> tuple[int, int | None, dict | None]:
    """(rows to skip, header row, column names) from the first line of a CSV."""
    with open_binary() as fh:
        fields = fh.readline().decode("utf-8-sig", errors="replace").strip().split(",")
    if len(fields) == 1 and fields[0].lower().startswith("http"):
        return 1, 0, None  # CryptoDataDownload puts its URL on line 1
    if all(_is_number(f) for f in fields):  # data.binance.vision klines without header
        return 0, None, dict(enumerate(_BINANCE_KLINE))
    return 0, 0, None


def _read_json(p: Path) -> pd.DataFrame:
    raw = pd.read_json(p)  # '.json.gz' is unzipped by the suffix
    if all(isinstance(c, int | np.integer) for c in raw.columns):  # freqtrade arrays
        return raw.rename(columns=dict(enumerate(["date", *_BINANCE_KLINE[1:6]])))
    return raw


def _is_number(text: object) -> bool:
    try:
        float(str(text))
    except ValueError:
        return False
    return True


def _norm(name: object) -> str:
    return re.sub(r"[\s\-.]+", "_", str(name).strip().lower())


# ---- columns ----------------------------------------------------------------------------


def _candles(
    raw: pd.DataFrame, source: str, said: FileName, symbol: str | None, timeframe: str | None
) -> pd.DataFrame:
    """One raw table -> the canonical columns (unsorted)."""
    if raw.empty:
        raise DataContractError(f"{source} holds no rows; nothing to ingest.")
    names = {_norm(c): c for c in reversed(list(raw.columns))}  # first spelling wins
    if "close" not in names and any("funding" in n for n in names):
        raise NotCandlesError(f"{source}: funding-rate file, not candles: skipped")
    out = pd.DataFrame(index=raw.index)
    out["symbol"] = _symbols(raw, names, source, said, symbol)
    out["ts"] = parse_timestamps(raw[_column(raw, names, source, "ts")], source=source)
    for col in ["open", "high", "low", "close"]:
        out[col] = _numbers(raw[_column(raw, names, source, col)], col, source)
    volume = _volume_column(raw, names, source, out["symbol"])
    out["volume"] = _numbers(raw[volume], "volume", source)
    out["timeframe"] = _timeframes(raw, names, out, source, timeframe, said.timeframe)
    return out.loc[:, CANDLE_COLUMNS]


def _column(raw: pd.DataFrame, names: dict[str, str], source: str, canonical: str) -> str:
    for alias in COLUMN_ALIASES[canonical]:
        if alias in names:
            return names[alias]
    raise DataContractError(
        f"{source}: no column for {canonical!r} among the columns found {list(raw.columns)}; "
        f"accepted spellings (any case): {COLUMN_ALIASES[canonical]}. Rename the column."
    )


def _volume_column(
    raw: pd.DataFrame, names: dict[str, str], source: str, symbols: pd.Series
) -> str:
    """'volume' or an alias; else CryptoDataDownload's 'Volume <BASE>' for a one-symbol file."""
    for alias in COLUMN_ALIASES["volume"]:
        if alias in names:
            return names[alias]
    per_asset = {k[len("volume_") :]: v for k, v in names.items() if k.startswith("volume_")}
    distinct = symbols.dropna().unique()
    if per_asset and len(distinct) == 1:
        base = str(distinct[0]).split("/")[0].lower()
        if base in per_asset:
            return per_asset[base]
    return _column(raw, names, source, "volume")  # raises with the accepted spellings


def _numbers(col: pd.Series, name: str, source: str) -> pd.Series:
    """Column as float64; nulls stay null (the gate rejects them), text raises."""
    values = pd.to_numeric(col, errors="coerce").astype("float64")
    bad = values.isna() & col.notna()
    if bad.any():
        examples = col[bad].astype(str).unique()[:3].tolist()
        raise DataContractError(
            f"{source}: column {col.name!r} (read as {name!r}) has {int(bad.sum())} non-numeric "
            f"value(s), e.g. {examples}; fix the file so prices and volume are numbers."
        )
    return values


def parse_timestamps(values: pd.Series, *, source: str = "input") -> pd.Series:
    """Open times as naive UTC ``datetime64[us]``.

    Numbers are epoch seconds, milliseconds, microseconds or nanoseconds, told
    apart per value by magnitude (files that switch unit midway still parse).
    Text is ISO 8601: offsets are converted to UTC, naive text is taken as UTC.
    Nulls stay NaT; text that does not parse raises ``DataContractError``.
    """
    if pd.api.types.is_datetime64_any_dtype(values):
        out = values if values.dt.tz is None else values.dt.tz_convert("UTC").dt.tz_localize(None)
        return out.astype("datetime64[us]")
    numeric = pd.to_numeric(values, errors="coerce")
    if pd.api.types.is_bool_dtype(values):
        numeric = pd.Series(np.nan, index=values.index)
    if numeric.notna().sum() == values.notna().sum() and values.notna().any():
        return _from_epoch(numeric)
    try:
        parsed = pd.to_datetime(values, utc=True, format="ISO8601")
    except (ValueError, TypeError) as exc:
        examples = values.dropna().astype(str).unique()[:3].tolist()
        raise DataContractError(
            f"{source}: time column {values.name!r} is neither epoch numbers nor ISO 8601 text "
            f"(e.g. {examples}): {exc}. Write times as '2024-01-01 00:00:00' or epoch ms."
        ) from exc
    return parsed.dt.tz_localize(None).astype("datetime64[us]")


def _from_epoch(numeric: pd.Series) -> pd.Series:
    mag = numeric.abs().to_numpy(dtype="float64")
    unit = np.select([mag < 1e11, mag < 1e14, mag < 1e17], [0, 1, 2], default=3)  # s/ms/us/ns
    if pd.api.types.is_integer_dtype(numeric) and not numeric.isna().any():
        v = numeric.to_numpy(dtype="int64")
        us = v.copy()  # exact integer arithmetic, branch by branch (no overflow)
        us[unit == 0] = v[unit == 0] * 1_000_000
        us[unit == 1] = v[unit == 1] * 1_000
        us[unit == 3] = v[unit == 3] // 1_000
        return pd.Series(us.view("datetime64[us]"), index=numeric.index)
    scale = np.array([1e6, 1e3, 1.0, 1e-3])[unit]
    us_float = np.round(numeric.to_numpy(dtype="float64") * scale)
    out = pd.to_datetime(pd.Series(us_float, index=numeric.index), unit="us")
    return out.astype("datetime64[us]")


# ---- symbol and timeframe ---------------------------------------------------------------


def _symbols(
    raw: pd.DataFrame, names: dict[str, str], source: str, said: FileName, symbol: str | None
) -> pd.Series:
    col = next((names[a] for a in SYMBOL_ALIASES if a in names), None)
    if col is None:
        if symbol is None and said.symbol is None:
            raise DataContractError(
                f"Cannot tell the symbol of {source!r}: it has no symbol/pair/ticker "
                "column and the name is not like 'BTC_USDT-1m.feather', 'Binance_BTCUSDT_d.csv', "
                "'BTCUSDT-1h-2024-01.zip' or 'BTCUSDT.csv'. Pass symbol='BASE/QUOTE' "
                "(CLI --symbol BASE/QUOTE)."
            )
        name = _canonical(symbol, said, source) if symbol is not None else said.symbol
        return pd.Series(name, index=raw.index, dtype="str")
    values = raw[col].astype("str")
    distinct = values.dropna().unique()
    if symbol is not None:
        if len(distinct) > 1:
            raise DataContractError(
                f"{source} holds {len(distinct)} symbols in column {col!r} "
                f"({list(distinct[:5])}); symbol={symbol!r} can only rename a one-symbol file. "
                "Drop the symbol argument."
            )
        name = _canonical(symbol, said, source)
        return pd.Series(name, index=raw.index, dtype="str").where(values.notna())
    canonical = {v: _canonical(str(v), said, source, col) for v in distinct}
    return values.map(canonical).astype("str")


def _canonical(text: str, said: FileName, source: str, column: str | None = None) -> str:
    """``text`` canonical, in the file's market and kind; errors name the file."""
    kind = None if said.kind == "trade" else said.kind
    try:
        return canonical_symbol(text, market=said.market, kind=kind)
    except DataContractError as exc:
        where = f"column {column!r}" if column else "symbol argument"
        raise DataContractError(f"{source} ({where}): {exc}") from exc


def symbol_from_filename(path: Path | str) -> str:
    """Canonical symbol that a file name says (``parse_file_name``); raises if it says none."""
    said = parse_file_name(path)
    if said.symbol is None:
        raise DataContractError(
            f"Cannot tell the symbol of {Path(path).name!r} from its name; name it like "
            "'BTC_USDT-1m.feather', 'Binance_BTCUSDT_d.csv', 'BTCUSDT-1h-2024-01.zip' or "
            "'BTCUSDT.csv', or pass symbol='BASE/QUOTE' (CLI --symbol BASE/QUOTE)."
        )
    return said.symbol


def timeframe_from_filename(path: Path | str) -> str | None:
    """Known timeframe that a file name says, if any (``parse_file_name``)."""
    return parse_file_name(path).timeframe


def _timeframes(
    raw: pd.DataFrame,
    names: dict[str, str],
    out: pd.DataFrame,
    source: str,
    timeframe: str | None,
    hint: str | None,
) -> pd.Series:
    col = next((names[a] for a in TIMEFRAME_ALIASES if a in names), None)
    if timeframe is not None:
        timeframe_seconds(timeframe)  # ConfigError listing the known ones
        if col is not None and not raw[col].dropna().isin([timeframe]).all():
            found = sorted(raw[col].dropna().astype(str).unique())[:5]
            raise DataContractError(
                f"{source}: timeframe={timeframe!r} contradicts column {col!r} ({found}); "
                "drop the timeframe argument or fix the column."
            )
        return pd.Series(timeframe, index=out.index, dtype="str")
    if col is not None:
        return raw[col].astype("str")
    by_symbol = {
        s: infer_timeframe(g["ts"], source, s, hint=hint)
        for s, g in out.groupby("symbol", sort=False)
    }
    if hint is not None and any(tf != hint for tf in by_symbol.values()):
        log.warning("%s: the name says %s but the bars are spaced %s", source, hint, by_symbol)
    return out["symbol"].map(by_symbol).astype("str")


def infer_timeframe(
    ts: pd.Series, source: Path | str, symbol: object = None, *, hint: str | None = None
) -> str:
    """The timeframe whose bar length is the most common spacing of ``ts``.

    ``hint`` (the timeframe a file name says) answers when there are fewer than two
    distinct timestamps.
    """
    steps = pd.Series(np.sort(ts.dropna().unique())).diff().dt.total_seconds()
    steps = steps[steps > 0]
    if steps.empty:
        if hint is not None:
            return hint
        raise DataContractError(
            f"{source}: cannot infer the timeframe of {symbol!r} from fewer than two distinct "
            "timestamps; pass timeframe= (CLI --timeframe)."
        )
    step = int(steps.mode().iloc[0])
    for name, seconds in TIMEFRAME_SECONDS.items():
        if seconds == step:
            return name
    scaled = {v * 1000: k for k, v in TIMEFRAME_SECONDS.items()}
    misread = (
        f" A spacing of {scaled[step]} x 1000: these look like epoch milliseconds before 1973 "
        "(or seconds from a wrong clock), read as seconds; fix the time column."
        if step in scaled
        else ""
    )
    raise DataContractError(
        f"{source}: the most common spacing between bars of {symbol!r} is {step} s, which is no "
        f"known timeframe ({', '.join(TIMEFRAME_SECONDS)}); pass timeframe= (CLI --timeframe)."
        + misread
    )
