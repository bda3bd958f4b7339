"""One canonical name per candle series.

Canonical symbols follow CCXT: ``BASE/QUOTE`` for spot, ``BASE/QUOTE:SETTLE`` for a
perpetual swap (``BASE/QUOTE:SETTLE-YYMMDD`` for a dated future). Candles of another
kind than trades carry the kind as a suffix, ``BTC/USDT:USDT@mark``, so mark, index
and premium-index candles never share a warehouse key (symbol, timeframe, ts) with
the trade candles of the same contract.

``canonical_symbol`` turns the spellings that users and tools write into that form;
``parse_file_name`` reads symbol, timeframe and kind from the file names written by
freqtrade, data.binance.vision, CryptoDataDownload and TradingView. Both share one
parser, so a name means the same thing wherever it is read.

Example::

    canonical_symbol("btcusdt")                    # 'BTC/USDT'
    canonical_symbol("BINANCE:BTCUSDT.P")          # 'BTC/USDT:USDT'
    canonical_symbol("BTCUSDT", market="futures")  # 'BTC/USDT:USDT'
    parse_file_name("futures/um/monthly/markPriceKlines/BTCUSDT/1h/BTCUSDT-1h-2024-01.zip")
    # FileName(symbol='BTC/USDT:USDT@mark', timeframe='1h', kind='mark', market='futures', ...)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath

from ml_core.config import TIMEFRAME_SECONDS
from ml_core.errors import ConfigError, DataContractError

#: Candle kinds. 'trade' is the normal series (spot or futures trades); the others are
#: derivative reference prices and are stored as separate series (symbol suffix '@kind').
KINDS: tuple[str, ...] = ("trade", "mark", "index", "premium")
MARKETS: tuple[str, ...] = ("spot", "futures")

_QUOTE_ASSETS = {
    # stablecoins
    *("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "USDP", "PAX", "DAI", "UST", "USDS", "USD1"),
    *("AEUR", "EURI", "EURC", "PYUSD", "IDRT", "BIDR", "BKRW", "BVND", "VAI"),
    # fiat
    *("USD", "EUR", "GBP", "TRY", "BRL", "JPY", "AUD", "CAD", "CHF", "RUB", "UAH", "NGN"),
    *("ZAR", "PLN", "RON", "ARS", "MXN", "COP", "CZK", "IDR", "KRW", "SGD", "HKD"),
    # crypto
    *("BTC", "ETH", "BNB", "XRP", "TRX"),
}
#: Quote assets recognised at the end of a compact pair such as ``BTCUSDT``, longest
#: first, so ``BTCFDUSD`` is BTC/FDUSD and not BTCFD/USD.
QUOTES: tuple[str, ...] = tuple(sorted(_QUOTE_ASSETS, key=lambda q: (-len(q), q)))

#: Exchange names that prefix a pair ('BINANCE_BTCUSDT', 'Binance_BTCUSDT_1h', 'BYBIT:...').
_EXCHANGE_NAMES = (
    "BINANCE BINANCEUS BINANCEUSDM BINANCECOINM BYBIT OKX OKEX COINBASE GDAX KRAKEN BITFINEX "
    "BITSTAMP KUCOIN GEMINI HUOBI HTX GATEIO GATE BITGET MEXC BITMEX DERIBIT FTX POLONIEX "
    "BITTREX HITBTC EXMO CEXIO UPBIT BITHUMB PHEMEX BINGX HYPERLIQUID"
)
EXCHANGES = frozenset(_EXCHANGE_NAMES.split())

# freqtrade candle types (file name suffix) -> (kind, market)
_FREQTRADE_TYPES: dict[str, tuple[str | None, str]] = {
    "spot": (None, "spot"),
    "futures": (None, "futures"),
    "mark": ("mark", "futures"),
    "index": ("index", "futures"),
    "premiumindex": ("premium", "futures"),
}
# data.binance.vision kline data types (folder, and some tools' file names) -> kind
_KLINE_TYPES = {
    "klines": "trade",
    "markpriceklines": "mark",
    "indexpriceklines": "index",
    "premiumindexklines": "premium",
}
# data types that are not candles -> what they are
_NOT_CANDLES = {
    "fundingrate": "funding-rate file",
    "funding_rate": "funding-rate file",
    "aggtrades": "aggregate-trades file",
    "trades": "trades file",
    "bookticker": "book-ticker file",
    "bookdepth": "order-book depth file",
    "metrics": "futures metrics file",
    "liquidationsnapshot": "liquidation file",
    "bvolindex": "volatility-index file",
    "eohsummary": "options summary file",
}
_CDD_TIMEFRAMES = {"d": "1d", "daily": "1d", "minute": "1m", "hour": "1h", "hourly": "1h"}
_PERP_WORDS = {"PERP", "PERPETUAL", "SWAP"}

_TIMEFRAME = re.compile(r"\d+(?:s|m|h|d|w|M|mo)")  # case matters: 1M is a month
_TV_INTERVAL = re.compile(r"(?P<pair>.+?),\s*(?P<interval>\d*[SDWM]?)")
_EXPLICIT = re.compile(
    r"(?P<base>[A-Z0-9]+)/(?P<quote>[A-Z0-9]+)"
    r"(?::(?P<settle>[A-Z0-9]+)(?:-(?P<expiry>\d{6}))?)?"
)
_TOKEN = re.compile(r"[A-Z0-9]+")
_EXPIRY = re.compile(r"\d{6}")
_YEAR = re.compile(r"(?:19|20)\d\d")
_EXTENSIONS = re.compile(
    r"(?:\.(?:csv|tsv|txt|json|feather|parquet|pq|zip|gz|bz2|xz|zst|checksum))+$", re.I
)
_COPY_MARK = re.compile(r"\s*\(\d+\)$")  # 'BTCUSDT-1h-2024-01 (1)': a browser's second copy


@dataclass(frozen=True)
class FileName:
    """What a candle file's name (and its folders) say.

    ``symbol`` is canonical or None when the name does not say it; ``timeframe`` is a
    known timeframe or None; ``kind`` is one of ``KINDS``; ``market`` is 'spot' unless
    the name, the folders, the kind or the caller's hint say 'futures'.
    ``skip_reason`` is set when the name says the file holds no candles (funding
    rates, trades): then the other fields are not resolved.
    """

    symbol: str | None
    timeframe: str | None
    kind: str = "trade"
    market: str = "spot"
    skip_reason: str | None = None


@dataclass(frozen=True)
class _Pair:
    base: str
    quote: str
    settle: str | None = None
    expiry: str | None = None
    derivative: bool = False  # the text itself says perpetual / future


@dataclass(frozen=True)
class _Name:
    pair: str | None  # the text that names the pair, None when the name is not understood
    timeframe: str | None = None
    kind: str | None = None
    market: str | None = None
    skip: str | None = None


# ---- public -----------------------------------------------------------------------------


def canonical_symbol(text: str, *, market: str | None = None, kind: str | None = None) -> str:
    """The canonical symbol of any accepted spelling (see docs/formats.md).

    ``market`` ('spot' or 'futures') decides only when the text does not say it:
    ``BTCUSDT`` is spot by default, ``BTCUSDT.P`` and ``BTC_USDT_USDT`` are perpetual
    whatever the hint. A USD-quoted perpetual settles in its base (coin-margined,
    ``BTCUSD_PERP`` -> ``BTC/USD:BTC``). ``kind`` adds the '@kind' suffix; a
    non-trade kind implies futures. Raises ``DataContractError`` naming the text
    when no known quote asset can be found.

    >>> canonical_symbol("Binance_ETHBTC_1h")
    'ETH/BTC'
    >>> canonical_symbol("BTC_USDT_USDT-1h-mark")
    'BTC/USDT:USDT@mark'
    """
    _check_market(market)
    body, text_kind = _split_kind(text)
    if kind is not None and kind not in KINDS:
        raise ConfigError(f"Unknown candle kind {kind!r}; use one of {', '.join(KINDS)}.")
    name = _parse_name(body)
    named_kind = text_kind or name.kind
    if kind is not None and named_kind is not None and named_kind != kind:
        raise DataContractError(
            f"Symbol {text!r} names {named_kind!r} candles but {kind!r} candles are being "
            f"read; drop the '@{named_kind}' suffix or read the {named_kind} file."
        )
    pair = _parse_pair(name.pair) if name.pair else None
    if pair is None:
        raise DataContractError(
            f"Cannot read a symbol from {text!r}: no known quote asset (USDT, USDC, FDUSD, "
            f"USD, EUR, BTC, ETH, ... {len(QUOTES)} in all) at its end. Pass --symbol BASE/QUOTE "
            "(e.g. --symbol PEPE/USDT, or PEPE/USDT:USDT for the perpetual)."
        )
    return _build(pair, named_kind or kind or "trade", name.market or market)


def split_pair(compact: str) -> str:
    """'pepeusdt' -> 'PEPE/USDT' (longest known quote wins); upper-cased, unsplit, if none fits."""
    parts = _split_compact(compact.strip().upper())
    return f"{parts[0]}/{parts[1]}" if parts else compact.strip().upper()


def series_kind(symbol: str) -> str:
    """The candle kind of a canonical symbol: 'trade' unless it ends in '@mark' etc."""
    _, kind = _split_kind(symbol)
    return kind or "trade"


def is_trade_series(symbol: str) -> bool:
    """True for trade candles (the series models train on by default), False for
    ``@mark``, ``@index`` and ``@premium`` series."""
    return series_kind(symbol) == "trade"


def parse_file_name(path: PurePath | str, *, market: str | None = None) -> FileName:
    """Symbol, timeframe and kind that a file's name and folders say (never reads it).

    Folders count too: ``markPriceKlines``/``indexPriceKlines``/``premiumIndexKlines``
    give the kind, the nearest ``futures`` or ``spot`` folder the market (below the
    name itself and the caller's ``market`` hint). A name that is not understood
    gives ``symbol=None``, not an error; the reader then asks for ``--symbol``.
    """
    _check_market(market)
    p = PurePath(path)
    name = _parse_name(_COPY_MARK.sub("", _EXTENSIONS.sub("", p.name)))
    if name.skip:
        return FileName(None, name.timeframe, skip_reason=f"{name.skip}, not candles: skipped")
    folder_kind, folder_market = _folder_context(p.parent.parts)
    kind = name.kind or folder_kind or "trade"
    said_market = name.market or market or folder_market
    pair = _parse_pair(name.pair) if name.pair else None
    symbol = _build(pair, kind, said_market) if pair else None
    futures = kind != "trade" or said_market == "futures" or (symbol is not None and ":" in symbol)
    return FileName(symbol, name.timeframe, kind, "futures" if futures else "spot")


# ---- names ------------------------------------------------------------------------------


def _parse_name(text: str) -> _Name:
    """Split a symbol text or file stem into its pair text and what the rest says."""
    s = text.strip()
    timeframe = None
    if m := _TV_INTERVAL.fullmatch(s):  # TradingView export 'BINANCE_BTCUSDT, 60'
        s, timeframe = m["pair"].strip(), _tradingview_timeframe(m["interval"])
    if ":" in s and ("/" not in s or s.index(":") < s.index("/")):
        s = s.split(":", 1)[1]  # TradingView 'BINANCE:BTCUSDT'
    fields = s.split("-")
    if len(fields) >= 2 and _TIMEFRAME.fullmatch(fields[1]):  # freqtrade, data.binance.vision
        return _dump_name(fields[0], fields[1], fields[2:])
    if len(fields) >= 2 and (low := fields[1].lower()) in (*_KLINE_TYPES, *_NOT_CANDLES):
        if low in _NOT_CANDLES:  # 'BTCUSDT-fundingRate-2024-01', 'BTC_USDT-trades'
            return _Name(fields[0], skip=_NOT_CANDLES[low])
        rest = fields[2:]
        tf = rest.pop(0) if rest and _TIMEFRAME.fullmatch(rest[0]) else None
        named = _dump_name(fields[0], tf or "", rest)
        kind = _KLINE_TYPES[low]
        return _Name(named.pair, named.timeframe, kind, "futures" if kind != "trade" else None)
    tokens = s.split("_")
    if len(tokens) >= 3 and tokens[0].isalpha() and (tf := _cdd_timeframe(tokens[-1])):
        # CryptoDataDownload 'Binance_BTCUSDT_1h', 'Binance_BTCUSDT_2021_minute'
        middle = "_".join(t for t in tokens[1:-1] if not _YEAR.fullmatch(t))
        pair = middle if _parse_pair(middle) else "_".join(tokens[:-1])
        return _Name(pair, _known_timeframe(tf) or timeframe)
    return _Name(s, timeframe)


def _dump_name(pair: str, timeframe: str, rest: list[str]) -> _Name:
    """'PAIR-TF[-dates][-type]': data.binance.vision dumps and freqtrade files."""
    kind = market = None
    for token in rest:
        low = token.lower()
        if token.isdigit():
            continue  # '2024', '01', '05': the dump's month or day
        if low in _NOT_CANDLES:
            return _Name(pair, _known_timeframe(timeframe), skip=_NOT_CANDLES[low])
        if low not in _FREQTRADE_TYPES:
            return _Name(None, _known_timeframe(timeframe))  # 'BTC_USDT-1h-backup': unsure
        kind, market = _FREQTRADE_TYPES[low]
    return _Name(pair, _known_timeframe(timeframe), kind, market)


def _folder_context(parts: tuple[str, ...]) -> tuple[str | None, str | None]:
    """(kind, market) from the nearest folders that say them."""
    kind = market = None
    for part in reversed(parts):
        low = part.lower()
        if kind is None and low in _KLINE_TYPES:
            kind = _KLINE_TYPES[low]
        if market is None and low in MARKETS:
            market = low
    return kind, market


def _tradingview_timeframe(interval: str) -> str | None:
    """TradingView's interval: minutes ('60'), or '1D', 'D', '1W'."""
    if interval.isdigit():
        minutes = int(interval)
        if minutes % 1440 == 0:
            return _known_timeframe(f"{minutes // 1440}d")
        if minutes % 60 == 0:
            return _known_timeframe(f"{minutes // 60}h")
        return _known_timeframe(f"{minutes}m")
    count, unit = interval[:-1] or "1", interval[-1:]
    return _known_timeframe(f"{count}{unit.lower()}") if unit in ("D", "W") else None


def _cdd_timeframe(token: str) -> str | None:
    if token.lower() in _CDD_TIMEFRAMES:
        return _CDD_TIMEFRAMES[token.lower()]
    return token if _TIMEFRAME.fullmatch(token) else None


def _known_timeframe(token: str) -> str | None:
    return token if token in TIMEFRAME_SECONDS else None


# ---- pairs ------------------------------------------------------------------------------


def _parse_pair(text: str) -> _Pair | None:
    """Base, quote (and settle) of a bare pair text, or None when it is not one."""
    upper = text.strip().upper()
    perp = False
    for marker in (".PERP", ".P"):  # TradingView 'BTCUSDT.P'
        if upper.endswith(marker):
            upper, perp = upper[: -len(marker)], True
            break
    if "/" in upper:
        m = _EXPLICIT.fullmatch(upper)
        if m is None:
            return None
        settle, expiry = m["settle"], m["expiry"]
        return _Pair(m["base"], m["quote"], settle, expiry, perp or settle is not None)
    tokens = [t for t in re.split(r"[_\-\s]+", upper) if t]
    if not tokens or not all(_TOKEN.fullmatch(t) for t in tokens):
        return None
    if len(tokens) > 1 and tokens[0] in EXCHANGES and (pair := _from_tokens(tokens[1:], perp)):
        return pair  # 'BINANCE_BTCUSDT'; 'HTX_USDT' falls through to HTX/USDT
    return _from_tokens(tokens, perp)


def _from_tokens(tokens: list[str], perp: bool) -> _Pair | None:
    tokens = list(tokens)
    expiry = None
    if len(tokens) > 1 and tokens[-1] in _PERP_WORDS:  # 'BTCUSDT_PERP', 'BTC-USDT-SWAP'
        tokens.pop()
        perp = True
    elif len(tokens) > 1 and _EXPIRY.fullmatch(tokens[-1]):  # 'BTCUSDT_240628'
        expiry = tokens.pop()
    derivative = perp or expiry is not None
    if len(tokens) == 1:
        parts = _split_compact(tokens[0])
        if parts is None and tokens[0].endswith("PERP"):  # 'BTCUSDTPERP'
            parts, derivative = _split_compact(tokens[0][:-4]), True
        return _Pair(*parts, expiry=expiry, derivative=derivative) if parts else None
    if len(tokens) == 2:
        base, quote = tokens
        if quote in _QUOTE_ASSETS:
            return _Pair(base, quote, expiry=expiry, derivative=derivative)
        if base.isalpha() and (parts := _split_compact(quote)):  # 'a_ETHUSDT': a prefix
            return _Pair(*parts, expiry=expiry, derivative=derivative)
        return None
    if len(tokens) == 3:  # freqtrade futures 'BTC_USDT_USDT'
        base, quote, settle = tokens
        if quote in _QUOTE_ASSETS and (settle in _QUOTE_ASSETS or settle == base):
            return _Pair(base, quote, settle, expiry, True)
    return None


def _split_compact(upper: str) -> tuple[str, str] | None:
    for quote in QUOTES:
        base = upper[: -len(quote)]
        if upper.endswith(quote) and base and _TOKEN.fullmatch(base):
            return base, quote
    return None


def _build(pair: _Pair, kind: str, market: str | None) -> str:
    derivative = pair.derivative or market == "futures" or kind != "trade"
    settle = pair.settle
    if derivative and settle is None:
        settle = pair.base if pair.quote == "USD" else pair.quote  # USD-quoted: coin-margined
    symbol = f"{pair.base}/{pair.quote}"
    if settle is not None:
        symbol += f":{settle}"
    if pair.expiry is not None:
        symbol += f"-{pair.expiry}"
    return symbol if kind == "trade" else f"{symbol}@{kind}"


def _split_kind(text: str) -> tuple[str, str | None]:
    if "@" not in text:
        return text, None
    body, kind = text.rsplit("@", 1)
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise DataContractError(
            f"Unknown candle kind {kind!r} in symbol {text!r}; use one of {', '.join(KINDS)} "
            "(e.g. BTC/USDT:USDT@mark)."
        )
    return body, kind


def _check_market(market: str | None) -> None:
    if market is not None and market not in MARKETS:
        raise ConfigError(f"Unknown market {market!r}; use one of {', '.join(MARKETS)}.")
