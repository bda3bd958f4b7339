"""Attention LSTM: a bidirectional first layer over the past window, residual LSTMs, attention pooling.

The window ends at bar t, so the backward direction of the first layer runs
from t back to the window start: it reads only bars at or before t
(tests/unit/test_sequence_models.py changes later rows and checks the
prediction at t does not move).
"""

from __future__ import annotations

import torch
from torch import nn

from ml_core.config import ModelConfig
from ml_core.models.sequence.layers import AttentionPool, HorizonHeads, with_mask_channel
from ml_core.models.sequence.loop import TorchFrameModel, sequence_config


class ResidualLSTM(nn.Module):
    """``LayerNorm(x + dropout(LSTM(x)))``."""

    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__()
        self.lstm = nn.LSTM(dim, dim, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(h)
        return self.norm(h + self.drop(out))


class AttentionLSTMNet(nn.Module):
    """BiLSTM (past window only) -> ``layers`` residual LSTMs -> masked attention pooling -> heads."""

    def __init__(
        self, n_features: int, n_horizons: int, *, hidden: int, layers: int, dropout: float
    ) -> None:
        super().__init__()
        self.bilstm = nn.LSTM(n_features + 1, hidden, batch_first=True, bidirectional=True)
        self.project = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.LayerNorm(hidden))
        self.blocks = nn.ModuleList(ResidualLSTM(hidden, dropout) for _ in range(layers))
        self.pool = AttentionPool(hidden)
        self.heads = HorizonHeads(2 * hidden, n_horizons, dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h, _ = self.bilstm(with_mask_channel(x, mask))
        h = self.project(h)
        for block in self.blocks:
            h = block(h)
        return self.heads(torch.cat([self.pool(h, mask), h[:, -1]], dim=-1))


class AttentionLSTMModel(TorchFrameModel):
    """Multi-horizon attention LSTM direction model (``name='attention_lstm'``)."""

    name = "attention_lstm"

    def build_network(self, n_features: int, n_horizons: int) -> nn.Module:
        c = self.cfg
        return AttentionLSTMNet(
            n_features, n_horizons, hidden=c.hidden, layers=c.layers, dropout=c.dropout
        )


def attention_lstm_from_config(cfg: ModelConfig) -> AttentionLSTMModel:
    """The configured attention LSTM (overrides from ``models.params['attention_lstm']``)."""
    return AttentionLSTMModel(sequence_config(cfg, AttentionLSTMModel.name), seed=cfg.seed)
