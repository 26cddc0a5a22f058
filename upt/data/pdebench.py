"""Readers for PDEBench's HDF5 layouts, one class per layout, each reading a block of samples.

PDEBench ships four layouts (docs/architecture.md, "Data"). Each reader opens the file once, checks that the keys
its layout needs are there, and then hands out blocks of whole trajectories, already reduced with
``[::K]`` in time and space, so conversion never holds more than one block in memory.

    1d_tensor    ``tensor`` [sample, t, x] plus ``x-coordinate`` and ``t-coordinate`` (one extra value)
    groups       one group per sample (``0000``, ...) holding ``data`` [t, x, (y,) c] and ``grid/{x,y,t}``
    cfd          one dataset per field (``Vx``, ``Vy``, ``Vz``, ``density``, ``pressure``) [sample, t, *space]
                 plus ``x-coordinate`` (``y-``, ``z-``) and ``t-coordinate``
    ns_incomp    ``velocity`` [sample, t, x, y, 2], ``particles`` [sample, t, x, y, 1], ``force``, ``t``

Time-dependent fields are read; the static ``force`` of the incompressible NS files is not (yet).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from upt.errors import UptError

SPACE_DIMS = ("x", "y", "z")
CFD_FIELDS = ("Vx", "Vy", "Vz", "density", "pressure")


@dataclass
class PDEBenchFile:
    """An open PDEBench file: its layout, sizes, coordinates and attributes, and a block reader."""

    path: Path
    h5: h5py.File
    layout: str
    n_samples: int
    field_names: list[str]
    coords: dict[str, np.ndarray]  # "time", "x", ("y", "z") at full resolution
    attrs: dict = field(default_factory=dict)
    groups: list[str] = field(default_factory=list)  # per-sample group names of the "groups" layout

    @property
    def space_dims(self) -> tuple[str, ...]:
        return tuple(d for d in SPACE_DIMS if d in self.coords)

    def sample_nbytes(self) -> int:
        """Bytes of one trajectory of all fields at full resolution (for sizing read blocks)."""
        points = np.prod([self.coords[d].size for d in ("time", *self.space_dims)])
        return int(points) * len(self.field_names) * 4

    def read(self, s0: int, s1: int, reduce_t: int, reduce_x: int) -> dict[str, np.ndarray]:
        """Trajectories ``[s0, s1)`` of every field, each [sample, time, *space], reduced by ``[::K]``."""
        space = (slice(None, None, reduce_x),) * len(self.space_dims)
        t = slice(None, None, reduce_t)
        try:
            return _READERS[self.layout](self, s0, s1, t, space)
        except OSError as err:  # h5py raises OSError on a truncated or corrupt chunk
            raise UptError(f"{self.path}: cannot read samples {s0}-{s1 - 1} (truncated or corrupt "
                           f"HDF5?): {err}") from None

    def close(self) -> None:
        self.h5.close()


def open_pdebench(path: str | Path) -> PDEBenchFile:
    """Open ``path`` and detect its layout; a one-line UptError if it is unreadable or unknown."""
    path = Path(path)
    if not path.is_file():
        raise UptError(f"{path}: no such file")
    try:
        h5 = h5py.File(path, "r")
    except OSError as err:
        raise UptError(f"{path}: not a readable HDF5 file (truncated or corrupt?): {err}") from None
    try:
        keys = set(h5.keys())
        if "tensor" in keys:
            return _open_1d_tensor(path, h5)
        if "velocity" in keys:
            return _open_ns_incomp(path, h5)
        if keys & set(CFD_FIELDS):
            return _open_cfd(path, h5, keys)
        if keys and all(isinstance(h5[k], h5py.Group) and "data" in h5[k] for k in keys):
            return _open_groups(path, h5, sorted(keys))
        raise UptError(f"{path}: unknown PDEBench layout (top-level keys: {sorted(keys)[:8]})")
    except (UptError, OSError, KeyError) as err:
        h5.close()
        if isinstance(err, UptError):
            raise
        raise UptError(f"{path}: cannot read HDF5 metadata (truncated or corrupt?): {err}") from None


def _require(path: Path, group: h5py.Group, key: str) -> h5py.Dataset:
    if key not in group:
        where = group.name.rstrip("/") + "/" + key
        raise UptError(f"{path}: missing key '{where.lstrip('/')}' required by this layout")
    return group[key]


def _numeric_attrs(obj: h5py.HLObject) -> dict:
    out = {}
    for key, value in obj.attrs.items():
        value = np.asarray(value)
        if value.size == 1 and np.issubdtype(value.dtype, np.number):
            out[key] = value.item()
    return out


def _check_len(path: Path, key: str, coord: np.ndarray, n: int) -> np.ndarray:
    if coord.size < n:
        raise UptError(f"{path}: '{key}' has {coord.size} values but the data have {n} points")
    return coord[:n]


def _open_1d_tensor(path: Path, h5: h5py.File) -> PDEBenchFile:
    data = h5["tensor"]
    if data.ndim != 3:
        raise UptError(f"{path}: 'tensor' has shape {data.shape}; expected [sample, t, x]")
    n, nt, nx = data.shape
    coords = {
        "time": _check_len(path, "t-coordinate", _require(path, h5, "t-coordinate")[:], nt),
        "x": _check_len(path, "x-coordinate", _require(path, h5, "x-coordinate")[:], nx),
    }
    return PDEBenchFile(path, h5, "1d_tensor", n, ["u"], coords, _numeric_attrs(h5))


def _open_cfd(path: Path, h5: h5py.File, keys: set[str]) -> PDEBenchFile:
    names = [f for f in CFD_FIELDS if f in keys]
    shape = h5[names[0]].shape
    for name in names:
        if h5[name].shape != shape:
            raise UptError(f"{path}: field '{name}' has shape {h5[name].shape}, '{names[0]}' has {shape}")
    if len(shape) < 3:
        raise UptError(f"{path}: field '{names[0]}' has shape {shape}; expected [sample, t, *space]")
    ndim = len(shape) - 2
    coords = {"time": _check_len(path, "t-coordinate", _require(path, h5, "t-coordinate")[:], shape[1])}
    for i, dim in enumerate(SPACE_DIMS[:ndim]):
        key = f"{dim}-coordinate"
        coords[dim] = _check_len(path, key, _require(path, h5, key)[:], shape[2 + i])
    return PDEBenchFile(path, h5, "cfd", shape[0], names, coords, _numeric_attrs(h5))


def _open_groups(path: Path, h5: h5py.File, groups: list[str]) -> PDEBenchFile:
    first = h5[groups[0]]
    data = first["data"]
    ndim = data.ndim - 2
    if ndim not in (1, 2, 3):
        raise UptError(f"{path}: '{groups[0]}/data' has shape {data.shape}; expected [t, *space, field]")
    grid = _require(path, first, "grid")
    coords = {"time": _check_len(path, f"{groups[0]}/grid/t", _require(path, grid, "t")[:], data.shape[0])}
    for i, dim in enumerate(SPACE_DIMS[:ndim]):
        coords[dim] = _check_len(path, f"{groups[0]}/grid/{dim}", _require(path, grid, dim)[:],
                                 data.shape[1 + i])
    names = ["u", "v", "w"][: data.shape[-1]] if data.shape[-1] <= 3 else [
        f"c{i}" for i in range(data.shape[-1])]
    return PDEBenchFile(path, h5, "groups", len(groups), names, coords, _numeric_attrs(h5), groups)


def _open_ns_incomp(path: Path, h5: h5py.File) -> PDEBenchFile:
    velocity = h5["velocity"]
    if velocity.ndim != 5 or velocity.shape[-1] != 2:
        raise UptError(f"{path}: 'velocity' has shape {velocity.shape}; expected [sample, t, x, y, 2]")
    n, nt, nx, ny, _ = velocity.shape
    names = ["Vx", "Vy"] + (["particles"] if "particles" in h5 else [])
    t = _require(path, h5, "t")[:]
    t = t[0] if t.ndim == 2 else t
    # PDEBench's files store no grid (its solver uses the unit square with cell-centred points);
    # upt's ns2d files store theirs, the FFT grid i / N.
    coords = {"time": _check_len(path, "t", t, nt)}
    for dim, size in (("x", nx), ("y", ny)):
        key = f"{dim}-coordinate"
        coords[dim] = (_check_len(path, key, h5[key][:], size) if key in h5
                       else (np.arange(size) + 0.5) / size)
    return PDEBenchFile(path, h5, "ns_incomp", n, names, coords, _numeric_attrs(h5))


def _read_1d_tensor(f: PDEBenchFile, s0, s1, t, space) -> dict[str, np.ndarray]:
    return {"u": f.h5["tensor"][(slice(s0, s1), t, *space)]}


def _read_cfd(f: PDEBenchFile, s0, s1, t, space) -> dict[str, np.ndarray]:
    return {name: f.h5[name][(slice(s0, s1), t, *space)] for name in f.field_names}


def _read_groups(f: PDEBenchFile, s0, s1, t, space) -> dict[str, np.ndarray]:
    per_sample = []
    for name in f.groups[s0:s1]:
        data = _require(f.path, f.h5[name], "data")
        per_sample.append(data[(t, *space, slice(None))])
    stacked = np.stack(per_sample)  # [sample, t, *space, field]
    return {name: stacked[..., i] for i, name in enumerate(f.field_names)}


def _read_ns_incomp(f: PDEBenchFile, s0, s1, t, space) -> dict[str, np.ndarray]:
    velocity = f.h5["velocity"][(slice(s0, s1), t, *space, slice(None))]
    out = {"Vx": velocity[..., 0], "Vy": velocity[..., 1]}
    if "particles" in f.field_names:
        out["particles"] = f.h5["particles"][(slice(s0, s1), t, *space, 0)]
    return out


_READERS = {"1d_tensor": _read_1d_tensor, "cfd": _read_cfd, "groups": _read_groups,
            "ns_incomp": _read_ns_incomp}
