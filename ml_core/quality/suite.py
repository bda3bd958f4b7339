"""The critical candle suite, run with Great Expectations (GX Core 1.x).

``validate_candles`` runs one ``gx.ValidationDefinition`` (pandas data source,
whole-dataframe batch) over a batch of candles and adds the soft findings of
``ml_core.quality.soft``. Critical expectations, each a real GX expectation:

- no nulls in any candle column (``expect_column_values_to_not_be_null``)
- open/high/low/close in (0, ``max_price``], volume in [0, ``max_volume``]
  (``expect_column_values_to_be_between``): infinities and absurd values (1e30) fail
- symbol plausible: letters, digits and ``/:._@-``, at most 64 characters, no
  spaces or control characters (``expect_column_values_to_match_regex``)
- high >= open, high >= close, open >= low, close >= low
  (``expect_column_pair_values_a_to_be_greater_than_b``, ``or_equal=True``)
- (symbol, timeframe, ts) unique (``expect_compound_columns_to_be_unique``)
- timeframe known (``expect_column_values_to_be_in_set``)
- ts aligned to the timeframe: helper column ``_ts_offset_us`` (open time modulo
  the bar length; weekly bars open on Monday) in {0} (``expect_column_values_to_be_in_set``)
- no future ts: helper column ``_ts_epoch_us`` <= now + ``max_future_seconds``
  (``expect_column_values_to_be_between``)
- no ts before ``min_ts`` (2009-01-03 by default: no crypto candle is older; a
  millisecond time misread, or a stamp decades off, fails here)

Great Expectations is imported lazily (~3-5 s). The context, data source, suite
and validation definition are built once per process (``_gx_validation``); a run
passes its dataframe and the 'now' bound as run parameters and stores nothing on
them, and runs are serialised by a lock (GX objects are not documented as thread-safe).
"""

from __future__ import annotations

import logging
import threading
import warnings
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from ml_core.config import TIMEFRAME_SECONDS, QualityConfig
from ml_core.data.warehouse import CANDLE_COLUMNS, to_naive_utc
from ml_core.errors import DataContractError
from ml_core.quality.report import N_EXAMPLES, QualityReport, json_value
from ml_core.quality.soft import find_soft_issues

log = logging.getLogger(__name__)

PRICE_COLUMNS = ["open", "high", "low", "close"]
KEY_COLUMNS = ["symbol", "timeframe", "ts"]
_EPOCH_COL = "_ts_epoch_us"
_OFFSET_COL = "_ts_offset_us"
#: 1970-01-01 was a Thursday; weekly candles open on Monday 1970-01-05.
_WEEK_ORIGIN_US = 4 * 86400 * 1_000_000
_GX_LOCK = threading.Lock()
_GX_NAME = "coincast-candles"
_MAX_EPOCH_PARAM = "max_epoch_us"
_MIN_EPOCH_PARAM = "min_epoch_us"
_MAX_PRICE_PARAM = "max_price"
_MAX_VOLUME_PARAM = "max_volume"
#: A plausible symbol: what the canonical names and ccxt's unified symbols use.
SYMBOL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9/:._@-]{0,63}$"


def validate_candles(
    candles: pd.DataFrame, cfg: QualityConfig, *, now: pd.Timestamp | None = None
) -> QualityReport:
    """Run the critical GX suite and the soft checks over a candle batch.

    ``now`` (default: the current UTC time) bounds the open times: a bar may
    open at most ``cfg.max_future_seconds`` after it. The input is not changed.
    Raises ``DataContractError`` when the frame is not a candle frame at all
    (missing columns, non-datetime ts, non-numeric prices).
    """
    frame = _contract_frame(candles)
    now_naive = to_naive_utc(now if now is not None else pd.Timestamp.now(tz="UTC"))
    max_ts = now_naive + pd.Timedelta(seconds=cfg.max_future_seconds)
    batch = _with_helper_columns(frame)
    min_ts = pd.Timestamp(cfg.min_ts)
    results = _run_suite(
        batch,
        params={
            _MAX_EPOCH_PARAM: _epoch_us(max_ts),
            _MIN_EPOCH_PARAM: _epoch_us(min_ts),
            _MAX_PRICE_PARAM: cfg.max_price,
            _MAX_VOLUME_PARAM: cfg.max_volume,
        },
    )
    bounds = {
        "max_ts": f"{max_ts:%Y-%m-%d %H:%M:%S}",
        "min_ts": f"{min_ts:%Y-%m-%d}",
        "max_price": f"{cfg.max_price:g}",
        "max_volume": f"{cfg.max_volume:g}",
    }
    for r in results:
        r["label"] = r["label"].format(**bounds)
    failures = [_failure(r, frame) for r in results if not r["success"]]
    return QualityReport(
        passed=not failures,
        n_rows=len(frame),
        symbols=_distinct(frame["symbol"]),
        timeframes=_distinct(frame["timeframe"]),
        failures=failures,
        findings=find_soft_issues(frame, cfg),
        expectations_run=[r["expectation"] for r in results],
        validated_at=pd.Timestamp.now(tz="UTC").tz_localize(None).isoformat(),
    )


