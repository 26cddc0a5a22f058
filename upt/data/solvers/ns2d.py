"""2D incompressible Navier-Stokes on the periodic unit square, in PDEBench's incompressible-NS layout.

Equation, in vorticity form on (x, y) in [0, 1)^2 with periodic boundaries (the FNO benchmark's setup):

    w_t + u . grad(w) = nu lap(w) + f,    u = (psi_y, -psi_x),    -lap(psi) = w,
    f(x, y) = 0.1 (sin 2 pi (x + y) + cos 2 pi (x + y)),

with the initial vorticity a Gaussian random field N(0, 7^{3/2} (-lap + 49 I)^{-2.5}) and nu = 1e-3 by
default.

Scheme: Fourier pseudo-spectral on N x N points x_i = i / N (numpy's rfft2), the product u . grad(w)
formed on the grid and de-aliased by the 2/3 rule (modes with 3 |k_x| < N and 3 |k_y| < N kept, the
state included, so the truncated system conserves energy and enstrophy exactly apart from viscosity
and forcing). Time: integrating-factor RK4 (Lawson's RK4) on the deviation from the Stokes steady
state f / (nu |k|^2): diffusion and forcing are integrated exactly by exp(-nu |k|^2 t), advection by
classical RK4. This replaces the FNO solver's Crank-Nicolson (diffusion) / forward-Euler (advection)
step, first order in the advection and run at dt = 1e-4, with a fourth-order step limited only by the
advective CFL number: 0.02-0.1 at 64^2 and nu = 1e-3. Each sample takes its own step per save
interval, so its trajectory does not depend on the batch it ran in.
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass
from functools import lru_cache

import h5py
import numpy as np

from upt.atomic import atomic_output
from upt.errors import UptError

NU = 1e-3
T_END = 50.0
FRAMES = 51  # every second: see generate_ns2d
FORCING_AMPLITUDE = 0.1
GRF_ALPHA, GRF_TAU = 2.5, 7.0
# dt = CFL dx / max(|u| + |v|). RK4 is stable up to dt * |lambda| = 2.8 on the imaginary axis and the
# de-aliased advection has |lambda| <= (|u| + |v|) 2 pi N / 3, so stability needs CFL < 1.35. The
# step is fixed from the speed at the start of each save interval, so 0.5 leaves room for the flow to
# speed up within one; its error against 4x shorter steps is 1e-7 (64^2, 20 s) to 1e-6 (a 5x
# stronger flow, 2 s) relative, far below float32 noise in a surrogate's error.
CFL = 0.5
CHUNK_VALUES = 2**16  # grid points per block of samples (16 of 64^2): the fastest block size measured
SOLVER = "Fourier pseudo-spectral (2/3 de-aliasing), integrating-factor RK4"


@dataclass(frozen=True)
class SpectralGrid:
    """Wavenumbers of an n x n periodic unit square in rfft2's layout (x along axis -2, y along -1)."""

    n: int
    kx: np.ndarray  # [n, 1], 2 pi * integer
    ky: np.ndarray  # [1, n // 2 + 1]
    k2: np.ndarray  # |k|^2
    u_of_w: np.ndarray  # i k_y / |k|^2: u_hat = u_of_w * w_hat (0 at k = 0: no mean flow)
    v_of_w: np.ndarray  # -i k_x / |k|^2
    keep: np.ndarray  # the 2/3-rule mask as 0.0 / 1.0
    columns: int  # k_y columns the mask keeps: the rest are 0 and need no x transform


@lru_cache(maxsize=8)
def spectral_grid(n: int) -> SpectralGrid:
    ix = np.fft.fftfreq(n, 1.0 / n)[:, None]
    iy = np.fft.rfftfreq(n, 1.0 / n)[None, :]
    kx, ky = 2.0 * np.pi * ix, 2.0 * np.pi * iy
    k2 = kx**2 + ky**2
    inv_k2 = np.divide(1.0, k2, out=np.zeros_like(k2), where=k2 > 0)
    # Strictly inside N/3: products of kept modes reach 2N/3 and alias to below -N/3 only then.
    keep = (3 * np.abs(ix) < n) & (3 * np.abs(iy) < n)
    return SpectralGrid(n, kx, ky, k2, 1j * ky * inv_k2, -1j * kx * inv_k2, keep.astype(float),
                        int(keep[0].sum()))


def grid_points(n: int) -> np.ndarray:
    """The points i / n at which fields, forcing and the saved velocity live (the FFT's own grid)."""
    return np.arange(n) / n


