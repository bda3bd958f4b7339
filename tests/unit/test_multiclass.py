"""The triple-barrier target as SELL / HOLD / BUY: metrics, baselines and the fitted model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml_core.config import TripleBarrierConfig
from ml_core.errors import DataContractError
from ml_core.evaluation.multiclass import (
    majority_prediction,
    momentum_prediction,
    multiclass_metrics,
)
from ml_core.models.multiclass import fit_triple_barrier
from ml_core.validation.split import SplitParts


def test_metrics_on_a_hand_checked_case():
    y = np.array([-1, 0, 0, 1, 1, 0])
    pred = np.array([-1, 0, 1, 1, 0, 0])
    m = multiclass_metrics(y, None, pred)
    assert m["accuracy"] == pytest.approx(4 / 6)
    # recalls: SELL 1/1, HOLD 2/3, BUY 1/2 -> mean 13/18
    assert m["balanced_accuracy"] == pytest.approx((1 + 2 / 3 + 1 / 2) / 3)
    assert m["share_hold"] == pytest.approx(0.5)
    assert m["pred_buy"] == pytest.approx(2 / 6)


def test_always_hold_has_high_accuracy_but_chance_balanced_accuracy():
    y = np.array([0] * 80 + [1] * 10 + [-1] * 10)
    pred = majority_prediction(y, len(y))
    assert set(pred) == {0}
    m = multiclass_metrics(y, None, pred)
    assert m["accuracy"] == pytest.approx(0.8)
    assert m["balanced_accuracy"] == pytest.approx(1 / 3)


def test_momentum_baseline_follows_the_sign_of_the_past_return():
    assert momentum_prediction(np.array([0.02, -0.01, 0.0, np.nan])).tolist() == [1, -1, 0, 0]


def _parts(n_per_symbol: int, signal: bool, seed: int) -> SplitParts:
    """Two symbols; the label is the bucket of feature f0 (signal) or independent (noise)."""
    rng = np.random.default_rng(seed)
    frames = []
    for sym in ("AAA", "BBB"):
        f = rng.normal(size=(n_per_symbol, 3))
        if signal:
            label = np.where(f[:, 0] > 0.6, 1, np.where(f[:, 0] < -0.6, -1, 0))
        else:
            label = rng.choice([-1, 0, 1], size=n_per_symbol, p=[0.25, 0.5, 0.25])
        frames.append(
            pd.DataFrame(
                {
                    "symbol": sym,
                    "ts": pd.date_range("2024-01-01", periods=n_per_symbol, freq="min"),
                    "f0": f[:, 0],
                    "f1": f[:, 1],
                    "f2": f[:, 2],
                    "tb_5": label.astype(float),
                    "past_ret_5": rng.normal(size=n_per_symbol),
                }
            )
        )
    frame = pd.concat(frames, ignore_index=True)
    cut = frame["ts"] < frame["ts"].iloc[int(n_per_symbol * 0.7)]
    return SplitParts(train=frame[cut], val=frame.iloc[0:0], test=frame[~cut], gap_bars=0)


@pytest.mark.parametrize("model", ["logistic", "lightgbm"])
def test_planted_signal_is_found_and_noise_stays_at_chance(model):
    cfg = TripleBarrierConfig(model=model)
    kw = {"horizons": [5], "feature_columns": ["f0", "f1", "f2"], "cfg": cfg}
    good = fit_triple_barrier(_parts(3000, True, 1), **kw).metrics.set_index("model")
    noise = fit_triple_barrier(_parts(3000, False, 2), **kw).metrics.set_index("model")
    assert good.loc[model, "balanced_accuracy"] > 0.8
    assert good.loc[model, "balanced_accuracy"] > good.loc["majority_class", "balanced_accuracy"]
    assert abs(noise.loc[model, "balanced_accuracy"] - 1 / 3) < 0.06


def test_predict_proba_rows_sum_to_one_in_sell_hold_buy_order():
    parts = _parts(1000, True, 3)
    result = fit_triple_barrier(
        parts, horizons=[5], feature_columns=["f0", "f1", "f2"], cfg=TripleBarrierConfig()
    )
    proba = result.predict_proba(parts.test)[5]
    assert list(proba.columns) == ["SELL", "HOLD", "BUY"]
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    high = parts.test["f0"].to_numpy() > 1.5
    assert (proba["BUY"].to_numpy()[high] > 0.5).mean() > 0.9


def test_missing_labels_name_the_config_switch():
    parts = _parts(200, True, 4)
    parts = SplitParts(
        train=parts.train.drop(columns="tb_5"), val=parts.val, test=parts.test, gap_bars=0
    )
    with pytest.raises(DataContractError, match="labels.triple_barrier.enabled"):
        fit_triple_barrier(parts, horizons=[5], feature_columns=["f0"], cfg=TripleBarrierConfig())
