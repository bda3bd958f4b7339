"""The one configuration object, loaded once at the edge and passed down in parts.

``CoincastConfig`` reads ``COINCAST_*`` environment variables (nested with
``__``, e.g. ``COINCAST_EVALUATION__FEE_BPS=5``) and an optional YAML/JSON file.
Library code receives only the sub-model it needs (``FeatureConfig``,
``SplitConfig``, ...). Nothing here touches the disk at import time.

Example::

    cfg = CoincastConfig(home="/tmp/cc")
    cfg.warehouse_path   # /tmp/cc/warehouse.duckdb
"""

from __future__ import annotations

import difflib
import json
import re
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from ml_core.errors import ConfigError

#: Seconds per bar for every timeframe coincast understands.
TIMEFRAME_SECONDS: dict[str, int] = {
    "1m": 60,
    "3m": 180,
    "5m": 300,
    "15m": 900,
    "30m": 1800,
    "1h": 3600,
    "2h": 7200,
    "4h": 14400,
    "6h": 21600,
    "8h": 28800,
    "12h": 43200,
    "1d": 86400,
    "3d": 259200,
    "1w": 604800,
}

#: Label horizons (in bars) used when the config does not name them.
DEFAULT_HORIZONS: dict[str, list[int]] = {
    "1m": [15, 30, 60, 120, 240, 360, 720],
    "5m": [3, 6, 12, 24, 48, 144],
    "15m": [4, 8, 16, 32, 96],
    "1h": [1, 4, 12, 24],
    "4h": [1, 3, 6, 18],
    "1d": [1, 7, 30],
}


def timeframe_seconds(timeframe: str) -> int:
    """Seconds in one bar of ``timeframe`` ('1m', '1h', '1d', ...)."""
    try:
        return TIMEFRAME_SECONDS[timeframe]
    except KeyError:
        known = ", ".join(TIMEFRAME_SECONDS)
        raise ConfigError(f"Unknown timeframe {timeframe!r}; use one of: {known}.") from None


