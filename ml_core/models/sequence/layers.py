"""Small building blocks shared by the sequence networks."""

from __future__ import annotations

import torch
from torch import nn


def with_mask_channel(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Append the validity mask as one more input feature: padding is visible as such."""
    return torch.cat([x, mask.unsqueeze(-1).to(x.dtype)], dim=-1)


class HorizonHeads(nn.Module):
    """One small MLP head per horizon on a shared representation -> logits (B, H)."""

    def __init__(self, in_dim: int, n_horizons: int, dropout: float) -> None:
        super().__init__()
        hidden = max(in_dim // 2, 4)
        self.heads = nn.ModuleList(
            nn.Sequential(
                nn.Dropout(dropout),
                nn.Linear(in_dim, hidden),
                nn.GELU(),
                nn.Dropout(dropout),
                nn.Linear(hidden, 1),
            )
            for _ in range(n_horizons)
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.cat([head(z) for head in self.heads], dim=-1)


class AttentionPool(nn.Module):
    """Masked additive attention over time: a weighted mean of the valid steps."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, 1))

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.score(h).squeeze(-1).masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=1).unsqueeze(-1)
        return (weights * h).sum(dim=1)


def mean_pool_time(
    x: torch.Tensor, mask: torch.Tensor, factor: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of valid bars over blocks of ``factor`` bars ending at the last bar.

    ``x`` (B, L, F) with ``L % factor == 0`` -> (B, L // factor, F); a block is
    valid when any of its bars is.
    """
    if factor == 1:
        return x, mask
    b, length, f = x.shape
    m = mask.to(x.dtype).reshape(b, length // factor, factor, 1)
    sums = (x.reshape(b, length // factor, factor, f) * m).sum(dim=2)
    counts = m.sum(dim=2)
    return sums / counts.clamp_min(1.0), counts.squeeze(-1) > 0


class SelfAttention(nn.Module):
    """Multi-head self-attention through ``scaled_dot_product_attention``.

    ``allowed`` (bool, broadcastable to (B, heads, Lq, L)) says which keys a
    query may see. With ``last_only`` only the last position is a query (all
    a model reads from the last layer), which saves a factor L of the work.
    No dropout on the attention weights: it dominated CPU time for little gain.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(
        self, h: torch.Tensor, allowed: torch.Tensor, last_only: bool = False
    ) -> torch.Tensor:
        b, length, dim = h.shape
        qkv = self.qkv(h).reshape(b, length, 3, self.heads, dim // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, L, d_head)
        if last_only:
            q, allowed = q[:, :, -1:], allowed[..., -1:, :]
        a = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        return self.out(a.transpose(1, 2).reshape(b, q.shape[2], dim))
