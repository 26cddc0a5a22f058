"""Decoder D: latent tokens z [B, T, dim] -> field values at any query points [B, Q, fields].

Queries never attend to each other, so each point is decoded independently of which other points
are asked for: a random subset of points (query-based training), the training grid, a finer grid
or scattered points all give the same value at the same position.
"""

import torch
from torch import nn

from upt.models.layers import MLP, CrossBlock, FourierFeatures


def log_clamp(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """sign(x) * c * log1p(|x| / c) with c = threshold.

    Odd, monotone and invertible; slope 1 at 0, so |y - x| <= x^2 / (2c) (identity-like for
    |x| << c), while large outputs grow only logarithmically. Bounds the damage of a wild
    prediction early in training and in long rollouts (UPT's optional output clamp).
    """
    return x.sign() * threshold * torch.log1p(x.abs() / threshold)


class AnyPointDecoder(nn.Module):
    """Fourier-encoded query positions -> MLP -> `layers` cross-attention blocks reading the latent
    tokens -> one small MLP head per output field -> optional log clamp. ``periodic``: periodic
    position features (a periodic domain's two ends are neighbours)."""

    def __init__(
        self,
        dim_space: int,
        dim: int,
        fields: int,
        heads: int,
        layers: int,
        hidden: int,
        mlp_ratio: float = 4.0,
        log_clamp: float | None = None,
        num_freqs: int = 10,
        periodic: bool = False,
    ):
        super().__init__()
        fourier = FourierFeatures(dim_space, num_freqs, periodic)
        self.query_embed = nn.Sequential(fourier, MLP(fourier.out_dim, hidden, hidden))
        self.blocks = nn.ModuleList(
            CrossBlock(hidden, heads, dim, mlp_ratio) for _ in range(layers)
        )
        self.norm = nn.LayerNorm(hidden)
        self.heads = nn.ModuleList(MLP(hidden, hidden, 1) for _ in range(fields))
        self.log_clamp = log_clamp

    def forward(self, z: torch.Tensor, query_pos: torch.Tensor) -> torch.Tensor:
        q = self.query_embed(query_pos)
        for block in self.blocks:
            q = block(q, z)
        q = self.norm(q)
        u = torch.cat([head(q) for head in self.heads], dim=-1)
        return u if self.log_clamp is None else log_clamp(u, self.log_clamp)