def redact_uri(uri: str) -> str:
    """``uri`` with its password replaced by ``***`` (for anything printed or logged):
    ``postgresql://coincast:s3cret@db/mlflow`` -> ``postgresql://coincast:***@db/mlflow``."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


_CREDENTIALS = re.compile(r"(\b[a-zA-Z][\w+.-]*://[^/\s:@]*):[^@\s/]+@")


def redact_text(text: str) -> str:
    """Every URI password in ``text`` replaced by ``***`` (error messages quote URLs)."""
    return _CREDENTIALS.sub(r"\1:***@", text)


def bars_per_year(timeframe: str) -> float:
    """Bars in a 365-day year (crypto trades around the clock)."""
    return 365 * 86400 / timeframe_seconds(timeframe)


class _Section(BaseModel):
    """Base of every config section: strict and frozen.

    A number must be finite (``fee_bps: inf`` is refused with the field's name, not
    accepted and turned into NaN metrics later); an unknown key is refused (a typo such as
    ``registry.min_improvment`` would otherwise leave the default deciding promotions,
    silently); a loaded config cannot change under the steps it was passed to
    (``model_copy(update=...)`` makes a changed one).
    """

    model_config = ConfigDict(allow_inf_nan=False, extra="forbid", frozen=True)


class DataConfig(_Section):
    """Which data set a retrain uses."""

    sample_dir: Path = Field(
        default=Path("data"), description="Folder of the embedded sample Parquet files."
    )
    timeframe: str = Field(default="1m", description="Timeframe the models are trained on.")
    symbols: list[str] | None = Field(
        default=None, description="Symbols to train on; None means every symbol of the timeframe."
    )
    exclude_symbols: list[str] = Field(
        default_factory=list,
        description="Symbols left out of training and scoring (a retrain leaves out those "
        "whose stored candles fail the candle suite, and says so).",
    )

    @field_validator("timeframe")
    @classmethod
    def _known_timeframe(cls, value: str) -> str:
        timeframe_seconds(value)
        return value


class SourceConfig(_Section):
    """One exchange download (``ml_core.data.exchange.download_candles``): where, what, from when.

    Example (YAML, under ``sources:``)::

        - exchange: binance
          symbols: [BTC/USDT, ETH/USDT]
          timeframe: 1h
          since: "2024-01-01"
    """

    exchange: str = Field(
        default="binance", description="A ccxt exchange id (one of `ccxt.exchanges`)."
    )
    symbols: list[str] = Field(
        min_length=1,
        description="ccxt unified symbols: 'BTC/USDT' (spot), 'BTC/USDT:USDT' (perpetual); "
        "a comma-separated string is split.",
    )
    timeframe: str = Field(default="1h", description="Bar length, e.g. '1m', '1h', '1d'.")
    since: str | None = Field(
        default=None,
        description="ISO date or time (UTC unless it has an offset) where a symbol's FIRST "
        "download starts; later runs resume after the last stored bar. None = the longer of "
        "30 days and 1000 bars before now (1h: ~42 days, 1d: 1000 days).",
    )
    market: Literal["spot", "futures"] = Field(
        default="spot",
        description="'futures' = perpetual swaps (ccxt defaultType 'swap', linear: binance's "
        "USDⓈ-M); 'BTC/USDT' then resolves to 'BTC/USDT:USDT'.",
    )
    page_limit: int = Field(
        default=1000, ge=1, le=5000, description="Bars asked for per request (exchange caps apply)."
    )
    batch_bars: int = Field(
        default=10_000,
        ge=1,
        description="Pages are grouped into quality-gate batches of about this many bars; a "
        "bad row quarantines its whole batch (1: one batch per page).",
    )
    max_retries: int = Field(
        default=5,
        ge=0,
        description="Retries of one request after a network error, HTTP 429 or 5xx "
        "(jittered exponential backoff) before the download fails.",
    )
    urls: dict[str, str] | None = Field(
        default=None,
        description="Overrides of the exchange's API base URLs (ccxt `urls['api']` keys, for "
        "binance 'public' = spot, 'fapiPublic' = USDⓈ-M): a mirror or a local test server.",
    )

    @field_validator("exchange")
    @classmethod
    def _known_exchange(cls, value: str) -> str:
        import difflib

        import ccxt  # lazy: only configs that download pay for the import

        if value not in ccxt.exchanges:
            close = difflib.get_close_matches(value.lower(), ccxt.exchanges, n=5, cutoff=0.5)
            hint = f"close matches: {close}" if close else f"known: {len(ccxt.exchanges)} ids"
            raise ConfigError(
                f"Unknown exchange {value!r}; use a ccxt exchange id ({hint}, "
                "all of them in ccxt.exchanges)."
            )
        return value

    @field_validator("symbols", mode="before")
    @classmethod
    def _split_symbols(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list):
            value = [s.strip() if isinstance(s, str) else s for s in value]
            value = [s for s in value if s != ""]
            if len(set(value)) != len(value):
                raise ConfigError(f"sources.symbols {value} names a symbol twice; list each once.")
        return value

    @field_validator("timeframe")
    @classmethod
    def _known_timeframe(cls, value: str) -> str:
        timeframe_seconds(value)
        return value

    @field_validator("since")
    @classmethod
    def _iso_since(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from datetime import datetime

        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(
                f"sources.since={value!r} is not an ISO date or time; write e.g. '2024-01-01' "
                "or '2024-01-01T00:00:00Z'."
            ) from None
        return value

    @field_validator("urls")
    @classmethod
    def _http_urls(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        bad = {k: v for k, v in (value or {}).items() if not v.startswith(("http://", "https://"))}
        if bad:
            raise ConfigError(
                f"sources.urls {bad} must be http(s) base URLs, e.g. "
                "{'public': 'https://data-api.binance.vision/api/v3'}."
            )
        return value


class QualityConfig(_Section):
    """Thresholds of the soft (non-fatal) candle expectations."""

    max_abs_bar_return: float = Field(
        default=0.5,
        gt=0,
        description="A bar whose |close/prev_close - 1| exceeds this is 'extreme'.",
    )
    max_flat_bars: int = Field(
        default=60,
        ge=2,
        description="A run of this many identical closes with zero volume is 'flat'.",
    )
    max_future_seconds: int = Field(
        default=0, ge=0, description="Tolerance for candle open times after 'now' (clock skew)."
    )
    max_price: float = Field(
        default=1e12,
        gt=0,
        description="Largest plausible price (BTC in IDR or VND is ~1e9); infinities and "
        "absurd values fail the gate.",
    )
    max_volume: float = Field(
        default=1e18,
        gt=0,
        description="Largest plausible bar volume in base units (meme coins trade ~1e13).",
    )
    min_ts: str = Field(
        default="2009-01-03",
        description="Earliest plausible candle open time (the first bitcoin block); older "
        "stamps are misread times.",
    )
    revision_tolerance: float = Field(
        default=1e-9,
        ge=0,
        description="Largest relative change of a stored candle value that is float noise; "
        "a bigger change is a revision, refused unless --allow-revisions.",
    )


class FeatureConfig(_Section):
    """Feature set identity and the segment rule for gaps."""

    name: str = "v1"
    version: int = 1
    max_gap_bars: int = Field(
        default=5,
        ge=1,
        description="A missing stretch longer than this many bars starts a new segment; "
        "no window or label crosses a segment boundary.",
    )


class TripleBarrierConfig(_Section):
    """Triple-barrier labels (``ml_core.features.triple_barrier``) and their 3-class target."""

    enabled: bool = Field(
        default=True,
        description="Add tb_h / tb_t1_h / tb_ret_h to the model frame and report a "
        "SELL / HOLD / BUY classifier on them beside the direction models.",
    )
    pt_mult: float | None = Field(
        default=2.0, gt=0, description="Take-profit distance in h-bar stds; None = no barrier."
    )
    sl_mult: float | None = Field(
        default=2.0, gt=0, description="Stop-loss distance in h-bar stds; None = no barrier."
    )
    vol_column: str | None = Field(
        default="volatility_60",
        description="Per-bar causal volatility column; None = computed from close.",
    )
    vol_window: int = Field(default=60, ge=2, description="Window when vol_column is None.")
    touch: Literal["high_low", "close"] = Field(
        default="high_low", description="'high_low' (intrabar) or 'close'."
    )
    model: Literal["logistic", "lightgbm"] = Field(
        default="logistic", description="The 3-class model (multinomial)."
    )


class LabelConfig(_Section):
    """Label horizons per timeframe (bars ahead)."""

    horizons: dict[str, list[int]] = Field(default_factory=lambda: dict(DEFAULT_HORIZONS))
    triple_barrier: TripleBarrierConfig = Field(default_factory=TripleBarrierConfig)

    def for_timeframe(self, timeframe: str) -> list[int]:
        if timeframe in self.horizons:
            return sorted(self.horizons[timeframe])
        raise ConfigError(
            f"No label horizons configured for timeframe {timeframe!r}; "
            f"set labels.horizons[{timeframe!r}] (known: {sorted(self.horizons)})."
        )


class SplitConfig(_Section):
    """Chronological train / validation / test split (calendar-aligned by default)."""

    mode: Literal["calendar", "per_symbol"] = Field(
        default="calendar",
        description="calendar: parts cut at shared calendar dates for all symbols; per_symbol: "
        "each symbol's own rows cut at the fractions (parts overlap in time across symbols).",
    )
    train_frac: float = Field(default=0.6, gt=0, lt=1)
    val_frac: float = Field(default=0.2, gt=0, lt=1)
    test_frac: float = Field(default=0.2, gt=0, lt=1)
    gap_bars: int | None = Field(
        default=None, ge=0, description="Bars dropped between parts; None = the largest horizon."
    )
    min_train_rows: int = Field(default=200, ge=10)

    @model_validator(mode="after")
    def _fractions_sum_to_one(self) -> SplitConfig:
        total = self.train_frac + self.val_frac + self.test_frac
        if abs(total - 1.0) > 1e-9:
            raise ConfigError(
                f"split fractions must sum to 1, got train={self.train_frac} + "
                f"val={self.val_frac} + test={self.test_frac} = {total:.4f}."
            )
        return self


class SequenceConfig(_Section):
    """Torch sequence models (``ml_core.models.sequence``): windows, sizes, training loop.

    Per-model overrides come from ``models.params[<name>]`` (e.g.
    ``{'transformer': {'warmup_steps': 200}}``); they replace these defaults.
    """

    window: int = Field(default=60, ge=2, description="Bars per input window, ending at t.")
    hidden: int = Field(default=32, ge=2, description="Hidden size of LSTMs / model width.")
    layers: int = Field(
        default=1,
        ge=1,
        description="LSTM layers (lstm), residual LSTM layers after the bidirectional one "
        "(attention_lstm), Transformer blocks (transformer).",
    )
    heads: int = Field(default=4, ge=1, description="Attention heads (Transformer, multiscale).")
    dropout: float = Field(default=0.1, ge=0, lt=1, description="Dropout, also MC-dropout.")
    epochs: int = Field(default=4, ge=1, description="Most epochs (early stopping may end sooner).")
    batch_size: int = Field(default=512, ge=8)
    lr: float = Field(default=2e-3, gt=0, description="Peak AdamW learning rate.")
    weight_decay: float = Field(default=1e-4, ge=0)
    clip_norm: float = Field(default=1.0, gt=0, description="Gradient norm clip.")
    patience: int = Field(default=2, ge=1, description="Epochs without val improvement.")
    warmup_steps: int = Field(default=50, ge=0, description="Linear LR warmup, then cosine.")
    max_train_windows: int | None = Field(
        default=40_000, ge=1, description="Most recent training windows (None = all)."
    )
    mc_passes: int = Field(default=10, ge=0, description="MC-dropout passes (0 = none).")
    horizon_weights: Literal["inverse_sqrt", "equal"] | list[float] = Field(
        default="inverse_sqrt",
        description="Loss weight per horizon: 1/sqrt(h) (shorter horizons count more), "
        "equal, or one positive number per horizon.",
    )
    device: Literal["cpu", "cuda", "auto"] = Field(
        default="cpu", description="'auto' uses CUDA when available; serving loads on CPU."
    )
    num_threads: int | None = Field(
        default=1,
        ge=1,
        description="torch.set_num_threads during fit/predict (None = leave); 1 because "
        "2 threads on a busy 2-core host ran 10-50x slower (spin-waiting OpenMP threads).",
    )
    scales: list[int] = Field(
        default_factory=lambda: [15, 60, 240], description="Multiscale fixed windows (bars)."
    )
    expanding_max: int = Field(
        default=240, ge=2, description="Multiscale expanding window bound (bars)."
    )
    max_steps: int = Field(
        default=30, ge=2, description="Multiscale: longer windows are mean-pooled to this."
    )
    seed: int | None = Field(default=None, description="None = models.seed.")

    @field_validator("horizon_weights")
    @classmethod
    def _positive_weights(cls, value: object) -> object:
        if isinstance(value, list) and (not value or min(value) <= 0):
            raise ConfigError(
                f"sequence.horizon_weights={value} must be positive numbers, one per "
                "horizon, or 'inverse_sqrt' / 'equal'."
            )
        return value

    @field_validator("scales")
    @classmethod
    def _scales(cls, value: list[int]) -> list[int]:
        if not value or min(value) < 2:
            raise ConfigError(
                f"sequence.scales={value} must be window lengths >= 2, e.g. [15, 60]."
            )
        return sorted(set(value))


class EnsembleConfig(_Section):
    """Ensembles (``stacking``, ``regime_ensemble``, ``online_ensemble``) over base models."""

    base_models: list[str] = Field(
        default_factory=lambda: ["logistic", "lightgbm"],
        min_length=1,
        description="Base models by name (MODEL_FACTORIES); not an ensemble name.",
    )
    oof_folds: int = Field(
        default=4,
        ge=2,
        description="Purged expanding walk-forward folds for out-of-fold predictions.",
    )
    embargo_bars: int | None = Field(
        default=None,
        ge=0,
        description="Gap before each OOF test block; None = the largest horizon.",
    )
    meta_learner: Literal["logistic", "elastic_net"] = "logistic"
    meta_c: float = Field(
        default=1.0, gt=0, description="Inverse regularisation of the meta-learner."
    )
    meta_l1_ratio: float = Field(default=0.5, ge=0, le=1, description="elastic_net L1 share.")
    regime_temperature: float = Field(
        default=0.02, gt=0, description="Softmax temperature on (OOF AUC - 0.5) per regime."
    )
    regime_prior_rows: int = Field(
        default=500,
        ge=0,
        description="Shrinks a regime's AUC toward the overall AUC (pseudo-rows).",
    )
    online_half_life_bars: float = Field(default=120.0, gt=0)
    online_window_bars: int = Field(
        default=360, ge=1, description="Realized outcomes the online weights read (bounds history)."
    )
    online_temperature: float = Field(
        default=0.1, gt=0, description="Softmax temperature on (balanced EMA accuracy - 0.5)."
    )
    min_weight: float = Field(default=0.02, ge=0, lt=0.5, description="Floor of each base weight.")


class ModelConfig(_Section):
    """Which candidates a retrain fits, and their parameters."""

    candidates: list[str] = Field(
        default_factory=lambda: ["logistic", "lightgbm"],
        description="Models fitted by a retrain, by name (see `ml_core.models.base.MODEL_FACTORIES`).",
    )
    params: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per-model parameter overrides, e.g. {'xgboost': {'max_depth': 4}}; "
        "tuned parameters (the `tune` flow) are merged in here at retrain time.",
    )
    seed: int = 42
    max_train_rows: int | None = Field(
        default=400_000, description="Most recent training rows kept (None = all)."
    )
    logistic_c: float = Field(default=0.1, gt=0)
    lightgbm_params: dict[str, float | int | str] = Field(
        default_factory=lambda: {
            "n_estimators": 400,
            "learning_rate": 0.03,
            "num_leaves": 15,
            "min_child_samples": 200,
            "subsample": 0.8,
            "subsample_freq": 1,
            "colsample_bytree": 0.8,
            "reg_lambda": 1.0,
        }
    )
    early_stopping_rounds: int = Field(default=30, ge=1)
    regressors: list[str] = Field(
        default_factory=lambda: ["ridge"],
        description="Return models (target ret_h) fitted per horizon; the best on validation "
        "RMSE gives the pipeline's exp_ret (see `ml_core.models.regression`). [] = none.",
    )
    calibration: Literal["auto", "none", "sigmoid", "isotonic"] = Field(
        default="auto",
        description="How each candidate's P(up) is calibrated on the validation part "
        "(ml_core.models.calibration): auto picks none, sigmoid or isotonic by log loss on "
        "the latest third of validation; the calibrator is served inside the pipeline.",
    )
    conformal_confidence: float | None = Field(
        default=0.9,
        gt=0,
        lt=1,
        description="Coverage of the served conformal direction set (MAPIE split conformal "
        "on the calibrated P(up), ml_core.models.conformal): up, down or both (abstain); "
        "None = no sets.",
    )
    ensemble: EnsembleConfig = Field(default_factory=EnsembleConfig)
    sequence: SequenceConfig = Field(default_factory=SequenceConfig)
    blas_threads: int | None = Field(
        default=1,
        ge=1,
        description="BLAS threads while training (the logistic and ridge fits, the HMM, "
        "CPCV refits). 1: the matrices here are small, and threaded OpenBLAS spinning beside "
        "LightGBM's threads made the triple-barrier fit 3x slower on 2 cores (benchmarks/"
        "bench_blas.py); None leaves the library default (all cores).",
    )

    @field_validator("candidates")
    @classmethod
    def _known_candidates(cls, names: list[str]) -> list[str]:
        from ml_core.models.base import model_names  # lazy: models import this module

        known = model_names()
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ConfigError(
                f"Unknown model(s) {unknown} in models.candidates; choose from {known}."
            )
        if not names:
            raise ConfigError(
                "models.candidates is empty; name at least one model, e.g. ['logistic']."
            )
        if len(set(names)) != len(names):
            raise ConfigError(f"models.candidates {names} names a model twice; list each once.")
        return names

    @field_validator("regressors")
    @classmethod
    def _known_regressors(cls, names: list[str]) -> list[str]:
        from ml_core.models.regression import return_model_names  # lazy, as above

        known = return_model_names()
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ConfigError(
                f"Unknown return model(s) {unknown} in models.regressors; choose from {known}."
            )
        if len(set(names)) != len(names):
            raise ConfigError(f"models.regressors {names} names a model twice; list each once.")
        return names

    def params_for(self, name: str) -> dict[str, Any]:
        """Parameter overrides of model ``name`` (empty when none)."""
        return dict(self.params.get(name, {}))


class EvaluationConfig(_Section):
    """Trading view of the predictions."""

    fee_bps: float = Field(
        default=4.0, ge=0, description="Cost per unit of turnover, basis points."
    )
    mode: Literal["long_flat", "long_short"] = "long_flat"
    threshold: float = Field(default=0.5, gt=0, lt=1)


class GateConfig(_Section):
    """Promotion gate v2: CPCV paths, paired bootstrap and PBO (``ml_core.evaluation.gate``)."""

    gate_version: Literal[1, 2] = Field(
        default=2,
        description="Only for ml_core.evaluation.gate.decide_promotion (the earlier v1/v2 gate, "
        "kept for comparisons): 1 = same-window test AUC, 2 = adds CPCV and PBO. The weekly "
        "retrain and the promote flow use the weekly rules (ml_core.evaluation.weekly).",
    )
    require_after_fee_edge: bool = Field(
        default=False,
        description="Refuse a challenger whose served horizons lose money after fees on the "
        "test window (mean after-fee return over them <= 0, trading view of `evaluation`). "
        "Off: the after-fee numbers are recorded in every decision all the same.",
    )
    cpcv_groups: int = Field(default=6, ge=3, description="CPCV time groups N.")
    cpcv_test_groups: int = Field(default=2, ge=1, description="CPCV test groups k per split.")
    cpcv_embargo: float = Field(
        default=0.01, ge=0, lt=1, description="Embargo after each test group, share of the span."
    )
    cpcv_max_train_rows: int = Field(
        default=20_000,
        ge=100,
        description="Training rows per CPCV split, thinned evenly over time (bounds the gate's cost: "
        "splits x horizons x configurations refits).",
    )
    cpcv_blocks_per_group: int = Field(
        default=4, ge=1, description="Time blocks per CPCV group: the bootstrap's units."
    )
    cpcv_inner_val_frac: float = Field(
        default=0.2,
        ge=0,
        lt=1,
        description="Latest share of a split's training rows used for early stopping (0 = none).",
    )
    cpcv_horizons: list[int] | None = Field(
        default=None, description="Horizons refit on CPCV (None = all); bounds the cost."
    )
    confidence: float = Field(
        default=0.9, gt=0.5, lt=1, description="One-sided confidence of the paired bootstrap."
    )
    n_boot: int = Field(
        default=10_000,
        ge=100,
        description="Bootstrap resamples (the corrected skill bounds sit far in the tail).",
    )
    seed: int = 42
    pbo_threshold: float = Field(
        default=0.5, gt=0, le=1, description="Reject when PBO is at or above this."
    )
    refresh_margin: float = Field(
        default=0.02,
        ge=0,
        lt=0.5,
        description="A refresh (the champion's recipe on newer data) is promoted when the lower "
        "bound of its AUC difference to the champion on the newest unseen window is above "
        "-refresh_margin (non-inferiority).",
    )
    skill_blocks: int = Field(
        default=24,
        ge=4,
        description="Time blocks of the test window: units of the paired bootstrap against the "
        "best naive baseline (per-horizon skill) and of the refresh comparison.",
    )
    skill_confidence: float = Field(
        default=0.995,
        gt=0.5,
        lt=1,
        description="One-sided confidence of the test-window skill bound (the out-of-time "
        "evidence), before the per-horizon correction. Stricter than `confidence` because CPCV "
        "scores of price-derived labels come out optimistic on random walks (docs/concepts.md).",
    )
    skill_correction: Literal["bonferroni", "none"] = Field(
        default="bonferroni",
        description="Per-horizon skill tests at confidence 1 - (1 - confidence) / n_horizons "
        "(bonferroni), so that testing many horizons does not let noise through.",
    )
    pbo_periods: int = Field(default=64, ge=4, description="Time periods of the PBO matrix.")
    pbo_partitions: int = Field(default=16, ge=2, description="CSCV partitions S (even).")

    @model_validator(mode="after")
    def _consistent(self) -> GateConfig:
        if self.cpcv_test_groups >= self.cpcv_groups:
            raise ConfigError(
                f"cpcv_test_groups={self.cpcv_test_groups} must be below cpcv_groups="
                f"{self.cpcv_groups}; e.g. 2 of 6."
            )
        if self.pbo_partitions % 2:
            raise ConfigError(f"pbo_partitions={self.pbo_partitions} must be even, e.g. 16.")
        return self


class RegistryConfig(_Section):
    """MLflow locations and promotion gates."""

    tracking_uri: str | None = Field(default=None, description="None = sqlite:///<home>/mlflow.db")
    artifact_location: str | None = Field(default=None, description="None = <home>/mlartifacts")
    model_name: str | None = Field(
        default=None,
        description="Registered model name; None = 'coincast' for the default 1m data set, "
        "'coincast-<timeframe>' otherwise.",
    )
    experiment_name: str = "coincast"
    primary_metric: Literal["auc"] = "auc"
    min_improvement: float = Field(
        default=0.002, ge=0, description="Mean AUC a challenger must add over the champion."
    )
    min_baseline_margin: float = Field(
        default=0.0, ge=0, description="Mean AUC a challenger must add over the best baseline."
    )
    require_beat_baselines: bool = Field(
        default=True,
        description="Rule 1 of the gate. Turn off only for demos on data too small to beat "
        "the naive baselines; the decision then says the rule was skipped.",
    )
    gate: GateConfig = Field(default_factory=GateConfig)
    final_fit: Literal["train", "train_val", "all"] = Field(
        default="train_val",
        description="What the served model is refit on after evaluation: train (the evaluated "
        "fit itself), train_val, or all rows (the evaluated numbers stay in the record).",
    )
    policy: Literal["coincast", "latest"] = Field(
        default="coincast",
        description="coincast: the gate decides; latest: every new challenger is promoted "
        "(the behaviour of most MLOps templates; for replays and comparisons).",
    )


CovarianceType = Literal["full", "diag", "spherical", "tied"]
_LABEL_NAME = re.compile(r"^(ret|up|t1|tb|tb_t1|tb_ret)_\d+$")


class RegimeConfig(_Section):
    """HMM market regimes (``ml_core.regime``): fit on training rows, forward-filtered features."""

    enabled: bool = Field(default=True, description="Fit regimes and use them as features.")
    n_states: int = Field(default=3, ge=2, le=8)
    n_iter: int = Field(default=200, ge=1, description="EM iterations; hmmlearn's 10 is too few.")
    covariance_type: CovarianceType = "full"
    seed: int = 42
    tol: float = Field(default=1e-4, gt=0)
    return_column: str | None = Field(default=None, description="None = computed from close.")
    vol_column: str | None = Field(default=None, description="None = computed from close.")
    vol_window: int = Field(default=60, ge=2)
    per_symbol_scaling: bool = True
    clip_z: float = Field(default=8.0, gt=0)
    min_fit_rows: int = Field(default=200, ge=10)
    max_fit_rows: int | None = Field(
        default=50_000, ge=10, description="Most recent complete rows fitted, shared by symbols."
    )

    @model_validator(mode="after")
    def _consistent(self) -> RegimeConfig:
        if self.max_fit_rows is not None and self.max_fit_rows < self.min_fit_rows:
            raise ConfigError(
                f"max_fit_rows={self.max_fit_rows} is below min_fit_rows={self.min_fit_rows}; "
                "raise max_fit_rows (or None for all rows)."
            )
        if (self.return_column is None) != (self.vol_column is None):
            raise ConfigError(
                f"return_column={self.return_column!r} and vol_column={self.vol_column!r}: "
                "name both input columns, or neither to compute them from close."
            )
        for col in (self.return_column, self.vol_column):
            if col is not None and _LABEL_NAME.match(col):
                raise ConfigError(
                    f"regime input {col!r} is a label column (it holds future bars); use a "
                    "causal feature such as 'logret_1' / 'volatility_60', or None."
                )
        return self


class LifecycleConfig(_Section):
    """Token lifecycle thresholds: normal / extreme / dead / gappy, dead tails trimmed."""

    enabled: bool = Field(default=True, description="Classify and trim dead tails before labels.")
    dead_min_bars: int = Field(
        default=60, ge=2, description="A flat tail this long (bars) makes a series dead."
    )
    flat_volume_frac: float = Field(
        default=0.001,
        ge=0,
        description="A flat bar's volume is at most this fraction of the median positive volume.",
    )
    keep_context_bars: int = Field(
        default=2, ge=0, description="Bars of a dead tail kept as context when trimming."
    )
    gappy_missing_ratio: float = Field(
        default=0.2, gt=0, le=1, description="Missing-bar ratio from which a series is gappy."
    )
    extreme_bar_return: float = Field(
        default=0.5, gt=0, description="|bar return| above which a bar counts as extreme."
    )
    extreme_max_return: float = Field(
        default=1.0, gt=0, description="A series with a |bar return| this large is extreme."
    )
    extreme_min_share: float = Field(
        default=0.01, gt=0, le=1, description="A series with this share of extreme bars is extreme."
    )


class DeploymentsConfig(_Section):
    """Prefect deployment schedules (cron, in ``timezone``) and the local UI servers."""

    weekly_retrain_cron: str = Field(default="0 3 * * 1", description="Retrain: Mon 03:00.")
    daily_predict_cron: str = Field(default="10 0 * * *", description="Predict after day close.")
    daily_monitor_cron: str = Field(default="30 0 * * *", description="Monitor after predict.")
    timezone: str = Field(default="UTC", description="IANA timezone of the cron schedules.")
    host: str = Field(default="127.0.0.1", description="Interface the local UI servers bind.")
    prefect_port: int = Field(default=4200, ge=1, le=65535)
    mlflow_port: int = Field(default=5000, ge=1, le=65535)

    @field_validator("weekly_retrain_cron", "daily_predict_cron", "daily_monitor_cron")
    @classmethod
    def _five_fields(cls, value: str) -> str:
        if len(value.split()) != 5:
            raise ConfigError(
                f"cron {value!r} must have 5 fields (minute hour day month weekday), "
                "e.g. '0 3 * * 1' for Mondays 03:00."
            )
        return value


class MonitorConfig(_Section):
    """Predict / monitor: realized-metric window, drift, and the automatic rollback rule.

    The champion breaches when, on at least ``min_outcomes`` realized outcomes of
    the window, its mean AUC over horizons is below ``auc_floor`` or (with
    ``compare_previous``) below the ``previous`` version's shadow AUC on the same
    rows by more than ``previous_margin``. ``consecutive_breaches`` breaching
    evaluations in a row roll it back (when ``enabled``).
    """

    enabled: bool = Field(default=True, description="Roll back automatically on breach.")
    window_days: float = Field(
        default=7.0, gt=0, description="Realized outcomes of the last N days (data clock)."
    )
    min_outcomes: int = Field(
        default=200, ge=1, description="Realized outcomes of the champion needed to decide."
    )
    auc_floor: float = Field(default=0.5, ge=0, le=1, description="Mean realized AUC floor.")
    consecutive_breaches: int = Field(
        default=2, ge=1, description="Breaching evaluations in a row before a rollback."
    )
    streak_rollback: bool = Field(
        default=False,
        description="Let the streak rule roll back too (off: its breaches are recorded and "
        "shown, and the change detector decides). On simulated stable streams at the "
        "defaults it rolled back 30 of 30 healthy champions within 12 weeks.",
    )
    compare_previous: bool = Field(
        default=True, description="Also breach when the champion trails `previous` (same rows)."
    )
    previous_margin: float = Field(
        default=0.01, ge=0, description="AUC by which the champion may trail `previous`."
    )
    psi_bins: int = Field(default=10, ge=2, le=100, description="Quantile bins of the PSI.")
    psi_alert: float = Field(default=0.25, gt=0, description="PSI flagged as drift (reported).")
    reference_bars: int = Field(
        default=2880, ge=10, description="Bars per symbol before scoring began: drift reference."
    )
    initial_bars: int = Field(
        default=1440, ge=1, description="Bars per symbol scored by the first predict run."
    )
    detector: Literal["page_hinkley", "cusum", "off"] = Field(
        default="page_hinkley",
        description="Sequential change detector on the per-outcome paired loss difference "
        "(champion minus previous, or minus the best naive baseline); an alarm rolls back.",
    )
    detector_delta: float = Field(
        default=0.004,
        ge=0,
        description="Log-loss difference (nats) the champion may lose to its reference per "
        "outcome without raising the statistic (calibrated in docs/operations.md).",
    )
    detector_threshold: float = Field(
        default=15.0,
        gt=0,
        description="Alarm when the cumulative log-loss excess (nats) since the estimated "
        "change exceeds this.",
    )
    detector_min_outcomes: int = Field(
        default=200, ge=1, description="Paired outcomes before the detector may alarm."
    )
    retrain_on_rollback: bool = Field(
        default=False, description="Run the retrain flow right after an automatic rollback."
    )
    experiment_name: str = Field(
        default="coincast-monitor", description="MLflow experiment of the monitor runs."
    )


class TuningConfig(_Section):
    """Optuna tuning (the `tune` flow): budgets, storage, and whether retrains use the result.

    One study per (model, horizon group) lives in ``storage_url`` (default
    ``sqlite:///<home>/optuna.db``; any SQLAlchemy URL, e.g. PostgreSQL); a later
    run resumes it. Best parameters go to ``<home>/tuned_params.json``.
    """

    storage_url: str | None = Field(
        default=None, description="Optuna RDB storage URL; None = sqlite:///<home>/optuna.db."
    )
    models: list[str] = Field(
        default_factory=lambda: ["lightgbm"], description="Models tuned by the `tune` flow."
    )
    n_trials: int = Field(default=20, ge=1, description="New trials per study and tune run.")
    timeout_s: float | None = Field(
        default=None, gt=0, description="Wall-clock budget per study and run (None = no limit)."
    )
    horizon_groups: Literal["all", "short_long"] = Field(
        default="all",
        description="'all' = one study over every horizon; 'short_long' = two studies, "
        "horizons split at their median.",
    )
    max_train_rows: int | None = Field(
        default=100_000, ge=100, description="Most recent training rows a trial fits on."
    )
    seed: int = 42
    pruner_startup_trials: int = Field(
        default=5, ge=0, description="Trials completed before the median pruner may prune."
    )
    pruner_warmup_steps: int = Field(
        default=0, ge=0, description="Horizons scored in a trial before it may be pruned."
    )
    apply: bool = Field(
        default=True, description="Retrains use the tuned parameters of tuned_params.json."
    )
    experiment_name: str = Field(
        default="coincast-tune", description="MLflow experiment of the tune runs."
    )


class CoincastConfig(BaseSettings):
    """Everything a run needs. Load once at the edge; pass sub-models down."""

    model_config = SettingsConfigDict(
        env_prefix="COINCAST_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    home: Path = Field(default=Path(".coincast"), description="Folder for all run state.")
    profile: str = Field(
        default="default",
        description="Packaged settings under the file/env/flags: 'default' (make run in a few "
        "minutes) or 'full' (the whole model zoo, all regressors).",
    )
    data: DataConfig = Field(default_factory=DataConfig)
    sources: list[SourceConfig] = Field(
        default_factory=list,
        description="Exchange downloads run by `coincast download` (ccxt); [] = none.",
    )
    quality: QualityConfig = Field(default_factory=QualityConfig)
    features: FeatureConfig = Field(default_factory=FeatureConfig)
    labels: LabelConfig = Field(default_factory=LabelConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    models: ModelConfig = Field(default_factory=ModelConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    lifecycle: LifecycleConfig = Field(default_factory=LifecycleConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    deployments: DeploymentsConfig = Field(default_factory=DeploymentsConfig)
    tuning: TuningConfig = Field(default_factory=TuningConfig)
    regime: RegimeConfig = Field(
        # the feature set's own causal columns: complete on every model row
        default_factory=lambda: RegimeConfig(return_column="logret_1", vol_column="volatility_60")
    )

    # ---- derived locations (pure: nothing is created here) ----
    @property
    def warehouse_path(self) -> Path:
        return self.home.resolve() / "warehouse.duckdb"

    @property
    def reports_dir(self) -> Path:
        return self.home.resolve() / "reports"

    @property
    def tracking_uri(self) -> str:
        if self.registry.tracking_uri:
            return self.registry.tracking_uri
        return f"sqlite:///{self.home.resolve() / 'mlflow.db'}"

    @property
    def artifact_location(self) -> str:
        if self.registry.artifact_location:
            return self.registry.artifact_location
        return (self.home.resolve() / "mlartifacts").as_uri()

    @property
    def model_name(self) -> str:
        if self.registry.model_name:
            return self.registry.model_name
        tf = self.data.timeframe
        return "coincast" if tf == "1m" else f"coincast-{tf}"

    @property
    def horizons(self) -> list[int]:
        return self.labels.for_timeframe(self.data.timeframe)


PROFILES_DIR = Path(__file__).with_name("profiles")


def profile_names() -> list[str]:
    """Names of the packaged profiles (``ml_core/profiles/<name>.yaml``)."""
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def load_config(path: Path | str | None = None, **overrides: object) -> CoincastConfig:
    """Build the config from a profile, an optional JSON/YAML file, env vars and overrides.

    Precedence: explicit overrides > environment > file > profile > defaults.
    The profile (``profile``: 'default' or 'full', from any of those sources)
    is a packaged YAML file of settings, e.g. 'full' fits the whole model zoo.
    """
    try:
        merged: dict = {}
        for _, values in _layers(path, overrides):
            merged = _deep_merge(merged, values)
        return CoincastConfig.model_validate(merged)
    except ConfigError:
        raise
    except ValidationError as exc:
        raise ConfigError(explain_validation(exc, CoincastConfig)) from exc
    except Exception as exc:  # noqa: BLE001 - anything else in our family, same text
        raise ConfigError(f"Invalid configuration: {exc}") from exc


def explain_validation(exc: ValidationError, root: type[BaseModel]) -> str:
    """One line per problem, each naming the dotted key; an unknown key gets the nearest
    valid key of its section ("unknown key registry.min_improvment: did you mean
    registry.min_improvement?"), so a typo never leaves a default deciding silently."""
    lines = []
    for err in exc.errors():
        loc = [str(part) for part in err["loc"]]
        key = ".".join(loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            known = _section_keys(root, err["loc"][:-1])
            near = difflib.get_close_matches(loc[-1], known, n=1, cutoff=0.6)
            where = ".".join(loc[:-1])
            hint = (
                f"did you mean {'.'.join([*loc[:-1], near[0]])}?"
                if near
                else f"valid keys{' of ' + where if where else ''}: {', '.join(known)}"
            )
            lines.append(f"unknown key {key}: {hint}")
        else:
            lines.append(f"{key}: {err['msg']} (got {err.get('input')!r})")
    if len(lines) == 1:
        return f"Invalid configuration: {lines[0]}"
    return f"Invalid configuration ({len(lines)} problems):\n" + "\n".join(
        f"  - {line}" for line in lines
    )


def _section_keys(root: type[BaseModel], loc: tuple) -> list[str]:
    """Field names of the section at ``loc`` under ``root`` (list indexes skipped)."""
    model: type[BaseModel] | None = root
    for part in loc:
        if model is None or isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        model = _section_type(field.annotation) if field is not None else None
    return sorted(model.model_fields) if model is not None else []


def _section_type(annotation: object) -> type[BaseModel] | None:
    """The config section class inside an annotation (``X``, ``list[X]``, ``X | None``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _section_type(arg)
        if found is not None:
            return found
    return None


def _layers(path: Path | str | None, overrides: dict[str, object]) -> list[tuple[str, dict]]:
    """The settings of each source, lowest precedence first: (where, values)."""
    file_values = _read_file(Path(path)) if path is not None else {}
    env_values = CoincastConfig().model_dump(exclude_unset=True)
    flags = {k: v for k, v in overrides.items() if v is not None}
    top = _deep_merge(_deep_merge(file_values, env_values), flags)
    profile = str(top.get("profile") or "default")
    return [
        (f"profile {profile}", _profile_values(profile)),
        (f"file {path}", file_values),
        ("environment", env_values),
        ("command line", flags),
    ]


def config_sources(
    path: Path | str | None = None, **overrides: object
) -> tuple[CoincastConfig, dict[str, tuple[object, str]]]:
    """The config ``load_config`` builds, and every setting's value and where it came from.

    Keys are dotted (``registry.gate.pbo_threshold``); the source is ``default``, ``profile
    <name>``, ``file <path>``, ``environment`` or ``command line``, the highest-precedence
    layer that set the key or a section above it.
    """
    cfg = load_config(path, **overrides)
    try:
        layers = [(where, _flatten(values)) for where, values in _layers(path, overrides)]
    except ValidationError as exc:  # pragma: no cover - load_config above refused it first
        raise ConfigError(explain_validation(exc, CoincastConfig)) from exc
    out: dict[str, tuple[object, str]] = {}
    for key, value in _flatten(cfg.model_dump(mode="json")).items():
        source = "default"
        for where, flat in layers:
            if any(key == k or key.startswith(k + ".") for k in flat):
                source = where
        out[key] = (value, source)
    return cfg, out


def _flatten(values: dict, prefix: str = "") -> dict[str, object]:
    """Nested dicts as dotted leaves; lists and empty dicts stay one value."""
    out: dict[str, object] = {}
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def _profile_values(name: str) -> dict:
    path = PROFILES_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"Unknown profile {name!r}; choose one of {profile_names()}.")
    return _read_file(path)


def _read_file(p: Path) -> dict:
    if not p.is_file():
        raise ConfigError(f"Config file {p} does not exist; pass an existing JSON or YAML file.")
    text = p.read_text()
    try:
        if p.suffix in {".yaml", ".yml"}:
            import yaml  # pyyaml comes with mlflow and prefect

            return yaml.safe_load(text) or {}
        return json.loads(text)
    except Exception as exc:  # noqa: BLE001 - any parse error becomes a ConfigError
        raise ConfigError(f"Could not parse config file {p}: {exc}") from exc


def _deep_merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out
