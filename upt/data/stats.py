"""``upt stats``: per-field normalization statistics from the training split alone.

Statistics are merged block by block (Chan et al.'s pairwise update, in float64), so memory stays at
one block of trajectories whatever the file size, and validation and test trajectories never leak
into the normalization (docs/architecture.md, "Lessons").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Mapping, Sequence
from pathlib import Path

import numpy as np

from upt import __version__
from upt.atomic import atomic_output
from upt.data.splits import split_indices
from upt.errors import UptError


@dataclass
class RunningMoments:
    """Count, mean, sum of squared deviations, min and max of a stream of arrays."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    min: float = np.inf
    max: float = -np.inf

    def update(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64)
        n = values.size
        if n == 0:
            return
        mean = float(values.mean())
        m2 = float(((values - mean) ** 2).sum())
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta**2 * self.count * n / total
        self.count = total
        self.min = min(self.min, float(values.min()))
        self.max = max(self.max, float(values.max()))

    @property
    def std(self) -> float:
        return float(np.sqrt(self.m2 / self.count)) if self.count else float("nan")


def field_names(dims: Mapping[str, Sequence[str]]) -> list[str]:
    """The physical fields of a converted dataset, from each variable's dimension names: the
    variables over (sample, time, ...)."""
    return [name for name, names in dims.items() if tuple(names[:2]) == ("sample", "time")]


def compute_stats(src: str | Path, dst: str | Path, *, block: int = 16) -> dict:
    """Write ``{field: {mean, std, min, max, count}}`` plus provenance to the JSON file ``dst``."""
    import xarray as xr  # here, not at the top: training reads metadata through netCDF4 alone

    src = Path(src)
    try:
        ds = xr.open_dataset(src)
    except (OSError, ValueError) as err:
        raise UptError(f"{src}: not a readable netCDF file: {err}") from None
    with ds:
        if "split" not in ds:
            raise UptError(f"{src}: missing variable 'split' (was it written by `upt convert`?)")
        train = split_indices(ds["split"].values, "train")
        if train.size == 0:
            raise UptError(f"{src}: the training split is empty")
        names = field_names({name: var.dims for name, var in ds.data_vars.items()})
        if not names:
            raise UptError(f"{src}: no field variables over (sample, time, ...)")
        moments = {name: RunningMoments() for name in names}
        for start in range(0, train.size, block):
            chunk = ds.isel(sample=train[start:start + block])
            for name in names:
                values = chunk[name].values
                if not np.isfinite(values).all():
                    raise UptError(f"{src}: field '{name}' has NaN/inf values in the training split")
                moments[name].update(values)
        stats = {
            "fields": {name: {"mean": m.mean, "std": m.std, "min": m.min, "max": m.max,
                              "count": m.count} for name, m in moments.items()},
            "split": "train",
            "train_samples": int(train.size),
            "source": src.name,
            "source_md5": ds.attrs.get("source_md5"),
            "producer": f"upt {__version__}",
        }
    with atomic_output(dst) as tmp:
        tmp.write_text(json.dumps(stats, indent=2) + "\n")
    return stats
