"""The weekly decision on real features of synthetic candles: skill not luck, refresh or replace.

Candles are random walks (nothing to learn) or carry a planted signal that only
volume reveals (a high-volume bar is followed by a rise, a low-volume bar by a
fall), so no naive baseline (always-up, persistence, momentum sign) can see it.
Features, labels, split, candidates, CPCV and the gate are the library's own.
"""

from __future__ import annotations

import copy

import duckdb
import numpy as np
import pandas as pd
import pytest

from ml_core.config import load_config
from ml_core.evaluation.skill import horizon_confidence
from ml_core.evaluation.weekly import decide_week, unseen_window
from ml_core.features import FEATURE_COLUMNS
from ml_core.features.labels import build_model_frame
from ml_core.models.pipeline import refit_for_serving
from ml_core.models.training import select_best, train_candidates
from ml_core.validation.split import chronological_split

pytestmark = pytest.mark.slow

N_BARS = 2200
HORIZONS = [1, 4, 12]
WEEK = 168


def candles(seed: int, *, signal: float = 0.0, n_bars: int = N_BARS, n_symbols: int = 3):
    """Hourly candles; ``signal`` > 0 plants P(up next bar) rising with this bar's volume."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2024-01-01", periods=n_bars, freq="1h")
    frames = []
    for k in range(n_symbols):
        log_volume = rng.normal(size=n_bars)
        sign = np.where(log_volume > 0, 1.0, -1.0)
        ret = rng.normal(scale=0.01, size=n_bars)
        ret[1:] += signal * 0.01 * sign[:-1]
        close = 100.0 * np.exp(np.cumsum(ret))
        open_ = np.concatenate([[100.0], close[:-1]])
        wick = np.abs(rng.normal(scale=0.002, size=(2, n_bars)))
        frames.append(
            pd.DataFrame(
                {
                    "symbol": f"S{k}/USDT",
                    "timeframe": "1h",
                    "ts": ts,
                    "open": open_,
                    "high": np.maximum(open_, close) * (1 + wick[0]),
                    "low": np.minimum(open_, close) * (1 - wick[1]),
                    "close": close,
                    "volume": np.exp(5.0 + log_volume),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def fast_cfg(**registry):
    return load_config(
        None,
        data={"timeframe": "1h"},
        models={"candidates": ["logistic"], "regressors": []},
        regime={"enabled": False},
        labels={"horizons": {"1h": HORIZONS}, "triple_barrier": {"enabled": False}},
        registry={"gate": {"cpcv_max_train_rows": 2500}, **registry},
    )


def fit_week(cfg, bars: pd.DataFrame):
    """Model frame -> split -> candidates, as the train flow does (no Prefect, no MLflow)."""
    con = duckdb.connect()
    try:
        con.register("candles_in", bars)
        frame = build_model_frame(
            con, timeframe="1h", horizons=cfg.horizons, cfg=cfg.features, relation="candles_in"
        )
    finally:
        con.close()
    parts = chronological_split(
        frame, horizons=cfg.horizons, cfg=cfg.split, complete_columns=list(FEATURE_COLUMNS)
    )
    return parts, train_candidates(parts, cfg)


@pytest.mark.parametrize("seed", range(20))
def test_pure_noise_never_becomes_champion(seed):
    cfg = fast_cfg()
    parts, results = fit_week(cfg, candles(seed))
    week = decide_week(parts, results, champion=None, selection=None, cfg=cfg)
    assert week.kind == "first"
    assert not week.gate.promote, week.gate.reason
    assert week.gate.edge_horizons == ()
    assert "no horizon shows skill" in week.gate.reason


def test_signal_only_volume_sees_is_promoted_on_its_horizon():
    cfg = fast_cfg()
    parts, results = fit_week(cfg, candles(7, signal=0.4))
    week = decide_week(parts, results, champion=None, selection=None, cfg=cfg)
    assert week.gate.promote, week.gate.reason
    assert 1 in week.gate.edge_horizons
    h1 = next(s for s in week.skills if s.horizon == 1)
    # the naive baselines cannot see volume: the edge over the best of them is large
    assert h1.test.ci_low > 0.02 and h1.cpcv.ci_low > 0.02
    assert h1.confidence == pytest.approx(
        horizon_confidence(cfg.registry.gate, len(HORIZONS), test_window=True)
    )


@pytest.fixture(scope="module")
def planted_weeks():
    """A champion from week 0 and the same candles one week later (no real change)."""
    cfg = fast_cfg()
    bars = candles(11, signal=0.4, n_bars=N_BARS + WEEK)
    cut = bars["ts"].max() - pd.Timedelta(hours=WEEK)
    parts0, results0 = fit_week(cfg, bars[bars["ts"] <= cut])
    first = decide_week(parts0, results0, champion=None, selection=None, cfg=cfg)
    assert first.gate.promote, first.gate.reason
    champion = copy.copy(first.register.pipeline)
    champion.edge_horizons = list(first.gate.edge_horizons)
    parts1, results1 = fit_week(cfg, bars)
    return cfg, (parts0, results0), champion, (parts1, results1)


def test_same_recipe_with_a_new_week_is_a_refresh(planted_weeks):
    cfg, _, champion, (parts1, results1) = planted_weeks
    week = decide_week(parts1, results1, champion=champion, selection=None, cfg=cfg)
    assert week.kind == "refresh" and week.gate.promote, week.gate.reason
    assert week.register is select_best(results1)
    low = week.gate.metrics["refresh_ci_low"]
    assert low > -cfg.registry.gate.refresh_margin
    # only test rows after the champion's last fitted label were compared
    window, note = unseen_window(parts1.test, champion)
    assert len(window) and (window["ts"] > champion.fit_label_end_ts).all()
    assert week.gate.metrics["refresh_window"] == note


def test_same_recipe_on_identical_data_is_no_new_data(planted_weeks):
    cfg, (parts0, results0), champion, _ = planted_weeks
    week = decide_week(parts0, results0, champion=champion, selection=None, cfg=cfg)
    assert week.kind == "no_new_data" and not week.gate.promote
    assert week.register is None
    assert "no new data" in week.gate.reason


def test_a_clearly_worse_refresh_is_refused(planted_weeks):
    _, _, champion, (parts1, results1) = planted_weeks
    cfg = fast_cfg(require_beat_baselines=False)  # the refresh rule alone decides
    broken = copy.deepcopy(results1)
    for model in broken[0].pipeline.models.values():
        model.model_.coef_ = -model.model_.coef_  # planted: the refit points the wrong way
    week = decide_week(parts1, broken, champion=champion, selection=None, cfg=cfg)
    assert week.kind == "keep" and not week.gate.promote
    assert week.gate.rule == "refresh"
    assert week.gate.metrics["refresh_ci_low"] < -cfg.registry.gate.refresh_margin


def test_champion_recipe_missing_from_the_candidates_is_refit_beside_them(planted_weeks):
    cfg, _, champion, (parts1, results1) = planted_weeks
    tuned = copy.copy(champion)
    tuned.recipe_key = "logistic tuned last month"  # no configured candidate has this recipe
    week = decide_week(parts1, results1, champion=tuned, selection=None, cfg=cfg)
    assert week.steps and week.steps[0].startswith("no replace")  # another recipe was tried
    assert week.kind in {"refresh", "keep"}, week.gate.reason
    refreshed = week.register.pipeline
    assert week.register not in results1 and refreshed.recipe_key == tuned.recipe_key
    assert refreshed.fit_label_end_ts > champion.fit_label_end_ts  # fitted on the newer data


def test_latest_policy_promotes_every_challenger(planted_weeks):
    _, _, champion, (parts1, results1) = planted_weeks
    cfg = fast_cfg(policy="latest")
    week = decide_week(parts1, results1, champion=champion, selection=None, cfg=cfg)
    assert week.kind == "latest" and week.gate.promote and week.gate.edge_horizons is None


@pytest.mark.parametrize("final_fit", ["train_val", "all"])
def test_final_fit_refits_the_recipe_on_more_rows(planted_weeks, final_fit):
    cfg, _, _, (parts1, results1) = planted_weeks
    evaluated = select_best(results1).pipeline
    served = refit_for_serving(evaluated, parts1, final_fit, cfg.models)
    assert served is not evaluated and served.final_fit == final_fit
    assert served.recipe_key == evaluated.recipe_key
    assert served.fit_label_end_ts > evaluated.fit_label_end_ts
    last = parts1.test if final_fit == "all" else parts1.val
    assert served.fit_label_end_ts >= last["ts"].max()
    # a different fit, not a copy: the coefficients moved
    h = evaluated.horizons[0]
    assert not np.allclose(served.models[h].model_.coef_, evaluated.models[h].model_.coef_)
    assert refit_for_serving(evaluated, parts1, "train", cfg.models) is evaluated


def test_the_after_fee_rule_refuses_a_champion_that_loses_money_after_fees():
    """The planted signal pays at 4 bps; at 300 bps a trade every bar loses it all: with
    registry.gate.require_after_fee_edge the same skilled challenger is refused, the reason
    naming the after-fee and buy-and-hold returns. Off, it is recorded, not applied."""
    bars = candles(7, signal=0.4)
    outcomes = {}
    for fee, rule in ((4.0, True), (300.0, True), (300.0, False)):
        cfg = fast_cfg(gate={"cpcv_max_train_rows": 2500, "require_after_fee_edge": rule})
        cfg = cfg.model_copy(
            update={"evaluation": cfg.evaluation.model_copy(update={"fee_bps": fee})}
        )
        parts, results = fit_week(cfg, bars)
        outcomes[(fee, rule)] = decide_week(
            parts, results, champion=None, selection=None, cfg=cfg
        ).gate
    cheap, costly, off = outcomes[(4.0, True)], outcomes[(300.0, True)], outcomes[(300.0, False)]
    assert cheap.promote and cheap.metrics["after_fee_return_h1"] > 0, cheap.reason
    assert cheap.metrics["after_fee_fee_bps"] == 4.0
    assert not costly.promote and costly.rule == "after_fee_edge"
    assert costly.metrics["after_fee_return_mean"] <= 0
    assert costly.reason.startswith("after fees (300 bps) the served horizons lose money")
    assert "h=1 " in costly.reason and "buy-and-hold" in costly.reason
    assert off.promote and off.metrics["after_fee_return_mean"] <= 0  # recorded only