# ---- input contract -------------------------------------------------------------------


def _contract_frame(candles: pd.DataFrame) -> pd.DataFrame:
    """A positional-index copy with the candle columns, ts naive; raises on a non-candle frame."""
    missing = [c for c in CANDLE_COLUMNS if c not in candles.columns]
    if missing:
        raise DataContractError(
            f"Candle frame lacks column(s) {missing}; found {list(candles.columns)}. "
            f"Expected {CANDLE_COLUMNS}; read files with ml_core.data.sources.read_candle_file."
        )
    frame = candles.loc[:, CANDLE_COLUMNS].reset_index(drop=True)
    ts = frame["ts"]
    if not pd.api.types.is_datetime64_any_dtype(ts):
        raise DataContractError(
            f"Candle column 'ts' has dtype {ts.dtype}, expected datetime64 (naive UTC); "
            "convert it with pd.to_datetime(..., utc=True) or read_candle_file."
        )
    if getattr(ts.dt, "tz", None) is not None:
        ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    frame["ts"] = ts.astype("datetime64[us]")
    for col in [*PRICE_COLUMNS, "volume"]:
        if not pd.api.types.is_numeric_dtype(frame[col]) or pd.api.types.is_bool_dtype(frame[col]):
            raise DataContractError(
                f"Candle column {col!r} has dtype {frame[col].dtype}, expected float64; "
                "convert it with pd.to_numeric or read the file with read_candle_file."
            )
        frame[col] = frame[col].astype("float64")
    return frame


