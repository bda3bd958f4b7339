"""Synthetic prediction / outcome streams to test and calibrate the change detector.

A stream has candles of a few symbols whose next-bar log return carries a
small persistent signal (AR(1) per bar, half of it market-wide; half of the
return noise market-wide too, so symbols move together), two models that see
the signal through their own persistent noise (``champion`` sharper than
``previous``) and their calibrated P(up) for every bar and horizon. With the
defaults the champion's realized AUC is ~0.54 (0.52-0.56 over seeds and
horizons) and the per-outcome log-loss differences are tiny in mean and
noisy, as for a real model. A planted change at ``flip_day``:

* ``flip="champion"``: the champion's predictions turn around (p -> 1 - p),
  ``previous`` stays informative (a broken feature, a sign bug);
* ``flip="market"``: the signal in the returns turns around, so both models
  are wrong from then on (what a naive reference would see).

``monitor_days`` replays the monitor's daily decisions over a stream;
:mod:`ml_core.monitoring.calibration` counts false alarms and detection delays
over many seeds.

Example::

    stream = simulate_stream(StreamSpec(flip_day=42), seed=1)
    paired = stream.paired()               # PAIRED_COLUMNS, champion vs previous
    state = feed_outcomes(det, det.new_state(), paired)
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy.signal import lfilter
from scipy.special import ndtr
from scipy.stats import rankdata

from ml_core.config import MonitorConfig, timeframe_seconds
from ml_core.data.warehouse import CANDLE_COLUMNS
from ml_core.monitoring.detector import DetectorState, make_detector
from ml_core.monitoring.loss_stream import PAIRED_COLUMNS, feed_outcomes
from ml_core.monitoring.naive import fit_naive_reference, naive_probabilities
from ml_core.monitoring.rules import ChampionEvidence, RollbackDecision, decide_rollback


@dataclass(frozen=True)
class StreamSpec:
    """What to simulate; the defaults are a small hourly deployment (~100 outcomes a day)."""

    n_days: int = 84
    timeframe: str = "1h"
    n_symbols: int = 3
    horizons: tuple[int, ...] = (1, 4, 12, 24)
    signal: float = 0.06  # beta: next-bar return = beta * z + noise (unit-variance terms)
    persistence: float = 0.9  # AR(1) coefficient of the signal and of the models' errors
    market_share: float = 0.5  # share of the variance that is common to all symbols
    champion_noise: float = 0.5  # the models' view: (z + noise * xi) / sqrt(1 + noise^2)
    previous_noise: float = 1.0
    confidence: float = 1.0  # > 1: the models' P(up) over-confident by that factor
    flip_day: float | None = None
    flip: Literal["champion", "market"] = "champion"
    warmup_days: int = 60  # candles before day 0 (the naive baseline's fit window)
    start: str = "2025-01-06"


@dataclass(frozen=True)
class SyntheticStream:
    """Candles, outcomes on the non-overlapping grid, and (optionally) every prediction."""

    spec: StreamSpec
    candles: pd.DataFrame
    outcomes: pd.DataFrame  # symbol, ts, horizon, t1, up, p_champion, p_previous, close...
    predictions: pd.DataFrame | None
    start: pd.Timestamp
    flip_at: pd.Timestamp | None

    def paired(self, reference: Literal["previous", "naive"] = "previous") -> pd.DataFrame:
        """``PAIRED_COLUMNS`` against ``previous`` or the naive baseline fitted on the warm-up."""
        if reference == "previous":
            return self.outcomes.assign(p_reference=self.outcomes["p_previous"])[PAIRED_COLUMNS]
        naive = fit_naive_reference(
            self.candles,
            horizons=self.spec.horizons,
            before=self.start,
            timeframe=self.spec.timeframe,
            reference_bars=10**9,
        )
        p = naive_probabilities(naive, self.outcomes)
        return self.outcomes.assign(p_reference=p)[PAIRED_COLUMNS]


def simulate_stream(
    spec: StreamSpec, seed: int, *, with_predictions: bool = False
) -> SyntheticStream:
    """One seeded stream (same seed, same stream; the flip changes nothing before it)."""
    rng = np.random.default_rng(seed)
    bar = pd.Timedelta(seconds=timeframe_seconds(spec.timeframe))
    per_day = int(pd.Timedelta(days=1) / bar)
    n_bars = (spec.warmup_days + spec.n_days) * per_day  # the last outcomes end on the last day
    start = pd.Timestamp(spec.start)
    ts = pd.date_range(start - spec.warmup_days * pd.Timedelta(days=1), periods=n_bars, freq=bar)
    ts = ts.astype("datetime64[us]")
    flip_at = None if spec.flip_day is None else start + pd.Timedelta(days=spec.flip_day)
    shape = (spec.n_symbols, n_bars)
    z = _mix(_ar1(rng, (1, n_bars), spec.persistence), _ar1(rng, shape, spec.persistence), spec)
    noise = _mix(rng.standard_normal((1, n_bars)), rng.standard_normal(shape), spec)
    beta = np.full(n_bars, spec.signal)
    if flip_at is not None and spec.flip == "market":
        beta[ts >= flip_at] *= -1.0
    ret = np.zeros(shape)
    ret[:, 1:] = beta[None, :-1] * z[:, :-1] + noise[:, 1:]
    log_close = np.log(100.0) + 0.005 * np.cumsum(ret, axis=1)
    noises = {"champion": spec.champion_noise, "previous": spec.previous_noise}
    views = {who: _view(rng, z, a, spec.persistence) for who, a in noises.items()}
    symbols = [f"S{i:02d}/USDT" for i in range(spec.n_symbols)]
    candles = _candles(symbols, spec.timeframe, ts, log_close)
    bar_index = (ts.asi8 // 1000) // int(bar.total_seconds() * 1e6 // 1000)
    rows, preds = [], []
    for h in spec.horizons:
        probs = {who: _probability(v, noises[who], h, spec) for who, v in views.items()}
        if flip_at is not None and spec.flip == "champion":
            probs["champion"] = np.where(
                ts.to_numpy()[None, :] >= flip_at.to_datetime64(),
                1 - probs["champion"],
                probs["champion"],
            )
        scored = (ts >= start)[: n_bars - h]
        grid = scored & (bar_index[: n_bars - h] % h == 0)
        for i, symbol in enumerate(symbols):
            idx = np.flatnonzero(grid)
            lc = log_close[i]
            rows.append(
                pd.DataFrame(
                    {
                        "symbol": symbol,
                        "ts": ts[idx],
                        "horizon": h,
                        "t1": ts[idx + h],
                        "up": (lc[idx + h] > lc[idx]).astype(float),
                        "p_champion": probs["champion"][i, idx],
                        "p_previous": probs["previous"][i, idx],
                        "close": np.exp(lc[idx]),
                        "close_lag1": np.exp(lc[idx - 1]),
                        "close_lag_h": np.exp(lc[idx - h]),
                    }
                )
            )
            if with_predictions:
                every = np.flatnonzero(ts >= start)
                for version, who in (("2", "champion"), ("1", "previous")):
                    preds.append(
                        pd.DataFrame(
                            {
                                "model_version": version,
                                "symbol": symbol,
                                "ts": ts[every],
                                "horizon": h,
                                "p_up": probs[who][i, every],
                            }
                        )
                    )
    outcomes = pd.concat(rows, ignore_index=True).sort_values(
        ["t1", "symbol", "horizon", "ts"], kind="stable", ignore_index=True
    )
    predictions = pd.concat(preds, ignore_index=True) if with_predictions else None
    return SyntheticStream(spec, candles, outcomes, predictions, start, flip_at)


def daily_batches(paired: pd.DataFrame, start: pd.Timestamp) -> Iterator[tuple[int, pd.DataFrame]]:
    """(day, outcomes realized that day), as a daily monitor sees them (sorted by t1)."""
    rows = paired.sort_values("t1", kind="stable")
    day = ((rows["t1"] - start) // pd.Timedelta(days=1)).to_numpy(dtype=int)
    n_days = int(day.max()) + 1 if len(day) else 0
    cuts = np.searchsorted(day, np.arange(n_days + 1))
    for d in range(n_days):
        yield d, rows.iloc[cuts[d] : cuts[d + 1]]


@dataclass(frozen=True)
class DailyDecision:
    """One simulated daily monitor run."""

    day: int
    decision: RollbackDecision
    state: DetectorState


def monitor_days(
    stream: SyntheticStream,
    cfg: MonitorConfig,
    *,
    reference: Literal["previous", "naive"] = "previous",
    stop_at_rollback: bool = True,
) -> list[DailyDecision]:
    """The monitor's decisions run day by day over ``stream`` (champion v2, previous v1).

    Each day feeds the detector the outcomes realized that day (resuming from
    the day before, as ``detector_state`` does) and applies
    :func:`~ml_core.monitoring.rules.decide_rollback` with the streak rule's
    evidence from the last ``window_days`` of (grid) outcomes and its own past
    breach flags.
    """
    det = make_detector(
        cfg.detector,
        delta=cfg.detector_delta,
        threshold=cfg.detector_threshold,
        min_outcomes=cfg.detector_min_outcomes,
    )
    paired = stream.paired(reference).assign(p_previous=stream.outcomes["p_previous"])
    paired = paired.sort_values("t1", kind="stable", ignore_index=True)
    cols = {c: paired[c].to_numpy() for c in ("t1", "horizon", "up", "p_champion", "p_previous")}
    ref_label = "previous v1" if reference == "previous" else "naive baseline"
    state = det.new_state(version="2", reference=ref_label) if det is not None else None
    history: list[bool | None] = []
    out = []
    for day, batch in daily_batches(paired, stream.start):
        if det is not None and state is not None:
            state = feed_outcomes(det, state, batch)
        end = stream.start + pd.Timedelta(days=day + 1)
        begin = end - pd.Timedelta(days=cfg.window_days)
        window = slice(*np.searchsorted(cols["t1"], [begin.to_datetime64(), end.to_datetime64()]))
        champion_auc = _window_auc(cols, window, "p_champion")
        ev = ChampionEvidence(
            version="2",
            auc=champion_auc,
            n_outcomes=window.stop - window.start,
            previous_version="1" if reference == "previous" else None,
            previous_auc=_window_auc(cols, window, "p_previous")
            if reference == "previous"
            else math.nan,
            n_paired=window.stop - window.start if reference == "previous" else 0,
            champion_paired_auc=champion_auc,
        )
        decision = decide_rollback(ev, past_breaches=history, cfg=cfg, detector=state)
        history.insert(0, decision.breach)
        out.append(DailyDecision(day, decision, state))
        if decision.rollback and stop_at_rollback:
            break
    return out


# ---- helpers --------------------------------------------------------------------------------
def _window_auc(cols: dict[str, np.ndarray], window: slice, column: str) -> float:
    """Mean over horizons of the realized AUC of ``column`` on rows ``window`` (nan if none)."""
    horizon, up, p = cols["horizon"][window], cols["up"][window], cols[column][window]
    aucs = []
    for h in np.unique(horizon):
        y, score = up[horizon == h], p[horizon == h]
        n_up = int(y.sum())
        n_down = len(y) - n_up
        if n_up and n_down:
            ranks = rankdata(score)
            aucs.append((ranks[y == 1].sum() - n_up * (n_up + 1) / 2) / (n_up * n_down))
    return float(np.mean(aucs)) if aucs else math.nan


def _ar1(rng: np.random.Generator, shape: tuple[int, int], phi: float) -> np.ndarray:
    """Unit-variance AR(1) rows (started from the stationary distribution)."""
    eta = rng.standard_normal(shape)
    eta[:, 0] /= math.sqrt(1 - phi**2)
    return lfilter([math.sqrt(1 - phi**2)], [1.0, -phi], eta, axis=1)


def _mix(common: np.ndarray, own: np.ndarray, spec: StreamSpec) -> np.ndarray:
    w = spec.market_share
    return math.sqrt(w) * common + math.sqrt(1 - w) * own


def _view(rng: np.random.Generator, z: np.ndarray, noise: float, phi: float) -> np.ndarray:
    xi = _ar1(rng, z.shape, phi)
    return (z + noise * xi) / math.sqrt(1 + noise**2)


def _probability(view: np.ndarray, noise: float, h: int, spec: StreamSpec) -> np.ndarray:
    """Calibrated P(close[t+h] > close[t] | view), times ``confidence`` on the probit scale.

    E[z | view] = view / sqrt(1 + noise^2); the h-bar return adds up
    beta * (1 + phi + ... + phi^(h-1)) of it, over a noise of sd ~ sqrt(h).
    """
    phi, beta = spec.persistence, spec.signal
    gain = (1 - phi**h) / (1 - phi)
    sd = math.sqrt(h + beta**2 * h * (1 + phi) / (1 - phi))
    slope = spec.confidence * beta * gain / (sd * math.sqrt(1 + noise**2))
    return ndtr(slope * view)


def _candles(
    symbols: list[str], timeframe: str, ts: pd.DatetimeIndex, log_close: np.ndarray
) -> pd.DataFrame:
    frames = []
    for i, symbol in enumerate(symbols):
        close = np.exp(log_close[i])
        open_ = np.r_[close[0], close[:-1]]
        frames.append(
            pd.DataFrame(
                {
                    "symbol": symbol,
                    "timeframe": timeframe,
                    "ts": ts,
                    "open": open_,
                    "high": np.maximum(open_, close) * 1.0005,
                    "low": np.minimum(open_, close) * 0.9995,
                    "close": close,
                    "volume": 1.0,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)[CANDLE_COLUMNS]
