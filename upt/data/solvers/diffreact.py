"""2D diffusion-reaction (FitzHugh-Nagumo), generated the way PDEBench generates ``2D_diff-react_NA_NA.h5``.

Equations, on [-1, 1]^2 with homogeneous Neumann (zero-flux) boundaries, t in [0, 5]:

    u_t = Du (u_xx + u_yy) + u - u^3 - k - v,        Du = 1e-3, k = 5e-3
    v_t = Dv (v_xx + v_yy) + u - v,                  Dv = 5e-3

Scheme: cell-centred finite volumes (the 5-point Laplacian with no flux through the outer faces,
the same operator as PDEBench's sparse matrix) and classical explicit RK4 in time. PDEBench
integrates the same semi-discrete system with scipy's adaptive RK45; a fixed RK4 step per save
interval, chosen from the stiffness of the current state, is as accurate here and vectorizes over
samples.
"""

from __future__ import annotations

import numbers
import os

import h5py
import numpy as np

from upt.atomic import atomic_output
from upt.errors import UptError

DU, DV, K = 1e-3, 5e-3, 5e-3
T_END = 5.0
FRAMES = 101
SOLVER = "FV 5-point Laplacian (Neumann), explicit RK4"


def diffreact_initial_condition(rng: np.random.Generator, samples: int,
                                resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """PDEBench's initial condition: u and v independent standard normal in every cell. Each [S, X, Y]."""
    u0 = rng.standard_normal((samples, resolution, resolution))
    v0 = rng.standard_normal((samples, resolution, resolution))
    return u0, v0


def neumann_laplacian(f: np.ndarray, dx: float) -> np.ndarray:
    """Finite-volume Laplacian of f [..., X, Y] on square cells of side dx, zero flux at the boundary.

    Only interior faces carry a flux and each enters its two cells with opposite signs, so the sum
    over cells is zero up to round-off: diffusion alone conserves the mean.
    """
    lap = np.zeros_like(f)
    fx = np.diff(f, axis=-2)
    fy = np.diff(f, axis=-1)
    lap[..., :-1, :] += fx
    lap[..., 1:, :] -= fx
    lap[..., :, :-1] += fy
    lap[..., :, 1:] -= fy
    return lap / dx**2


def _rhs(w: np.ndarray, dx: float) -> np.ndarray:
    """Time derivative of w = stack(u, v) along axis 1, shape [S, 2, X, Y]."""
    u, v = w[:, 0], w[:, 1]
    du = DU * neumann_laplacian(u, dx) + u - u**3 - K - v
    dv = DV * neumann_laplacian(v, dx) + u - v
    return np.stack([du, dv], axis=1)


def diffreact_time_step(u: np.ndarray, dx: float) -> np.ndarray:
    """RK4 step per sample, u [S, X, Y]: half the inverse of a bound on the Jacobian's spectral radius.

    By Gershgorin, diffusion contributes at most 8 Dv / dx^2 and the reaction |1 - 3u^2| + 1 for u,
    2 for v, so rho <= 8 Dv / dx^2 + 3 max u^2 + 2. RK4 is stable up to dt * rho ~ 2.8; dt * rho = 1/2
    is chosen for accuracy: the stiff first frames of the white-noise start then match a 10x
    finer step to ~1e-5 (dt * rho = 1 gives ~1e-4).
    """
    return 0.5 / (8.0 * DV / dx**2 + 3.0 * (u**2).max(axis=(1, 2)) + 2.0)


def solve_diffreact(u0: np.ndarray, v0: np.ndarray, t_save: np.ndarray, dx: float,
                    max_dt: float | None = None) -> np.ndarray:
    """Evolve u0, v0 [S, X, Y] on cells of side dx; return [S, T, X, Y, 2] at t_save (t_save[0] = now).

    Every save interval is split into equal RK4 steps no longer than ``diffreact_time_step`` (or
    ``max_dt``), chosen per sample so a sample's trajectory does not depend on its batch.
    """
    w = np.stack([u0, v0], axis=1).astype(np.float64)
    out = np.empty((w.shape[0], len(t_save), *w.shape[2:], 2))
    out[:, 0] = np.moveaxis(w, 1, -1)
    for k, interval in enumerate(np.diff(t_save), start=1):
        dt_max = diffreact_time_step(w[:, 0], dx)
        if max_dt is not None:
            dt_max = np.minimum(dt_max, max_dt)
        steps = np.ceil(interval / dt_max)
        dt_all = (interval / steps)[:, None, None, None]
        for step in range(int(steps.max())):
            dt = np.where((step < steps)[:, None, None, None], dt_all, 0.0)  # finished samples wait
            k1 = _rhs(w, dx)
            k2 = _rhs(w + 0.5 * dt * k1, dx)
            k3 = _rhs(w + 0.5 * dt * k2, dx)
            k4 = _rhs(w + dt * k3, dx)
            w = w + dt / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
        out[:, k] = np.moveaxis(w, 1, -1)
    return out


def _validate(samples: int, resolution: int, seed: int) -> None:
    if not isinstance(samples, numbers.Integral) or samples < 1:
        raise UptError(f"diffreact2d: samples must be an integer >= 1, got {samples!r}")
    if not isinstance(resolution, numbers.Integral) or resolution < 8:
        raise UptError(f"diffreact2d: resolution must be an integer >= 8, got {resolution!r}")
    if not isinstance(seed, numbers.Integral) or seed < 0:
        raise UptError(f"diffreact2d: seed must be an integer >= 0, got {seed!r}")


def generate_diffreact2d(out: str | os.PathLike, samples: int, resolution: int, seed: int = 0) -> None:
    """Write ``samples`` trajectories on a ``resolution``^2 grid to ``out`` in PDEBench's layout.

    One group per sample, ``0000``, ``0001``, ..., each with ``data`` [t(101), x, y, 2] float32
    (channels u, v) and ``grid/x``, ``grid/y`` (cell centres), ``grid/t``. Root attributes:
    ``generator``, ``seed``, ``solver``, ``Du``, ``Dv``, ``k``.
    """
    _validate(samples, resolution, seed)
    dx = 2.0 / resolution
    x = -1.0 + (np.arange(resolution) + 0.5) * dx
    t = np.linspace(0.0, T_END, FRAMES)
    u0, v0 = diffreact_initial_condition(np.random.default_rng(seed), samples, resolution)
    with atomic_output(out) as tmp:
        data = solve_diffreact(u0, v0, t, dx).astype(np.float32)
        with h5py.File(tmp, "w") as f:
            f.attrs.update({"generator": "upt", "seed": seed, "solver": SOLVER,
                            "Du": DU, "Dv": DV, "k": K})
            for i, sample in enumerate(data):
                group = f.create_group(f"{i:04d}")
                group.create_dataset("data", data=sample)
                for name, values in (("x", x), ("y", x), ("t", t)):
                    group.create_dataset(f"grid/{name}", data=values.astype(np.float32))
