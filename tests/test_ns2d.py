"""The embedded 2D incompressible Navier-Stokes generator: exact solutions, invariants, an independent
solver, PDEBench's layout, the command line and the coarse-solver baseline."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from upt.cli import main as cli_main
from upt.data.solvers import ns2d
from upt.data.solvers.ns2d import (fno_initial_vorticity, forcing_velocity, forcing_vorticity,
                                   generate_ns2d, solve_ns2d, spectral_resample, velocity_from_vorticity,
                                   vorticity_from_velocity)
from upt.evaluation.evaluate import evaluate_baseline

F32_EPS = float(np.finfo(np.float32).eps)


def grid_xy(n):
    x = np.arange(n) / n
    return np.meshgrid(x, x, indexing="ij")


def rel_l2(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def spectral_derivatives(f):
    """(d/dx, d/dy) of periodic f [..., n, n] on the unit square, by FFT."""
    n = f.shape[-1]
    k = 2j * np.pi * np.fft.fftfreq(n, 1.0 / n)
    f_hat = np.fft.fft2(f)
    return (np.fft.ifft2(k[:, None] * f_hat).real, np.fft.ifft2(k[None, :] * f_hat).real)


# ---------------------------------------------------------------- exact solutions

def test_decaying_taylor_green_flow_is_exact():
    """A vorticity made of Fourier modes of one |k| is a multiple of its stream function, so
    u . grad(w) = c (psi_y psi_x - psi_x psi_y) = 0 and, unforced, w(t) = w0 exp(-nu |k|^2 t).

    Here four mode pairs with |k|^2 = 25 (2 pi)^2, (3, 4), (4, 3), (5, 0), (0, 5), with random
    amplitudes and phases: the nonlinear term vanishes only by cancellation between them. The
    integrating factor makes the decay exact, so what is left is rounding."""
    n, nu, a = 32, 0.002, 2.0 * np.pi
    x, y = grid_xy(n)
    rng = np.random.default_rng(0)
    w0 = sum(rng.normal() * np.cos(a * (p * x + q * y) + rng.uniform(0, 2 * np.pi))
             for p, q in ((3, 4), (4, 3), (5, 0), (0, 5), (3, -4), (4, -3)))
    t = np.linspace(0.0, 2.0, 5)
    w = solve_ns2d(w0[None], nu, t, forcing=False)[0]
    exact = w0 * np.exp(-nu * 25 * a**2 * t)[:, None, None]
    assert exact[-1].std() < 0.05 * w0.std()  # the flow has really decayed
    assert max(rel_l2(w[i], exact[i]) for i in range(len(t))) < 1e-10


def test_forced_shear_flow_grows_to_its_steady_state():
    """From rest the forcing's single mode s = 2 pi (x + y) grows as f (1 - exp(-8 pi^2 nu t)) /
    (8 pi^2 nu): w and psi depend on x + y only, so advection vanishes. This pins the forcing's sign,
    amplitude and phase on the grid."""
    n, nu = 16, 0.01
    t = np.linspace(0.0, 5.0, 6)
    w = solve_ns2d(np.zeros((1, n, n)), nu, t)[0]
    rate = 8 * np.pi**2 * nu
    exact = forcing_vorticity(n) * ((1 - np.exp(-rate * t)) / rate)[:, None, None]
    assert max(rel_l2(w[i], exact[i]) for i in range(1, len(t))) < 1e-10


# ---------------------------------------------------------------- an independent solver

def reference_solve(w0, nu, t_end, steps):
    """A separate spectral solver of the same equation: full complex fft2, the advection in
    conservative form div(u w), diffusion explicit, classical RK4 with a fixed step."""
    n = w0.shape[-1]
    k = 2 * np.pi * np.fft.fftfreq(n, 1.0 / n)
    kx, ky = np.meshgrid(k, k, indexing="ij")
    k2 = kx**2 + ky**2
    k2_safe = np.where(k2 == 0, 1.0, k2)
    cutoff = np.abs(np.fft.fftfreq(n, 1.0 / n)) < n / 3
    keep = cutoff[:, None] & cutoff[None, :]
    x, y = grid_xy(n)
    f_hat = np.fft.fft2(0.1 * (np.sin(2 * np.pi * (x + y)) + np.cos(2 * np.pi * (x + y))))

    def rhs(w_hat):
        psi_hat = np.where(k2 == 0, 0.0, w_hat / k2_safe)
        u = np.fft.ifft2(1j * ky * psi_hat).real
        v = np.fft.ifft2(-1j * kx * psi_hat).real
        w = np.fft.ifft2(w_hat).real
        flux = 1j * kx * np.fft.fft2(u * w) + 1j * ky * np.fft.fft2(v * w)
        return keep * (f_hat - flux) - nu * k2 * w_hat

    w_hat, dt = keep * np.fft.fft2(w0), t_end / steps
    for _ in range(steps):
        k1 = rhs(w_hat)
        k2_ = rhs(w_hat + 0.5 * dt * k1)
        k3 = rhs(w_hat + 0.5 * dt * k2_)
        k4 = rhs(w_hat + dt * k3)
        w_hat = w_hat + dt / 6 * (k1 + 2 * k2_ + 2 * k3 + k4)
    return np.fft.ifft2(w_hat).real


def test_matches_an_independent_rk4_spectral_solver():
    """Two initial fields, the generator's random field amplified 5x so advection matters, evolved
    to t = 2. The reference's step (1/400) makes its own error ~1e-11; the generator's CFL step
    (~0.05 here) leaves ~1e-6, and with the reference's step it must agree to rounding."""
    n, nu = 32, 1e-3
    w0 = 5.0 * fno_initial_vorticity(np.random.default_rng(1), 2, n)
    w = solve_ns2d(w0, nu, np.array([0.0, 2.0]))[:, -1]
    w_fine = solve_ns2d(w0[:1], nu, np.array([0.0, 2.0]), max_dt=2.0 / 800)[0, -1]
    for i in range(2):
        ref = reference_solve(w0[i], nu, 2.0, 800)
        assert rel_l2(w0[i], ref) > 0.1  # the flow moved
        assert rel_l2(w[i], ref) < 1e-5
    assert rel_l2(w_fine, reference_solve(w0[0], nu, 2.0, 800)) < 1e-10


