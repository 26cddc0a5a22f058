"""Shared test set-up: one BLAS/torch thread per worker, and the tiny data sets several files read.

The data fixtures are session-scoped: each is built once per test process (once per xdist worker), on
first use, under ``tmp_path_factory``. Tests only read them; whatever a test writes goes to its own
``tmp_path``. Files that a test alters, or that must be fresh (the conversion tests), are still written
per test with the helpers of ``pdebench_files``.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import pytest

from pdebench_files import write_1d_tensor, write_cfd, write_groups

# Two cores are shared by the test workers; one BLAS/torch thread each keeps runs predictable.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
NO_MD5 = "0" * 32  # skips hashing the source file


def _burgers(path):
    from upt.data.solvers.burgers import generate_burgers1d

    generate_burgers1d(path, samples=12, nu=0.05, resolution=32, seed=0)


def _ns2d(**kwargs):
    def write(path):
        from upt.data.solvers.ns2d import generate_ns2d

        generate_ns2d(path, samples=8, seed=0, **kwargs)
    return write


# name -> (writes the raw HDF5 file, options of `upt.data.convert.convert`). The files are named after
# the data set: <name>.h5, <name>.nc and <name>.json (error messages name them, and tests check that).
DATASETS = {
    # generated Burgers: 12 trajectories of 32 points, every 20th frame (training stages, DDP, SIGTERM)
    "burgers": (_burgers, dict(reduce_t=20, val_fraction=0.25, test_fraction=0.25)),
    # generated 2D Navier-Stokes, 8 trajectories at 16^2, 5 frames to t = 4 (the point-cloud view)
    "ns2d": (_ns2d(resolution=16, t_end=4.0, frames=5), dict(val_fraction=0.25, test_fraction=0.25)),
    # the same at 32^2 and nu = 1e-3, 11 frames to t = 5 (the coarse-solver baseline)
    "ns2d_32": (_ns2d(resolution=32, nu=1e-3, t_end=5.0, frames=11), dict(val_fraction=0.25, test_fraction=0.25)),
    # PDEBench layouts with known values (pdebench_files): 1D at full and half resolution, 2D groups
    "b1": (write_1d_tensor, dict(md5=NO_MD5, val_fraction=0.2, test_fraction=0.2)),
    "b2": (write_1d_tensor, dict(reduce_x=2, md5=NO_MD5, val_fraction=0.2, test_fraction=0.2)),
    "g": (write_groups, dict(md5=NO_MD5, val_fraction=0.2, test_fraction=0.2)),
    # compressible CFD (Vx, Vy, density, pressure) on an 8 x 6 grid
    "cfd": (partial(write_cfd, nx=8, ny=6), dict(md5=NO_MD5, val_fraction=0.25, test_fraction=0.25)),
}


@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    """``dataset(name)`` -> ``(<name>.nc, <name>.json)``: DATASETS[name] generated or written, converted
    and its statistics computed, once per session. The raw file is ``<name>.h5`` beside them."""
    from upt.data.convert import convert
    from upt.data.stats import compute_stats

    built = {}

    def get(name: str) -> tuple[Path, Path]:
        if name not in built:
            write, options = DATASETS[name]
            root = tmp_path_factory.mktemp(name)
            raw, nc, stats = (root / f"{name}{ext}" for ext in (".h5", ".nc", ".json"))
            write(raw)
            convert(raw, nc, **options)
            compute_stats(nc, stats)
            built[name] = nc, stats
        return built[name]

    return get


@pytest.fixture(scope="session")
def burgers(dataset):
    """(data.nc, stats.json) of the generated Burgers set (12 trajectories, 32 points)."""
    return dataset("burgers")


@pytest.fixture(scope="session")
def ns2d_data(dataset):
    """(data.nc, stats.json) of the generated 2D Navier-Stokes set (8 trajectories at 16^2)."""
    return dataset("ns2d")


@pytest.fixture
def workflow_config():
    """The workflow tests' tiny config, ``.test/config.yaml``, as a fresh dict to edit."""
    import yaml

    return yaml.safe_load((REPO / ".test" / "config.yaml").read_text())
