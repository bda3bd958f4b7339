"""Chronological split (calendar and per-symbol) and per-symbol scaling.

No test row ever reaches training: in calendar mode the parts are disjoint in
time across all symbols, in per-symbol mode within each symbol.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml_core.config import SplitConfig
from ml_core.errors import ConfigError, DataContractError, NotFittedError
from ml_core.validation.scaling import SymbolRobustScaler
from ml_core.validation.split import SplitParts, calendar_cuts, chronological_split

H = [2, 5]
T0 = pd.Timestamp("2025-01-01")
MIN = pd.Timedelta("1min")
PER_SYMBOL = SplitConfig(mode="per_symbol", min_train_rows=50)
CALENDAR = SplitConfig(mode="calendar", min_train_rows=50)


def _frame(
    n_per_symbol: dict[str, int], seed: int = 0, start_min: dict[str, int] | None = None
) -> pd.DataFrame:
    """1m bars per symbol (symbol s starts ``start_min[s]`` minutes after T0), labels t1_h."""
    rng = np.random.default_rng(seed)
    parts = []
    for symbol, n in n_per_symbol.items():
        start = T0 + (start_min or {}).get(symbol, 0) * MIN
        ts = pd.date_range(start, periods=n, freq="1min")
        f = pd.DataFrame(
            {"symbol": symbol, "ts": ts, "x": rng.normal(size=n), "y": rng.normal(size=n)}
        )
        for h in H:
            t1 = pd.Series(ts).shift(-h)
            f[f"t1_{h}"] = t1
            f[f"up_{h}"] = np.where(t1.isna(), np.nan, rng.integers(0, 2, n))
        parts.append(f)
    return pd.concat(parts, ignore_index=True)


def test_parts_are_ordered_disjoint_and_gapped_per_symbol():
    frame = _frame({"A": 1000, "B": 600})
    parts = chronological_split(frame, horizons=H, cfg=PER_SYMBOL)
    assert parts.gap_bars == max(H)
    for symbol in ["A", "B"]:
        tr, va, te = (p[p.symbol == symbol] for p in (parts.train, parts.val, parts.test))
        assert tr.ts.max() < va.ts.min() < va.ts.max() < te.ts.min()
        # at least gap_bars bars dropped between parts
        assert (va.ts.min() - tr.ts.max()) / pd.Timedelta("1min") > parts.gap_bars
        assert (te.ts.min() - va.ts.max()) / pd.Timedelta("1min") > parts.gap_bars
        # no training label ends inside validation, no validation label inside test
        assert tr[[f"t1_{h}" for h in H]].max().max() < va.ts.min()
        assert va[[f"t1_{h}" for h in H]].max().max() < te.ts.min()
    # proportions roughly 60/20/20 of each symbol
    n_a = (parts.train.symbol == "A").sum()
    assert 0.55 < n_a / 1000 < 0.62


@pytest.mark.parametrize("cfg", [PER_SYMBOL, CALENDAR], ids=["per_symbol", "calendar"])
def test_label_purge_catches_rows_the_row_gap_misses(cfg):
    frame = _frame({"A": 500})
    # make one training label reach far into the future (as across a dropped stretch)
    i = 250
    frame.loc[i, "t1_5"] = frame.ts.iloc[-1]
    parts = chronological_split(frame, horizons=H, cfg=cfg)
    assert frame.ts.iloc[i] not in set(parts.train.ts)
    assert parts.train["t1_5"].max() < parts.val.ts.min()


def test_short_symbols_are_left_out_and_all_short_is_an_error():
    frame = _frame({"A": 1000, "TINY": 40})
    parts = chronological_split(frame, horizons=H, cfg=PER_SYMBOL)
    assert "TINY" not in set(parts.train.symbol)
    assert "TINY" in parts.notes and "left out" in parts.notes["TINY"]
    with pytest.raises(DataContractError, match="No symbol has enough rows"):
        chronological_split(_frame({"TINY": 40}), horizons=H, cfg=PER_SYMBOL)


def test_bad_fractions_are_a_config_error():
    with pytest.raises(ConfigError, match="sum to 1"):
        SplitConfig(train_frac=0.7, val_frac=0.2, test_frac=0.2)


def test_per_symbol_mode_pins_todays_indices():
    """100 rows, gap 5: usable 90 -> train rows 0..53, val 59..76, test 82..99."""
    frame = _frame({"A": 100})
    parts = chronological_split(
        frame, horizons=H, cfg=PER_SYMBOL.model_copy(update={"min_train_rows": 10})
    )
    minutes = [
        ((p.ts - T0) / MIN).astype(int).tolist() for p in (parts.train, parts.val, parts.test)
    ]
    assert minutes == [list(range(0, 54)), list(range(59, 77)), list(range(82, 100))]
    assert parts.mode == "per_symbol" and parts.cut_ts == {} and parts.notes == {}


# ---------------------------------------------------------------- calendar mode
def _assert_calendar_invariants(parts: SplitParts, frame: pd.DataFrame, bar: pd.Timedelta) -> None:
    """Shared cuts: parts disjoint in time across symbols, gapped, no label reaching ahead."""
    cut = parts.cut_ts
    tr, va, te = parts.train, parts.val, parts.test
    assert cut["train_end"] == cut["val_start"] - parts.gap_bars * bar
    assert cut["val_end"] == cut["test_start"] - parts.gap_bars * bar
    assert tr.ts.max() < cut["train_end"] <= cut["val_start"] <= va.ts.min()
    assert va.ts.max() < cut["val_end"] <= cut["test_start"] <= te.ts.min()
    t1 = [f"t1_{h}" for h in H]
    # no training label ends at/after validation start, no train/val label after test start
    assert not (tr[t1].max(axis=1) >= cut["val_start"]).any()
    assert not (va[t1].max(axis=1) >= cut["test_start"]).any()
    assert not (tr[t1].max(axis=1) >= cut["test_start"]).any()
    # every row comes from the frame, none lands in two parts
    keys = [set(zip(p.symbol, p.ts, strict=True)) for p in (tr, va, te)]
    assert not (keys[0] & keys[1] or keys[1] & keys[2] or keys[0] & keys[2])
    assert set().union(*keys) <= set(zip(frame.symbol, frame.ts, strict=True))
    # a symbol missing from a part (or short in train) is reported, never silently dropped
    n_train = tr.groupby("symbol").size()
    assert (n_train >= 10).all()  # min_train_rows of the property test
    for symbol in frame.symbol.unique():
        if not all(symbol in set(p.symbol) for p in (tr, va, te)):
            assert symbol in parts.notes


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    spans=st.lists(st.tuples(st.integers(0, 400), st.integers(1, 500)), min_size=1, max_size=4),
    gap_bars=st.sampled_from([None, 0, 3, 12]),
)
def test_calendar_split_invariants_hold_for_any_listing_dates(spans, gap_bars):
    starts = {f"S{i}": s for i, (s, _) in enumerate(spans)}
    frame = _frame({f"S{i}": n for i, (_, n) in enumerate(spans)}, start_min=starts)
    cfg = SplitConfig(min_train_rows=10, gap_bars=gap_bars)
    try:
        parts = chronological_split(frame, horizons=H, cfg=cfg, timeframe="1m")
    except DataContractError as err:
        assert "No symbol has enough training rows" in str(err) or "leaves no" in str(err)
        return
    assert parts.mode == "calendar" and parts.gap_bars == (max(H) if gap_bars is None else gap_bars)
    _assert_calendar_invariants(parts, frame, MIN)


def test_calendar_parts_are_disjoint_in_time_across_symbols():
    # LATE lists 400 bars after A and B: per-symbol cuts would overlap across symbols
    frame = _frame({"A": 1000, "B": 1000, "LATE": 600}, start_min={"LATE": 400})
    per_symbol = chronological_split(frame, horizons=H, cfg=PER_SYMBOL)
    assert per_symbol.val[per_symbol.val.symbol == "LATE"].ts.max() > per_symbol.test.ts.min()
    parts = chronological_split(frame, horizons=H, cfg=CALENDAR)
    assert parts.train.ts.max() < parts.val.ts.min() <= parts.val.ts.max() < parts.test.ts.min()
    assert (parts.val.ts.min() - parts.train.ts.max()) / MIN > parts.gap_bars
    assert (parts.test.ts.min() - parts.val.ts.max()) / MIN > parts.gap_bars
    _assert_calendar_invariants(parts, frame, MIN)
    assert set(parts.train.symbol) == {"A", "B", "LATE"} and parts.notes == {}


def test_calendar_fractions_are_roughly_honoured_on_pooled_rows():
    frame = _frame({"A": 1000, "B": 1000, "LATE": 500}, start_min={"LATE": 500})
    parts = chronological_split(frame, horizons=H, cfg=CALENDAR)
    n = len(frame)
    shares = [len(p) / n for p in (parts.train, parts.val, parts.test)]
    # each gap of 5 bars costs at most 5 x 3 symbols rows of the earlier part
    assert shares[0] == pytest.approx(0.6, abs=0.01)
    assert shares[1] == pytest.approx(0.2, abs=0.01)
    assert shares[2] == pytest.approx(0.2, abs=0.001)
    cuts = calendar_cuts(frame["ts"], CALENDAR, 5 * MIN)
    assert cuts == parts.cut_ts
    assert (frame.ts < cuts["val_start"]).sum() == pytest.approx(0.6 * n, abs=3)


def test_late_listed_symbol_contributes_only_where_it_has_data(caplog):
    # pooled 1630 rows: val_start at minute 498, test_start at minute 824;
    # LATE lists at minute 850 (test only), GONE stops at minute 479 (train only)
    frame = _frame({"A": 1000, "LATE": 150, "GONE": 480}, start_min={"LATE": 850})
    with caplog.at_level(logging.WARNING, logger="ml_core.validation.split"):
        parts = chronological_split(frame, horizons=H, cfg=CALENDAR)
    _assert_calendar_invariants(parts, frame, MIN)
    assert parts.cut_ts["val_start"] == T0 + 498 * MIN
    assert parts.cut_ts["test_start"] == T0 + 824 * MIN
    in_part = {n: set(getattr(parts, n).symbol) for n in ("train", "val", "test")}
    assert in_part == {"train": {"A", "GONE"}, "val": {"A"}, "test": {"A", "LATE"}}
    assert "left out of train" in parts.notes["LATE"]
    assert "no validation rows" in parts.notes["LATE"]
    assert "no validation rows" in parts.notes["GONE"] and "no test rows" in parts.notes["GONE"]
    assert "A" not in parts.notes
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "LATE" in warned and "GONE" in warned
    table = parts.notes_frame()
    assert list(table.columns) == ["symbol", "note"] and set(table.symbol) == {"GONE", "LATE"}
    assert set(parts.summary()["symbol"]) == {"A", "GONE", "LATE"}


def test_symbol_short_in_train_keeps_its_validation_and_test_rows():
    # SHORT lists at minute 740; the shared train end is minute 785: 45 < 50 training rows
    frame = _frame({"A": 1000, "SHORT": 400}, start_min={"SHORT": 740})
    parts = chronological_split(frame, horizons=H, cfg=CALENDAR)
    assert parts.cut_ts["train_end"] == T0 + 785 * MIN
    assert "SHORT" not in set(parts.train.symbol)
    assert "SHORT" in set(parts.val.symbol) and "SHORT" in set(parts.test.symbol)
    assert "45 training rows < min_train_rows=50" in parts.notes["SHORT"]
    assert set(parts.notes) == {"SHORT"}


def test_symbol_without_complete_features_is_reported():
    frame = _frame({"A": 1000, "B": 300})
    frame.loc[frame.symbol == "B", "x"] = np.nan
    parts = chronological_split(frame, horizons=H, cfg=CALENDAR, complete_columns=["x"])
    assert parts.notes == {"B": "no rows with complete features"}
    assert set(parts.first_ts) == {"A", "B"}


def test_timeframe_sets_the_calendar_gap_and_is_inferred_otherwise():
    frame = _frame({"A": 3000, "B": 3000})
    cfg = SplitConfig(min_train_rows=50, gap_bars=2)
    inferred = chronological_split(frame, horizons=H, cfg=cfg)
    assert inferred.cut_ts["val_start"] - inferred.cut_ts["train_end"] == 2 * MIN
    hourly = chronological_split(frame, horizons=H, cfg=cfg, timeframe="1h")
    assert hourly.cut_ts["val_start"] - hourly.cut_ts["train_end"] == pd.Timedelta("2h")
    assert hourly.val.ts.min() - hourly.train.ts.max() > pd.Timedelta("2h")
    assert hourly.cut_ts["test_start"] == inferred.cut_ts["test_start"]


@pytest.mark.parametrize(
    ("frame", "cfg", "kwargs", "match"),
    [
        (
            _frame({"A": 40, "B": 60}),
            CALENDAR,
            {},
            "No symbol has enough training rows.*min_train_rows=50",
        ),
        (_frame({"A": 1, "B": 1}), CALENDAR, {}, "Cannot infer the bar length.*pass timeframe="),
        (
            _frame({"A": 300}),
            SplitConfig(min_train_rows=10, gap_bars=80),
            {},
            "leaves no validation rows.*gap_bars=80",
        ),
        (_frame({"A": 0}), CALENDAR, {}, "empty model frame"),
        (_frame({"A": 300}).drop(columns="ts"), CALENDAR, {}, "lacks columns"),
        (
            _frame({"A": 300}).assign(x=np.nan),
            CALENDAR,
            {"complete_columns": ["x"]},
            "No row of the model frame",
        ),
    ],
    ids=["all-short", "one-timestamp", "gap-eats-validation", "empty", "no-ts", "no-complete-row"],
)
def test_calendar_error_paths_name_the_values_and_the_fix(frame, cfg, kwargs, match):
    with pytest.raises(DataContractError, match=match):
        chronological_split(frame, horizons=H, cfg=cfg, **kwargs)


def test_unknown_timeframe_is_a_config_error():
    with pytest.raises(ConfigError, match="Unknown timeframe"):
        chronological_split(_frame({"A": 300}), horizons=H, cfg=CALENDAR, timeframe="7m")


def test_scaler_statistics_come_from_training_rows_only():
    frame = _frame({"A": 1000, "B": 1000})
    parts = chronological_split(frame, horizons=H, cfg=CALENDAR)
    scaler = SymbolRobustScaler(["x", "y"]).fit(parts.train)
    # poison the test part: if the scaler had seen it, medians would move
    test = parts.test.copy()
    test["x"] = 1e6
    refit = SymbolRobustScaler(["x", "y"]).fit(parts.train)
    pd.testing.assert_frame_equal(scaler.center_, refit.center_)
    assert scaler.fit_ts_max_.max() < parts.test.ts.min()
    expected = parts.train.groupby("symbol")["x"].median()
    np.testing.assert_allclose(scaler.center_["x"].to_numpy(), expected.to_numpy())
    z = scaler.transform(test)
    assert np.all(z[:, 0] == scaler.clip)  # clipped, not refitted


def test_scaler_uses_pooled_stats_for_unseen_symbols_and_guards_fit():
    frame = _frame({"A": 300})
    with pytest.raises(NotFittedError, match="before fit"):
        SymbolRobustScaler(["x"]).transform(frame)
    scaler = SymbolRobustScaler(["x"]).fit(frame)
    other = frame.assign(symbol="NEW")
    np.testing.assert_allclose(scaler.transform(other), scaler.transform(frame))


@pytest.mark.parametrize("mode", ["calendar", "per_symbol"])
def test_validation_labels_never_reach_the_test_part(mode):
    """The second purge (validation -> test): a validation row whose label ends inside the
    test part is dropped, as a training row reaching validation is. The row gap alone
    misses it when a label spans a dropped stretch."""
    cfg = SplitConfig(mode=mode, min_train_rows=50)
    frame = _frame({"A": 500, "B": 500})
    i = 380  # a validation-time row of A (train 60%, val 20%)
    frame.loc[i, "t1_5"] = frame.ts.iloc[495]
    parts = chronological_split(frame, horizons=H, cfg=cfg)
    val_a = parts.val[parts.val.symbol == "A"]
    test_a = parts.test[parts.test.symbol == "A"]
    assert val_a.ts.min() < frame.ts.iloc[i] < val_a.ts.max()  # inside validation's span
    assert frame.ts.iloc[i] not in set(val_a.ts)  # ... and purged
    for symbol in ("A", "B"):
        val = parts.val[parts.val.symbol == symbol]
        test = parts.test[parts.test.symbol == symbol]
        assert val[[f"t1_{h}" for h in H]].max().max() < test.ts.min()
    assert len(test_a) > 0