def test_default_step_matches_a_four_times_smaller_one():
    """CFL = 0.5 against steps at most a quarter as long, over the default ten-second-scale dynamics."""
    n = 32
    w0 = fno_initial_vorticity(np.random.default_rng(2), 2, n)
    t = np.linspace(0.0, 10.0, 3)
    coarse = solve_ns2d(w0, 1e-3, t)
    grid = ns2d.spectral_grid(n)
    dt = min(ns2d.ns2d_time_step(np.fft.rfft2(coarse[:, i]), grid).min() for i in range(len(t)))
    fine = solve_ns2d(w0, 1e-3, t, max_dt=dt / 4)
    assert rel_l2(coarse[:, -1], fine[:, -1]) < 1e-6


# ---------------------------------------------------------------- the initial field

def test_initial_vorticity_has_the_fno_generators_variance_and_spectrum():
    """The FNO generator's coefficients s_k (a + i b), a, b ~ N(0, 1), s_k^2 = 2 sigma^2 (4 pi^2 |k|^2
    + tau^2)^{-alpha}, give w(x) = Re sum_k s_k (a_k + i b_k) e^{i k.x} the point variance sum_k s_k^2.

    Per sample, the grid mean of w^2 (Parseval: sum_k |(c_k + conj c_-k) / 2|^2) has mean sum s_k^2
    and variance 2 sum s_k^4, so the mean over 256 samples is within 4 standard deviations (10%) of
    the analytic value, while a standard complex normal draw (half the variance) is 19 of them off.
    Each mode's power E|w_hat_k|^2 is s_k^2: checked on the four lowest shells |k|^2 = 1, 2, 4, 5."""
    n, samples = 32, 256
    w = fno_initial_vorticity(np.random.default_rng(0), samples, n)
    sigma2 = 2 * 7.0**3 * (4 * np.pi**2 * np.arange(6) + 49.0) ** -2.5  # s_k^2 by |k|^2
    ix = np.fft.fftfreq(n, 1.0 / n)
    k2 = ix[:, None] ** 2 + ix[None, :] ** 2
    modes = np.where(k2 > 0, 2 * 7.0**3 * (4 * np.pi**2 * k2 + 49.0) ** -2.5, 0.0)
    expected = modes.sum()
    assert ns2d.initial_vorticity_variance(n) == pytest.approx(expected, rel=1e-12)
    std = np.sqrt(2 * (modes**2).sum() / samples)
    assert abs((w**2).mean() - expected) < 4 * std
    assert np.abs(w.mean(axis=(-2, -1))).max() < 1e-12  # no mean mode
    power = (np.abs(np.fft.fft2(w) / n**2) ** 2).mean(axis=0)
    for shell in (1, 2, 4, 5):
        assert power[k2 == shell].mean() == pytest.approx(sigma2[shell], rel=0.15)


