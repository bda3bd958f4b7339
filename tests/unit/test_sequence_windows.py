"""Index-based sequence windows: end at t, one symbol and one segment each, no copies."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from ml_core.errors import DataContractError
from ml_core.models.sequence.layers import mean_pool_time
from ml_core.models.sequence.windows import WindowIndex

FEATURES = ["bar", "sym"]


def _frame(lengths: dict[str, int], gap_after: dict[str, int] | None = None) -> pd.DataFrame:
    """Rows whose features name themselves: ``bar`` = bar number + 1, ``sym`` = symbol code + 1.

    ``gap_after[s] = k``: symbol ``s`` gets a new segment from its bar ``k`` on.
    """
    frames = []
    for code, (symbol, n) in enumerate(lengths.items()):
        ts = pd.date_range("2024-01-01", periods=n, freq="1min")
        seg = np.full(n, ts[0])
        cut = (gap_after or {}).get(symbol)
        if cut is not None:
            ts = ts.where(np.arange(n) < cut, ts + pd.Timedelta(minutes=30))
            seg = np.where(np.arange(n) < cut, ts[0], ts[cut])
        frames.append(
            pd.DataFrame(
                {
                    "symbol": symbol,
                    "ts": ts,
                    "segment_start": pd.to_datetime(seg),
                    "bar": np.arange(n, dtype=float) + 1,
                    "sym": float(code + 1),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _windows(frame: pd.DataFrame, window: int) -> tuple[WindowIndex, np.ndarray, np.ndarray]:
    """Windows of every frame row, in frame order: (index, x (n, window, F), mask)."""
    index = WindowIndex.from_frame(frame, features=FEATURES)
    x, mask = index.gather(index.positions(np.arange(len(frame))), window)
    return index, x.numpy(), mask.numpy()


def test_window_ends_at_t_and_reads_only_earlier_bars() -> None:
    frame = _frame({"A": 30, "B": 25}).sample(frac=1.0, random_state=0)  # rows shuffled
    _, x, mask = _windows(frame, window=8)
    bars = frame["bar"].to_numpy()
    np.testing.assert_array_equal(x[:, -1, 0], bars)  # the last step is bar t itself
    for i, b in enumerate(bars):
        valid = x[i, mask[i], 0]
        expected = np.arange(max(1, b - 7), b + 1)
        np.testing.assert_array_equal(valid, expected)  # consecutive, ending at t, no future


def test_windows_never_mix_symbols_and_pad_before_the_first_bar() -> None:
    frame = _frame({"A": 12, "B": 9, "C": 15}).sample(frac=1.0, random_state=1)
    _, x, mask = _windows(frame, window=10)
    sym = frame["sym"].to_numpy()
    for i in range(len(frame)):
        assert (x[i, mask[i], 1] == sym[i]).all()
        assert (x[i, ~mask[i]] == 0).all()  # padding is zeros
    first_bars = frame["bar"].to_numpy() == 1
    assert (mask[first_bars].sum(axis=1) == 1).all()  # only bar t itself


def test_windows_do_not_cross_a_segment_gap() -> None:
    frame = _frame({"A": 40}, gap_after={"A": 20})
    _, x, mask = _windows(frame, window=16)
    assert frame["segment_start"].nunique() == 2
    for i in range(20, 40):  # second segment: bars 21..40
        valid = x[i, mask[i], 0]
        assert valid.min() >= 21, (i, valid)
        assert mask[i].sum() == min(16, i - 19)
    assert mask[19].sum() == 16 and x[19, -1, 0] == 20  # the first segment is untouched


def test_without_segment_column_each_symbol_is_one_segment() -> None:
    frame = _frame({"A": 20, "B": 20}, gap_after={"A": 10}).drop(columns="segment_start")
    _, x, mask = _windows(frame, window=16)
    assert mask[15].all() and x[15, 0, 0] == 1  # reads across the (unknown) gap


def test_no_per_sample_copies_are_stored() -> None:
    frame = _frame({"A": 500, "B": 300})
    index = WindowIndex.from_frame(frame, features=FEATURES)
    stored = [v for v in vars(index).values() if isinstance(v, torch.Tensor | np.ndarray)]
    assert max(v.size if isinstance(v, np.ndarray) else v.numel() for v in stored) == 801 * 2
    assert index.features.dtype == torch.float32 and index.features.is_contiguous()
    assert (index.features[-1] == 0).all()  # the padding row


def test_nan_features_become_zero_and_missing_columns_are_named() -> None:
    frame = _frame({"A": 5})
    frame.loc[2, "bar"] = np.nan
    _, x, _ = _windows(frame, window=3)
    assert x[2, -1, 0] == 0.0
    with pytest.raises(DataContractError, match=r"lacks columns \['nope'\]"):
        WindowIndex.from_frame(frame, features=["bar", "nope"])


def test_mean_pool_time_ignores_padding() -> None:
    x = torch.arange(8, dtype=torch.float32).reshape(1, 8, 1)
    mask = torch.tensor([[False, False, False, True, True, True, True, True]])
    pooled, pmask = mask_pool = mean_pool_time(x, mask, 4)
    assert mask_pool[0].shape == (1, 2, 1)
    np.testing.assert_allclose(pooled[0, :, 0].numpy(), [3.0, 5.5])
    assert pmask.tolist() == [[True, True]]
