"""Index-based windows over a feature table: no per-sample copies are stored.

A ``WindowIndex`` keeps one contiguous float32 tensor of the scaled features
(rows sorted by symbol, segment, ts, plus one all-zero padding row at the
end) and, per row, where its symbol-and-segment group starts. The window of a
target row ``i`` is the rows ``i - window + 1 .. i`` of the same group; rows
before the group start point at the padding row and are masked out. A batch
is gathered with one ``index_select``: nothing but the batch is materialised.

So a window for t ends at t (never a later bar), never mixes symbols, and
never reaches across a ``segment_start`` gap (it starts at the segment start
at the earliest, zero-padded before it).

Example::

    index = WindowIndex.from_frame(frame, features=cols)
    x, mask = index.gather(index.positions([0, 5, 9]), window=60)   # (3, 60, F), (3, 60)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ml_core.errors import DataContractError

GROUP_COLUMNS = ("symbol", "segment_start")


@dataclass(frozen=True)
class WindowIndex:
    """Sorted feature tensor + group starts; ``order[k]`` is the frame row of sorted row k.

    ``features``: (n + 1, F) float32, last row zeros (padding).
    ``group_start``: (n,) int64, sorted position where each row's group starts.
    ``order``: (n,) positions of the sorted rows in the original frame.
    ``ts``: (n,) int64 timestamps of the sorted rows (for "most recent" caps).
    """

    features: torch.Tensor
    group_start: torch.Tensor
    order: np.ndarray
    ts: np.ndarray

    @property
    def n_rows(self) -> int:
        return int(self.group_start.shape[0])

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, *, features: list[str]) -> WindowIndex:
        """Sort ``frame`` by (symbol, segment_start, ts) and index its groups.

        Without a ``segment_start`` column each symbol is one segment.
        NaN features become 0 (the scaled median).
        """
        missing = [c for c in ["symbol", "ts", *features] if c not in frame.columns]
        if missing:
            raise DataContractError(
                f"Sequence model input lacks columns {missing[:5]}; pass the pipeline's "
                "scaled frame (CandlePipeline.scaled_frame) with symbol, ts and the features."
            )
        keys = [c for c in GROUP_COLUMNS if c in frame.columns]
        ts = _as_int64(frame["ts"])
        sort_cols = [frame[c].to_numpy() for c in keys]
        key_codes = [pd.factorize(col, sort=True)[0] for col in sort_cols]
        # np.lexsort: last key is primary -> (symbol, segment, ts)
        order = np.lexsort([ts, *reversed(key_codes)])
        group_id = np.zeros(len(order), dtype=np.int64)
        if len(order):
            codes = np.stack([k[order] for k in key_codes], axis=1) if key_codes else None
            new_group = np.ones(len(order), dtype=bool)
            if codes is not None:
                new_group[1:] = (codes[1:] != codes[:-1]).any(axis=1)
            group_id = np.cumsum(new_group) - 1
            starts = np.flatnonzero(new_group)
            group_start = starts[group_id]
        else:
            group_start = np.zeros(0, dtype=np.int64)
        values = frame[features].to_numpy(dtype=np.float32, na_value=np.nan)[order]
        values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
        padded = np.zeros((len(order) + 1, len(features)), dtype=np.float32)
        padded[:-1] = values
        return cls(
            features=torch.from_numpy(padded),
            group_start=torch.from_numpy(group_start.astype(np.int64)),
            order=order,
            ts=ts[order],
        )

    def positions(self, frame_rows: np.ndarray | list[int]) -> torch.Tensor:
        """Sorted positions of the given original frame row numbers."""
        inverse = np.empty(self.n_rows, dtype=np.int64)
        inverse[self.order] = np.arange(self.n_rows)
        return torch.from_numpy(inverse[np.asarray(frame_rows, dtype=np.int64)])

    def window_indices(self, positions: torch.Tensor, window: int) -> torch.Tensor:
        """(B, window) row indices ending at each position; before the group start -> pad row."""
        offsets = torch.arange(window - 1, -1, -1, dtype=torch.int64)
        idx = positions.reshape(-1, 1) - offsets.reshape(1, -1)
        inside = idx >= self.group_start[positions].reshape(-1, 1)
        return torch.where(inside, idx, torch.full_like(idx, self.n_rows))

    def gather(
        self, positions: torch.Tensor, window: int, device: torch.device | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Windows ``(B, window, F)`` and validity mask ``(B, window)`` for sorted positions."""
        idx = self.window_indices(positions, window)
        x = self.features.index_select(0, idx.reshape(-1)).reshape(*idx.shape, -1)
        mask = idx != self.n_rows
        if device is not None and device.type != "cpu":
            return x.to(device, non_blocking=True), mask.to(device, non_blocking=True)
        return x, mask


def _as_int64(ts: pd.Series) -> np.ndarray:
    """Timestamps (or numbers) as int64 for sorting."""
    if isinstance(ts.dtype, pd.DatetimeTZDtype):
        ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    if pd.api.types.is_datetime64_any_dtype(ts):
        return ts.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    return ts.to_numpy(dtype=np.int64)
