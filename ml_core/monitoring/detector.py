"""Sequential change detection on the champion's paired loss difference (pure).

For each realized outcome i (one symbol, bar ts and horizon), in the order the
outcomes are realized, the monitor forms the *paired loss difference*

    d_i = loss(champion's P(up), up_i) - loss(reference's P(up), up_i)

where the reference is the ``previous`` version's shadow prediction of the same
row (or a naive baseline when there is no previous). d_i < 0: the champion did
better on that outcome. The loss is the **log loss** of P(up) clipped to
[``LOSS_EPS``, 1 - ``LOSS_EPS``], not the Brier score: it is the loss the models
are fitted with and a strictly proper score; for the everyday predictions of an
AUC-0.54 model (|p - 0.5| < 0.1) it is nearly linear in p and behaves like twice
the Brier difference, while a champion that breaks (P(up) = 0.98 on bars that
fall) costs ~3.2 nats an outcome and alarms within a few dozen outcomes. The
clip bounds any one outcome's contribution at ln(1 / LOSS_EPS) = 6.9 nats.

Both detectors accumulate ``m_n = sum_{i<=n} (d_i - c_i - delta)`` (``m_0 = 0``)
and watch ``g_n = m_n - min_{k<=n} m_k``, the excess since the lowest point;
the argmin k* estimates when the change happened:

* :class:`Cusum`: ``c_i = 0``. The champion's cumulative log-loss excess over
  the reference, less ``delta`` per outcome (the tabular CUSUM
  ``g_n = max(0, g_{n-1} + d_n - delta)``).
* :class:`PageHinkley`: ``c_i = min(mean(d_1..d_i), 0)``: the loss difference
  is compared with its own running level, capped at parity, so a champion that
  has been beating its reference alarms sooner when it stops doing so, and one
  that never beat it is held to parity (plain Page-Hinkley, centred on the
  running mean, would never notice a champion that is worse from the start).

An alarm needs ``n >= min_outcomes``, ``g_n > threshold`` and a positive mean
d over the outcomes since k* (the champion lost to its reference since the
change: a champion that is still the better of the two is not rolled back to
it). The first alarm is kept in the state (``state.alarm``) until the state is
reset; the statistic goes on being updated.

State is explicit and immutable (:class:`DetectorState`, JSON round trip with
``to_dict`` / ``from_dict``): feeding a stream in daily batches gives exactly
the state of one pass over the whole stream.

Example::

    det = PageHinkley(delta=0.003, threshold=12.0, min_outcomes=200)
    state = det.new_state(version="3", reference="previous v2")
    d = log_loss_difference(p_champion, p_previous, up)
    state = det.update(state, d, times)        # one day's outcomes
    state.alarm is not None, describe_state(state)
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, replace
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from ml_core.errors import ConfigError, DataContractError

log = logging.getLogger(__name__)

#: Probabilities are clipped to [LOSS_EPS, 1 - LOSS_EPS] before taking logs.
LOSS_EPS = 1e-3
#: Detector names as the configuration spells them (``MonitorConfig.detector``).
DETECTOR_NAMES = ("page_hinkley", "cusum")


def log_loss_difference(p_champion: ArrayLike, p_reference: ArrayLike, up: ArrayLike) -> np.ndarray:
    """Per-outcome log loss of the champion minus that of the reference (nats)."""
    pc, pr, y = (np.asarray(a, dtype=float) for a in (p_champion, p_reference, up))
    if not pc.shape == pr.shape == y.shape:
        raise DataContractError(
            f"p_champion {pc.shape}, p_reference {pr.shape} and up {y.shape} differ in "
            "shape; pass one value per realized outcome to each."
        )
    return _log_loss(pc, y) - _log_loss(pr, y)


@dataclass(frozen=True)
class Alarm:
    """The detector's numbers at the first outcome that raised the alarm."""

    at: pd.Timestamp  # realization time of that outcome
    statistic: float
    n_outcomes: int
    n_since_change: int
    mean_diff_since_change: float
    change_at: pd.Timestamp | None  # last outcome before the estimated change (None: start)


