"""PDEBench's own FNO (pdebench/models/fno/fno.py), layer for layer, behind the surrogate interface.

``model: {family: fno, variant: pdebench}`` selects it. What makes it PDEBench's and not neuralop's:

- the input is the ``history`` frames (PDEBench's ``initial_step``, fields interleaved per frame)
  and the grid coordinates, lifted by one linear layer ``fc0`` to ``width`` channels;
- the lifted field is zero-padded by 2 points at the end of every axis (PDEBench's remedy for
  non-periodic data), goes through 4 Fourier layers ``SpectralConv(x) + Conv1x1(x)`` with GELU
  between them (not after the last), and is cropped back;
- ``fc1`` (width -> 128), GELU, ``fc2`` (128 -> fields) project to the next frame itself (not an
  increment of the latest frame, as :class:`upt.models.fno.FNOSurrogate` predicts);
- a spectral layer keeps ``modes`` real-FFT modes 0 .. modes-1 on the last axis and, in 2D, the
  ``modes`` lowest positive and negative frequencies on the first (two weight blocks), with
  PDEBench's initialization ``rand / (in * out)`` of real and imaginary parts.

Parameters are counted as PDEBench counts them (``numel``, a complex weight counting once).
PDEBench's FNO sees no time and no PDE parameter: the condition's time column is ignored, and PDE
parameters (``params``) are refused.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from upt.errors import UptError
from upt.models.fno import PhysicalRollout

PADDING = 2  # PDEBench's FNO1d/FNO2d: points of zero padding at the end of each axis
PROJECTION = 128  # PDEBench's fc1 width


class SpectralConv1d(nn.Module):
    """rfft, multiply modes 0 .. modes-1 by a complex [in, out] matrix each, drop the rest, irfft."""

    def __init__(self, in_channels: int, out_channels: int, modes: int):
        super().__init__()
        self.out_channels, self.modes = out_channels, modes
        scale = 1 / (in_channels * out_channels)
        self.weights1 = nn.Parameter(scale * torch.rand(in_channels, out_channels, modes, dtype=torch.cfloat))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[-1]
        check_modes(self.modes, n // 2 + 1, "last")
        x_ft = torch.fft.rfft(x.float())  # the FFT of bf16 (autocast) is not supported: fp32 here
        out_ft = x_ft.new_zeros(x.shape[0], self.out_channels, n // 2 + 1)
        out_ft[:, :, :self.modes] = torch.einsum("bix,iox->box", x_ft[:, :, :self.modes], self.weights1)
        return torch.fft.irfft(out_ft, n=n)


class SpectralConv2d(nn.Module):
    """rfft2; modes1 lowest positive (weights1) and negative (weights2) frequencies of the first
    axis times modes2 of the last are multiplied, the rest dropped; irfft2."""

    def __init__(self, in_channels: int, out_channels: int, modes1: int, modes2: int):
        super().__init__()
        self.out_channels, self.modes1, self.modes2 = out_channels, modes1, modes2
        scale = 1 / (in_channels * out_channels)
        shape = (in_channels, out_channels, modes1, modes2)
        self.weights1 = nn.Parameter(scale * torch.rand(*shape, dtype=torch.cfloat))
        self.weights2 = nn.Parameter(scale * torch.rand(*shape, dtype=torch.cfloat))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n1, n2 = x.shape[-2:]
        check_modes(2 * self.modes1, n1, "first")
        check_modes(self.modes2, n2 // 2 + 1, "last")
        m1, m2 = self.modes1, self.modes2
        x_ft = torch.fft.rfft2(x.float())
        out_ft = x_ft.new_zeros(x.shape[0], self.out_channels, n1, n2 // 2 + 1)
        out_ft[:, :, :m1, :m2] = torch.einsum("bixy,ioxy->boxy", x_ft[:, :, :m1, :m2], self.weights1)
        out_ft[:, :, -m1:, :m2] = torch.einsum("bixy,ioxy->boxy", x_ft[:, :, -m1:, :m2], self.weights2)
        return torch.fft.irfft2(out_ft, s=(n1, n2))


def check_modes(needed: int, available: int, axis: str) -> None:
    """PDEBench's FNO would fail with a shape error (or overlap its 2D weight blocks) here."""
    if needed > available:
        raise UptError(f"PDEBench FNO: the {axis} axis keeps {needed} Fourier coefficients but the padded "
                       f"grid has only {available}; lower model.modes")


