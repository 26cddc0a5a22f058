"""Prediction vs truth for one test trajectory: space–time images (1D) or snapshots (2D)."""

from __future__ import annotations

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from upt.plotting.style import ROLLOUT_MODES, NoData, new_figure, styled
from upt.results import PREDICTIONS

FIELD_CMAP, ERROR_CMAP = "viridis", "RdBu_r"


def _fields_and_modes(pred: xr.Dataset, field: str | None) -> tuple[str, list[str]]:
    fields = [str(v)[: -len("_true")] for v in pred.data_vars if str(v).endswith("_true")]
    if not fields:
        raise NoData(f"{PREDICTIONS}: no <field>_true variable")
    field = field or fields[0]
    modes = [m for m in ROLLOUT_MODES if f"{field}_{m}" in pred]
    if not modes:
        raise NoData(f"{PREDICTIONS}: no {field}_latent or {field}_physical variable")
    return field, modes


def _extent(coord: np.ndarray) -> tuple[float, float]:
    """Cell edges of a regular coordinate, so pixels are centred on the grid points."""
    c = np.asarray(coord, float)
    step = (c[-1] - c[0]) / (len(c) - 1) if len(c) > 1 else 1.0
    return c[0] - step / 2, c[-1] + step / 2


def _axis_label(pred: xr.Dataset, dim: str) -> str:
    integer = np.issubdtype(pred[dim].dtype, np.integer)
    return f"{dim} (grid index)" if integer else dim


def _limits(truth: np.ndarray, errors: list[np.ndarray]) -> tuple[float, float, float]:
    vmin, vmax = float(np.nanmin(truth)), float(np.nanmax(truth))
    emax = max(float(np.nanmax(np.abs(e))) for e in errors) or 1e-12
    return vmin, vmax, emax


@styled
def prediction_vs_truth(pred: xr.Dataset, sample: int = 0, field: str | None = None,
                        arm: str | None = None) -> Figure:
    """1D data: space–time images (x across, t up) of truth, prediction and error (prediction −
    truth) per rollout mode. 2D data: the field at three times (first predicted, middle, last) as
    rows truth, then prediction and error per mode. Truth and prediction share one colour scale
    (the truth's range); errors share one symmetric scale across modes."""
    field, modes = _fields_and_modes(pred, field)
    sel = pred.isel(sample=sample)
    spatial = [d for d in pred[f"{field}_true"].dims if d not in ("sample", "time")]
    arm = arm or pred.attrs.get("arm", "")
    given = int(pred.attrs.get("initial_step", 0))
    truth = sel[f"{field}_true"].transpose("time", *spatial).values
    preds = {m: sel[f"{field}_{m}"].transpose("time", *spatial).values for m in modes}
    errors = {m: preds[m] - truth for m in modes}
    vmin, vmax, emax = _limits(truth, list(errors.values()))
    title = f"{arm}: {field}, test sample {int(pred['sample'][sample]) if 'sample' in pred.coords else sample}"
    if len(spatial) == 1:
        fig = _spacetime(pred, spatial[0], truth, preds, errors, (vmin, vmax, emax), given, field)
    elif len(spatial) == 2:
        fig = _snapshots(pred, spatial, truth, preds, errors, (vmin, vmax, emax), given, field)
    else:
        raise NoData(f"{PREDICTIONS}: {len(spatial)} spatial dimensions; only 1D and 2D are drawn")
    fig.suptitle(title, fontsize=8)
    return fig


def _spacetime(pred, xdim, truth, preds, errors, limits, given, field) -> Figure:
    vmin, vmax, emax = limits
    t = pred["time"].values
    extent = (*_extent(pred[xdim].values), *_extent(t))
    fig = new_figure(2.0 * len(preds) + 0.4)
    axes = fig.subplots(len(preds), 3, sharex=True, sharey=True, squeeze=False)
    kw = {"origin": "lower", "aspect": "auto", "extent": extent}
    for i, mode in enumerate(preds):
        images = [axes[i, 0].imshow(truth, cmap=FIELD_CMAP, vmin=vmin, vmax=vmax, **kw),
                  axes[i, 1].imshow(preds[mode], cmap=FIELD_CMAP, vmin=vmin, vmax=vmax, **kw),
                  axes[i, 2].imshow(errors[mode], cmap=ERROR_CMAP, vmin=-emax, vmax=emax, **kw)]
        for ax, name in zip(axes[i], ("truth", f"{mode} rollout", f"error ({mode})")):
            ax.set_title(name)
            ax.grid(False)
            if given > 0 and given < len(t):  # frames below the line are given, not predicted
                ax.axhline((t[given - 1] + t[given]) / 2, color="white", linewidth=0.8, linestyle=":")
        fig.colorbar(images[1], ax=axes[i, :2], shrink=0.9, label=field, extend="both")
        fig.colorbar(images[2], ax=axes[i, 2], shrink=0.9, label=f"{field}: prediction − truth")
        axes[i, 0].set_ylabel("time t (sim. time)")
    for ax in axes[-1]:
        ax.set_xlabel(_axis_label(pred, xdim))
    return fig


def _snapshots(pred, dims, truth, preds, errors, limits, given, field) -> Figure:
    vmin, vmax, emax = limits
    t = pred["time"].values
    first = min(max(given, 0), len(t) - 1)  # the first predicted frame, the middle one, the last
    steps = sorted({first, (first + len(t) - 1) // 2, len(t) - 1})
    rows = ([("truth", truth, False)] + [(f"{m} rollout", preds[m], False) for m in preds]
            + [(f"error ({m})", errors[m], True) for m in preds])
    fig = new_figure(1.4 * len(rows) + 0.5, width=1.45 * len(steps) + 1.6)
    axes = fig.subplots(len(rows), len(steps), sharex=True, sharey=True, squeeze=False)
    extent = (*_extent(pred[dims[0]].values), *_extent(pred[dims[1]].values))
    images = {}
    for i, (name, data, is_error) in enumerate(rows):
        for j, k in enumerate(steps):
            ax = axes[i, j]
            images[is_error] = ax.imshow(data[k].T, origin="lower", extent=extent, aspect="equal",
                                         cmap=ERROR_CMAP if is_error else FIELD_CMAP,
                                         vmin=-emax if is_error else vmin, vmax=emax if is_error else vmax)
            ax.grid(False)
            if i == 0:
                ax.set_title(f"t = {float(t[k]):.3g}")
            if j == 0:
                ax.set_ylabel(f"{name}\n{_axis_label(pred, dims[1])}")
            if i == len(rows) - 1:
                ax.set_xlabel(_axis_label(pred, dims[0]))
    n_fields = 1 + len(preds)
    fig.colorbar(images[False], ax=axes[:n_fields].ravel().tolist(), shrink=0.8, label=field, extend="both")
    fig.colorbar(images[True], ax=axes[n_fields:].ravel().tolist(), shrink=0.8,
                 label=f"{field}: prediction − truth")
    return fig
