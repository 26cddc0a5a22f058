"""Baselines that need no training: persistence, the spatial mean and the numerical solver on a
coarser grid. Each is the ``implementation`` of its entry in :data:`upt.vocabulary.BASELINES`:
``predict(test, solver=..., coarsen=...)`` -> the normalized prediction [S, steps, N, C].

Both predict from the last given frame, in physical units, and are scored by the same code as the
surrogates. The solver baselines know the PDE from the dataset (``solver``): ``burgers1d`` reads
the viscosity from the file attribute ``pde_Nu``; ``diffreact2d`` has fixed coefficients; ``ns2d``
reads ``pde_Nu`` and uses the generator's fixed forcing.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from upt.data.solvers.burgers import solve_burgers
from upt.data.solvers.diffreact import solve_diffreact
from upt.data.solvers.ns2d import solve_ns2d_velocity
from upt import vocabulary
from upt.errors import UptError
from upt.evaluation.scoring import TestSet


def persistence(test: TestSet, **options) -> torch.Tensor:
    """Copy the last given frame over the whole horizon: [S, steps, N, C] (normalized)."""
    last = test.frames[:, test.data.history - 1: test.data.history]
    return last.expand(-1, test.steps, -1, -1).clone()


def spatial_mean(test: TestSet, **options) -> torch.Tensor:
    """The spatial mean of the last given frame, per field, everywhere and forever: [S, steps, N, C].

    Exact for a conserved mean (Burgers on a periodic domain, incompressible velocity), and what
    a surrogate that blurs a decaying field to its mean converges to: a surrogate that does not
    beat it at a horizon has learned nothing about the dynamics there. The mean is taken in
    physical units (normalization is affine per field, so it commutes with the spatial mean)."""
    last = test.frames[:, test.data.history - 1: test.data.history]
    return last.mean(dim=2, keepdim=True).expand(-1, test.steps, last.shape[2], -1).clone()


def coarse_solver(test: TestSet, *, solver: str | None = None, coarsen: int = 4, **options) -> torch.Tensor:
    """The dataset's numerical solver (``solver``, a generator's name) on a ``coarsen`` times coarser grid."""
    if solver is None:
        raise UptError(f"the coarse-solver baseline needs the dataset's solver ({', '.join(vocabulary.GENERATORS)})")
    return solve(test, solver, pde_viscosity(test), coarsen)


def solve(test: TestSet, solver: str, nu: float | None, coarsen: int = 1) -> torch.Tensor:
    """Run ``solver`` from the last given frame on a grid ``coarsen`` times coarser per axis, then
    interpolate back to the data's points: [S, steps, N, C] (normalized, like a surrogate's output)."""
    if solver not in vocabulary.GENERATORS:
        raise UptError(f"unknown solver {solver!r}; known: {', '.join(vocabulary.GENERATORS)}")
    data, h = test.data, test.data.history
    state = test.physical(test.frames[:, h - 1: h])[:, 0]  # [S, *grid, C]
    t_save = data.times[h - 1:] - data.times[h - 1]
    if any(n % coarsen for n in data.grid_shape):
        raise UptError(f"grid {data.grid_shape} is not divisible by the coarsening factor {coarsen}")
    if solver == "burgers1d":
        if nu is None:
            raise UptError(f"{data.path}: the Burgers solver needs the viscosity attribute 'pde_Nu'")
        coarse = state[..., 0].reshape(len(state), -1, coarsen).mean(-1)  # cell averages
        out = solve_burgers(coarse, nu, t_save)[:, 1:]  # [S, steps, N / coarsen]
        fine = _upsample(torch.from_numpy(out).float(), coarsen, periodic=True)[..., None]
    elif solver == "ns2d":
        if nu is None:
            raise UptError(f"{data.path}: the ns2d solver needs the viscosity attribute 'pde_Nu'")
        # Spectral resampling both ways: the coarse grid keeps the modes it resolves.
        out = solve_ns2d_velocity(state[..., :2], nu, t_save, data.grid_shape[0] // coarsen)[:, 1:]
        fine = torch.from_numpy(out).float()  # [S, steps, X, Y, 2]
    else:
        n = data.grid_shape[0]
        u, v = (torch.from_numpy(state[..., i]).float()[:, None] for i in range(2))
        u, v = (F.avg_pool2d(f, coarsen)[:, 0].double().numpy() for f in (u, v))
        # PDEBench's square is [-1, 1]^2: side 2 over n cells.
        out = solve_diffreact(u, v, t_save, dx=2.0 * coarsen / n)[:, 1:]  # [S, steps, X, Y, 2]
        fine = _upsample(torch.from_numpy(out).float().movedim(-1, 2), coarsen, periodic=False).movedim(2, -1)
    s, steps = fine.shape[:2]
    return data.normalize(fine.reshape(s, steps, -1, len(data.fields)))


def _upsample(x: torch.Tensor, factor: int, periodic: bool) -> torch.Tensor:
    """Linear interpolation of cell values [..., *grid] to a grid ``factor`` times finer, cell-centred."""
    if factor == 1:
        return x
    lead, grid = x.shape[: x.ndim - (1 if periodic else 2)], x.shape[x.ndim - (1 if periodic else 2):]
    flat = x.reshape(-1, 1, *grid)
    if periodic:  # 1D periodic: pad one cell each side by wrap-around, then cut the padding away
        flat = torch.cat([flat[..., -1:], flat, flat[..., :1]], dim=-1)
        fine = F.interpolate(flat, scale_factor=factor, mode="linear", align_corners=False)
        fine = fine[..., factor:-factor]
    else:
        fine = F.interpolate(flat, scale_factor=factor, mode="bilinear", align_corners=False)
    return fine.reshape(*lead, *fine.shape[2:])


def pde_viscosity(test: TestSet) -> float | None:
    value = test.data.attrs.get("pde_Nu")
    return None if value is None else float(np.asarray(value))