def forcing_vorticity(n: int) -> np.ndarray:
    """f(x_i, y_j) = 0.1 (sin 2 pi (x + y) + cos 2 pi (x + y)) on the n x n grid: [n, n]."""
    s = 2.0 * np.pi * (grid_points(n)[:, None] + grid_points(n)[None, :])
    return FORCING_AMPLITUDE * (np.sin(s) + np.cos(s))


def forcing_velocity(n: int) -> np.ndarray:
    """The divergence-free velocity forcing F whose curl is f: [n, n, 2].

    F = (phi_y, -phi_x) with -lap(phi) = f, computed like the velocity from the vorticity. Any other
    F with the same curl differs by a gradient, which the pressure absorbs: this is the one a
    momentum-form solver would see after projection, and <u, F> is the forcing's power input.
    """
    return velocity_from_vorticity(forcing_vorticity(n))


def fno_initial_vorticity(rng: np.random.Generator, samples: int, n: int) -> np.ndarray:
    """Gaussian random field w0 ~ N(0, 7^{3/2} (-lap + 49 I)^{-2.5}) on the n x n grid: [samples, n, n].

    Drawn as the FNO paper's generator (``GaussianRF(2, n, alpha=2.5, tau=7)`` of its 2020
    ``random_fields.py``, which made its Navier-Stokes data) draws it: each Fourier coefficient is
    sqrt(2) sigma (4 pi^2 |k|^2 + tau^2)^{-alpha/2} (a + i b) with a and b independent N(0, 1),
    sigma = tau^{alpha - 1} = 7^{3/2}, and the field is the real part of the inverse transform; the
    mean is 0. The point variance is therefore sum_k 2 sigma^2 (4 pi^2 |k|^2 + tau^2)^{-alpha} over
    the grid's wavenumbers k != 0 (see :func:`initial_vorticity_variance`). (Later versions of that
    file draw a standard complex normal, a + i b with variance 1/2 each: a field sqrt(2) weaker.)
    """
    sqrt_eig = np.sqrt(_initial_mode_variance(n))
    shape = (samples, n, n)
    coeff = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    return np.fft.ifft2(sqrt_eig * coeff * n**2).real  # ifft2 divides by n^2; the field does not


def initial_vorticity_variance(n: int) -> float:
    """The variance of w0(x) at any grid point under :func:`fno_initial_vorticity` on the n x n grid:
    Re sum_k s_k (a_k + i b_k) e^{i k.x} has variance sum_k s_k^2."""
    return float(_initial_mode_variance(n).sum())


def _initial_mode_variance(n: int) -> np.ndarray:
    """s_k^2 = 2 sigma^2 (4 pi^2 |k|^2 + tau^2)^{-alpha} per wavenumber (fftfreq layout), 0 at k = 0."""
    ix = np.fft.fftfreq(n, 1.0 / n)
    k2 = ix[:, None] ** 2 + ix[None, :] ** 2
    sigma = GRF_TAU ** (GRF_ALPHA - 1.0)
    variance = 2.0 * sigma**2 * (4.0 * np.pi**2 * k2 + GRF_TAU**2) ** (-GRF_ALPHA)
    variance[0, 0] = 0.0
    return variance


def velocity_from_vorticity(w: np.ndarray) -> np.ndarray:
    """u = (psi_y, -psi_x) with -lap(psi) = w, spectrally, for w [..., n, n]: [..., n, n, 2].

    Spectral derivatives make the discrete divergence (the same spectral one) vanish identically, so
    the saved velocity is divergence-free up to rounding.
    """
    n = w.shape[-1]
    u_hat, v_hat = _velocity_hat(np.fft.rfft2(w), spectral_grid(n))
    return np.stack([np.fft.irfft2(u_hat, s=(n, n)), np.fft.irfft2(v_hat, s=(n, n))], axis=-1)


def vorticity_from_velocity(velocity: np.ndarray) -> np.ndarray:
    """w = v_x - u_y, spectrally, for a periodic velocity [..., n, n, 2]: [..., n, n]."""
    n = velocity.shape[-2]
    grid = spectral_grid(n)
    u_hat, v_hat = np.fft.rfft2(velocity[..., 0]), np.fft.rfft2(velocity[..., 1])
    return np.fft.irfft2(1j * grid.kx * v_hat - 1j * grid.ky * u_hat, s=(n, n))