class PDEBenchFNO(nn.Module):
    """PDEBench's FNO on a ``dim``-D grid: channels-last x [B, *grid, in] and grid [B, *grid, dim]
    -> [B, *grid, out] (PDEBench appends a time axis of 1, which is left out here)."""

    spectral: type[nn.Module]
    pointwise: type[nn.Module]
    dim: int

    def __init__(self, num_channels: int, modes: int = 12, width: int = 20, initial_step: int = 10,
                 layers: int = 4):
        super().__init__()
        self.width, self.modes = width, modes
        self.fc0 = nn.Linear(initial_step * num_channels + self.dim, width)
        self.convs = nn.ModuleList(self.spectral(width, width, *(modes,) * self.dim) for _ in range(layers))
        self.ws = nn.ModuleList(self.pointwise(width, width, 1) for _ in range(layers))
        self.fc1 = nn.Linear(width, PROJECTION)
        self.fc2 = nn.Linear(PROJECTION, num_channels)

    def forward(self, x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        x = self.fc0(torch.cat((x, grid), dim=-1))
        x = torch.movedim(x, -1, 1)
        x = F.pad(x, [0, PADDING] * self.dim)
        for i, (conv, w) in enumerate(zip(self.convs, self.ws)):
            x = conv(x) + w(x)
            if i < len(self.convs) - 1:
                x = F.gelu(x)
        x = x[(..., *(slice(None, -PADDING),) * self.dim)]
        x = torch.movedim(x, 1, -1)
        return self.fc2(F.gelu(self.fc1(x)))


class FNO1d(PDEBenchFNO):
    spectral, pointwise, dim = SpectralConv1d, nn.Conv1d, 1


class FNO2d(PDEBenchFNO):
    spectral, pointwise, dim = SpectralConv2d, nn.Conv2d, 2


NETWORKS = {1: FNO1d, 2: FNO2d}


class PDEBenchFNOSurrogate(PhysicalRollout):
    """PDEBench's FNO1d/FNO2d as a one-step surrogate: u [B, N, history*fields] and the grid points
    pos [B, N, d] -> the next frame [B, N, fields]; rolls out in physical space."""

    def __init__(self, dim_space: int, fields: int, history: int = 10, cond_dim: int = 1, modes: int = 12,
                 hidden: int = 20, layers: int = 4):
        super().__init__()
        if dim_space not in NETWORKS:
            raise UptError(f"PDEBench's FNO (model.variant: pdebench) is 1D or 2D here; this grid is {dim_space}D")
        if cond_dim > 1:
            raise UptError("PDEBench's FNO (model.variant: pdebench) takes no PDE parameters; set params: []")
        self.fields, self.history = fields, history
        self.fno = NETWORKS[dim_space](fields, modes=modes, width=hidden, initial_step=history, layers=layers)

    def forward(self, u, pos, query_pos, cond, grid_shape=None, mask=None) -> torch.Tensor:
        """One step on the grid (``cond``, the frame's time, is not an input of PDEBench's FNO)."""
        self.check_on_grid(pos, query_pos)
        if u.shape[-1] != self.history * self.fields:
            raise UptError(f"PDEBench FNO: expected {self.history} frames x {self.fields} fields = "
                           f"{self.history * self.fields} input channels, got {u.shape[-1]}")
        axes = " ".join(f"s{i}" for i in range(len(grid_shape)))
        sizes = {f"s{i}": n for i, n in enumerate(grid_shape)}
        to_grid = f"b ({axes}) c -> b {axes} c"
        out = self.fno(rearrange(u, to_grid, **sizes), rearrange(pos, to_grid, **sizes).to(u.dtype))
        return rearrange(out, f"b {axes} c -> b ({axes}) c")
