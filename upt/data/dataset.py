"""The torch Dataset that feeds training, latent caching and evaluation from a converted netCDF file.

Items are windows of one trajectory in the model's conventions (upt/models/upt.py): ``u`` [N,
history*C] (frames oldest first, fields interleaved per frame), ``target`` [horizon, N, C] and
``cond`` [horizon, P], all normalized with the training split's statistics so validation and test
data never shift the scale.

A split that fits in ``preload_mb`` is read once, in blocks of trajectories, into one float32 tensor
[S, T, N, C]; a larger one is read per item. Both paths go through ``_read`` so items are
bit-identical.

Bulk reads use h5py (a netCDF-4 file is an HDF5 file; fields are plain float datasets), opening the
file for each read and closing it at once: each DataLoader worker thus has its own short-lived handle
and nothing needs pickling care. A netCDF4 handle held open is not safe: with the ``split`` string
variable, a second netCDF4/xarray open of the same file (the val set, an evaluation) can segfault in
HDF5 (Unidata/netcdf4-python#1444, HDFGroup/hdf5#5359). netCDF4 only reads metadata, in one
short-lived handle (directly, not through xarray: its and pandas' imports cost every job ~0.3 s).
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import netCDF4
import torch
from einops import rearrange

from upt.data.splits import split_indices
from upt.data.stats import field_names
from upt.errors import UptError

BLOCK_BYTES = 64 * 2**20  # preload reads this much of the split at a time


def history_windows(frames: torch.Tensor, history: int) -> torch.Tensor:
    """Frames [..., T, N, C] -> every run of ``history`` consecutive frames stacked on channels,
    oldest first: [..., T - history + 1, N, history * C], the model's input convention."""
    steps = frames.shape[-3] - history + 1
    return torch.cat([frames[..., j:j + steps, :, :] for j in range(history)], dim=-1)