def spectral_resample(f: np.ndarray, n_out: int) -> np.ndarray:
    """Trigonometric interpolation of periodic f [..., n, n] onto the n_out x n_out grid i / n_out.

    Keeps the modes both grids resolve below their Nyquist frequency, so coarsening is the
    spectral truncation a spectral solver starts from, and refining a band-limited field is exact.
    """
    n = f.shape[-1]
    if n_out == n:
        return f
    m = min(n, n_out) // 2  # |k| < m on both grids
    f_hat = np.fft.rfft2(f)
    out = np.zeros((*f.shape[:-2], n_out, n_out // 2 + 1), dtype=complex)
    out[..., :m, :m] = f_hat[..., :m, :m]
    out[..., n_out - m + 1:, :m] = f_hat[..., n - m + 1:, :m]
    return np.fft.irfft2(out * (n_out / n) ** 2, s=(n_out, n_out))


def _velocity_hat(w_hat: np.ndarray, grid: SpectralGrid) -> tuple[np.ndarray, np.ndarray]:
    return grid.u_of_w * w_hat, grid.v_of_w * w_hat


class _Workspace:
    """Every array one block's time step writes, allocated once per block.

    Fresh temporaries of a block's size (past glibc's 128 KiB mmap threshold) are each a new mapping
    that page-faults on first touch; a profile showed that doubling the time of a step, so the step
    works in place in these buffers instead.
    """

    def __init__(self, samples: int, grid: SpectralGrid):
        shape = (samples, grid.n, grid.n // 2 + 1)
        self.spectra = np.empty((4, *shape), complex)  # u, v, w_x, w_y in Fourier space
        self.fields = np.empty((4, samples, grid.n, grid.n))  # the same on the grid
        self.w, self.k, self.stage, self.total = (np.empty(shape, complex) for _ in range(4))


def _tendency(deviation: np.ndarray, steady: np.ndarray, grid: SpectralGrid, ws: _Workspace,
              out: np.ndarray) -> np.ndarray:
    """Fourier coefficients of -u . grad(w), de-aliased, for w = steady + deviation, into ``out``.

    The 2D transforms run as their two 1D passes so the x pass can skip the k_y columns the 2/3 rule
    zeroes (a third of them) and so nothing is allocated.
    """
    spectra, c, w_hat = ws.spectra, grid.columns, ws.w
    np.add(deviation, steady, out=w_hat)
    np.multiply(w_hat, grid.u_of_w, out=spectra[0])
    np.multiply(w_hat, grid.v_of_w, out=spectra[1])
    np.multiply(w_hat, 1j * grid.kx, out=spectra[2])
    np.multiply(w_hat, 1j * grid.ky, out=spectra[3])
    np.fft.ifft(spectra[..., :c], axis=-2, out=spectra[..., :c])
    np.fft.irfft(spectra, n=grid.n, axis=-1, out=ws.fields)
    u, v, wx, wy = ws.fields
    u *= wx
    v *= wy
    u += v
    np.fft.rfft(u, axis=-1, out=out)
    np.fft.fft(out[..., :c], axis=-2, out=out[..., :c])
    out *= -grid.keep  # also clears the columns the x pass skipped
    return out


def ns2d_time_step(w_hat: np.ndarray, grid: SpectralGrid) -> np.ndarray:
    """Step per sample, w_hat [S, n, n // 2 + 1]: CFL dx / max(|u| + |v|) (see CFL)."""
    u_hat, v_hat = _velocity_hat(w_hat, grid)
    speed = (np.abs(np.fft.irfft2(u_hat, s=(grid.n, grid.n))).max(axis=(-2, -1))
             + np.abs(np.fft.irfft2(v_hat, s=(grid.n, grid.n))).max(axis=(-2, -1)))
    return CFL / grid.n / np.maximum(speed, 1e-12)


def _ifrk4_step(w_hat, dt, decay_half, decay, steady, grid, ws):
    """One Lawson RK4 step of the deviation w_hat from ``steady``, in place: RK4 on
    exp(nu |k|^2 t) w_hat, which only advection moves. With E = exp(-nu |k|^2 dt / 2) and
    k_i = dt * tendency(stage_i):

        stages  w,  E (w + k1/2),  E w + k2/2,  E^2 w + E k3
        w_new = E^2 (w + k1/6) + E (k2 + k3) / 3 + k4 / 6

    ``decay_half`` is E per sample, ``decay`` E^2, dt [S, 1, 1]; dt = 0 with E = 1 leaves a sample as it is.
    The in-place arithmetic below spells this out without temporaries (see _Workspace).
    """
    k, stage, total = ws.k, ws.stage, ws.total
    _tendency(w_hat, steady, grid, ws, out=k)
    k *= dt  # k1
    np.multiply(k, 1.0 / 6.0, out=total)
    total += w_hat
    total *= decay  # E^2 (w + k1/6)
    k *= 0.5
    np.add(w_hat, k, out=stage)
    stage *= decay_half  # E (w + k1/2)
    _tendency(stage, steady, grid, ws, out=k)
    k *= dt  # k2
    np.multiply(w_hat, decay_half, out=stage)
    k *= 0.5
    stage += k  # E w + k2/2
    k *= decay_half
    k *= 2.0 / 3.0
    total += k  # + E k2 / 3
    _tendency(stage, steady, grid, ws, out=k)
    k *= dt  # k3
    k *= decay_half
    np.multiply(w_hat, decay, out=stage)
    stage += k  # E^2 w + E k3
    k *= 1.0 / 3.0
    total += k  # + E k3 / 3
    _tendency(stage, steady, grid, ws, out=k)
    k *= dt  # k4
    k *= 1.0 / 6.0
    np.add(total, k, out=w_hat)  # + k4 / 6


def solve_ns2d(w0: np.ndarray, nu: float, t_save: np.ndarray, forcing: bool = True,
               max_dt: float | None = None) -> np.ndarray:
    """Evolve vorticity w0 [S, n, n] on the grid i / n; return the vorticity at t_save: [S, T, n, n].

    t_save[0] is the time of w0. ``forcing=False`` drops f (for decaying flows). Samples go in blocks
    of at most CHUNK_VALUES grid points, so the step's buffers stay bounded whatever the number of
    samples.
    """
    w0 = np.asarray(w0, dtype=np.float64)
    n = w0.shape[-1]
    out = np.empty((w0.shape[0], len(t_save), n, n))
    block = max(1, CHUNK_VALUES // n**2)
    for first in range(0, len(w0), block):
        out[first:first + block] = _solve_block(w0[first:first + block], nu, t_save, forcing, max_dt)
    return out


def _solve_block(w0, nu, t_save, forcing, max_dt):
    n = w0.shape[-1]
    grid = spectral_grid(n)
    ws = _Workspace(len(w0), grid)
    steady = _stokes_steady_state(grid, nu) if forcing else np.zeros_like(grid.u_of_w)
    w_hat = np.fft.rfft2(w0) * grid.keep  # the state lives on the kept modes only
    w_hat -= steady
    out = np.empty((len(w0), len(t_save), n, n))
    out[:, 0] = np.fft.irfft2(w_hat + steady, s=(n, n))
    for k, interval in enumerate(np.diff(t_save), start=1):
        dt_max = ns2d_time_step(w_hat + steady, grid)
        if max_dt is not None:
            dt_max = np.minimum(dt_max, max_dt)
        steps = np.ceil(interval / dt_max)
        dt_all = (interval / steps)[:, None, None]
        decay_half = np.exp(-0.5 * nu * dt_all * grid.k2)
        decay = decay_half**2
        for step in range(int(steps.max())):
            active = (step < steps)[:, None, None]  # finished samples wait with dt = 0
            if not active.all():
                dt_all = np.where(active, dt_all, 0.0)
                decay_half, decay = np.where(active, decay_half, 1.0), np.where(active, decay, 1.0)
            _ifrk4_step(w_hat, dt_all, decay_half, decay, steady, grid, ws)
        out[:, k] = np.fft.irfft2(w_hat + steady, s=(n, n))
    return out


def _stokes_steady_state(grid: SpectralGrid, nu: float) -> np.ndarray:
    """w_s = f / (nu |k|^2), which solves nu lap(w) + f = 0.

    The solver evolves w - w_s: nu lap(w - w_s) is then the whole linear part, so the integrating
    factor integrates forcing and diffusion together exactly. (Lawson RK4 on w with f as a source
    errs by ~(nu |k|^2 dt)^5: 1e-4 for a slow flow at nu = 0.01, whose CFL step is long.)
    f has no mean, so the mean mode, which nothing moves, stays 0.
    """
    f_hat = np.fft.rfft2(forcing_vorticity(grid.n)) * grid.keep
    return np.divide(f_hat, nu * grid.k2, out=np.zeros_like(f_hat), where=grid.k2 > 0)


def solve_ns2d_velocity(velocity: np.ndarray, nu: float, t_save: np.ndarray, resolution: int) -> np.ndarray:
    """Continue velocity fields [S, n, n, 2] on a ``resolution``^2 grid: [S, T, n, n, 2] at t_save.

    For the coarse-solver baseline: the velocity is resampled spectrally to the solver's grid, its
    vorticity evolved with the dataset's nu and forcing, and the velocity resampled back to n x n.
    """
    n = velocity.shape[-2]
    coarse = spectral_resample(np.moveaxis(np.asarray(velocity, np.float64), -1, 0), resolution)
    w = solve_ns2d(vorticity_from_velocity(np.moveaxis(coarse, 0, -1)), nu, t_save)
    return np.moveaxis(spectral_resample(np.moveaxis(velocity_from_vorticity(w), -1, 0), n), 0, -1)


def _validate(samples: int, resolution: int, nu: float, seed: int, t_end: float, frames: int) -> None:
    if not isinstance(samples, numbers.Integral) or samples < 1:
        raise UptError(f"ns2d: samples must be an integer >= 1, got {samples!r}")
    if not isinstance(resolution, numbers.Integral) or resolution < 8 or resolution % 2:
        raise UptError(f"ns2d: resolution must be an even integer >= 8 (an FFT grid), got {resolution!r}")
    if not (isinstance(nu, numbers.Real) and math.isfinite(nu) and nu > 0):
        raise UptError(f"ns2d: nu must be a finite number > 0, got {nu!r}")
    if not isinstance(seed, numbers.Integral) or seed < 0:
        raise UptError(f"ns2d: seed must be an integer >= 0, got {seed!r}")
    if not (isinstance(t_end, numbers.Real) and math.isfinite(t_end) and t_end > 0):
        raise UptError(f"ns2d: t_end must be a finite number > 0, got {t_end!r}")
    if not isinstance(frames, numbers.Integral) or frames < 2:
        raise UptError(f"ns2d: frames must be an integer >= 2, got {frames!r}")


def _initial_vorticity(seed: int, first: int, last: int, n: int) -> np.ndarray:
    """Samples first..last-1, sample i drawn from the i-th child of the seed (``spawn_key=(i,)`` is
    what ``SeedSequence(seed).spawn`` would give it), so a sample does not depend on how many samples
    the file has or how they are blocked."""
    return np.concatenate([
        fno_initial_vorticity(np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(i,))), 1, n)
        for i in range(first, last)])


def generate_ns2d(out: str | os.PathLike, samples: int, resolution: int, nu: float = NU, seed: int = 0,
                  t_end: float = T_END, frames: int = FRAMES) -> None:
    """Write ``samples`` trajectories on a ``resolution``^2 grid to ``out`` in PDEBench's NS layout.

    Datasets: ``velocity`` [sample, t, x, y, 2] float32 (u, v at (x_i, y_j), computed from the
    stream function: divergence-free), ``force`` [sample, x, y, 2] float32 (the divergence-free
    velocity forcing whose curl is f, the same for every sample), ``t`` [sample, t] and
    ``x-coordinate``, ``y-coordinate`` (i / N). No ``particles``: PDEBench's passive tracer has no
    counterpart here. Root attributes: ``Nu``, ``generator``, ``seed``, ``solver``,
    ``forcing_amplitude``, ``periodic`` (1).

    Default frames: t = 0, 1, ..., 50, the FNO benchmark's horizon at nu = 1e-3. The flow changes
    over all of it: at 64^2 the velocity moves by 49% (relative L2) in the first second, while the
    random start decays and the forced mode grows (time scale 1 / (8 pi^2 nu) ~ 13 s), by 7% per
    second at the slowest (t ~ 10-20), and by 20% per second once the forced shear flow turns
    unstable (t > 30). A shorter horizon would keep mostly the near-linear growth phase.
    """
    _validate(samples, resolution, nu, seed, t_end, frames)
    n = resolution
    t = np.linspace(0.0, t_end, frames)
    block = max(1, CHUNK_VALUES // n**2)
    with atomic_output(out) as tmp, h5py.File(tmp, "w") as f:
        velocity = f.create_dataset("velocity", (samples, frames, n, n, 2), np.float32,
                                    chunks=(1, 1, n, n, 2))
        force = f.create_dataset("force", (samples, n, n, 2), np.float32)
        f.create_dataset("t", data=np.broadcast_to(t.astype(np.float32), (samples, frames)))
        f.create_dataset("x-coordinate", data=grid_points(n).astype(np.float32))
        f.create_dataset("y-coordinate", data=grid_points(n).astype(np.float32))
        # periodic = 1: `upt convert` keeps it as pde_periodic, which selects spectral derivatives for
        # the divergence prior and metric (upt.losses.periodic_domain)
        f.attrs.update({"Nu": float(nu), "generator": "upt", "seed": seed, "solver": SOLVER,
                        "forcing_amplitude": FORCING_AMPLITUDE, "periodic": 1})
        force_block = forcing_velocity(n).astype(np.float32)
        for first in range(0, samples, block):  # one block in memory at a time
            last = min(first + block, samples)
            w = solve_ns2d(_initial_vorticity(seed, first, last, n), nu, t)
            velocity[first:last] = velocity_from_vorticity(w).astype(np.float32)
            force[first:last] = force_block