@dataclass(frozen=True)
class DetectorState:
    """Everything a detector needs to resume; what it belongs to and how it was set up."""

    detector: str
    delta: float
    threshold: float
    min_outcomes: int
    version: str = ""  # champion version the state judges
    reference: str = ""  # what d is measured against, e.g. "previous v2"
    n_outcomes: int = 0
    sum_diff: float = 0.0
    cumulative: float = 0.0  # m_n
    cumulative_min: float = 0.0  # min_{k<=n} m_k
    n_at_min: int = 0
    sum_at_min: float = 0.0
    change_at: pd.Timestamp | None = None
    started_at: pd.Timestamp | None = None
    last_at: pd.Timestamp | None = None
    alarm: Alarm | None = None

    @property
    def statistic(self) -> float:
        """g_n: the cumulative excess since the estimated change (>= 0)."""
        return self.cumulative - self.cumulative_min

    @property
    def mean_diff(self) -> float:
        """Mean d over every outcome fed (nan before the first)."""
        return self.sum_diff / self.n_outcomes if self.n_outcomes else math.nan

    @property
    def n_since_change(self) -> int:
        return self.n_outcomes - self.n_at_min

    @property
    def mean_diff_since_change(self) -> float:
        n = self.n_since_change
        return (self.sum_diff - self.sum_at_min) / n if n else math.nan

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (timestamps as ISO strings)."""
        out = asdict(self)
        for key in ("change_at", "started_at", "last_at"):
            out[key] = _iso(out[key])
        if self.alarm is not None:
            out["alarm"] = {**asdict(self.alarm)}
            out["alarm"]["at"] = _iso(self.alarm.at)
            out["alarm"]["change_at"] = _iso(self.alarm.change_at)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetectorState:
        """Inverse of :meth:`to_dict`."""
        values = dict(data)
        for key in ("change_at", "started_at", "last_at"):
            values[key] = _ts(values.get(key))
        alarm = values.pop("alarm", None)
        if alarm is not None:
            alarm = Alarm(**{**alarm, "at": _ts(alarm["at"]), "change_at": _ts(alarm["change_at"])})
        return cls(**values, alarm=alarm)


class _CumulativeDetector:
    """Shared machinery of the two detectors; subclasses choose the centre c_i."""

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""

    def __init__(self, *, delta: float, threshold: float, min_outcomes: int) -> None:
        for what, value in (("delta", delta), ("threshold", threshold)):
            if isinstance(value, bool) or not isinstance(value, int | float | np.floating):
                raise ConfigError(f"{self.name}: {what} must be a number, got {value!r}.")
        if not math.isfinite(delta) or delta < 0:
            raise ConfigError(
                f"{self.name}: delta={delta!r} must be finite and >= 0 (the loss difference "
                "tolerated per outcome, e.g. monitor.detector_delta=0.003)."
            )
        if not math.isfinite(threshold) or threshold <= 0:
            raise ConfigError(
                f"{self.name}: threshold={threshold!r} must be finite and > 0 "
                "(e.g. monitor.detector_threshold=12)."
            )
        if isinstance(min_outcomes, bool) or not isinstance(min_outcomes, int) or min_outcomes < 1:
            raise ConfigError(
                f"{self.name}: min_outcomes={min_outcomes!r} must be an integer >= 1 "
                "(e.g. monitor.detector_min_outcomes=200)."
            )
        self.delta = float(delta)
        self.threshold = float(threshold)
        self.min_outcomes = int(min_outcomes)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(delta={self.delta}, threshold={self.threshold}, "
            f"min_outcomes={self.min_outcomes})"
        )

    def new_state(self, *, version: str = "", reference: str = "") -> DetectorState:
        """A fresh state for ``version`` measured against ``reference``."""
        return DetectorState(
            detector=self.name,
            delta=self.delta,
            threshold=self.threshold,
            min_outcomes=self.min_outcomes,
            version=str(version),
            reference=str(reference),
        )

    def resume(
        self, stored: DetectorState | None, *, version: str, reference: str
    ) -> tuple[DetectorState, str | None]:
        """``stored`` when it judges ``version`` against ``reference`` with these settings;
        otherwise a fresh state and why the stored one was not resumed."""
        fresh = self.new_state(version=version, reference=reference)
        if stored is None:
            return fresh, "no stored state"
        if stored.version != str(version):
            return fresh, f"champion changed (v{stored.version} -> v{version})"
        if stored.reference != str(reference):
            return fresh, f"reference changed ({stored.reference} -> {reference})"
        settings = ("detector", "delta", "threshold", "min_outcomes")
        if any(getattr(stored, k) != getattr(fresh, k) for k in settings):
            old = ", ".join(f"{k}={getattr(stored, k)}" for k in settings)
            return fresh, f"detector settings changed (stored {old})"
        return stored, None

    def update(self, state: DetectorState, diffs: ArrayLike, times: ArrayLike) -> DetectorState:
        """The state after feeding ``diffs`` (d_i, in order) realized at ``times``."""
        self._check_state(state)
        d, t = _checked_inputs(diffs, times)
        if len(d) == 0:
            return state
        w = self._walk(state, d)
        alarm = state.alarm
        if alarm is None:
            due = (w["n"] >= self.min_outcomes) & (w["stat"] > self.threshold)
            due &= w["mean_since"] > 0
            if due.any():
                i = int(np.argmax(due))
                alarm = Alarm(
                    at=pd.Timestamp(t.iloc[i]),
                    statistic=float(w["stat"][i]),
                    n_outcomes=int(w["n"][i]),
                    n_since_change=int(w["n_since"][i]),
                    mean_diff_since_change=float(w["mean_since"][i]),
                    change_at=_change_at(state, w["last_min"], t, i),
                )
                log.info("%s alarm for v%s at %s", self.label, state.version, alarm.at)
        return replace(
            state,
            n_outcomes=int(w["n"][-1]),
            sum_diff=float(w["sums"][-1]),
            cumulative=float(w["m"][-1]),
            cumulative_min=float(w["mins"][-1]),
            n_at_min=int(w["n_min"][-1]),
            sum_at_min=float(w["sum_min"][-1]),
            change_at=_change_at(state, w["last_min"], t, -1),
            started_at=state.started_at
            if state.started_at is not None
            else pd.Timestamp(t.iloc[0]),
            last_at=pd.Timestamp(t.iloc[-1]),
            alarm=alarm,
        )

    def _walk(self, state: DetectorState, d: np.ndarray) -> dict[str, np.ndarray]:
        """The statistic after each outcome of the batch, continuing ``state``.

        Every running quantity is a cumulative sum seeded with the stored value
        (``np.cumsum`` of ``[stored, d_1, ...]`` adds in the same order as one
        pass), so batches reproduce one pass exactly.
        """
        k = len(d)
        n = state.n_outcomes + np.arange(1, k + 1)
        sums = np.cumsum(np.r_[state.sum_diff, d])[1:]
        m = np.cumsum(np.r_[state.cumulative, d - self._centres(n, sums) - self.delta])[1:]
        mins = np.minimum.accumulate(np.r_[state.cumulative_min, m])[1:]
        # where the running minimum was last set: index into this batch, -1 = before it
        last_min = np.maximum.accumulate(np.where(m <= mins, np.arange(k), -1))
        in_batch = last_min >= 0
        n_min = np.where(in_batch, n[np.maximum(last_min, 0)], state.n_at_min)
        sum_min = np.where(in_batch, sums[np.maximum(last_min, 0)], state.sum_at_min)
        n_since = n - n_min
        mean_since = (sums - sum_min) / np.maximum(n_since, 1)  # 0 where n_since == 0
        return {
            "n": n,
            "sums": sums,
            "m": m,
            "mins": mins,
            "stat": m - mins,
            "last_min": last_min,
            "n_min": n_min,
            "sum_min": sum_min,
            "n_since": n_since,
            "mean_since": mean_since,
        }

    def _centres(self, n: np.ndarray, sums: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _check_state(self, state: DetectorState) -> None:
        mine = (self.name, self.delta, self.threshold, self.min_outcomes)
        theirs = (state.detector, state.delta, state.threshold, state.min_outcomes)
        if mine != theirs:
            raise ConfigError(
                f"State built by detector={state.detector}, delta={state.delta}, "
                f"threshold={state.threshold}, min_outcomes={state.min_outcomes} fed to {self!r}; "
                "call resume() to start a fresh state when the settings change."
            )


class Cusum(_CumulativeDetector):
    """One-sided CUSUM of d against parity: alarms on cumulative excess loss."""

    name = "cusum"
    label = "CUSUM"

    def _centres(self, n: np.ndarray, sums: np.ndarray) -> np.ndarray:
        return np.zeros_like(sums)


class PageHinkley(_CumulativeDetector):
    """Page-Hinkley of d against its running mean (capped at parity)."""

    name = "page_hinkley"
    label = "Page-Hinkley"

    def _centres(self, n: np.ndarray, sums: np.ndarray) -> np.ndarray:
        return np.minimum(sums / n, 0.0)


def make_detector(
    kind: str, *, delta: float, threshold: float, min_outcomes: int
) -> PageHinkley | Cusum | None:
    """The detector ``kind`` names (``MonitorConfig.detector``); None for ``"off"``."""
    if kind == "off":
        return None
    classes = {cls.name: cls for cls in (PageHinkley, Cusum)}
    if kind not in classes:
        raise ConfigError(
            f"Unknown detector {kind!r}; use one of {[*DETECTOR_NAMES, 'off']} (monitor.detector)."
        )
    return classes[kind](delta=delta, threshold=threshold, min_outcomes=min_outcomes)


def describe_state(state: DetectorState) -> str:
    """One sentence for logs, decisions and the audit reason."""
    label = {"page_hinkley": "Page-Hinkley", "cusum": "CUSUM"}.get(state.detector, state.detector)
    a = state.alarm
    if a is not None:
        since = _short(a.change_at) if a.change_at is not None else _short(state.started_at)
        return (
            f"{label} alarm: cumulative log-loss excess {a.statistic:.1f} > "
            f"{state.threshold:.1f} over {a.n_since_change:,} outcomes since {since} "
            f"(mean {a.mean_diff_since_change:+.4f} nats per outcome vs {state.reference}; "
            f"alarm at {_short(a.at)} after {a.n_outcomes:,} outcomes of v{state.version})"
        )
    if state.n_outcomes == 0:
        return f"{label}: no paired outcomes of v{state.version} yet"
    wait = (
        f", waiting for min_outcomes={state.min_outcomes}"
        if state.n_outcomes < state.min_outcomes
        else ""
    )
    return (
        f"{label} quiet: statistic {state.statistic:.1f} <= {state.threshold:.1f} after "
        f"{state.n_outcomes:,} outcomes (mean {state.mean_diff:+.4f} nats vs "
        f"{state.reference}){wait}"
    )


def state_metrics(state: DetectorState) -> dict[str, Any]:
    """Flat numbers of a state for audit rows, artifacts and MLflow (``detector_*`` keys)."""
    a = state.alarm
    return {
        "detector": state.detector,
        "detector_reference": state.reference,
        "detector_statistic": state.statistic,
        "detector_threshold": state.threshold,
        "detector_delta": state.delta,
        "detector_min_outcomes": state.min_outcomes,
        "detector_n_outcomes": state.n_outcomes,
        "detector_mean_diff": state.mean_diff,
        "detector_n_since_change": state.n_since_change,
        "detector_mean_diff_since_change": state.mean_diff_since_change,
        "detector_started_at": _iso(state.started_at),
        "detector_last_at": _iso(state.last_at),
        "detector_alarm": a is not None,
        "detector_alarm_at": None if a is None else _iso(a.at),
        "detector_alarm_statistic": None if a is None else a.statistic,
        "detector_alarm_n_outcomes": None if a is None else a.n_outcomes,
        "detector_alarm_n_since_change": None if a is None else a.n_since_change,
        "detector_alarm_mean_diff": None if a is None else a.mean_diff_since_change,
        "detector_alarm_change_at": None if a is None else _iso(a.change_at),
    }


# ---- helpers --------------------------------------------------------------------------------
def _checked_inputs(diffs: ArrayLike, times: ArrayLike) -> tuple[np.ndarray, pd.Series]:
    d = np.asarray(diffs, dtype=float).ravel()
    t = pd.to_datetime(pd.Series(times)).reset_index(drop=True)
    if len(t) != len(d):
        raise DataContractError(
            f"{len(d)} loss differences but {len(t)} times; pass one time per outcome."
        )
    if not np.isfinite(d).all():
        raise DataContractError(
            f"{int((~np.isfinite(d)).sum())} loss difference(s) are not finite; "
            "drop outcomes without a probability before feeding the detector."
        )
    return d, t


def _change_at(
    state: DetectorState, last_min: np.ndarray, t: pd.Series, i: int
) -> pd.Timestamp | None:
    """Time of the outcome at the running minimum as of batch row ``i``."""
    return pd.Timestamp(t.iloc[last_min[i]]) if last_min[i] >= 0 else state.change_at


def _log_loss(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    q = np.clip(p, LOSS_EPS, 1.0 - LOSS_EPS)
    return -(y * np.log(q) + (1.0 - y) * np.log(1.0 - q))


def _iso(ts: Any) -> str | None:
    return None if ts is None or pd.isna(ts) else pd.Timestamp(ts).isoformat()


def _ts(value: Any) -> pd.Timestamp | None:
    return None if value is None else pd.Timestamp(value)


def _short(ts: pd.Timestamp | None) -> str:
    return "the start" if ts is None else pd.Timestamp(ts).strftime("%Y-%m-%d %H:%M")