def _epoch_us(ts: pd.Timestamp) -> int:
    return int(pd.Timestamp(ts).value // 1000)  # .value is nanoseconds whatever the unit


def _with_helper_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Copy with open time as epoch microseconds and its offset from the bar grid."""
    batch = frame.copy()
    epoch = frame["ts"].to_numpy(dtype="datetime64[us]").view("int64").astype("float64")
    epoch[frame["ts"].isna().to_numpy()] = np.nan  # exact: epoch us < 2**53
    bar_us = frame["timeframe"].map(TIMEFRAME_SECONDS).astype("float64") * 1_000_000
    origin = np.where(frame["timeframe"] == "1w", _WEEK_ORIGIN_US, 0)
    batch[_EPOCH_COL] = epoch
    batch[_OFFSET_COL] = np.mod(epoch - origin, bar_us)  # NaN where ts or timeframe unusable
    return batch


def _distinct(values: pd.Series) -> list[str]:
    return sorted(str(v) for v in values.dropna().unique())


# ---- the GX suite -----------------------------------------------------------------------


def _expectations() -> list[Any]:
    """The critical expectations; ``meta`` carries the label and the columns to report."""
    import great_expectations.expectations as gxe

    def meta(label: str, columns: list[str]) -> dict:
        return {"label": label, "columns": columns}

    exps: list[Any] = [
        gxe.ExpectColumnValuesToNotBeNull(column=c, meta=meta(f"no nulls in {c}", [c]))
        for c in CANDLE_COLUMNS
    ]
    exps += [
        gxe.ExpectColumnValuesToBeBetween(
            column=c, min_value=0, strict_min=True, meta=meta(f"{c} > 0", [c])
        )
        for c in PRICE_COLUMNS
    ]
    exps += [
        gxe.ExpectColumnValuesToBeBetween(
            column=c,
            max_value={"$PARAMETER": _MAX_PRICE_PARAM},
            meta=meta(f"{c} <= {{max_price}} (finite, plausible)", [c]),
        )
        for c in PRICE_COLUMNS
    ]
    exps.append(
        gxe.ExpectColumnValuesToBeBetween(
            column="volume", min_value=0, meta=meta("volume >= 0", ["volume"])
        )
    )
    exps.append(
        gxe.ExpectColumnValuesToBeBetween(
            column="volume",
            max_value={"$PARAMETER": _MAX_VOLUME_PARAM},
            meta=meta("volume <= {max_volume} (finite, plausible)", ["volume"]),
        )
    )
    exps.append(
        gxe.ExpectColumnValuesToMatchRegex(
            column="symbol",
            regex=SYMBOL_PATTERN,
            meta=meta("symbol is letters, digits and /:._@- (at most 64)", ["symbol"]),
        )
    )
    for a, b in [("high", "open"), ("high", "close"), ("open", "low"), ("close", "low")]:
        exps.append(
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A=a, column_B=b, or_equal=True, meta=meta(f"{a} >= {b}", [a, b])
            )
        )
    exps += [
        gxe.ExpectCompoundColumnsToBeUnique(
            column_list=KEY_COLUMNS, meta=meta("(symbol, timeframe, ts) unique", KEY_COLUMNS)
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="timeframe",
            value_set=list(TIMEFRAME_SECONDS),
            meta=meta("timeframe is known", ["timeframe"]),
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column=_OFFSET_COL,
            value_set=[0.0],
            meta=meta("ts aligned to the timeframe", ["timeframe", "ts"]),
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column=_EPOCH_COL,
            max_value={"$PARAMETER": _MAX_EPOCH_PARAM},
            meta=meta("ts <= {max_ts} (no future bars)", ["ts"]),
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column=_EPOCH_COL,
            min_value={"$PARAMETER": _MIN_EPOCH_PARAM},
            meta=meta("ts >= {min_ts} (quality.min_ts)", ["ts"]),
        ),
    ]
    return exps


@lru_cache(maxsize=1)
def _gx_validation() -> Any:
    """The suite's ValidationDefinition in a process-wide ephemeral context (built once).

    Only the dataframe and the ``max_epoch_us`` suite parameter change between
    runs; both are passed to ``run`` and nothing is stored on the shared objects.
    """
    for name in (
        "great_expectations",
        "great_expectations.core",
        "great_expectations.data_context",
    ):
        logging.getLogger(name).setLevel(logging.WARNING)
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    source = context.data_sources.add_pandas(_GX_NAME)
    batch_def = source.add_dataframe_asset("batch").add_batch_definition_whole_dataframe("all")
    suite = context.suites.add(gx.ExpectationSuite(name=_GX_NAME, expectations=_expectations()))
    return context.validation_definitions.add(
        gx.ValidationDefinition(name=_GX_NAME, data=batch_def, suite=suite)
    )


def _run_suite(batch: pd.DataFrame, *, params: dict[str, Any]) -> list[dict]:
    """Run the suite on ``batch`` with its run parameters; one plain dict per result."""
    with _GX_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = _gx_validation().run(
            batch_parameters={"dataframe": batch},
            expectation_parameters=params,
            result_format={"result_format": "COMPLETE", "partial_unexpected_count": 0},
        )
    return [_result_dict(r) for r in result.results]


def _result_dict(result: Any) -> dict:
    config = result.expectation_config
    info = result.exception_info or {}
    raised = bool(info.get("raised_exception"))
    return {
        "expectation": config.type,
        "label": (config.meta or {}).get("label", config.type),
        "columns": list((config.meta or {}).get("columns", [])),
        "success": bool(result.success) and not raised,
        "n_rows": result.result.get("unexpected_count"),
        "index": list(result.result.get("unexpected_index_list") or []),
        "error": info.get("exception_message") if raised else None,
    }


def _failure(result: dict, frame: pd.DataFrame) -> dict:
    """A report failure: symbols affected, per-symbol counts and example rows."""
    rows = frame.iloc[np.asarray(result["index"], dtype="int64")]
    symbols = rows["symbol"].astype("object").where(rows["symbol"].notna(), "<null>")
    by_symbol = {str(k): int(v) for k, v in symbols.value_counts(sort=False).sort_index().items()}
    shown = list(dict.fromkeys(["symbol", "timeframe", "ts", *result["columns"]]))
    examples = [
        {c: _cell(rows.iloc[i][c]) for c in shown} for i in range(min(N_EXAMPLES, len(rows)))
    ]
    if result["error"]:
        by_symbol = {s: 0 for s in _distinct(frame["symbol"])}
    return {
        "expectation": result["expectation"],
        "label": result["label"],
        "columns": result["columns"],
        "symbols": sorted(by_symbol),
        "by_symbol": by_symbol,
        "n_rows": int(result["n_rows"] or len(rows)),
        "examples": examples,
        "error": result["error"],
    }


def _cell(value: Any) -> Any:
    if isinstance(value, pd.Timestamp | np.datetime64):
        return None if pd.isna(value) else pd.Timestamp(value).isoformat()
    return json_value(value)
