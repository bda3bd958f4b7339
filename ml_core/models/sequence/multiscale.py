"""Multi-scale hybrid LSTM: fixed windows with their own LSTM + an expanding window with attention.

Every branch reads bars ending at t:

- one LSTM per fixed window in ``sequence.scales`` (default 15 / 60 / 240
  bars); a window longer than ``sequence.max_steps`` is mean-pooled into
  blocks of ``ceil(w / max_steps)`` bars first (240 bars -> 60 steps of 4),
  so the long view costs what a 60-step LSTM costs;
- the expanding window: every bar since the segment start, bounded by
  ``sequence.expanding_max`` (padding before the segment start is masked),
  pooled the same way, with learnable positions and one masked
  self-attention layer, summarised by its masked mean and its last token;

the branch summaries are concatenated, fused by a small MLP and fed to one
head per horizon.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ml_core.config import ModelConfig
from ml_core.errors import ConfigError
from ml_core.models.sequence.layers import (
    HorizonHeads,
    SelfAttention,
    mean_pool_time,
    with_mask_channel,
)
from ml_core.models.sequence.loop import TorchFrameModel, sequence_config


def pooled_length(window: int, max_steps: int) -> tuple[int, int]:
    """(bars used, pooling factor): the last ``steps * factor <= window`` bars, ``steps <= max_steps``."""
    factor = math.ceil(window / max_steps)
    return (window // factor) * factor, factor


class _ScaleBranch(nn.Module):
    def __init__(self, n_in: int, hidden: int, window: int, max_steps: int) -> None:
        super().__init__()
        self.bars, self.factor = pooled_length(window, max_steps)
        self.lstm = nn.LSTM(n_in, hidden, batch_first=True)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        xs, ms = mean_pool_time(x[:, -self.bars :], mask[:, -self.bars :], self.factor)
        out, _ = self.lstm(with_mask_channel(xs, ms))
        return out[:, -1]


class _ExpandingBranch(nn.Module):
    def __init__(
        self, n_in: int, hidden: int, heads: int, dropout: float, bound: int, max_steps: int
    ) -> None:
        super().__init__()
        self.bars, self.factor = pooled_length(bound, max_steps)
        self.input = nn.Linear(n_in, hidden)
        self.position = nn.Parameter(torch.zeros(1, self.bars // self.factor, hidden))
        nn.init.normal_(self.position, std=0.02)
        self.attn = SelfAttention(hidden, heads)
        self.drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(hidden)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        xs, ms = mean_pool_time(x[:, -self.bars :], mask[:, -self.bars :], self.factor)
        h = self.input(with_mask_channel(xs, ms)) + self.position
        h = self.norm(h + self.drop(self.attn(h, ms[:, None, None, :])))
        w = ms.unsqueeze(-1).to(h.dtype)
        mean = (h * w).sum(dim=1) / w.sum(dim=1).clamp_min(1.0)
        return torch.cat([mean, h[:, -1]], dim=-1)


class MultiScaleLSTMNet(nn.Module):
    """Fixed-window LSTM branches + expanding attention branch, fused, per-horizon heads."""

    def __init__(
        self,
        n_features: int,
        n_horizons: int,
        *,
        scales: list[int],
        expanding_max: int,
        max_steps: int,
        hidden: int,
        heads: int,
        dropout: float,
    ) -> None:
        super().__init__()
        if hidden % heads:
            raise ConfigError(
                f"multiscale_lstm: sequence.hidden={hidden} is not divisible by "
                f"sequence.heads={heads}; e.g. hidden=32 with heads=4."
            )
        n_in = n_features + 1
        self.scales = nn.ModuleList(_ScaleBranch(n_in, hidden, w, max_steps) for w in scales)
        self.expanding = _ExpandingBranch(n_in, hidden, heads, dropout, expanding_max, max_steps)
        fused = hidden * (len(scales) + 2)
        self.fuse = nn.Sequential(
            nn.LayerNorm(fused), nn.Linear(fused, hidden), nn.GELU(), nn.Dropout(dropout)
        )
        self.heads = HorizonHeads(hidden, n_horizons, dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        parts = [branch(x, mask) for branch in self.scales]
        parts.append(self.expanding(x, mask))
        return self.heads(self.fuse(torch.cat(parts, dim=-1)))


class MultiScaleLSTMModel(TorchFrameModel):
    """Multi-horizon multi-scale hybrid LSTM (``name='multiscale_lstm'``)."""

    name = "multiscale_lstm"

    @property
    def window(self) -> int:
        return max(max(self.cfg.scales), self.cfg.expanding_max)

    def build_network(self, n_features: int, n_horizons: int) -> nn.Module:
        c = self.cfg
        return MultiScaleLSTMNet(
            n_features,
            n_horizons,
            scales=list(c.scales),
            expanding_max=c.expanding_max,
            max_steps=c.max_steps,
            hidden=c.hidden,
            heads=c.heads,
            dropout=c.dropout,
        )


def multiscale_lstm_from_config(cfg: ModelConfig) -> MultiScaleLSTMModel:
    """The configured multi-scale LSTM (overrides from ``models.params['multiscale_lstm']``)."""
    return MultiScaleLSTMModel(sequence_config(cfg, MultiScaleLSTMModel.name), seed=cfg.seed)
