"""1D viscous Burgers equation, generated the way PDEBench generates ``1D_Burgers_Sols_Nu*.hdf5``.

Equation, on x in (0, 1) with periodic boundaries:

    u_t + (u^2 / 2)_x = (nu / pi) u_xx

Scheme (PDEBench's, with a Rusanov flux): finite volumes on N cells with centres x_i = (i + 1/2)/N;
piecewise-linear reconstruction with the monotonized-central (MC) limiter; Rusanov (local
Lax-Friedrichs) flux for the convective part and a central difference for the viscous flux; the
midpoint predictor-corrector in time,

    u*      = u^n - dt/2 * D(u^n),        u^{n+1} = u^n - dt * D(u*),

where D(u) is the divergence of the numerical flux. Each sample takes its own adaptive step
dt = 0.25 * min(dx / max|u|, 0.5 * dx^2 * pi / nu), shortened so saves land exactly on ``t_save``.
"""

from __future__ import annotations

import math
import numbers
import os

import h5py
import numpy as np

from upt.atomic import atomic_output
from upt.errors import UptError

T_END = 2.0
DT_SAVE = 0.01
CFL = 0.25
CHUNK_VALUES = 8192  # cells per block of samples: 64 KiB arrays (see solve_burgers)
SOLVER = "FV, MC-limited linear reconstruction, Rusanov flux, midpoint predictor-corrector"


def burgers_initial_condition(rng: np.random.Generator, samples: int, x: np.ndarray) -> np.ndarray:
    """PDEBench's random ``sin`` initial condition (``init_multi`` with k_tot=4) at the points x in (0, 1).

    u0(x) = sum_{k=1..4} A_k sin(2 pi k c_k x + phi_k), A_k ~ U(0, 1), phi_k ~ U(0, 2 pi), where c_k
    counts how often k was among two wavenumbers drawn from {1..4}. As in PDEBench, an unpicked mode
    (c_k = 0) leaves the constant A_k sin(phi_k), and a mode picked twice has wavenumber 2k.
    Then u0 -> |u0| with probability 0.1, a random sign, and with probability 0.1 a tanh window
    0.5 (tanh((x - xL)/0.01) - tanh((x - xR)/0.01)), xL ~ U(0.1, 0.45), xR ~ U(0.55, 0.9).
    Returns an array [samples, len(x)].
    """
    picks = rng.integers(1, 5, size=(samples, 2))
    counts = (picks[:, :, None] == np.arange(1, 5)).sum(axis=1)  # [S, 4]
    amp = rng.uniform(0.0, 1.0, size=(samples, 4, 1))
    phase = rng.uniform(0.0, 2.0 * np.pi, size=(samples, 4, 1))
    wavenumber = 2.0 * np.pi * np.arange(1, 5) * counts  # [S, 4]
    u = (amp * np.sin(wavenumber[:, :, None] * x + phase)).sum(axis=1)

    u = np.where(rng.random((samples, 1)) < 0.1, np.abs(u), u)
    u *= rng.choice([-1.0, 1.0], size=(samples, 1))

    x_left = rng.uniform(0.1, 0.45, size=(samples, 1))
    x_right = rng.uniform(0.55, 0.9, size=(samples, 1))
    window = 0.5 * (np.tanh((x - x_left) / 0.01) - np.tanh((x - x_right) / 0.01))
    return np.where(rng.random((samples, 1)) < 0.1, u * window, u)


def burgers_time_step(u: np.ndarray, dx: float, nu: float) -> np.ndarray:
    """Stable step per sample: 0.25 * min(dx / max|u|, 0.5 dx^2 pi / nu), PDEBench's rule. u: [S, N]."""
    advective = dx / (np.abs(u).max(axis=1) + 1e-8)  # PDEBench's guard against u == 0
    diffusive = 0.5 * dx**2 * np.pi / nu
    return CFL * np.minimum(advective, diffusive)


def _mc_slope(back: np.ndarray, fwd: np.ndarray) -> np.ndarray:
    """Monotonized-central limited slope (times dx) from the backward and forward differences."""
    centred = 0.5 * (back + fwd)
    limited = np.minimum(np.abs(back), np.abs(fwd))
    limited *= 2.0
    np.minimum(limited, np.abs(centred), out=limited)
    limited *= np.sign(centred)
    limited *= back * fwd > 0.0  # 0 at extrema
    return limited


