"""Small files in each PDEBench HDF5 layout, with known values, for the conversion tests."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np


def write_1d_tensor(path: Path, samples=6, nt=11, nx=16, seed=0) -> np.ndarray:
    data = np.random.default_rng(seed).standard_normal((samples, nt, nx)).astype(np.float32)
    with h5py.File(path, "w") as f:
        f["tensor"] = data
        f["x-coordinate"] = (np.arange(nx) + 0.5) / nx
        f["t-coordinate"] = np.arange(nt + 1) * 0.01  # PDEBench stores one extra time value
        f.attrs["Nu"] = 0.01
    return data


def write_groups(path: Path, samples=5, nt=6, nx=8, ny=8, seed=0) -> np.ndarray:
    data = np.random.default_rng(seed).standard_normal((samples, nt, nx, ny, 2)).astype(np.float32)
    with h5py.File(path, "w") as f:
        for i in range(samples):
            g = f.create_group(f"{i:04d}")
            g["data"] = data[i]
            g["grid/x"] = np.linspace(-1, 1, nx)
            g["grid/y"] = np.linspace(-1, 1, ny)
            g["grid/t"] = np.linspace(0, 5, nt)
    return data


def write_cfd(path: Path, samples=4, nt=5, nx=8, ny=6, seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    fields = {k: rng.standard_normal((samples, nt, nx, ny)).astype(np.float32)
              for k in ("Vx", "Vy", "density", "pressure")}
    with h5py.File(path, "w") as f:
        for k, v in fields.items():
            f[k] = v
        f["x-coordinate"] = np.linspace(0, 1, nx)
        f["y-coordinate"] = np.linspace(0, 1, ny)
        f["t-coordinate"] = np.linspace(0, 1, nt + 1)
        f.attrs["M"] = 0.1
        f.attrs["eta"] = 0.01
    return fields


def write_ns_incomp(path: Path, samples=3, nt=5, n=8, seed=0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    velocity = rng.standard_normal((samples, nt, n, n, 2)).astype(np.float32)
    particles = rng.standard_normal((samples, nt, n, n, 1)).astype(np.float32)
    with h5py.File(path, "w") as f:
        f["velocity"] = velocity
        f["particles"] = particles
        f["force"] = rng.standard_normal((samples, n, n, 2)).astype(np.float32)
        f["t"] = np.tile(np.linspace(0, 5, nt), (samples, 1))
    return velocity, particles