# ---------------------------------------------------------------- the saved fields

@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("ns2d") / "ns.h5"
    generate_ns2d(out, samples=3, resolution=32, nu=0.01, seed=3, t_end=1.0, frames=41)
    return out


def test_layout_is_pdebench_incompressible_ns(small_file):
    with h5py.File(small_file) as f:
        assert set(f) == {"velocity", "force", "t", "x-coordinate", "y-coordinate"}
        assert f["velocity"].shape == (3, 41, 32, 32, 2) and f["velocity"].dtype == np.float32
        assert f["force"].shape == (3, 32, 32, 2) and f["force"].dtype == np.float32
        assert f["t"].shape == (3, 41)
        np.testing.assert_allclose(f["t"][1], np.linspace(0, 1, 41), atol=1e-7)
        np.testing.assert_allclose(f["x-coordinate"][:], np.arange(32) / 32)
        np.testing.assert_allclose(f["y-coordinate"][:], np.arange(32) / 32)
        assert f.attrs["Nu"] == 0.01 and f.attrs["seed"] == 3 and f.attrs["generator"] == "upt"
        assert "RK4" in f.attrs["solver"]
        assert np.isfinite(f["velocity"][:]).all()
        force = f["force"][:]
    # The stored force is divergence-free and its curl is the vorticity forcing f, at i / N.
    np.testing.assert_array_equal(force[0], force[2])
    np.testing.assert_array_equal(force[0], forcing_velocity(32).astype(np.float32))
    np.testing.assert_allclose(vorticity_from_velocity(force[0].astype(float)), forcing_vorticity(32),
                               atol=1e-6)
    (ux, _), (_, vy) = spectral_derivatives(force[0, ..., 0]), spectral_derivatives(force[0, ..., 1])
    assert np.abs(ux + vy).max() < 1e-6


def test_saved_velocity_is_divergence_free_to_float32_rounding(small_file):
    """Rounding u to float32 moves it by at most eps/2 |u| per point; the spectral divergence of that
    perturbation is at most sqrt(2) k_max times its norm, k_max = pi N. The saved field must stay
    inside that bound, which is ~1e-5 of its gradient: a non-solenoidal field would be at ~1."""
    with h5py.File(small_file) as f:
        velocity = f["velocity"][:].astype(np.float64)
    (ux, uy), (vx, vy) = spectral_derivatives(velocity[..., 0]), spectral_derivatives(velocity[..., 1])
    div = np.linalg.norm(ux + vy)
    bound = np.sqrt(2) * np.pi * 32 * F32_EPS / 2 * np.linalg.norm(velocity)
    assert div < bound
    assert div < 1e-4 * np.linalg.norm(np.stack([ux, uy, vx, vy]))


def test_energy_balance_with_forcing(small_file):
    """dE/dt = -2 nu Z + <u, F> with E = <|u|^2>/2 and Z = <w^2>/2 (means over the square), from the
    saved float32 velocity and force alone, integrated with Simpson's rule over t in [0.2, 1] (33
    frames). From t = 0.2 on, the start's fastest modes (decay rate nu (2 pi 10)^2 ~ 40/s at 32^2)
    are gone and the quadrature error is below the float32 rounding of E, Z and <u, F> (~1e-7 of
    the terms; ~1e-7 measured): 1e-6 leaves margin, while dropping the forcing (~5% of the terms
    here), a wrong sign or a factor 2 would miss by 1e-2 or more. (From t = 0 the quadrature of the
    fast transient alone errs by ~5e-6.)"""
    with h5py.File(small_file) as f:
        u = f["velocity"][:, 8:].astype(np.float64)
        force = f["force"][0].astype(np.float64)
        nu, t = f.attrs["Nu"], f["t"][0, 8:].astype(np.float64)
    w = vorticity_from_velocity(u)
    energy = 0.5 * (u**2).sum(-1).mean(axis=(-2, -1))
    dissipation = 2 * nu * 0.5 * (w**2).mean(axis=(-2, -1))
    power = (u * force).sum(-1).mean(axis=(-2, -1))
    simpson = np.ones(len(t))
    simpson[1:-1:2], simpson[2:-1:2] = 4, 2
    simpson *= (t[1] - t[0]) / 3

    def integral(f):
        return (f * simpson).sum(axis=-1)

    scale = integral(np.abs(power) + dissipation)
    change = energy[:, -1] - energy[:, 0]
    assert np.all(np.abs(change - integral(power - dissipation)) < 1e-6 * scale)
    assert np.all(integral(np.abs(power)) > 0.01 * scale)  # the forcing's term is tested too


