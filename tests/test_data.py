"""Conversion, splits and statistics: exact values for every layout, and clear errors on bad input."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import xarray as xr

from pdebench_files import write_1d_tensor, write_cfd, write_groups, write_ns_incomp
from upt.cli import main
from upt.data.convert import convert
from upt.data.splits import assign_splits, split_indices
from upt.data.stats import compute_stats
from upt.errors import UptError


@pytest.mark.parametrize("rx,rt", [(1, 1), (2, 5), (4, 3)])
def test_convert_1d_reproduces_values(tmp_path, rx, rt):
    data = write_1d_tensor(tmp_path / "b.hdf5")
    convert(tmp_path / "b.hdf5", tmp_path / "b.nc", reduce_x=rx, reduce_t=rt)
    with xr.open_dataset(tmp_path / "b.nc") as ds:
        assert ds["u"].dims == ("sample", "time", "x")
        np.testing.assert_array_equal(ds["u"].values, data[:, ::rt, ::rx])
        np.testing.assert_array_equal(ds["x"].values, ((np.arange(16) + 0.5) / 16)[::rx])
        # PDEBench's extra trailing time value is dropped, not shifted in.
        np.testing.assert_allclose(ds["time"].values, (np.arange(11) * 0.01)[::rt])
        assert ds.attrs["pde_Nu"] == 0.01
        assert ds.attrs["source_layout"] == "1d_tensor" and len(ds.attrs["source_md5"]) == 32
        assert ds.attrs["reduce_x"] == rx and ds.attrs["reduce_t"] == rt


@pytest.mark.parametrize("rt,skip,frames", [(1, 0, 4), (2, 1, 3), (1, 3, None)])
def test_convert_keeps_a_time_window(tmp_path, rt, skip, frames):
    data = write_1d_tensor(tmp_path / "b.hdf5")  # 11 frames
    convert(tmp_path / "b.hdf5", tmp_path / "b.nc", reduce_t=rt, skip_frames=skip, frames=frames)
    window = slice(skip, None if frames is None else skip + frames)
    with xr.open_dataset(tmp_path / "b.nc") as ds:
        np.testing.assert_array_equal(ds["u"].values, data[:, ::rt][:, window])
        np.testing.assert_allclose(ds["time"].values, (np.arange(11) * 0.01)[::rt][window])
        assert ds.attrs["skip_frames"] == skip and ds.attrs["frames"] == ds.sizes["time"]


@pytest.mark.parametrize("skip,frames", [(0, 12), (10, 2), (0, 1), (-1, None)])
def test_convert_refuses_a_window_outside_the_trajectory(tmp_path, skip, frames):
    write_1d_tensor(tmp_path / "b.hdf5")
    with pytest.raises(UptError, match="frames|skip_frames"):
        convert(tmp_path / "b.hdf5", tmp_path / "b.nc", skip_frames=skip, frames=frames)
    assert not (tmp_path / "b.nc").exists()


@pytest.mark.parametrize("rx,rt", [(1, 1), (2, 2)])
def test_convert_2d_groups_reproduces_values(tmp_path, rx, rt):
    data = write_groups(tmp_path / "dr.h5")
    convert(tmp_path / "dr.h5", tmp_path / "dr.nc", reduce_x=rx, reduce_t=rt, block_mb=1e-3)
    with xr.open_dataset(tmp_path / "dr.nc") as ds:
        assert ds["u"].dims == ("sample", "time", "x", "y")
        np.testing.assert_array_equal(ds["u"].values, data[:, ::rt, ::rx, ::rx, 0])
        np.testing.assert_array_equal(ds["v"].values, data[:, ::rt, ::rx, ::rx, 1])
        np.testing.assert_array_equal(ds["y"].values, np.linspace(-1, 1, 8)[::rx])


def test_convert_cfd_multi_field(tmp_path):
    fields = write_cfd(tmp_path / "cfd.hdf5")
    convert(tmp_path / "cfd.hdf5", tmp_path / "cfd.nc", reduce_x=2)
    with xr.open_dataset(tmp_path / "cfd.nc") as ds:
        for name, values in fields.items():
            np.testing.assert_array_equal(ds[name].values, values[:, :, ::2, ::2])
        assert ds.attrs["pde_M"] == 0.1 and ds.attrs["source_layout"] == "cfd"


def test_convert_incompressible_ns(tmp_path):
    velocity, particles = write_ns_incomp(tmp_path / "ns.h5")
    convert(tmp_path / "ns.h5", tmp_path / "ns.nc", reduce_t=2)
    with xr.open_dataset(tmp_path / "ns.nc") as ds:
        np.testing.assert_array_equal(ds["Vx"].values, velocity[:, ::2, ..., 0])
        np.testing.assert_array_equal(ds["Vy"].values, velocity[:, ::2, ..., 1])
        np.testing.assert_array_equal(ds["particles"].values, particles[:, ::2, ..., 0])
        np.testing.assert_allclose(ds["x"].values, (np.arange(8) + 0.5) / 8)


def test_splits_disjoint_seeded_and_recorded(tmp_path):
    labels = assign_splits(50, 0.2, 0.1, seed=3)
    parts = [set(split_indices(labels, s)) for s in ("train", "val", "test")]
    assert sum(map(len, parts)) == 50 and set.union(*parts) == set(range(50))
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert (len(parts[1]), len(parts[2])) == (10, 5)
    assert (assign_splits(50, 0.2, 0.1, seed=3) == labels).all()
    assert (assign_splits(50, 0.2, 0.1, seed=4) != labels).any()
    write_1d_tensor(tmp_path / "b.hdf5", samples=10)
    convert(tmp_path / "b.hdf5", tmp_path / "b.nc", split_seed=7, val_fraction=0.2, test_fraction=0.2)
    with xr.open_dataset(tmp_path / "b.nc") as ds:
        assert (ds["split"].values.astype(str) == assign_splits(10, 0.2, 0.2, seed=7)).all()
        assert ds.attrs["split_seed"] == 7


def test_stats_use_training_split_only(tmp_path):
    data = write_1d_tensor(tmp_path / "b.hdf5", samples=10)
    data[:, :, :] += np.arange(10, dtype=np.float32)[:, None, None] * 100  # make samples distinct
    with h5py.File(tmp_path / "b.hdf5", "r+") as f:
        f["tensor"][...] = data
    convert(tmp_path / "b.hdf5", tmp_path / "b.nc", val_fraction=0.2, test_fraction=0.2)
    stats = compute_stats(tmp_path / "b.nc", tmp_path / "stats.json", block=3)
    train = split_indices(assign_splits(10, 0.2, 0.2, 0), "train")
    expected = data[train].astype(np.float64)
    got = json.loads((tmp_path / "stats.json").read_text())["fields"]["u"]
    assert got == stats["fields"]["u"]
    np.testing.assert_allclose(got["mean"], expected.mean(), rtol=1e-12)
    np.testing.assert_allclose(got["std"], expected.std(), rtol=1e-10)
    assert got["min"] == expected.min() and got["count"] == expected.size
    assert abs(got["mean"] - data.astype(np.float64).mean()) > 1.0  # all-sample mean differs


# --- bad input: one-line error naming the file or key, no output left behind -----------------

def _assert_fails_cleanly(capsys, tmp_path, argv, *needles):
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    for needle in needles:
        assert needle in err
    leftovers = [p.name for p in tmp_path.iterdir() if p.suffix == ".nc" or ".tmp" in p.name]
    assert leftovers == []


def test_truncated_hdf5(tmp_path, capsys):
    write_1d_tensor(tmp_path / "b.hdf5", samples=20, nx=256)
    raw = (tmp_path / "b.hdf5").read_bytes()
    (tmp_path / "b.hdf5").write_bytes(raw[: len(raw) // 2])
    _assert_fails_cleanly(capsys, tmp_path, ["convert", str(tmp_path / "b.hdf5"), str(tmp_path / "o.nc")],
                          "b.hdf5", "truncated or corrupt")


def test_corrupt_hdf5(tmp_path, capsys):
    write_1d_tensor(tmp_path / "b.hdf5")
    raw = bytearray((tmp_path / "b.hdf5").read_bytes())
    raw[:64] = b"\x00" * 64  # destroy the superblock
    (tmp_path / "b.hdf5").write_bytes(bytes(raw))
    _assert_fails_cleanly(capsys, tmp_path, ["convert", str(tmp_path / "b.hdf5"), str(tmp_path / "o.nc")],
                          "b.hdf5")


def test_unknown_layout(tmp_path, capsys):
    with h5py.File(tmp_path / "odd.h5", "w") as f:
        f["something"] = np.zeros(3)
    _assert_fails_cleanly(capsys, tmp_path, ["convert", str(tmp_path / "odd.h5"), str(tmp_path / "o.nc")],
                          "odd.h5", "unknown PDEBench layout", "something")


def test_missing_key(tmp_path, capsys):
    write_1d_tensor(tmp_path / "b.hdf5")
    with h5py.File(tmp_path / "b.hdf5", "r+") as f:
        del f["x-coordinate"]
    _assert_fails_cleanly(capsys, tmp_path, ["convert", str(tmp_path / "b.hdf5"), str(tmp_path / "o.nc")],
                          "b.hdf5", "x-coordinate")


def test_missing_key_in_group(tmp_path, capsys):
    write_groups(tmp_path / "dr.h5")
    with h5py.File(tmp_path / "dr.h5", "r+") as f:
        del f["0000/grid/t"]
    _assert_fails_cleanly(capsys, tmp_path, ["convert", str(tmp_path / "dr.h5"), str(tmp_path / "o.nc")],
                          "0000/grid/t")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_values(tmp_path, capsys, bad):
    data = write_1d_tensor(tmp_path / "b.hdf5", samples=8)
    data[5, 3, 2] = bad
    with h5py.File(tmp_path / "b.hdf5", "r+") as f:
        f["tensor"][...] = data
    _assert_fails_cleanly(capsys, tmp_path, ["convert", str(tmp_path / "b.hdf5"), str(tmp_path / "o.nc")],
                          "b.hdf5", "'u'", "sample 5")
    # With small blocks the bad sample arrives after good blocks were already written.
    with pytest.raises(UptError, match="sample 5"):
        convert(tmp_path / "b.hdf5", tmp_path / "o.nc", block_mb=1e-3)
    assert not any(p.suffix == ".nc" or ".tmp" in p.name for p in tmp_path.iterdir())


@pytest.mark.parametrize("flag,value", [("--reduce-x", "0"), ("--test-fraction", "1.5")])
def test_invalid_option(tmp_path, capsys, flag, value):
    write_1d_tensor(tmp_path / "b.hdf5")
    _assert_fails_cleanly(capsys, tmp_path, ["convert", str(tmp_path / "b.hdf5"), str(tmp_path / "o.nc"),
                                             flag, value], flag.lstrip("-").replace("-", "_"))


def test_stats_needs_split(tmp_path, capsys):
    xr.Dataset({"u": (("sample", "time", "x"), np.zeros((2, 2, 2)))}).to_netcdf(tmp_path / "n.nc")
    assert main(["stats", str(tmp_path / "n.nc"), str(tmp_path / "s.json")]) == 1
    assert "'split'" in capsys.readouterr().err and not (tmp_path / "s.json").exists()


def test_convert_memory_does_not_grow_with_file_size(tmp_path):
    """Peak traced allocation is one block, whether the file has 8 or 32 trajectories."""
    import tracemalloc

    peaks = []
    for samples in (8, 32):
        write_1d_tensor(tmp_path / f"b{samples}.hdf5", samples=samples, nt=50, nx=512)
        tracemalloc.start()
        convert(tmp_path / f"b{samples}.hdf5", tmp_path / f"b{samples}.nc", block_mb=0.2, md5="0" * 32)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    file_ratio = 4
    assert peaks[1] < 1.2 * peaks[0] < peaks[0] * file_ratio, peaks
