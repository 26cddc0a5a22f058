"""``upt convert``: any PDEBench HDF5 layout -> the canonical netCDF-4 file every later step reads.

Canonical form (docs/architecture.md, "Data"): dims ``sample, time, x[, y[, z]]``; one float32 variable per field;
coordinates ``time``, ``x``, ...; ``sample`` holds the trajectory's index in the source file and
``split`` its train/val/test label; attributes carry PDE parameters and provenance.

The output is written block by block through the netCDF4 library (xarray reads it back lazily):
peak memory is one block of trajectories, whatever the file size.
"""

from __future__ import annotations

from pathlib import Path

import netCDF4
import numpy as np

from upt import __version__
from upt.atomic import atomic_output
from upt.data.pdebench import PDEBenchFile, open_pdebench
from upt.data.splits import assign_splits
from upt.errors import UptError

CHUNK_BYTES = 2**20  # largest chunk of a field variable (see _write_header)


def convert(src: str | Path, dst: str | Path, *, reduce_x: int = 1, reduce_t: int = 1,
            frames: int | None = None, skip_frames: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.1,
            split_seed: int = 0, md5: str | None = None, block_mb: float = 32.0) -> Path:
    """Convert ``src`` to ``dst``, keeping every ``reduce_x``-th point and ``reduce_t``-th frame,
    and of those ``frames`` (all when None) after the first ``skip_frames``: a window on the part of
    a trajectory where the dynamics happen, e.g. after an initial transient and before a viscous
    solution has decayed to its mean."""
    for name, value in (("reduce_x", reduce_x), ("reduce_t", reduce_t), ("frames", frames or 1),
                        ("skip_frames", skip_frames + 1)):
        if int(value) != value or value < 1:
            raise UptError(f"{name} must be a positive integer, got {value}")
    source = open_pdebench(src)
    try:
        labels = assign_splits(source.n_samples, val_fraction, test_fraction, split_seed)
        if md5 is None:
            from upt.data.download import md5sum

            md5 = md5sum(source.path)
        available = len(source.coords["time"][::reduce_t]) - skip_frames
        frames = available if frames is None else frames
        if not 2 <= frames <= available:
            raise UptError(f"{src}: frames={frames} with skip_frames={skip_frames} needs 2 to {available} of the "
                           f"frames left after reduce_t={reduce_t}")
        window = slice(skip_frames, skip_frames + frames)
        block = max(1, int(block_mb * 2**20 // source.sample_nbytes()))
        with atomic_output(dst) as tmp:
            nc = netCDF4.Dataset(tmp, "w", format="NETCDF4")
            try:
                _write_header(nc, source, labels, reduce_x, reduce_t, window)
                nc.setncatts({"source_file": source.path.name, "source_md5": md5,
                              "source_layout": source.layout, "converter": f"upt {__version__}",
                              "reduce_x": reduce_x, "reduce_t": reduce_t, "frames": frames,
                              "skip_frames": skip_frames,
                              "split_seed": split_seed,
                              "val_fraction": val_fraction, "test_fraction": test_fraction})
                for s0 in range(0, source.n_samples, block):
                    s1 = min(s0 + block, source.n_samples)
                    for name, values in source.read(s0, s1, reduce_t, reduce_x).items():
                        values = values[:, window]
                        _check_finite(source.path, name, values, s0)
                        nc[name][s0:s1] = values
            finally:
                nc.close()
    finally:
        source.close()
    return Path(dst)


def _write_header(nc: netCDF4.Dataset, source: PDEBenchFile, labels: np.ndarray,
                  reduce_x: int, reduce_t: int, window: slice = slice(None)) -> None:
    dims = ("time", *source.space_dims)
    nc.createDimension("sample", source.n_samples)
    nc.createVariable("sample", "i8", ("sample",))[:] = np.arange(source.n_samples)
    split = nc.createVariable("split", str, ("sample",))
    split[:] = labels
    for dim in dims:
        values = source.coords[dim][:: reduce_t if dim == "time" else reduce_x]
        if dim == "time":
            values = values[window]
        nc.createDimension(dim, values.size)
        nc.createVariable(dim, values.dtype, (dim,))[:] = values
    shape = [len(nc.dimensions[d]) for d in dims]
    # A chunk holds one trajectory's frames up to CHUNK_BYTES: a training window (history + horizon
    # frames) then reads one or two chunks instead of the whole trajectory (a 2D 128^2 x 101-frame
    # trajectory is 6.6 MB per field), and whole-trajectory readers read a few chunks each.
    frames = max(1, min(shape[0], CHUNK_BYTES // (4 * int(np.prod(shape[1:])))))
    for name in source.field_names:
        nc.createVariable(name, "f4", ("sample", *dims), chunksizes=(1, frames, *shape[1:]))
    # PDE parameters (Nu, beta, ...) become attributes; names stay PDEBench's.
    nc.setncatts({f"pde_{key}": value for key, value in source.attrs.items()})


def _check_finite(path: Path, name: str, values: np.ndarray, s0: int) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        sample = s0 + int(np.argwhere(bad)[0][0])
        raise UptError(f"{path}: field '{name}' has {int(bad.sum())} NaN/inf values "
                       f"(first in sample {sample})")
