"""Scoring of rollouts on the test split: the test set, the metrics of a prediction against the
truth, and the files of one evaluation (docs/architecture.md). ``upt evaluate``
(:mod:`upt.evaluation.evaluate`) makes the rollouts; this module measures them.

Every reported error is measured in physical units (denormalized with the training statistics),
on autoregressive rollouts over the whole test horizon from the first ``history`` frames, which are
given and therefore excluded from every metric. The teacher-forced one-step error is reported
beside the rollouts under its own mode name, ``one-step``, never in their place.

Surrogates are evaluated in ``latent`` mode (encode once) and ``physical`` mode (decode and
re-encode each step), and, where a finer conversion of the same test data exists, in
``latent-superres`` (decoded zero-shot on the finer grid). Baselines go through the same code with
their own prediction function and mode ``physical``.
"""

from __future__ import annotations

import math
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
import xarray as xr

from upt import metrics, vocabulary
from upt.data.dataset import FieldDataset, history_windows
from upt.errors import UptError
from upt.results import SUMMARY_COLUMNS, write_evaluation

THRESHOLDS = (0.8, 0.9, 0.95)


@dataclass
class TestSet:
    """The test split as one batch: normalized trajectories and what a rollout needs."""

    data: FieldDataset
    frames: torch.Tensor  # [S, T, N, C] normalized

    @classmethod
    def load(cls, path, stats, history: int, params=()) -> "TestSet":
        data = FieldDataset(path, stats, "test", history=history, horizon=1, params=params)
        return cls(data, torch.stack([data.trajectory(i) for i in range(data.n_samples)]))

    @property
    def steps(self) -> int:
        return self.data.n_times - self.data.history

    def initial(self) -> torch.Tensor:
        """The given frames of every trajectory, stacked on channels: [S, N, history * C]."""
        return history_windows(self.frames[:, : self.data.history], self.data.history)[:, 0]

    def cond(self) -> torch.Tensor:
        return self.data.cond_for(0, self.steps).expand(len(self.frames), -1, -1)

    def trajectories(self) -> torch.Tensor:
        """The trajectories' ids in the source file [S] (a point-cloud view's subsets follow them)."""
        return torch.as_tensor(self.data.sample_ids, dtype=torch.long)

    def physical(self, frames: torch.Tensor) -> np.ndarray:
        """Normalized [S, T, N, C] -> denormalized [S, T, *grid, C] for the metrics."""
        s, t, _, c = frames.shape
        return self.data.denormalize(frames).reshape(s, t, *self.data.grid_shape, c).numpy()

    def with_given_frames(self, predicted: torch.Tensor) -> torch.Tensor:
        """Prepend the given frames to a prediction of the remaining steps."""
        return torch.cat([self.frames[:, : self.data.history], predicted], dim=1)


def timed(predict: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, float, float]:
    """(prediction, wall seconds, peak memory MB): CUDA's allocator peak on GPU, the process's
    peak resident set on CPU (which only grows, so it bounds every mode evaluated so far)."""
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    with torch.no_grad():
        out = predict()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated() / 2**20 if cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return out.cpu(), seconds, peak


HORIZONS = (1, 5, 10)


def score(test: TestSet, predicted: torch.Tensor, truth: TestSet | None = None,
          horizons=HORIZONS) -> tuple[xr.Dataset, dict]:
    """Per-time metrics (excluding the given frames) and the summary values: time averages,
    correlation times, and nRMSE and correlation ``k`` steps after the given frames for each k of
    ``horizons`` (a time average alone rewards collapsing to the mean once the field has decayed)."""
    truth = truth or test
    pred = truth.physical(truth.with_given_frames(predicted))
    target = truth.physical(truth.frames)
    history = truth.data.history
    curves, per_sample = metrics.compute_both(pred, target, initial_step=history)
    summary = {name: float(curves[name].mean()) for name in curves.data_vars}
    summary["nrmse_test_half"] = test_sampling_half_width(per_sample)
    for k in horizons:
        if k > len(curves["time"]):
            raise UptError(f"horizon {k} exceeds the {len(curves['time'])} predicted steps of the test data")
        summary[f"nrmse_step{k}"] = float(curves["nrmse"][k - 1])
        summary[f"corr_step{k}"] = float(curves["correlation"][k - 1])
    times = metrics.correlation_times_censored(pred, target, truth.data.times, THRESHOLDS, initial_step=history)
    for threshold, (value, censored) in times.items():  # censored: never fell below within the horizon
        summary[f"corr_time_{threshold}"], summary[f"corr_time_{threshold}_censored"] = value, float(censored)
    return curves.assign_coords(time=truth.data.times[curves["time"].values]), summary


