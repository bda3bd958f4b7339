"""Unified LSTM: one shared recurrent backbone, one head per horizon."""

from __future__ import annotations

import torch
from torch import nn

from ml_core.config import ModelConfig
from ml_core.models.sequence.layers import HorizonHeads, with_mask_channel
from ml_core.models.sequence.loop import TorchFrameModel, sequence_config


class UnifiedLSTMNet(nn.Module):
    """Stacked LSTM over the window; the state at bar t feeds every horizon head."""

    def __init__(
        self, n_features: int, n_horizons: int, *, hidden: int, layers: int, dropout: float
    ) -> None:
        super().__init__()
        self.lstm = nn.LSTM(
            n_features + 1,
            hidden,
            num_layers=layers,
            batch_first=True,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.norm = nn.LayerNorm(hidden)
        self.heads = HorizonHeads(hidden, n_horizons, dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(with_mask_channel(x, mask))
        return self.heads(self.norm(out[:, -1]))


class LSTMModel(TorchFrameModel):
    """Multi-horizon LSTM direction model (``name='lstm'``)."""

    name = "lstm"

    def build_network(self, n_features: int, n_horizons: int) -> nn.Module:
        c = self.cfg
        return UnifiedLSTMNet(
            n_features, n_horizons, hidden=c.hidden, layers=c.layers, dropout=c.dropout
        )


def lstm_from_config(cfg: ModelConfig) -> LSTMModel:
    """The configured LSTM (``models.sequence``, overrides from ``models.params['lstm']``)."""
    return LSTMModel(sequence_config(cfg, LSTMModel.name), seed=cfg.seed)
