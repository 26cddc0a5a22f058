"""Encoders E: a field on points -> latent tokens z [B, tokens, dim].

Both follow UPT's funnel: cheap local aggregation (patches of a grid, or supernodes of a point
cloud) -> a transformer over those units -> a fixed number of tokens. Only Fourier features of
positions are used, never a position table, so any resolution is accepted.

How the units become tokens differs, and the difference was measured (benchmarks/bench_learning.py):
a grid's patches already are a compact, local, ordered set, so the grid encoder keeps them as the
latent (or averages neighbouring ones when fewer tokens are asked for). Perceiver pooling of 32
patches into 32 tokens compressed nothing and made every token a soft average of all patches:
reconstruction stalled at 10x the error of the patch tokens. The point-cloud encoder's supernodes
are a random sample of a variable number of points, so a perceiver pools them to a fixed count.
"""

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from upt.models.layers import MLP, Block, FourierFeatures, PerceiverPooling
from upt.models.sizes import tile_factor


class ResidualConv(nn.Module):
    """x + conv(gelu(conv(gelu(x)))) on the patch grid: mixes neighbouring patches early.

    ``periodic``: circular padding, so the patches at the two ends of a periodic domain are
    neighbours (zero padding made the boundary patches see a wall that is not there)."""

    def __init__(self, dim: int, dim_space: int, periodic: bool = False):
        super().__init__()
        conv = {1: nn.Conv1d, 2: nn.Conv2d}[dim_space]
        mode = "circular" if periodic else "zeros"
        self.body = nn.Sequential(
            nn.GELU(), conv(dim, dim, 3, padding=1, padding_mode=mode),
            nn.GELU(), conv(dim, dim, 3, padding=1, padding_mode=mode),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class GridEncoder(nn.Module):
    """Field on a 1D or 2D tensor-product grid (row-major points) -> [B, tokens, dim].

    Any grid whose sides are divisible by `patch_size` is accepted: patches are flattened
    (pixel-unshuffle), embedded, mixed by a residual conv stem, told where they are by Fourier
    features of their centres and passed through `depth` transformer blocks. The patch tokens are
    the latent when there are `tokens` of them; with fewer tokens than patches, each token is the
    mean of a block of f (1D) or f x f (2D) neighbouring patches, a local and resolution-free
    pooling (``pooling="perceiver"``, cross-attention of learned queries to every patch, is kept as
    the ablation that lost). Position features stop at `num_freqs` octaves: the caller sets them to
    what the patch grid resolves (:func:`upt.models.sizes.band_limit`), so no feature aliases on
    training points. ``periodic``: a periodic domain (circular conv padding, periodic position
    features).
    """

    def __init__(
        self,
        dim_space: int,
        in_channels: int,
        dim: int,
        tokens: int,
        heads: int,
        depth: int,
        patch_size: int,
        mlp_ratio: float = 4.0,
        num_freqs: int = 10,
        pooling: str = "local",
        periodic: bool = False,
    ):
        super().__init__()
        if pooling not in ("local", "perceiver"):
            raise ValueError(f"grid encoder pooling must be 'local' or 'perceiver', not {pooling!r}")
        if dim_space not in (1, 2):
            raise ValueError(f"GridEncoder handles 1D and 2D grids, not {dim_space}D")
        self.dim_space, self.patch_size = dim_space, patch_size
        self.patch_embed = nn.Linear(in_channels * patch_size**dim_space, dim)
        self.stem = ResidualConv(dim, dim_space, periodic)
        fourier = FourierFeatures(dim_space, num_freqs, periodic)
        self.pos_embed = nn.Sequential(fourier, nn.Linear(fourier.out_dim, dim))
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.tokens = tokens
        # The perceiver is kept as an ablation (benchmarks/bench_learning.py), not as a default.
        self.pool = PerceiverPooling(dim, tokens, heads, mlp_ratio) if pooling == "perceiver" else None

    def token_grid(self, grid_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The tokens' own grid: the patch grid coarsened by the same integer factor on every axis."""
        patches = [n // self.patch_size for n in grid_shape]
        factor = tile_factor(patches, self.tokens)
        if factor is None:
            raise ValueError(
                f"{self.tokens} tokens do not tile the {'x'.join(map(str, patches))} patches of grid "
                f"{tuple(grid_shape)} (patch size {self.patch_size}): tokens must be the number of "
                f"patches divided by f^{self.dim_space} for an integer f that divides every side"
            )
        return tuple(n // factor for n in patches)

    def _patches(self, t: torch.Tensor, grid_shape: tuple[int, ...]) -> torch.Tensor:
        """[B, N, C] in row-major grid order -> [B, patches, points per patch, C]."""
        p = self.patch_size
        if self.dim_space == 1:
            return rearrange(t, "b (x p) c -> b x p c", p=p)
        return rearrange(t, "b (x p y q) c -> b (x y) (p q) c", p=p, q=p, x=grid_shape[0] // p)

    def forward(self, u: torch.Tensor, pos: torch.Tensor, grid_shape) -> torch.Tensor:
        grid_shape = tuple(grid_shape or ())
        if (
            len(grid_shape) != self.dim_space
            or any(n % self.patch_size for n in grid_shape)
            or math.prod(grid_shape) != u.shape[1]
        ):
            raise ValueError(
                f"grid_shape {grid_shape} must have {self.dim_space} sides divisible by the "
                f"patch size {self.patch_size} and hold all {u.shape[1]} points"
            )
        x = self.patch_embed(self._patches(u, grid_shape).flatten(2))
        # The conv stem needs the patches laid out on their grid again.
        coarse = [n // self.patch_size for n in grid_shape]
        if self.dim_space == 1:
            x = rearrange(self.stem(rearrange(x, "b x d -> b d x")), "b d x -> b x d")
        else:
            x = rearrange(x, "b (x y) d -> b d x y", x=coarse[0])
            x = rearrange(self.stem(x), "b d x y -> b (x y) d")
        x = x + self.pos_embed(self._patches(pos, grid_shape).mean(2))
        for block in self.blocks:
            x = block(x)
        if self.pool is not None:
            return self.pool(x)
        tokens = self.token_grid(grid_shape)
        if tokens == tuple(coarse):
            return x
        if self.dim_space == 1:
            return rearrange(F.adaptive_avg_pool1d(rearrange(x, "b x d -> b d x"), tokens), "b d x -> b x d")
        x = rearrange(x, "b (x y) d -> b d x y", x=coarse[0])
        return rearrange(F.adaptive_avg_pool2d(x, tokens), "b d x y -> b (x y) d")


@torch.no_grad()
def farthest_point_sampling(pos: torch.Tensor, mask: torch.Tensor, n: int) -> torch.Tensor:
    """Indices [B, n] of n well-spread valid points of pos [B, N, d].

    Starts from the valid point farthest from the valid centroid, then repeatedly adds the point
    farthest from all chosen ones. Every choice is a function of positions, not of indices, so the
    chosen set (and its order) does not depend on the order of the points, barring exact ties.
    """
    weights = mask[..., None].to(pos.dtype)
    centroid = (pos * weights).sum(1, keepdim=True) / weights.sum(1, keepdim=True)
    score = ((pos - centroid) ** 2).sum(-1)
    nearest = torch.full_like(score, float("inf"))
    batch = torch.arange(pos.shape[0], device=pos.device)
    chosen = []
    for _ in range(n):
        i = score.masked_fill(~mask, -1.0).argmax(1)
        chosen.append(i)
        nearest = torch.minimum(nearest, ((pos - pos[batch, i][:, None]) ** 2).sum(-1))
        score = nearest
    return torch.stack(chosen, 1)


class MeshParticleEncoder(nn.Module):
    """Field on an unordered point set (mesh nodes, particles) -> [B, tokens, dim].

    Supernodes are sampled from the points: uniformly at random in train mode (global RNG, so
    seeded by the trainer), by farthest-point sampling in eval mode (deterministic and invariant
    to point order). Each supernode averages messages from its `neighbours` nearest points, which
    carry the point's embedding and its offset to the supernode. A transformer mixes supernodes
    and a perceiver pools them to tokens.

    Batches with different point counts are padded; `mask` [B, N] marks the real points (True).
    Padded points are never chosen and never neighbours, so an element's result does not depend
    on the padding.

    ``periodic``: positions wrap around [0, 1)^d: periodic position features, and neighbours and
    offsets by the nearest periodic image (offsets in [-1/2, 1/2), with ordinary features).
    """

    def __init__(
        self,
        dim_space: int,
        in_channels: int,
        dim: int,
        tokens: int,
        heads: int,
        depth: int,
        supernodes: int,
        neighbours: int,
        mlp_ratio: float = 4.0,
        num_freqs: int = 10,
        periodic: bool = False,
    ):
        super().__init__()
        self.supernodes, self.neighbours, self.periodic = supernodes, neighbours, periodic
        self.fourier = FourierFeatures(dim_space, num_freqs, periodic)
        self.offset_fourier = FourierFeatures(dim_space, num_freqs)  # offsets are local, never wrap
        self.point_embed = MLP(in_channels + self.fourier.out_dim, dim, dim)
        self.message = MLP(dim + self.offset_fourier.out_dim, dim, dim)
        self.supernode_pos = nn.Linear(self.fourier.out_dim, dim)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.pool = PerceiverPooling(dim, tokens, heads, mlp_ratio)

    def select_supernodes(self, pos: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.training:
            # Top-k of uniform scores = a uniform sample without replacement among valid points.
            scores = torch.rand(mask.shape, device=pos.device).masked_fill(~mask, -1.0)
            return scores.topk(self.supernodes, dim=1).indices
        return farthest_point_sampling(pos, mask, self.supernodes)

    def forward(
        self,
        u: torch.Tensor,
        pos: torch.Tensor,
        grid_shape=None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if mask is None:
            mask = torch.ones(pos.shape[:2], dtype=torch.bool, device=pos.device)
        if int(mask.sum(1).min()) < self.supernodes:
            raise ValueError(f"every sample needs at least {self.supernodes} points (supernodes)")
        batch = torch.arange(pos.shape[0], device=pos.device)[:, None]
        centres = pos[batch, self.select_supernodes(pos, mask)]  # [B, S, d]

        # k nearest valid points of each supernode; the exact (non-matmul) distance keeps a
        # padded batch bit-compatible with its unpadded elements.
        if self.periodic:  # nearest image: each offset wrapped into [-1/2, 1/2)
            diff = pos[:, None] - centres[:, :, None]
            dist = (diff - diff.round()).norm(dim=-1)
        else:
            dist = torch.cdist(centres, pos, compute_mode="donot_use_mm_for_euclid_dist")
        dist = dist.masked_fill(~mask[:, None], float("inf"))
        dist, neighbours = dist.topk(min(self.neighbours, pos.shape[1]), dim=-1, largest=False)
        valid = dist.isfinite()[..., None]  # fewer valid points than k in a padded sample

        h = self.point_embed(torch.cat([u, self.fourier(pos)], -1))
        offsets = pos[batch[..., None], neighbours] - centres[:, :, None]
        if self.periodic:
            offsets = offsets - offsets.round()
        neighbour_h = h[batch[..., None], neighbours]
        messages = self.message(torch.cat([neighbour_h, self.offset_fourier(offsets)], -1))
        x = (messages * valid).sum(2) / valid.sum(2)
        x = x + self.supernode_pos(self.fourier(centres))
        for block in self.blocks:
            x = block(x)
        return self.pool(x)