def _flux_divergence(u: np.ndarray, dx: float, nu: float) -> np.ndarray:
    """(F_{i+1/2} - F_{i-1/2}) / dx for the periodic cells u [N, S] (cells first, samples last).

    Cells run along the first axis and two ghost cells each side stand in for the periodic
    neighbours, so every shifted view is a contiguous slice: a profile showed ``np.roll`` copies
    along the last axis taking a quarter of the solver's time.
    """
    padded = np.concatenate([u[-2:], u, u[:2]])  # cells -2 .. N+1
    jump = padded[1:] - padded[:-1]  # jump[k]: across the face right of padded cell k
    slope = _mc_slope(jump[:-1], jump[1:])  # cells -1 .. N
    left = padded[1:-2] + 0.5 * slope[:-1]  # cells -1 .. N-1 at their right faces
    right = padded[2:-1] - 0.5 * slope[1:]  # cells 0 .. N at their left faces
    speed = np.maximum(np.abs(left), np.abs(right))
    flux = 0.25 * (left**2 + right**2) - 0.5 * speed * (right - left) - (nu / np.pi) * jump[1:-1] / dx
    # Each face flux enters two cells with opposite signs, so sum(u) changes only by round-off.
    return (flux[1:] - flux[:-1]) / dx


def solve_burgers(u0: np.ndarray, nu: float, t_save: np.ndarray, dx: float | None = None) -> np.ndarray:
    """Evolve cell values u0 [S, N] (periodic, dx = 1/N by default) and return u at t_save: [S, T, N].

    t_save[0] is the time of u0. Samples are advanced together but each with its own step, so a
    sample's trajectory does not depend on which other samples share the batch. That lets them go
    in blocks of at most CHUNK_VALUES cells: a step makes ~30 temporaries of a block's size, and
    past glibc's 128 KiB mmap threshold each one costs a fresh mapping and its page faults, which a
    profile showed making the solver 3-4x slower per cell.
    """
    u0 = np.asarray(u0, dtype=np.float64)
    dx = 1.0 / u0.shape[1] if dx is None else dx
    out = np.empty((u0.shape[0], len(t_save), u0.shape[1]))
    block = max(1, CHUNK_VALUES // u0.shape[1])
    for first in range(0, len(u0), block):
        out[first:first + block] = _solve_block(u0[first:first + block], nu, t_save, dx)
    return out


def _solve_block(u0: np.ndarray, nu: float, t_save: np.ndarray, dx: float) -> np.ndarray:
    u = u0.T.copy()  # [N, S]: see _flux_divergence
    out = np.empty((u.shape[1], len(t_save), u.shape[0]))
    out[:, 0] = u.T
    for k, interval in enumerate(np.diff(t_save), start=1):
        elapsed = np.zeros(u.shape[1])
        while np.any(elapsed < interval):
            remaining = interval - elapsed
            dt = np.minimum(burgers_time_step(u.T, dx, nu), remaining)  # 0 for samples already there
            half = u - 0.5 * dt * _flux_divergence(u, dx, nu)
            u = u - dt * _flux_divergence(half, dx, nu)
            elapsed = np.where(dt == remaining, interval, elapsed + dt)
        out[:, k] = u.T
    return out


def _validate(samples: int, nu: float, resolution: int, seed: int) -> None:
    if not isinstance(samples, numbers.Integral) or samples < 1:
        raise UptError(f"burgers1d: samples must be an integer >= 1, got {samples!r}")
    if not isinstance(resolution, numbers.Integral) or resolution < 8:
        raise UptError(f"burgers1d: resolution must be an integer >= 8, got {resolution!r}")
    if not (isinstance(nu, numbers.Real) and math.isfinite(nu) and nu > 0):
        raise UptError(f"burgers1d: nu must be a finite number > 0, got {nu!r}")
    if not isinstance(seed, numbers.Integral) or seed < 0:
        raise UptError(f"burgers1d: seed must be an integer >= 0, got {seed!r}")


def generate_burgers1d(out: str | os.PathLike, samples: int, nu: float, resolution: int,
                       seed: int = 0) -> None:
    """Write ``samples`` Burgers trajectories on ``resolution`` cells to ``out`` in PDEBench's layout.

    Datasets: ``tensor`` [sample, 201, x] float32 (t = 0, 0.01, ..., 2), ``x-coordinate`` [x] (cell
    centres) and ``t-coordinate`` [202] (0, ..., 2.01: PDEBench stores one time more than frames).
    Root attributes: ``Nu`` (the nu of the equation above), ``generator``, ``seed``, ``solver``.
    """
    _validate(samples, nu, resolution, seed)
    x = (np.arange(resolution) + 0.5) / resolution
    frames = round(T_END / DT_SAVE) + 1
    t_save = np.arange(frames) * DT_SAVE
    u0 = burgers_initial_condition(np.random.default_rng(seed), samples, x)
    with atomic_output(out) as tmp:
        u = solve_burgers(u0, nu, t_save)
        with h5py.File(tmp, "w") as f:
            f.create_dataset("tensor", data=u.astype(np.float32))
            f.create_dataset("x-coordinate", data=x.astype(np.float32))
            f.create_dataset("t-coordinate", data=(np.arange(frames + 1) * DT_SAVE).astype(np.float32))
            f.attrs.update({"Nu": float(nu), "generator": "upt", "seed": seed, "solver": SOLVER})