def test_sampling_half_width(per_sample: xr.Dataset) -> float:
    """Half-width of the 95% t-interval of the time-averaged nRMSE over the test trajectories: how
    much the absolute level would move with another draw of as many test trajectories (a few
    trajectories that shock early can carry much of the mean), from ``metrics.compute_per_sample``'s
    values. NaN for a single trajectory."""
    values = per_sample["nrmse"].mean(("time", "field")).values
    if len(values) < 2 or not np.isfinite(values).all():
        return float("nan")
    from upt.evaluation.aggregate import interval  # the project's one Student-t interval

    _, low, high = interval(values)
    return float((high - low) / 2)


def reconstruction(test: TestSet, model, batch_size: int = 64) -> torch.Tensor:
    """D(E(u)) of every frame after the given ones, [S, steps, N, C], each encoded from its own
    history window on the test grid: the autoencoder's floor, which no rollout of this model beats."""
    windows = history_windows(test.frames, test.data.history)[:, 1:]  # windows ending at frames h..T-1
    flat, pos, grid = windows.flatten(0, 1), test.data.pos, test.data.grid_shape
    ids = test.trajectories().repeat_interleave(windows.shape[1])
    with torch.no_grad():
        out = torch.cat([model.decode(model.encode(u, pos.expand(len(u), -1, -1), grid,
                                                   model.observation_mask(t, pos.shape[0])),
                                      pos.expand(len(u), -1, -1))
                         for u, t in zip(flat.split(batch_size), ids.split(batch_size))])
    return out.unflatten(0, windows.shape[:2])


def latent_drift(test: TestSet, model, correct=None, batch_size: int = 64) -> dict:
    """How far the token norms of a latent rollout drift from those of the true latents:
    ``latent_drift`` (mean over steps) and ``latent_drift_final`` (last step) of the mean over
    samples and tokens of | ||z_hat|| / ||E(u_true)|| - 1 |. Scale-free, so arms whose encoders
    chose different latent scales compare."""
    h, pos, grid = test.data.history, test.data.pos, test.data.grid_shape
    windows = history_windows(test.frames, h)  # window j ends at frame j + h - 1
    cond = test.cond()
    ratios = []
    with torch.no_grad():
        for w, c, t in zip(windows.split(batch_size), cond.split(batch_size), test.trajectories().split(batch_size)):
            p, mask = pos.expand(len(w), -1, -1), model.observation_mask(t, pos.shape[0])
            true = torch.stack([model.encode(w[:, j], p, grid, mask) for j in range(w.shape[1])], dim=1)
            z, steps = true[:, 0], []
            for s in range(test.steps):
                z = model.step(z, c[:, s])
                z = correct(z) if correct is not None else z
                steps.append(z.norm(dim=-1) / true[:, s + 1].norm(dim=-1).clamp_min(1e-6))
            ratios.append(torch.stack(steps, dim=1))  # [B, steps, tokens]
    deviation = (torch.cat(ratios) - 1).abs().mean(dim=(0, 2))  # per step
    return {"latent_drift": float(deviation.mean()), "latent_drift_final": float(deviation[-1])}


def divergence_rms(test: TestSet, frames: torch.Tensor) -> float | None:
    """RMS of div v (physical units) of normalized frames [S, T, N, C] of a 2D velocity field (fields
    Vx and Vy), None for other data: how incompressible a prediction is, beside the same operator
    applied to the truth (mode ``truth``). Spectral derivatives on a periodic domain (pde_periodic),
    where the solver's divergence-free truth then scores float32 rounding, else central differences."""
    velocity = _velocity(test, frames)
    if velocity is None:
        return None
    from upt.losses import divergence

    return _rms(divergence, *velocity)


