"""Trading view: fees on position changes, non-overlapping blocks, buy-and-hold."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ml_core.config import EvaluationConfig
from ml_core.errors import ConfigError, DataContractError
from ml_core.evaluation.trading import buy_and_hold_curve, equity_curve, trading_metrics

T0 = pd.Timestamp("2024-01-01 00:00")


def _frame(simple_returns: list[float], horizon: int = 1, symbol: str = "A", start: int = 0):
    """One symbol, hourly bars from T0 + start hours, forward log returns from simple ones."""
    n = len(simple_returns)
    return pd.DataFrame(
        {
            "symbol": symbol,
            "ts": pd.date_range(T0 + pd.Timedelta(hours=start), periods=n, freq="h"),
            f"ret_{horizon}": np.log1p(np.asarray(simple_returns, dtype=float)),
        }
    )


def _metrics(frame, p, horizon=1, **cfg):
    return trading_metrics(frame, p, horizon=horizon, cfg=EvaluationConfig(**cfg), timeframe="1h")


def test_long_flat_fees_charged_exactly_on_position_changes() -> None:
    frame = _frame([0.10, -0.05, 0.02, 0.03])
    # positions 1, 1, 0, 1; |changes| 1, 0, 1, 1 (+1 closing at the end)
    m = _metrics(frame, [0.9, 0.9, 0.1, 0.9], fee_bps=10)
    nets = [0.10 - 0.001, -0.05, 0.0 - 0.001, 0.03 - 0.002]
    assert m["total_return"] == pytest.approx(np.prod(1 + np.array(nets)) - 1)
    assert m["turnover"] == 4.0
    assert m["n_trades"] == 2
    assert m["exposure"] == 0.75
    assert m["win_rate"] == pytest.approx(2 / 3)
    assert m["n_periods"] == 4


def test_long_short_flip_costs_two_units() -> None:
    frame = _frame([0.10, -0.05, 0.02, 0.03])
    # positions 1, 1, -1, 1; |changes| 1, 0, 2, 2 (+1 closing)
    m = _metrics(frame, [0.9, 0.9, 0.1, 0.9], fee_bps=10, mode="long_short")
    nets = [0.10 - 0.001, -0.05, -0.02 - 0.002, 0.03 - 0.003]
    assert m["total_return"] == pytest.approx(np.prod(1 + np.array(nets)) - 1)
    assert m["turnover"] == 6.0
    assert m["n_trades"] == 3
    assert m["exposure"] == 1.0


def test_non_overlapping_blocks_for_h3() -> None:
    # only rows 0, 3, 6 are traded; the others would change the result if used
    frame = _frame([0.10, 5.0, 5.0, -0.10, 5.0, 5.0, 0.20, 5.0, np.nan], horizon=3)
    p = [0.9, 0.1, 0.1, 0.9, 0.1, 0.1, 0.9, 0.1, 0.1]
    m = _metrics(frame, p, horizon=3, fee_bps=0)
    assert m["n_periods"] == 3
    assert m["total_return"] == pytest.approx(1.1 * 0.9 * 1.2 - 1)
    assert m["n_trades"] == 1
    curve = equity_curve(frame, p, horizon=3, cfg=EvaluationConfig(fee_bps=0), timeframe="1h")
    assert list(curve.index) == [T0 + pd.Timedelta(hours=k) for k in (0, 3, 6, 9)]
    assert curve.to_numpy() == pytest.approx([1.0, 1.1, 0.99, 1.188])


def test_annualized_sharpe_uses_periods_of_h_bars() -> None:
    frame = _frame([0.10, 5.0, -0.10, 5.0, 0.20, 5.0], horizon=2)
    m = _metrics(frame, np.ones(6), horizon=2, fee_bps=0)
    r = np.array([0.10, -0.10, 0.20])
    assert m["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(8760 / 2))


def test_symbols_share_the_time_grid_and_are_equal_weighted() -> None:
    a = _frame([0.10, 9.0, 0.20, 9.0], horizon=2)  # trades at hours 0 and 2
    b = _frame([9.0, -0.10, 9.0], horizon=2, symbol="B", start=1)  # trades at hour 2 only
    frame = pd.concat([a, b], ignore_index=True)
    m = _metrics(frame, np.ones(len(frame)), horizon=2, fee_bps=0)
    assert m["n_periods"] == 2
    assert m["total_return"] == pytest.approx(1.10 * (1 + (0.20 - 0.10) / 2) - 1)


def test_long_flat_all_below_threshold_earns_nothing() -> None:
    frame = _frame([0.10, -0.20, 0.05])
    m = _metrics(frame, [0.2, 0.4, 0.49], fee_bps=10)
    assert m["total_return"] == 0.0
    assert m["max_drawdown"] == 0.0
    assert (m["n_trades"], m["exposure"], m["turnover"]) == (0, 0.0, 0.0)
    assert math.isnan(m["win_rate"]) and math.isnan(m["sharpe"])
    assert m["excess_return"] == pytest.approx(-m["bh_total_return"])


def test_buy_and_hold_compounds_and_pays_entry_and_exit() -> None:
    frame = _frame([0.10, -0.10, 0.20])
    free = _metrics(frame, [0.1, 0.1, 0.1], fee_bps=0)
    assert free["bh_total_return"] == pytest.approx(1.1 * 0.9 * 1.2 - 1)
    assert free["bh_max_drawdown"] == pytest.approx(0.99 / 1.1 - 1)
    paid = _metrics(frame, [0.1, 0.1, 0.1], fee_bps=10)
    assert paid["bh_total_return"] == pytest.approx((1.1 - 0.001) * 0.9 * (1.2 - 0.001) - 1)
    curve = buy_and_hold_curve(frame, horizon=1, cfg=EvaluationConfig(fee_bps=0), timeframe="1h")
    assert curve.iloc[-1] == pytest.approx(1.188)
    assert curve.name == "buy_and_hold"


def test_input_order_does_not_matter_and_frame_is_not_mutated() -> None:
    frame = _frame([0.10, -0.05, 0.02, 0.03])
    p = np.array([0.9, 0.1, 0.9, 0.9])
    shuffled = frame.iloc[[2, 0, 3, 1]]
    before = shuffled.copy()
    expected = _metrics(frame, p, fee_bps=10)
    got = _metrics(shuffled, p[[2, 0, 3, 1]], fee_bps=10)
    assert got == pytest.approx(expected, nan_ok=True)
    pd.testing.assert_frame_equal(shuffled, before)


def test_no_tradable_rows_gives_nan_and_empty_curve() -> None:
    frame = _frame([np.nan, np.nan])
    m = _metrics(frame, [0.9, 0.9])
    assert m["n_periods"] == 0 and math.isnan(m["total_return"])
    curve = equity_curve(frame, [0.9, 0.9], horizon=1, cfg=EvaluationConfig(), timeframe="1h")
    assert curve.empty


@pytest.mark.parametrize(
    ("frame", "p", "horizon", "error", "match"),
    [
        (_frame([0.1, 0.2]), [0.5], 1, DataContractError, "2 rows but p_up has 1"),
        (_frame([0.1, 0.2]), [0.5, 0.5], 3, DataContractError, r"lacks columns \['ret_3'\]"),
        (_frame([0.1, 0.2]), [0.5, np.nan], 1, DataContractError, "NaN on 1 tradable rows"),
        (_frame([0.1, 0.2]), [0.5, 0.5], 0, ConfigError, "horizon must be a positive"),
        (
            pd.concat([_frame([0.1]), _frame([0.2])]),
            [0.5, 0.5],
            1,
            DataContractError,
            "duplicate",
        ),
    ],
)
def test_contract_errors(frame, p, horizon, error, match) -> None:
    with pytest.raises(error, match=match):
        _metrics(frame, p, horizon=horizon)


def test_fee_sensitivity_charges_each_level_by_hand() -> None:
    from ml_core.evaluation.trading import fee_sensitivity

    frame = _frame([0.10, -0.05, 0.02, 0.03])
    p = [0.9, 0.9, 0.1, 0.9]  # turnover 4 (see the test above)
    table = fee_sensitivity(
        frame, p, horizon=1, cfg=EvaluationConfig(), timeframe="1h", fees_bps=(0.0, 10.0)
    )
    assert list(table["fee_bps"]) == [0.0, 10.0]
    free = np.prod([1.10, 0.95, 1.0, 1.03]) - 1
    charged = np.prod([1.10 - 0.001, 0.95, 1.0 - 0.001, 1.03 - 0.002]) - 1
    assert table["total_return"].tolist() == pytest.approx([free, charged])
    bh_free, bh_charged = table["bh_total_return"]
    assert bh_free == pytest.approx(np.prod([1.10, 0.95, 1.02, 1.03]) - 1)
    assert bh_charged < bh_free and (table["turnover"] == 4.0).all()


def test_probability_deciles_rise_with_a_planted_edge_and_count_every_row() -> None:
    from ml_core.evaluation.trading import probability_deciles

    rng = np.random.default_rng(0)
    n = 5000
    p = rng.random(n)
    up = (rng.random(n) < p).astype(float)  # P(up) is the true probability
    ret = np.where(up == 1, 0.01, -0.01)
    frame = pd.DataFrame({"up_4": up, "ret_4": np.log1p(ret)})
    frame.loc[:9, "up_4"] = np.nan  # unlabelled rows are left out
    table = probability_deciles(frame, p, horizon=4)
    assert list(table["decile"]) == list(range(1, 11)) and table["n"].sum() == n - 10
    assert (table["n"].max() - table["n"].min()) <= 1  # equal-count groups
    assert table["hit_rate"].is_monotonic_increasing or table["hit_rate"].diff().min() > -0.05
    assert table["hit_rate"].iloc[0] < 0.15 and table["hit_rate"].iloc[-1] > 0.85
    assert table["mean_return"].iloc[-1] > 0 > table["mean_return"].iloc[0]
    np.testing.assert_allclose(table["mean_p"], table["hit_rate"], atol=0.05)  # calibrated
