"""The FNO baseline: ``neuralop.models.FNO`` behind the surrogate interface evaluation uses.

It maps the history window (and the condition, broadcast over the grid) to the next frame as an
increment of the latest frame, and rolls out in physical space only: it has no latent state.
Its width is chosen to match a parameter budget (the reference UPT arm's), so the comparison is
at equal size.
"""

from __future__ import annotations

import types

import torch
from einops import rearrange
from torch import nn

from upt.errors import UptError


class FNOSurrogate(nn.Module):
    rollout_modes = ("physical",)

    def __init__(self, dim_space: int, fields: int, history: int = 1, cond_dim: int = 1, modes: int = 16,
                 hidden: int = 32, layers: int = 4):
        super().__init__()
        try:
            from neuralop.models import FNO
        except ImportError:
            raise UptError("the FNO baseline needs the neuraloperator package: pip install 'upt[baselines]'") from None
        self.fields, self.history = fields, history
        self.fno = FNO(n_modes=(modes,) * dim_space, in_channels=history * fields + cond_dim,
                       out_channels=fields, hidden_channels=hidden, n_layers=layers)
        # neuralop adds its constructor arguments (functions included) to state_dict(), which would
        # break weights_only loading; our checkpoints carry the spec instead.
        self.fno.state_dict = types.MethodType(nn.Module.state_dict, self.fno)
        self.fno.load_state_dict = types.MethodType(nn.Module.load_state_dict, self.fno)

    def forward(self, u, pos, query_pos, cond, grid_shape=None, mask=None) -> torch.Tensor:
        """One step on the grid: u [B, N, history*fields] -> the next frame [B, N, fields]."""
        if query_pos is not pos and not torch.equal(query_pos, pos):
            raise UptError("the FNO baseline predicts on its input grid only")
        x = torch.cat([u, cond[:, None, :].expand(-1, u.shape[1], -1)], dim=-1)
        axes = " ".join(f"s{i}" for i in range(len(grid_shape)))
        sizes = {f"s{i}": n for i, n in enumerate(grid_shape)}
        grid = rearrange(x, f"b ({axes}) c -> b c {axes}", **sizes)
        out = rearrange(self.fno(grid), f"b c {axes} -> b ({axes}) c")
        return u[..., -self.fields:] + out

    def rollout(self, u, pos, cond, steps, query_pos=None, grid_shape=None, mode="physical", mask=None,
                correct=None, last_only=False) -> torch.Tensor:
        if mode != "physical":
            raise UptError(f"the FNO baseline has no {mode!r} rollout, only 'physical'")
        frames = []
        for s in range(steps):
            frame = self(u, pos, pos, cond[:, s], grid_shape)
            frames.append(frame)
            u = torch.cat([u[..., self.fields:], frame], dim=-1)
        return torch.stack(frames[-1:] if last_only else frames, dim=1)


def matched_width(target_params: int, **kwargs) -> int:
    """The FNO width whose parameter count comes closest to ``target_params`` (bisection: the
    count grows with the width)."""
    def count(hidden: int) -> int:
        with torch.device("meta"):
            return sum(p.numel() for p in FNOSurrogate(hidden=hidden, **kwargs).parameters())

    low, high = 2, 512
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if count(mid) < target_params else (low, mid)
    return min((low, high), key=lambda hidden: abs(count(hidden) - target_params))
