"""Promotion gates v1 and v2 on hand-made metric tables and CPCV scores."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from ml_core.config import GateConfig, RegistryConfig
from ml_core.errors import CoincastError, ConfigError
from ml_core.evaluation.gate import SelectionStats, decide_promotion
from ml_core.validation.cpcv_eval import CPCVEvaluation


def _v1(**kw) -> RegistryConfig:
    return RegistryConfig(gate=GateConfig(gate_version=1), **kw)


def _per_h(aucs: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"horizon": [15, 60, 240][: len(aucs)], "auc": aucs})


def _baselines(persistence: float = 0.50, momentum: float = 0.51) -> pd.DataFrame:
    rows = []
    for name, auc in [
        ("always_up", 0.5),
        ("persistence", persistence),
        ("momentum_sign", momentum),
    ]:
        rows += [{"baseline": name, "horizon": h, "auc": auc} for h in (15, 60, 240)]
    return pd.DataFrame(rows)


def test_first_champion_must_beat_the_best_baseline():
    cfg = _v1()
    ok = decide_promotion(
        challenger=_per_h([0.53, 0.52, 0.52]), baselines=_baselines(), champion=None, cfg=cfg
    )
    assert ok.promote and "first champion" in ok.reason
    assert ok.metrics["best_baseline"] == "momentum_sign"
    no = decide_promotion(
        challenger=_per_h([0.51, 0.50, 0.51]), baselines=_baselines(), champion=None, cfg=cfg
    )
    assert not no.promote and "momentum_sign" in no.reason


def test_margin_over_baselines_is_applied():
    cfg = _v1(min_baseline_margin=0.02)
    res = decide_promotion(
        challenger=_per_h([0.52] * 3), baselines=_baselines(), champion=None, cfg=cfg
    )
    assert not res.promote and "0.0200" in res.reason


def test_challenger_must_beat_rescored_champion_by_margin():
    cfg = _v1(min_improvement=0.005)
    base = _baselines()
    win = decide_promotion(
        challenger=_per_h([0.54] * 3), baselines=base, champion=_per_h([0.53] * 3), cfg=cfg
    )
    assert win.promote and win.metrics["champion_auc"] == 0.53
    assert abs(win.metrics["improvement"] - 0.01) < 1e-12
    tie = decide_promotion(
        challenger=_per_h([0.532] * 3), baselines=base, champion=_per_h([0.53] * 3), cfg=cfg
    )
    assert not tie.promote and "below the margin" in tie.reason


def test_challenger_that_loses_to_baselines_never_replaces_a_champion():
    cfg = _v1()
    res = decide_promotion(
        challenger=_per_h([0.505] * 3), baselines=_baselines(), champion=_per_h([0.45] * 3), cfg=cfg
    )
    assert not res.promote and "baseline" in res.reason


def test_undefined_auc_is_never_promoted_and_rule_can_be_skipped():
    nan = decide_promotion(
        challenger=_per_h([float("nan")] * 3),
        baselines=_baselines(),
        champion=None,
        cfg=_v1(),
    )
    assert not nan.promote and "undefined" in nan.reason
    lax = _v1(require_beat_baselines=False)
    res = decide_promotion(
        challenger=_per_h([0.49] * 3), baselines=_baselines(), champion=None, cfg=lax
    )
    assert res.promote and "skipped" in res.reason and res.metrics["baseline_rule"] == "skipped"


# ---- gate v2: CPCV paired bootstrap and PBO -----------------------------------------------


def _cpcv(challenger: np.ndarray, champion: np.ndarray | None = None) -> CPCVEvaluation:
    """A CPCV evaluation whose per-block AUCs are given (one split, one horizon)."""
    configs = (
        {"challenger": challenger}
        if champion is None
        else {
            "challenger": challenger,
            "champion": champion,
        }
    )
    blocks, paths = [], []
    for name, aucs in configs.items():
        blocks += [
            {"config": name, "split": 0, "block": b, "horizon": 15, "n": 100, "auc": a}
            for b, a in enumerate(aucs)
        ]
        paths += [
            {"config": name, "path": p, "horizon": 15, "n": 1000, "auc": float(np.mean(aucs))}
            for p in range(5)
        ]
    empty = pd.DataFrame(columns=["config", "split", "group", "horizon", "n", "auc"])
    return CPCVEvaluation(
        configs=tuple(configs),
        horizons=(15,),
        n_groups=6,
        n_test_groups=2,
        n_splits=15,
        n_paths=5,
        n_rows=1000,
        split_scores=empty,
        block_scores=pd.DataFrame(blocks),
        path_scores=pd.DataFrame(paths),
        row_test_counts=np.full(1000, 5),
        path_rows=np.full(5, 1000),
    )


def _selection(pbo: float | None) -> SelectionStats:
    return SelectionStats(
        n_trials=3,
        n_configs=2,
        pbo=pbo,
        n_periods=64,
        n_partitions=16,
        prob_oos_loss=None,
        dsr=0.7,
        dsr_by_horizon={15: 0.7},
    )


RNG = np.random.default_rng(7)
CHAMP_BLOCKS = 0.53 + RNG.normal(scale=0.01, size=24)


def test_v2_promotes_when_cpcv_bootstrap_bound_is_positive_and_records_everything():
    cfg = RegistryConfig(min_improvement=0.002)
    res = decide_promotion(
        challenger=_per_h([0.54] * 3),
        baselines=_baselines(),
        champion=_per_h([0.535] * 3),
        cfg=cfg,
        cpcv=_cpcv(CHAMP_BLOCKS + 0.01 + RNG.normal(scale=0.003, size=24), CHAMP_BLOCKS),
        selection=_selection(0.2),
    )
    assert res.promote and res.rule == "cpcv", res.reason
    assert "CPCV paired bootstrap over 24 time blocks" in res.reason and "PBO 0.200" in res.reason
    m = res.metrics
    assert m["gate_version"] == 2 and m["rules"] == {
        "baseline": "passed",
        "pbo": "passed",
        "cpcv": "passed",
    }
    assert m["cpcv_ci_low"] > 0 and abs(m["cpcv_mean_diff"] - 0.01) < 0.003
    assert len(m["cpcv_challenger_path_auc"]) == len(m["cpcv_champion_path_auc"]) == 5
    assert m["pbo"] == 0.2 and m["pbo_n_trials"] == 3 and m["dsr"] == 0.7
    assert abs(m["improvement"] - 0.005) < 1e-12  # same-window v1 number, reported


def test_v2_rejects_a_noise_gain_even_if_the_same_window_number_looks_better():
    noise = CHAMP_BLOCKS + RNG.normal(scale=0.01, size=24)
    res = decide_promotion(
        challenger=_per_h([0.56] * 3),  # +0.03 on one window: v1 would promote
        baselines=_baselines(),
        champion=_per_h([0.53] * 3),
        cfg=RegistryConfig(),
        cpcv=replace(
            _cpcv(noise, CHAMP_BLOCKS), fingerprints={"challenger": "lgbm", "champion": "lgbm"}
        ),
        selection=_selection(0.1),
    )
    assert not res.promote and res.rule == "cpcv"
    assert res.metrics["cpcv_same_configuration"] and "same configuration" in res.reason
    assert "does not beat the champion" in res.reason and "lower 90% bound" in res.reason
    assert res.metrics["rules"]["cpcv"] == "failed"


def test_v2_margin_rule_rejects_a_tiny_but_certain_gain():
    res = decide_promotion(
        challenger=_per_h([0.54] * 3),
        baselines=_baselines(),
        champion=_per_h([0.53] * 3),
        cfg=RegistryConfig(min_improvement=0.005),
        cpcv=_cpcv(CHAMP_BLOCKS + 0.001, CHAMP_BLOCKS),
        selection=_selection(0.1),
    )
    assert not res.promote and "below the margin 0.0050" in res.reason
    assert res.metrics["cpcv_ci_low"] > 0


def test_v2_pbo_rule_rejects_an_overfit_selection():
    res = decide_promotion(
        challenger=_per_h([0.56] * 3),
        baselines=_baselines(),
        champion=None,
        cfg=RegistryConfig(),
        cpcv=_cpcv(CHAMP_BLOCKS + 0.03),
        selection=_selection(0.55),
    )
    assert not res.promote and res.rule == "pbo"
    assert "PBO 0.550" in res.reason and "threshold 0.500" in res.reason
    lax = RegistryConfig(gate=GateConfig(pbo_threshold=0.6))
    ok = decide_promotion(
        challenger=_per_h([0.56] * 3),
        baselines=_baselines(),
        champion=None,
        cfg=lax,
        cpcv=_cpcv(CHAMP_BLOCKS + 0.03),
        selection=_selection(0.55),
    )
    assert ok.promote and ok.rule == "first_champion"


def test_v2_first_champion_reports_cpcv_against_a_coin_flip():
    res = decide_promotion(
        challenger=_per_h([0.56] * 3),
        baselines=_baselines(),
        champion=None,
        cfg=RegistryConfig(),
        cpcv=_cpcv(CHAMP_BLOCKS),
        selection=_selection(None),
    )
    assert res.promote and "first champion" in res.reason and "PBO n/a" in res.reason
    assert res.metrics["rules"]["cpcv"] == "reported" and res.metrics["rules"]["pbo"] == (
        "not applicable"
    )
    assert abs(res.metrics["cpcv_vs_coin_mean_diff"] - (CHAMP_BLOCKS.mean() - 0.5)) < 1e-12
    assert res.metrics["cpcv_vs_coin_ci_low"] > 0 and "cpcv_mean_diff" not in res.metrics


def test_v2_baseline_rule_still_rejects_first_and_needs_cpcv():
    res = decide_promotion(
        challenger=_per_h([0.505] * 3),
        baselines=_baselines(),
        champion=None,
        cfg=RegistryConfig(),
        cpcv=_cpcv(CHAMP_BLOCKS + 0.05),
        selection=_selection(0.0),
    )
    assert not res.promote and res.rule == "baseline" and "momentum_sign" in res.reason
    with pytest.raises(ConfigError, match="but a champion exists"):
        decide_promotion(
            challenger=_per_h([0.56] * 3),
            baselines=_baselines(),
            champion=_per_h([0.5] * 3),
            cfg=RegistryConfig(),
            cpcv=_cpcv(CHAMP_BLOCKS),
        )
    with pytest.raises(ConfigError, match="gate_version=2 needs the CPCV comparison"):
        decide_promotion(
            challenger=_per_h([0.56] * 3),
            baselines=_baselines(),
            champion=None,
            cfg=RegistryConfig(),
        )


def test_gate_config_rejects_inconsistent_settings():
    with pytest.raises(ConfigError, match="cpcv_test_groups=6 must be below"):
        GateConfig(cpcv_groups=6, cpcv_test_groups=6)
    with pytest.raises(ConfigError, match="pbo_partitions=5 must be even"):
        GateConfig(pbo_partitions=5)


# ---- selection overfitting: PBO over this retrain's candidates, DSR of the chosen one -------


def _selection_parts(seed: int = 0):
    """Val + test of a planted panel: ``signal`` predicts ``up_h`` (and ``ret_h``)."""
    from ml_core.validation.split import SplitParts

    rng = np.random.default_rng(seed)
    n = 4000
    ts = pd.date_range("2025-01-01", periods=n, freq="1min").to_numpy("datetime64[us]")
    frames = []
    for symbol in ("AAA", "BBB"):
        signal, noise = rng.normal(size=n), rng.normal(size=n)
        ret = 0.002 * signal + rng.normal(scale=0.002, size=n)
        frame = pd.DataFrame({"symbol": symbol, "ts": ts, "signal": signal, "noise": noise})
        frame["ret_15"], frame["up_15"] = ret, (ret > 0).astype(float)
        frame["logret_1"] = rng.normal(size=n)  # the naive baselines' signals: noise here
        frame["past_ret_15"] = rng.normal(size=n)
        frames.append(frame)
    frame = pd.concat(frames).sort_values(["symbol", "ts"], ignore_index=True)
    cut = {"train": ts[n // 2], "val": ts[3 * n // 4]}
    return SplitParts(
        train=frame[frame["ts"] < cut["train"]].reset_index(drop=True),
        val=frame[(frame["ts"] >= cut["train"]) & (frame["ts"] < cut["val"])].reset_index(
            drop=True
        ),
        test=frame[frame["ts"] >= cut["val"]].reset_index(drop=True),
        gap_bars=0,
    )


def _candidate(name: str, columns: list[str], parts, fit_on=None):
    from ml_core.config import FeatureConfig
    from ml_core.models.linear import LogisticDirectionModel
    from ml_core.models.pipeline import CandlePipeline
    from ml_core.models.training import CandidateResult
    from ml_core.validation.scaling import SymbolRobustScaler

    train = (fit_on or parts).train
    scaler = SymbolRobustScaler(columns).fit(train)
    model = LogisticDirectionModel(c=1.0).fit(scaler.transform(train), train["up_15"].to_numpy())
    pipe = CandlePipeline(
        candidate=name,
        timeframe="1m",
        horizons=[15],
        feature_cfg=FeatureConfig(),
        feature_columns=columns,
        feature_set="test.1",
        lookback_bars=0,
        scaler=scaler,
        models={15: model},
    )
    empty = pd.DataFrame({"horizon": [15], "auc": [np.nan]})
    return CandidateResult(
        name, pipe, empty, empty, pipe.predict_features(parts.test), fit_seconds=0.0
    )


def test_selection_overfitting_pbo_low_for_a_dominant_config_and_counts_trials():
    from ml_core.config import EvaluationConfig
    from ml_core.evaluation.gate import selection_overfitting

    parts = _selection_parts()
    results = [
        _candidate("strong", ["signal", "noise"], parts),
        _candidate("weak", ["noise"], parts),
    ]
    kw = {"horizons": [15], "gate": GateConfig(), "eval_cfg": EvaluationConfig(fee_bps=0.0)}
    stats = selection_overfitting(
        parts, results, chosen="strong", timeframe="1m", n_trials_extra=8, **kw
    )
    assert stats.n_trials == 10 and stats.n_configs == 2 + 3  # candidates + naive baselines
    assert stats.n_periods == 64 and stats.n_partitions == 16
    assert stats.pbo is not None and stats.pbo < 0.05  # the IS winner also wins OOS
    assert stats.dsr is not None and stats.dsr > 0.9  # a real edge survives deflation
    fewer = selection_overfitting(parts, results, chosen="strong", timeframe="1m", **kw)
    assert fewer.dsr >= stats.dsr  # more trials deflate more
    single = selection_overfitting(
        parts, results[:1], chosen="strong", timeframe="1m", include_baselines=False, **kw
    )
    assert single.pbo is None and "one configuration" in single.note
    pair = selection_overfitting(
        parts, results, chosen="strong", timeframe="1m", include_baselines=False, **kw
    )
    assert pair.n_configs == 2 and pair.pbo is not None and pair.pbo < 0.05
    with pytest.raises(CoincastError, match="'other' is not among"):
        selection_overfitting(parts, results, chosen="other", timeframe="1m", **kw)


def test_selection_overfitting_pbo_near_half_between_noise_configs():
    from ml_core.config import EvaluationConfig
    from ml_core.evaluation.gate import selection_overfitting

    parts = _selection_parts(seed=3)
    results = [  # two models of pure noise, fit on different histories
        _candidate("n1", ["noise"], parts),
        _candidate("n2", ["noise"], parts, fit_on=_selection_parts(seed=4)),
    ]
    stats = selection_overfitting(
        parts,
        results,
        chosen="n1",
        horizons=[15],
        gate=GateConfig(),
        eval_cfg=EvaluationConfig(),
        timeframe="1m",
    )
    assert stats.pbo is not None and 0.2 < stats.pbo < 0.8


def test_decision_record_feeds_the_report_box_plot():
    from ml_core.reporting import plots

    res = decide_promotion(
        challenger=_per_h([0.54] * 3),
        baselines=_baselines(),
        champion=_per_h([0.535] * 3),
        cfg=RegistryConfig(),
        cpcv=_cpcv(CHAMP_BLOCKS + 0.01, CHAMP_BLOCKS),
        selection=_selection(0.2),
    )
    paths = plots.cpcv_path_aucs({"promote": res.promote, "metrics": res.metrics})
    assert set(paths) == {"challenger", "champion"} and len(paths["champion"]) == 5
    png = plots.plot_cpcv_paths(paths)
    assert png is not None and png.startswith(b"\x89PNG")
    v1 = decide_promotion(
        challenger=_per_h([0.54] * 3), baselines=_baselines(), champion=None, cfg=_v1()
    )
    assert plots.cpcv_path_aucs({"metrics": v1.metrics}) == {}
    assert plots.plot_cpcv_paths({}) is None