def test_samples_are_independent_of_count_and_seeded(tmp_path):
    def velocity(name, samples, seed):
        generate_ns2d(tmp_path / name, samples=samples, resolution=16, seed=seed, t_end=0.5, frames=2)
        with h5py.File(tmp_path / name) as f:
            return f["velocity"][:]

    a = velocity("a.h5", 2, 7)
    np.testing.assert_array_equal(a, velocity("b.h5", 3, 7)[:2])
    assert not np.array_equal(a, velocity("c.h5", 2, 8))


def test_leaves_no_file_when_the_solver_fails(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("solver blew up")

    monkeypatch.setattr(ns2d, "solve_ns2d", fail)
    with pytest.raises(RuntimeError):
        generate_ns2d(tmp_path / "x.h5", samples=1, resolution=16)
    assert list(tmp_path.iterdir()) == []


def test_spectral_resample_round_trip_is_exact_for_resolved_modes():
    w = velocity_from_vorticity(solve_ns2d(fno_initial_vorticity(np.random.default_rng(4), 1, 16),
                                           1e-3, np.array([0.0])))  # kept modes only: |k| < 16/3
    fine = spectral_resample(np.moveaxis(w, -1, 0), 64)
    np.testing.assert_allclose(spectral_resample(fine, 16), np.moveaxis(w, -1, 0), atol=1e-12)
    x, y = grid_xy(64)
    np.testing.assert_allclose(spectral_resample(np.sin(2 * np.pi * (x + 2 * y)), 16),
                               np.sin(2 * np.pi * (grid_xy(16)[0] + 2 * grid_xy(16)[1])), atol=1e-12)


# ---------------------------------------------------------------- conversion, CLI, baseline

def test_convert_reads_the_generated_file(small_file, tmp_path):
    assert cli_main(["convert", str(small_file), str(tmp_path / "data.nc"), "--reduce-t", "10"]) == 0
    with xr.open_dataset(tmp_path / "data.nc") as ds, h5py.File(small_file) as f:
        assert set(ds.data_vars) >= {"Vx", "Vy"} and "particles" not in ds
        assert ds["Vx"].dims == ("sample", "time", "x", "y") and ds["Vx"].shape == (3, 5, 32, 32)
        assert ds["Vx"].dtype == np.float32
        np.testing.assert_array_equal(ds["Vy"].values, f["velocity"][:, ::10, ..., 1])
        np.testing.assert_allclose(ds["x"].values, np.arange(32) / 32)
        np.testing.assert_allclose(ds["time"].values, [0, 0.25, 0.5, 0.75, 1.0], atol=1e-7)
        assert ds.attrs["pde_Nu"] == 0.01 and ds.attrs["source_layout"] == "ns_incomp"


@pytest.mark.parametrize("args, message", [
    (["--resolution", "31"], "resolution must be an even integer"),
    (["--resolution", "6"], "resolution must be an even integer"),
    (["--nu", "-0.001"], "nu must be a finite number > 0"),
    (["--nu", "0"], "nu must be a finite number > 0"),
    (["--samples", "0"], "samples must be an integer >= 1"),
    (["--frames", "1"], "frames must be an integer >= 2"),
])
def test_cli_rejects_bad_input(tmp_path, capsys, args, message):
    argv = ["generate", "ns2d", str(tmp_path / "ns.h5"), "--samples", "1", "--resolution", "16"]
    assert cli_main(argv + args) == 1
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_cli_generates_and_keeps_burgers_options_apart(tmp_path, capsys):
    assert cli_main(["generate", "ns2d", str(tmp_path / "ns.h5"), "--samples", "1", "--resolution", "16",
                     "--t-end", "0.5", "--frames", "3"]) == 0
    with h5py.File(tmp_path / "ns.h5") as f:
        assert f["velocity"].shape == (1, 3, 16, 16, 2) and f.attrs["Nu"] == ns2d.NU
    assert cli_main(["generate", "burgers1d", str(tmp_path / "b.h5"), "--samples", "1", "--resolution", "16",
                     "--frames", "3"]) == 1
    assert "ns2d only" in capsys.readouterr().err


def test_coarse_solver_baseline_runs_on_ns2d(dataset, tmp_path):
    """The solver re-run on a 2x coarser grid from the first frame: the initial field is smooth at
    32^2, so it must track the data far better than persistence."""
    data, stats = dataset("ns2d_32")  # 8 trajectories at 32^2, nu = 1e-3, 11 frames to t = 5

    def nrmse(kind, **kwargs):
        out = tmp_path / kind
        evaluate_baseline(kind, data, stats, out, dataset="ns", seed=0, **kwargs)
        summary = pd.read_csv(out / "summary.csv")
        return summary, summary.query(f"arm == '{kind}' and metric == 'nrmse'")["value"].item()

    summary, solver = nrmse("coarse-solver", solver="ns2d", coarsen=2)
    _, persistence = nrmse("persistence")
    assert np.isfinite(solver) and solver < 0.1 * persistence
    assert summary.query("arm == 'solver' and mode == 'reference'")["value"].item() > 0


def test_truth_is_divergence_free_under_the_evaluations_own_metric(dataset):
    """The generator declares its periodic domain (root attribute periodic, pde_periodic once
    converted), so divergence_rms takes spectral derivatives, under which the solver's velocity is
    divergence-free up to float32 rounding: ~1e-7 of a gradient of RMS ~1. Central differences
    would score the same truth ~1e-3, which no prediction could be told apart from."""
    import torch

    from upt.evaluation.evaluate import divergence_rows
    from upt.evaluation.scoring import TestSet, divergence_rms, velocity_gradient_rms
    from upt.losses import divergence
    from upt.training.stages import divergence_scales

    data, stats = dataset("ns2d_32")  # 8 trajectories at 32^2, nu = 1e-3, 11 frames to t = 5
    test = TestSet.load(data, stats, history=1)
    assert test.data.attrs["pde_periodic"] == 1
    assert divergence_scales(test.data)[3] is True  # the training prior takes the same derivatives
    truth = test.frames[:, 1:]
    rms, gradient = divergence_rms(test, truth), velocity_gradient_rms(test, truth)
    assert rms <= 1e-5 and gradient > 0.1
    v = test.data.denormalize(truth)[..., [test.data.fields.index("Vx"), test.data.fields.index("Vy")]]
    central = float(divergence(v.reshape(-1, 32, 32, 2).double(), (1 / 32, 1 / 32)).square().mean().sqrt())
    assert central > 100 * rms
    # rows: a prediction with a known divergence, the truth plus eps * grad(phi), phi a single mode
    x = torch.arange(32, dtype=torch.float64) / 32
    phi_x = torch.cos(2 * np.pi * x)[:, None].expand(32, 32)  # phi = sin(2 pi x) / (2 pi): div = -2 pi sin
    eps = 0.01
    std = test.data.std[[test.data.fields.index("Vx"), test.data.fields.index("Vy")]]
    pred = truth.clone()
    pred[..., test.data.fields.index("Vx")] += (eps * phi_x.reshape(-1) / std[0]).float()
    rows = {(r["mode"], r["metric"]): r["value"] for r in divergence_rows(test, {"physical": pred})}
    expected = eps * 2 * np.pi / np.sqrt(2)  # RMS of eps 2 pi sin(2 pi x)
    assert rows[("physical", "divergence_rms")] == pytest.approx(expected, rel=1e-4)
    assert rows[("physical", "divergence_ratio")] == pytest.approx(rows[("physical", "divergence_rms")] / rms)
    assert rows[("physical", "divergence_rel_grad")] == pytest.approx(
        expected / velocity_gradient_rms(test, pred), rel=1e-4)
    assert rows[("truth", "divergence_rms")] == rms and rows[("truth", "divergence_rel_grad")] < 1e-5
