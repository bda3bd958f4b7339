"""Causal Transformer: input projection, learnable positions, causal mask, per-horizon heads.

Each position attends only to itself and earlier *real* bars of the window
(padding before a segment start is masked out as a key); the representation
of the last position (bar t) feeds the heads, so the last layer computes only
that query. Pre-norm blocks; the shared loop's warmup schedule
(``sequence.warmup_steps``) matters most here.
"""

from __future__ import annotations

import torch
from torch import nn

from ml_core.config import ModelConfig
from ml_core.errors import ConfigError
from ml_core.models.sequence.layers import HorizonHeads, SelfAttention, with_mask_channel
from ml_core.models.sequence.loop import TorchFrameModel, sequence_config


def causal_allowed(mask: torch.Tensor) -> torch.Tensor:
    """Bool (B, 1, L, L): key k visible to query q iff k <= q and k is a real bar.

    Every query keeps itself visible, so padded queries never see an empty row.
    """
    length = mask.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=mask.device).tril()
    eye = torch.eye(length, dtype=torch.bool, device=mask.device)
    allowed = (causal.unsqueeze(0) & mask.unsqueeze(1)) | eye.unsqueeze(0)
    return allowed.unsqueeze(1)


class CausalBlock(nn.Module):
    """Pre-norm block: ``h + attn(LN(h))``, then ``h + FF(LN(h))``."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(
            nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, allowed: torch.Tensor, last_only: bool) -> torch.Tensor:
        a = self.attn(self.norm1(h), allowed, last_only=last_only)
        h = (h[:, -1:] if last_only else h) + self.drop(a)
        return h + self.drop(self.ff(self.norm2(h)))


class CausalTransformerNet(nn.Module):
    """Input projection + learnable positions -> causal blocks -> heads on bar t."""

    def __init__(
        self,
        n_features: int,
        n_horizons: int,
        *,
        window: int,
        hidden: int,
        layers: int,
        heads: int,
        dropout: float,
    ) -> None:
        super().__init__()
        if hidden % heads:
            raise ConfigError(
                f"transformer: sequence.hidden={hidden} is not divisible by "
                f"sequence.heads={heads}; e.g. hidden=32 with heads=4."
            )
        self.input = nn.Linear(n_features + 1, hidden)
        self.position = nn.Parameter(torch.zeros(1, window, hidden))
        nn.init.normal_(self.position, std=0.02)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(CausalBlock(hidden, heads, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(hidden)
        self.heads = HorizonHeads(hidden, n_horizons, dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.input(with_mask_channel(x, mask)) + self.position[:, -x.shape[1] :]
        h = self.drop(h)
        allowed = causal_allowed(mask)
        for i, block in enumerate(self.blocks):
            h = block(h, allowed, last_only=i == len(self.blocks) - 1)
        return self.heads(self.norm(h[:, -1]))


class TransformerModel(TorchFrameModel):
    """Multi-horizon causal Transformer direction model (``name='transformer'``)."""

    name = "transformer"

    def build_network(self, n_features: int, n_horizons: int) -> nn.Module:
        c = self.cfg
        return CausalTransformerNet(
            n_features,
            n_horizons,
            window=self.window,
            hidden=c.hidden,
            layers=c.layers,
            heads=c.heads,
            dropout=c.dropout,
        )


def transformer_from_config(cfg: ModelConfig) -> TransformerModel:
    """The configured causal Transformer (overrides from ``models.params['transformer']``)."""
    return TransformerModel(sequence_config(cfg, TransformerModel.name), seed=cfg.seed)
