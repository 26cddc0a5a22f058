"""Embedded data generators: numerics (conservation, convergence, stability rule) and file contract."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from upt.cli import main as cli_main
from upt.data.solvers import burgers, diffreact
from upt.data.solvers.burgers import (burgers_initial_condition, burgers_time_step, generate_burgers1d,
                                      solve_burgers)
from upt.data.solvers.diffreact import (diffreact_initial_condition, generate_diffreact2d,
                                        neumann_laplacian, solve_diffreact)
from upt.errors import UptError


def centres(n: int, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
    return lo + (np.arange(n) + 0.5) * (hi - lo) / n


def coarsen(fine: np.ndarray, n: int) -> np.ndarray:
    """Average a fine field [..., N] onto n coarse cells (last axis)."""
    return fine.reshape(*fine.shape[:-1], n, -1).mean(axis=-1)


# ---------------------------------------------------------------- Burgers numerics

def test_burgers_conserves_the_mean_to_round_off():
    u0 = burgers_initial_condition(np.random.default_rng(3), 8, centres(64))
    u = solve_burgers(u0, 0.01, np.linspace(0.0, 0.5, 6))
    assert np.abs(u.mean(axis=2) - u0.mean(axis=1, keepdims=True)).max() < 1e-12


def test_burgers_converges_at_second_order_on_smooth_data():
    # Breaking time of 0.25 + 0.5 sin(2 pi x) is 1/pi ~ 0.32, so at t = 0.1 the solution is smooth.
    # Measured RMS errors vs N=1024: 1.2e-3, 2.6e-4, 5.3e-5, 1.2e-5 at N = 32..256 (order ~2.2).
    def run(n):
        return solve_burgers((0.25 + 0.5 * np.sin(2 * np.pi * centres(n)))[None], 0.01,
                             np.array([0.0, 0.1]))[0, -1]

    reference = run(1024)
    errors = np.array([np.sqrt(np.mean((run(n) - coarsen(reference, n)) ** 2)) for n in (32, 64, 128, 256)])
    orders = np.log2(errors[:-1] / errors[1:])
    assert orders.min() > 1.5, (errors, orders)
    assert errors[-1] < 5e-5  # the default resolution, 256 cells


def test_burgers_time_step_is_pdebench_rule():
    u = np.array([[0.5, -2.0, 1.0, 0.0], [0.1, 0.2, -0.05, 0.0]])
    dx, nu = 1.0 / 256, 0.01
    expected = 0.25 * np.minimum(dx / np.array([2.0, 0.2]), 0.5 * dx**2 * np.pi / nu)
    np.testing.assert_allclose(burgers_time_step(u, dx, nu), expected, rtol=1e-6)


def test_burgers_solver_takes_rule_sized_steps_and_lands_on_saves(monkeypatch):
    # A constant state has zero flux divergence, so the step count is set by the dt rule alone.
    calls = []
    original = burgers._flux_divergence

    def counting(u, dx, nu):
        calls.append(1)
        return original(u, dx, nu)

    monkeypatch.setattr(burgers, "_flux_divergence", counting)
    u0 = np.full((1, 32), 2.0)
    u = solve_burgers(u0, 0.01, np.array([0.0, 0.05, 0.1]))
    dt = burgers_time_step(u0, 1 / 32, 0.01)[0]
    assert len(calls) == 2 * 2 * int(np.ceil(0.05 / dt))  # two stages, two save intervals
    np.testing.assert_array_equal(u[0], 2.0)


def test_burgers_initial_condition_is_seeded_and_bounded():
    x = centres(128)
    a = burgers_initial_condition(np.random.default_rng(0), 64, x)
    assert a.shape == (64, 128)
    np.testing.assert_array_equal(a, burgers_initial_condition(np.random.default_rng(0), 64, x))
    assert np.abs(a).max() <= 4.0  # four modes of amplitude <= 1
    assert (a.mean(axis=1) > 0).any() and (a.mean(axis=1) < 0).any()  # random sign


# ---------------------------------------------------------------- Burgers file contract

def test_burgers_file_layout(tmp_path):
    out = tmp_path / "burgers.hdf5"
    generate_burgers1d(out, samples=2, nu=0.1, resolution=16, seed=5)
    with h5py.File(out) as f:
        assert set(f) == {"tensor", "x-coordinate", "t-coordinate"}
        assert f["tensor"].shape == (2, 201, 16) and f["tensor"].dtype == np.float32
        np.testing.assert_allclose(f["x-coordinate"][:], centres(16), rtol=1e-6)
        np.testing.assert_allclose(f["t-coordinate"][:], np.arange(202) * 0.01, atol=1e-6)
        assert f["t-coordinate"].shape == (202,)
        assert f.attrs["Nu"] == 0.1 and f.attrs["seed"] == 5 and f.attrs["generator"] == "upt"
        assert "Rusanov" in f.attrs["solver"]
        assert np.isfinite(f["tensor"][:]).all()


def test_burgers_is_deterministic_per_seed(tmp_path):
    def tensor(seed, name):
        generate_burgers1d(tmp_path / name, samples=2, nu=0.05, resolution=16, seed=seed)
        with h5py.File(tmp_path / name) as f:
            return f["tensor"][:]

    a = tensor(1, "a.h5")
    np.testing.assert_array_equal(a, tensor(1, "b.h5"))
    assert not np.array_equal(a, tensor(2, "c.h5"))


@pytest.mark.parametrize("kwargs, name", [
    ({"samples": 0}, "samples"), ({"resolution": 4}, "resolution"), ({"nu": 0.0}, "nu"),
    ({"nu": float("nan")}, "nu"), ({"seed": -1}, "seed"),
])
def test_burgers_rejects_bad_arguments(tmp_path, kwargs, name):
    out = tmp_path / "bad.h5"
    with pytest.raises(UptError, match=name):
        generate_burgers1d(out, **{"samples": 1, "nu": 0.01, "resolution": 16, **kwargs})
    assert list(tmp_path.iterdir()) == []


def test_burgers_leaves_no_file_when_the_solver_fails(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("solver blew up")

    monkeypatch.setattr(burgers, "solve_burgers", fail)
    with pytest.raises(RuntimeError):
        generate_burgers1d(tmp_path / "x.h5", samples=1, nu=0.01, resolution=16)
    assert list(tmp_path.iterdir()) == []


def test_burgers_leaves_no_file_when_writing_fails(tmp_path, monkeypatch):
    original = h5py.Group.create_dataset

    def fail_late(self, name, *args, **kwargs):
        if name == "t-coordinate":
            raise OSError("disk full")
        return original(self, name, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", fail_late)
    with pytest.raises(OSError):
        generate_burgers1d(tmp_path / "x.h5", samples=1, nu=0.05, resolution=16)
    assert list(tmp_path.iterdir()) == []


def test_cli_generate_reports_bad_input(tmp_path, capsys):
    assert cli_main(["generate", "burgers1d", str(tmp_path / "b.h5"), "--samples", "1",
                     "--resolution", "16", "--nu", "-1"]) == 1
    assert "nu" in capsys.readouterr().err
    assert cli_main(["generate", "diffreact2d", str(tmp_path / "d.h5"), "--samples", "1",
                     "--resolution", "8"]) == 0
    assert (tmp_path / "d.h5").exists() and not (tmp_path / "b.h5").exists()


# ---------------------------------------------------------------- diffusion-reaction numerics

def test_neumann_laplacian_has_zero_boundary_flux_and_conserves_mass():
    f = np.random.default_rng(0).standard_normal((3, 12, 12))
    lap = neumann_laplacian(f, 0.1)
    assert np.abs(lap.sum(axis=(1, 2))).max() < 1e-10 * np.abs(lap).max()
    # The same as the 5-point stencil with ghost cells mirroring the boundary cells (zero gradient).
    g = np.pad(f, ((0, 0), (1, 1), (1, 1)), mode="edge")
    stencil = g[:, 2:, 1:-1] + g[:, :-2, 1:-1] + g[:, 1:-1, 2:] + g[:, 1:-1, :-2] - 4 * f
    np.testing.assert_allclose(lap, stencil / 0.1**2, atol=1e-10)


def test_neumann_laplacian_is_second_order():
    # cos(pi x) cos(pi y) has zero normal derivative on the boundary of [-1, 1]^2.
    errors = []
    for n in (16, 32, 64):
        x = centres(n, -1.0, 1.0)
        f = np.cos(np.pi * x)[:, None] * np.cos(np.pi * x)[None, :]
        errors.append(np.abs(neumann_laplacian(f, 2.0 / n) + 2 * np.pi**2 * f).max())
    assert np.log2(errors[0] / errors[1]) > 1.8 and np.log2(errors[1] / errors[2]) > 1.8, errors


def test_diffreact_converges_under_grid_refinement():
    # Exact cell averages of cos(pi x) start every grid from the same data, so only the solver's
    # error is measured. Measured max errors vs N=128 at t=0.5: 5.2e-3, 1.5e-3 (N=16, 32; order 1.8).
    def run(n):
        x, half = centres(n, -1.0, 1.0), np.pi / n
        c = np.cos(np.pi * x) * np.sin(half) / half
        u0 = 0.8 * c[:, None] * c[None, :]
        v0 = 0.3 * c[:, None] * np.ones(n)[None, :]
        return solve_diffreact(u0[None], v0[None], np.array([0.0, 0.5]), 2.0 / n)[0, -1]

    reference = np.moveaxis(run(128), -1, 0)  # [2, X, Y]

    def error(n):
        ref = coarsen(coarsen(reference, n).swapaxes(-1, -2), n).swapaxes(-1, -2)
        return np.abs(np.moveaxis(run(n), -1, 0) - ref).max()

    e16, e32 = error(16), error(32)
    assert np.log2(e16 / e32) > 1.5, (e16, e32)


def test_diffreact_time_step_is_converged():
    u0, v0 = diffreact_initial_condition(np.random.default_rng(0), 2, 16)
    t = np.linspace(0.0, 0.5, 11)
    coarse = solve_diffreact(u0, v0, t, 2.0 / 16)
    fine = solve_diffreact(u0, v0, t, 2.0 / 16, max_dt=0.002)
    assert np.isfinite(coarse).all()
    # Measured 4.8e-6 over the stiff first frames of the white-noise start.
    assert np.abs(coarse - fine).max() < 2e-5


# ---------------------------------------------------------------- diffusion-reaction file contract

def test_diffreact_file_layout_and_determinism(tmp_path):
    generate_diffreact2d(tmp_path / "a.h5", samples=2, resolution=8, seed=4)
    generate_diffreact2d(tmp_path / "b.h5", samples=2, resolution=8, seed=4)
    generate_diffreact2d(tmp_path / "c.h5", samples=2, resolution=8, seed=5)
    with h5py.File(tmp_path / "a.h5") as a, h5py.File(tmp_path / "b.h5") as b, \
            h5py.File(tmp_path / "c.h5") as c:
        assert set(a) == {"0000", "0001"}
        assert (a.attrs["generator"], a.attrs["seed"]) == ("upt", 4)
        assert (a.attrs["Du"], a.attrs["Dv"], a.attrs["k"]) == (1e-3, 5e-3, 5e-3)
        data = a["0001/data"]
        assert data.shape == (101, 8, 8, 2) and data.dtype == np.float32
        assert np.isfinite(data[:]).all()
        np.testing.assert_allclose(a["0000/grid/x"][:], centres(8, -1.0, 1.0), rtol=1e-6)
        np.testing.assert_allclose(a["0000/grid/y"][:], centres(8, -1.0, 1.0), rtol=1e-6)
        np.testing.assert_allclose(a["0000/grid/t"][:], np.linspace(0, 5, 101), rtol=1e-6)
        np.testing.assert_array_equal(data[:], b["0001/data"][:])
        assert not np.array_equal(data[:], c["0001/data"][:])


@pytest.mark.parametrize("kwargs, name", [({"samples": 0}, "samples"), ({"resolution": 2}, "resolution"),
                                          ({"seed": -3}, "seed")])
def test_diffreact_rejects_bad_arguments(tmp_path, kwargs, name):
    with pytest.raises(UptError, match=name):
        generate_diffreact2d(tmp_path / "bad.h5", **{"samples": 1, "resolution": 8, **kwargs})
    assert list(tmp_path.iterdir()) == []


def test_diffreact_leaves_no_file_when_the_solver_fails(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("solver blew up")

    monkeypatch.setattr(diffreact, "solve_diffreact", fail)
    with pytest.raises(RuntimeError):
        generate_diffreact2d(tmp_path / "d.h5", samples=1, resolution=8)
    assert list(tmp_path.iterdir()) == []


def test_burgers_blocks_of_samples_give_the_same_trajectories(monkeypatch):
    """The solver goes through samples in blocks (for speed); the block size must not change a value."""
    u0 = burgers_initial_condition(np.random.default_rng(1), 5, centres(32))
    t = np.array([0.0, 0.02, 0.05])
    whole = solve_burgers(u0, 0.01, t)
    monkeypatch.setattr(burgers, "CHUNK_VALUES", 64)  # two samples of 32 cells per block: 2 + 2 + 1
    np.testing.assert_array_equal(solve_burgers(u0, 0.01, t), whole)
    assert whole.shape == (5, 3, 32)
