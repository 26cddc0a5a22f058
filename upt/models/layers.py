"""Building blocks shared by the encoders, approximators, decoder and denoiser.

Every attention goes through F.scaled_dot_product_attention, so fused (flash / memory-efficient)
kernels are used wherever the device has them. Conditioned blocks follow DiT's adaLN-Zero: the
condition sets a per-channel shift, scale and gate of each sub-layer, and the modulation starts at
zero, so a conditioned block is the identity at initialisation and a deep stack trains stably.
"""

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class FourierFeatures(nn.Module):
    """x [..., d] -> [x, sin(pi 2^k x), cos(pi 2^k x)] for k < num_freqs, for every coordinate.

    Fixed frequencies instead of a learned position table make the modules that use them accept
    any resolution and any point set. Coordinates live in [0, 1]: k = 0 (not periodic on [0, 1])
    serves non-periodic domains, k >= 1 periodic ones; 2^(num_freqs-1) pi sets the finest scale.

    ``periodic``: the domain [0, 1) wraps around, and the features must too: only the integer
    wavenumbers sin/cos(2 pi 2^k x) for k < num_freqs - 1 (the same finest scale), without x itself
    or the half-period k = 0 pair, so x and x + 1 get the same features and the two ends of the
    domain are neighbours. They are defined at every x, so a finer grid sees the same values.
    """

    def __init__(self, dim_in: int, num_freqs: int, periodic: bool = False):
        super().__init__()
        octaves = torch.arange(max(num_freqs - 1, 1)) + 1 if periodic else torch.arange(num_freqs)
        self.register_buffer("freqs", math.pi * 2.0 ** octaves, persistent=False)
        self.periodic = periodic
        self.out_dim = dim_in * (2 * len(octaves) + (0 if periodic else 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        angles = rearrange(x[..., None] * self.freqs, "... d f -> ... (d f)")
        return torch.cat(([] if self.periodic else [x]) + [angles.sin(), angles.cos()], dim=-1)


class MLP(nn.Sequential):
    def __init__(self, dim_in: int, hidden: int, dim_out: int | None = None):
        super().__init__(nn.Linear(dim_in, hidden), nn.GELU(), nn.Linear(hidden, dim_out or dim_in))


class ConditionEmbedder(nn.Sequential):
    """Scalar conditions [B, P] (normalized time, PDE parameters, diffusion time) -> [B, dim]."""

    def __init__(self, cond_dim: int, dim: int, num_freqs: int = 6):
        fourier = FourierFeatures(cond_dim, num_freqs)
        super().__init__(fourier, nn.Linear(fourier.out_dim, dim), nn.SiLU(), nn.Linear(dim, dim))


class Attention(nn.Module):
    """Multi-head attention of x [B, N, dim] over context [B, M, context_dim] (self if None)."""

    def __init__(self, dim: int, heads: int, context_dim: int | None = None):
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(context_dim or dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        q = rearrange(self.q(x), "b n (h e) -> b h n e", h=self.heads)
        k, v = rearrange(self.kv(context), "b m (two h e) -> two b h m e", two=2, h=self.heads)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(rearrange(out, "b h n e -> b n (h e)"))


class DropPath(nn.Module):
    """Stochastic depth: drop a residual branch for a whole sample with probability p (train only).

    Survivors are scaled by 1 / (1 - p) so the branch's expected value matches eval mode.
    """

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty(x.shape[0], *(1,) * (x.ndim - 1)).bernoulli_(1.0 - self.p)
        return x * keep / (1.0 - self.p)


def adaln(cond_dim: int, dim: int, chunks: int) -> nn.Sequential:
    """Condition embedding -> `chunks` per-channel modulation vectors, zero at initialisation."""
    linear = nn.Linear(cond_dim, chunks * dim)
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)
    return nn.Sequential(nn.SiLU(), linear)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class Block(nn.Module):
    """Pre-norm transformer block; adaLN-Zero conditioned on c [B, cond_dim] if cond_dim is set."""

    def __init__(
        self,
        dim: int,
        heads: int,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        cond_dim: int | None = None,
    ):
        super().__init__()
        # Under adaLN the condition supplies the affine part of the norms.
        affine = cond_dim is None
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=affine)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=affine)
        self.mlp = MLP(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path)
        self.modulation = None if affine else adaln(cond_dim, dim, 6)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        if self.modulation is None:
            x = x + self.drop_path(self.attn(self.norm1(x)))
            return x + self.drop_path(self.mlp(self.norm2(x)))
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(c)[:, None].chunk(6, dim=-1)
        x = x + self.drop_path(gate1 * self.attn(modulate(self.norm1(x), shift1, scale1)))
        return x + self.drop_path(gate2 * self.mlp(modulate(self.norm2(x), shift2, scale2)))


class CrossBlock(nn.Module):
    """Pre-norm block in which x [B, N, dim] reads from context [B, M, context_dim]."""

    def __init__(self, dim: int, heads: int, context_dim: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm_x = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(context_dim)
        self.attn = Attention(dim, heads, context_dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm_x(x), self.norm_context(context))
        return x + self.mlp(self.norm2(x))


class PerceiverPooling(nn.Module):
    """Any number of inputs [B, M, dim] -> `tokens` latent tokens, via learned queries."""

    def __init__(self, dim: int, tokens: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.queries = nn.Parameter(0.02 * torch.randn(tokens, dim))
        self.block = CrossBlock(dim, heads, dim, mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.queries.expand(x.shape[0], -1, -1), x)


class FinalLayer(nn.Module):
    """adaLN-modulated norm + linear output, zero at initialisation (DiT's final layer)."""

    def __init__(self, dim: int, dim_out: int, cond_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.modulation = adaln(cond_dim, dim, 2)
        self.linear = nn.Linear(dim, dim_out)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.modulation(c)[:, None].chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))