class FieldDataset(torch.utils.data.Dataset):
    """Windows of normalized trajectories from one split of a converted netCDF file."""

    def __init__(self, path, stats, split, history=1, horizon=1, params=(), preload_mb=2048):
        self.path, self.history = Path(path), int(history)
        try:
            ds = netCDF4.Dataset(self.path)
        except (OSError, ValueError) as err:
            raise UptError(f"{self.path}: not a readable netCDF file: {err}") from None
        with ds:
            ds.set_auto_mask(False)  # plain arrays, as written
            variables = ds.variables
            if "split" not in variables:
                raise UptError(f"{self.path}: missing variable 'split' (not written by `upt convert`?)")
            try:
                self._index = split_indices(np.asarray(variables["split"][:], dtype=str), split)
            except UptError as err:
                raise UptError(f"{self.path}: {err}") from None
            if self._index.size == 0:
                raise UptError(f"{self.path}: split '{split}' is empty")
            self.split = split
            self.fields = field_names({name: var.dimensions for name, var in variables.items()})
            if not self.fields:
                raise UptError(f"{self.path}: no field variables over (sample, time, ...)")
            def coordinate(dim):  # its variable, or 0, 1, ... where it has none (as xarray reads it)
                return np.asarray(variables[dim][:]) if dim in variables else np.arange(len(ds.dimensions[dim]))

            self.sample_ids = coordinate("sample")[self._index]
            dims = variables[self.fields[0]].dimensions[2:]
            self.grid_shape = tuple(len(ds.dimensions[d]) for d in dims)
            self.times = coordinate("time")
            self.coords = {d: coordinate(d) for d in dims}
            self.attrs = {k: ds.getncattr(k) for k in ds.ncattrs()}  # provenance and PDE parameters (pde_<name>)
            self.pos = _positions(list(self.coords.values()), int(self.attrs.get("reduce_x", 1)))
            self._params = np.array([_param(self.path, self.attrs, p) for p in params], np.float32)
        self.n_samples, self.n_times = self._index.size, self.times.size
        # None: every frame after the history (PDEBench's unrolled training over the whole trajectory)
        self.horizon = self.n_times - self.history if horizon is None else int(horizon)
        self.cond_dim = 1 + len(params)
        for name, value in (("history", self.history), ("horizon", self.horizon)):
            if value < 1:
                raise UptError(f"{self.path}: {name} must be >= 1, got {value}")
        if self.history + self.horizon > self.n_times:
            raise UptError(f"{self.path}: history={self.history} + horizon={self.horizon} exceeds the "
                           f"{self.n_times} time steps of a trajectory")
        self._mean, self._std = _moments(stats, self.fields, self.path)
        self._windows = self.n_times - self.history - self.horizon + 1
        self._data = None
        shape = (self.n_samples, self.n_times, int(np.prod(self.grid_shape)), len(self.fields))
        sample_bytes = 4 * int(np.prod(shape[1:]))
        if self.n_samples * sample_bytes <= preload_mb * 2**20:
            self._data, block = torch.empty(shape), max(1, BLOCK_BYTES // sample_bytes)
            for b in range(0, self.n_samples, block):
                self._data[b:b + block] = self._read(self._index[b:b + block], 0, self.n_times)

    # --- normalization ---------------------------------------------------------------------------
    @property
    def std(self) -> torch.Tensor:
        """Per-field std of the training split [C]: one normalized unit in physical units."""
        return self._std.clone()

    def normalize(self, x):
        """(x - mean) / std per field, for tensors or arrays shaped [..., C]."""
        mean, std = self._moments_like(x)
        return (x - mean) / std

    def denormalize(self, x):
        mean, std = self._moments_like(x)
        return x * std + mean

    def _moments_like(self, x):
        if torch.is_tensor(x):
            return self._mean.to(x), self._std.to(x)
        return self._mean.numpy(), self._std.numpy()

    # --- items -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.n_samples * self._windows

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < len(self):
            raise IndexError(f"window {i} out of range for {len(self)} windows")
        sample, start = divmod(int(i), self._windows)
        frames = self._frames(sample, start, start + self.history + self.horizon)
        return {"u": history_windows(frames[: self.history], self.history)[0],
                "target": frames[self.history:], "cond": self.cond_for(start, self.horizon),
                "sample": sample, "start": start, "trajectory": int(self.sample_ids[sample])}

    def trajectory(self, i: int) -> torch.Tensor:
        """The normalized whole trajectory [T, N, C] of split-sample i (latent cache, rollouts)."""
        return self._frames(i, 0, self.n_times)

    def cond_for(self, start: int, steps: int) -> torch.Tensor:
        """[steps, P] for a rollout from the window at ``start``: row s conditions the step that
        advances frame start+history-1+s. Column 0 is that frame's time / times[-1]; the rest are the
        PDE parameters ``pde_<name>`` as log10, since PDEBench sweeps them over decades."""
        first = start + self.history - 1
        if start < 0 or steps < 1 or first + steps >= self.n_times:
            raise UptError(f"{self.path}: no times for {steps} steps from window start {start} "
                           f"(history={self.history}, {self.n_times} time steps)")
        t = torch.from_numpy(self.times[first:first + steps] / self.times[-1]).float()[:, None]
        return torch.cat([t, torch.from_numpy(self._params).expand(steps, -1)], dim=1)

    # --- reading ---------------------------------------------------------------------------------
    def _frames(self, sample: int, t0: int, t1: int) -> torch.Tensor:
        if self._data is not None:  # a copy: a view would ship the whole split to shared memory
            return self._data[sample, t0:t1].clone()  # when a worker returns it uncollated
        return self._read(self._index[sample:sample + 1], t0, t1)[0]

    def _read(self, positions: np.ndarray, t0: int, t1: int) -> torch.Tensor:
        """Normalized frames t0:t1 of the trajectories at file ``positions`` -> [S, T, N, C]."""
        fields = []
        with h5py.File(self.path, "r") as f:  # positions ascend, as h5py's fancy indexing needs
            for c, name in enumerate(self.fields):
                # Field by field, with scalar moments: normalizing the stacked [..., C] array
                # broadcasts over an innermost axis of C values, which profiled 5x slower.
                values = f[name][positions, t0:t1].astype(np.float32, copy=False)
                values -= self._mean[c].item()
                values /= self._std[c].item()
                fields.append(values)
        return rearrange(torch.from_numpy(np.stack(fields, axis=-1)), "s t ... c -> s t (...) c")


def _positions(coords: list[np.ndarray], reduce_x: int) -> torch.Tensor:
    """Grid points in [0,1]^d as cell centres of the full-resolution domain, row-major [N, d].

    A file converted with ``reduce_x=r`` keeps every r-th full-resolution centre, so its spacing is r
    full cells: the domain starts half a *full* cell before x[0] and spans n*r full cells (PDEBench
    sizes are multiples of r). The same physical x thus gets the same position at every resolution,
    which zero-shot super-resolution relies on.
    """
    axes = []
    for x in coords:
        x = np.asarray(x, np.float64)
        if x.size == 1:
            axes.append(np.full(1, 0.5))
            continue
        dx = (x[-1] - x[0]) / (x.size - 1)
        lo = x[0] - dx / reduce_x / 2
        axes.append((x - lo) / (x.size * dx))
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    return torch.from_numpy(grid.reshape(-1, len(coords))).float()


def _moments(stats, fields: list[str], path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    where = "stats"
    if not isinstance(stats, dict):
        where = str(stats)
        try:
            stats = json.loads(Path(stats).read_text())
        except (OSError, ValueError) as err:
            raise UptError(f"{stats}: not a readable stats JSON file: {err}") from None
    table = stats.get("fields", {})
    for f in fields:
        if f not in table or not table[f].get("std", 0) > 0:
            raise UptError(f"{where}: no usable mean/std for field '{f}' of {path}")
    return (torch.tensor([table[f]["mean"] for f in fields], dtype=torch.float32),
            torch.tensor([table[f]["std"] for f in fields], dtype=torch.float32))


def _param(path: Path, attrs: dict, name: str) -> float:
    value = attrs.get(f"pde_{name}")
    if value is None or np.size(value) != 1 or not float(value) > 0:
        raise UptError(f"{path}: PDE parameter 'pde_{name}' is missing or not positive ({value!r})")
    return float(np.log10(float(value)))
