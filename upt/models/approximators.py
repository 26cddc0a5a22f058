"""Approximators A: latent tokens z [B, T, dim] at time t -> z at the next step, given cond [B, P].

Both predict a residual update, z_next = z + A(z, cond), whose output layer starts at zero: an
untrained approximator is the persistence baseline (copy the state), the natural starting point
for a time stepper. They work at width `hidden` (which may exceed the latent width `dim`), are
conditioned on the embedded `cond` through adaLN-Zero in every block, and apply drop-path with a
rate growing linearly from 0 at the first block to `drop_path` at the last.
"""

import torch
from einops import reduce, repeat
from torch import nn

from upt.models.layers import Block, ConditionEmbedder, FinalLayer


def drop_path_rates(drop_path: float, depth: int) -> list[float]:
    """Linear from 0 at the first block to drop_path at the last (plain Python: works on meta)."""
    return [drop_path * i / max(depth - 1, 1) for i in range(depth)]


def _blocks(hidden, heads, mlp_ratio, rates):
    return nn.ModuleList(Block(hidden, heads, mlp_ratio, rate, cond_dim=hidden) for rate in rates)


class PureTransformer(nn.Module):
    """UPT's approximator: a plain stack of `depth` conditioned pre-norm transformer blocks."""

    def __init__(
        self,
        dim: int,
        hidden: int,
        depth: int,
        heads: int,
        cond_dim: int,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
    ):
        super().__init__()
        self.embed_cond = ConditionEmbedder(cond_dim, hidden)
        self.proj_in = nn.Linear(dim, hidden)
        self.blocks = _blocks(hidden, heads, mlp_ratio, drop_path_rates(drop_path, depth))
        self.out = FinalLayer(hidden, dim, hidden)

    def forward(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        c = self.embed_cond(cond)
        x = self.proj_in(z)
        for block in self.blocks:
            x = block(x, c)
        return z + self.out(x, c)


class UShapedTransformer(nn.Module):
    """PDE-Transformer-style U: `levels` down stages, a bottleneck and `levels` up stages.

    Going down, the token count halves after each stage (mean of adjacent token pairs; the
    perceiver's learned queries are free to arrange themselves so that pairs belong together);
    going up, tokens are repeated and merged (concat + linear) with the skip from the stage of
    the same resolution, which is the only route for full-resolution detail. `depth` counts all
    blocks, so a U and a pure stack of the same depth have about the same size: every stage gets
    depth // (2 levels + 1) blocks and the bottleneck also takes the remainder.
    """

    def __init__(
        self,
        dim: int,
        hidden: int,
        depth: int,
        heads: int,
        cond_dim: int,
        levels: int,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
    ):
        super().__init__()
        stages = 2 * levels + 1
        if levels < 1 or depth < stages:
            raise ValueError(f"a U with {levels} levels needs levels >= 1 and depth >= {stages}")
        per_stage, extra = divmod(depth, stages)
        sizes = [per_stage] * levels + [per_stage + extra] + [per_stage] * levels
        rates = drop_path_rates(drop_path, depth)
        starts = [sum(sizes[:i]) for i in range(stages)]
        stacks = [
            _blocks(hidden, heads, mlp_ratio, rates[s : s + n]) for s, n in zip(starts, sizes)
        ]

        self.levels = levels
        self.embed_cond = ConditionEmbedder(cond_dim, hidden)
        self.proj_in = nn.Linear(dim, hidden)
        self.down = nn.ModuleList(stacks[:levels])
        self.bottleneck = stacks[levels]
        self.up = nn.ModuleList(stacks[levels + 1 :])
        self.merge = nn.ModuleList(nn.Linear(2 * hidden, hidden) for _ in range(levels))
        self.out = FinalLayer(hidden, dim, hidden)

    def forward(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        if z.shape[1] % 2**self.levels:
            raise ValueError(f"{z.shape[1]} tokens cannot be halved {self.levels} times")
        c = self.embed_cond(cond)
        x = self.proj_in(z)
        skips = []
        for stack in self.down:
            for block in stack:
                x = block(x, c)
            skips.append(x)
            x = reduce(x, "b (t two) d -> b t d", "mean", two=2)
        for block in self.bottleneck:
            x = block(x, c)
        for stack, merge in zip(self.up, self.merge):
            x = merge(torch.cat([repeat(x, "b t d -> b (t two) d", two=2), skips.pop()], -1))
            for block in stack:
                x = block(x, c)
        return z + self.out(x, c)
