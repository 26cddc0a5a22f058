"""The FNO baseline: ``neuralop.models.FNO`` behind the surrogate interface evaluation uses.

It maps the history window (and the condition, broadcast over the grid) to the next frame as an
increment of the latest frame, and rolls out in physical space only: it has no latent state.
Its width is chosen to match a parameter budget (the reference UPT arm's), so the comparison is
at equal size. ``model: {family: fno, variant: pdebench}`` selects PDEBench's own FNO instead
(:mod:`upt.models.fno_pdebench`), behind the same interface.

``modes`` is the number of Fourier modes KEPT per axis, as in PDEBench and the FNO paper (modes 0 ..
modes-1 on the last, real-FFT axis; -modes .. modes-1 on the others). neuralop's ``n_modes`` counts
differently: on the last axis it keeps ``n_modes // 2 + 1`` (so ``n_modes=12`` kept only 7), and on
every other axis ``n_modes`` frequencies centred on 0. :func:`neuralop_modes` converts.
"""

from __future__ import annotations

import types
from typing import Callable

import torch
from einops import rearrange
from torch import nn

from upt.errors import UptError


def neuralop_modes(modes: int, dim_space: int) -> tuple[int, ...]:
    """neuralop's ``n_modes`` that keeps ``modes`` Fourier modes per axis.

    Last axis: neuralop keeps ``n // 2 + 1`` real-FFT modes, and n = 2 * modes - 1 gives exactly
    ``modes`` (0 .. modes-1). Other axes: it keeps n frequencies around 0 (n // 2 negative ones), and
    n = 2 * modes gives -modes .. modes-1, PDEBench's two corner blocks of ``modes`` rows each."""
    if isinstance(modes, bool) or not isinstance(modes, int) or modes < 1:
        raise UptError(f"FNO modes must be a whole number >= 1 (the modes kept per axis), got {modes!r}")
    return (2 * modes,) * (dim_space - 1) + (2 * modes - 1,)


class PhysicalRollout(nn.Module):
    """A grid surrogate without latent state: it rolls out by feeding each predicted frame back
    into its history window (``forward`` predicts one frame)."""

    rollout_modes = ("physical",)
    fields: int

    @staticmethod
    def check_on_grid(pos: torch.Tensor, query_pos: torch.Tensor) -> None:
        if query_pos is not pos and not torch.equal(query_pos, pos):
            raise UptError("the FNO baseline predicts on its input grid only")

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


class FNOSurrogate(PhysicalRollout):

    def __init__(self, dim_space: int, fields: int, history: int = 1, cond_dim: int = 1, modes: int = 16,
                 hidden: int = 32, layers: int = 4):
        super().__init__()
        try:
            from neuralop.models import FNO
        except ImportError:
            raise UptError("the FNO baseline needs the neuraloperator package: pip install 'upt[baselines]'") from None
        self.fields, self.history = fields, history
        self.fno = FNO(n_modes=neuralop_modes(modes, dim_space), in_channels=history * fields + cond_dim,
                       out_channels=fields, hidden_channels=hidden, n_layers=layers)
        # neuralop adds its constructor arguments (functions included) to state_dict(), which would
        # break weights_only loading; our checkpoints carry the spec instead.
        self.fno.state_dict = types.MethodType(nn.Module.state_dict, self.fno)
        self.fno.load_state_dict = types.MethodType(nn.Module.load_state_dict, self.fno)

    def forward(self, u, pos, query_pos, cond, grid_shape=None, mask=None) -> torch.Tensor:
        """One step on the grid: u [B, N, history*fields] -> the next frame [B, N, fields]."""
        self.check_on_grid(pos, query_pos)
        x = torch.cat([u, cond[:, None, :].expand(-1, u.shape[1], -1)], dim=-1)
        axes = " ".join(f"s{i}" for i in range(len(grid_shape)))
        sizes = {f"s{i}": n for i, n in enumerate(grid_shape)}
        grid = rearrange(x, f"b ({axes}) c -> b c {axes}", **sizes)
        out = rearrange(self.fno(grid), f"b c {axes} -> b ({axes}) c")
        return u[..., -self.fields:] + out


def matched_width(target_params: int, build: Callable[[int], nn.Module]) -> int:
    """The FNO width whose parameter count comes closest to ``target_params``; ``build(hidden)``
    makes the FNO of that width (bisection: the count grows with the width)."""
    def count(hidden: int) -> int:
        with torch.device("meta"):
            return sum(p.numel() for p in build(hidden).parameters())

    low, high = 2, 512
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if count(mid) < target_params else (low, mid)
    return min((low, high), key=lambda hidden: abs(count(hidden) - target_params))