def velocity_gradient_rms(test: TestSet, frames: torch.Tensor) -> float | None:
    """RMS of |grad v| (Frobenius norm of dv_i/dx_j, physical units, the derivatives of
    :func:`divergence_rms`) of normalized frames [S, T, N, C], None without a 2D velocity: the scale
    of ``divergence_rel_grad``. On a periodic domain mean |grad v|^2 = mean (div v)^2 + mean
    (curl v)^2, so that ratio is the divergent fraction of the gradient, 0 to 1."""
    velocity = _velocity(test, frames)
    if velocity is None:
        return None
    from upt.losses import velocity_gradient

    return _rms(lambda v, spacing, periodic: velocity_gradient(v, spacing, periodic).flatten(-2), *velocity)


def _velocity(test: TestSet, frames: torch.Tensor):
    """(velocity [S * T, X, Y, 2] in physical units, (dx, dy), periodic) of normalized frames, or
    None unless the data hold Vx and Vy on a 2D grid."""
    data = test.data
    if not {"Vx", "Vy"} <= set(data.fields) or len(data.grid_shape) != 2:
        return None
    from upt.losses import periodic_domain

    v = data.denormalize(frames)[..., [data.fields.index("Vx"), data.fields.index("Vy")]]
    spacing = tuple(float(np.diff(data.coords[d][:2])[0]) for d in ("x", "y"))
    return v.reshape(-1, *data.grid_shape, 2), spacing, periodic_domain(data.attrs, data.path)


def _rms(field, velocity: torch.Tensor, spacing, periodic: bool, frames: int = 64) -> float:
    """sqrt of the mean over frames and points of |field(v)|^2 (summed over its channels), ``frames``
    at a time in float64 (a 128^2 test split holds thousands of frames)."""
    total, count = 0.0, 0
    for v in velocity.split(frames):
        f = field(v.double(), spacing, periodic)
        total += float(f.square().sum())
        count += f.shape[0] * f.shape[1] * f.shape[2]
    return math.sqrt(total / count)


def write_results(out_dir: Path, dataset: str, arm: str, seed: int, results: dict, test: TestSet,
                  predictions: dict[str, torch.Tensor], extra_rows: list[dict], n_show: int = 2) -> None:
    """metrics.nc (mode x time), summary.csv (tidy rows) and predictions.nc (a few test samples), through
    :func:`upt.results.write_evaluation`. Every mode is one of the vocabulary's (a new one is
    registered in :data:`upt.vocabulary.MODES` first, so tables and figures know its name)."""
    written = set(results) | {row["mode"] for row in extra_rows}
    unknown = sorted(written - set(vocabulary.MODES) - set(vocabulary.PSEUDO_MODES))
    if unknown:
        raise ValueError(f"mode(s) {unknown} are not in upt.vocabulary.MODES")
    rows = [{"dataset": dataset, "arm": arm, "seed": seed, "mode": mode, "metric": k, "value": v}
            for mode, (_, summary) in results.items() for k, v in summary.items()]
    rows += [{"dataset": dataset, "arm": arm, "seed": seed, **row} for row in extra_rows]
    curves = xr.concat([c.expand_dims(mode=[m]) for m, (c, _) in results.items()], dim="mode", join="outer")
    curves.attrs.update(dataset=dataset, arm=arm, seed=seed)
    shown = {}
    data = test.data
    coords = {"time": data.times, **{d: np.arange(n) for d, n in zip("xyz", data.grid_shape)}}
    dims = ("sample", "time", *"xyz"[: len(data.grid_shape)])
    true = test.physical(test.frames[:n_show])
    for i, name in enumerate(data.fields):
        shown[f"{name}_true"] = (dims, true[..., i])
        for mode, predicted in predictions.items():
            shown[f"{name}_{mode}"] = (dims, test.physical(test.with_given_frames(predicted)[:n_show])[..., i])
    pred_ds = xr.Dataset(shown, coords=coords, attrs={"dataset": dataset, "arm": arm, "seed": seed,
                                                       "initial_step": data.history})
    write_evaluation(out_dir, pd.DataFrame(rows, columns=SUMMARY_COLUMNS), curves, pred_ds)
