"""PDEBench's evaluation metrics, re-implemented from their definitions (not from its code).

Arrays are shaped ``[sample, time, *space, field]`` with 1 to 3 spatial axes; ``e = pred - target``;
``<.>_x`` is the mean over the N grid points, ``<.>_s`` the mean over samples. Per sample, field, time:

- ``rmse``  = <RMSE_s>_s,            RMSE_s = sqrt(<e^2>_x)
- ``nrmse`` = <RMSE_s / sqrt(<target^2>_x)>_s
- ``crmse`` = sqrt(<(<e>_x)^2>_s)    (error of the spatial sum divided by N; root-mean over samples)
- ``brmse`` = <sqrt(mean of e^2 over the boundary faces)>_s: both end points in 1D; the four edges
  in 2D (sum over each edge's n points, divided by 2*nx + 2*ny, so corners count twice); the six
  faces in 3D (divided by 2*(nx*ny + ny*nz + nz*nx)).
- ``frmse_{low,mid,high}``: E_k = FFT(e) (unnormalized); per radial bin r = floor(|k|) over the
  non-negative modes 0 <= k_a < n_a//2 (1D: 0 <= k <= nx//2, i.e. numpy's rfft), r < min_a(n_a//2)
  (1D: r <= nx//2), F_r = sqrt(<sum_{k in bin r} |E_k|^2>_s) * prod(L_a) / N; a band's value is the
  mean of F_r over its bins: low r in [0,4), mid [4,12), high [12, max] (NaN when the band is empty).
- ``max_error`` = max over space and samples of |e|.
All of these are then averaged over fields. ``correlation`` is Pearson's r between pred and target
over space and fields together, per sample and time, then averaged over samples.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from upt.errors import UptError

BANDS = {"low": (0, 4), "mid": (4, 12), "high": (12, None)}
THRESHOLDS = (0.8, 0.9, 0.95)


def _as_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _prepare(pred, target, initial_step: int, domain_lengths):
    p, t = _as_numpy(pred), _as_numpy(target)
    if p.shape != t.shape:
        raise UptError(f"metrics: pred shape {p.shape} differs from target shape {t.shape}")
    if not 4 <= p.ndim <= 6:
        raise UptError(f"metrics: arrays must be [sample, time, *space (1-3 axes), field], got shape {p.shape}")
    if not 0 <= initial_step < p.shape[1]:
        raise UptError(f"metrics: initial_step={initial_step} outside [0, {p.shape[1]}) time steps")
    lengths = np.ones(p.ndim - 3) if domain_lengths is None else np.asarray(domain_lengths, float).ravel()
    if lengths.size != p.ndim - 3:
        raise UptError(f"metrics: {lengths.size} domain lengths for {p.ndim - 3} spatial axes")
    return p[:, initial_step:], t[:, initial_step:], lengths


def _spectrum_bins(e: np.ndarray, lengths: np.ndarray):
    """Per sample, time, field: sum of |FFT(e)|^2 in each radial bin, and the PDEBench scale factor."""
    space = e.shape[2:-1]
    ax = tuple(range(2, e.ndim - 1))
    keep = [n // 2 + 1 if len(space) == 1 else n // 2 for n in space]
    power = np.abs(np.fft.fftn(e, axes=ax)) ** 2
    power = power[(slice(None), slice(None), *(slice(0, m) for m in keep))]
    grid = np.meshgrid(*(np.arange(m) for m in keep), indexing="ij")
    radius = np.floor(np.sqrt(sum(g.astype(float) ** 2 for g in grid))).astype(int).ravel()
    nbins = min(keep)
    onehot = (radius[:, None] == np.arange(nbins)[None, :]).astype(float)  # out-of-range radii dropped
    flat = np.moveaxis(power, -1, 2).reshape(*e.shape[:2], e.shape[-1], -1)  # [S, T, F, modes]
    return flat @ onehot, np.prod(lengths) / np.prod(space)  # [S, T, F, bins], scale


def _band_mean(f: np.ndarray, lo: int, hi) -> np.ndarray:
    band = f[..., lo:hi]
    if band.shape[-1] == 0:
        return np.full(f.shape[:-1], np.nan)
    return band.mean(axis=-1)


def _boundary_mse(e2: np.ndarray) -> np.ndarray:
    ax = tuple(range(2, e2.ndim - 1))
    total, count = 0.0, 0
    for a in ax:
        faces = np.take(e2, [0, -1], axis=a)
        total = total + faces.sum(axis=ax)
        count += faces[0, 0, ..., 0].size
    return total / count


def _correlation(p: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Pearson r over space and fields per [sample, time]; NaN where either side is constant."""
    pf, tf = (x.reshape(*x.shape[:2], -1) for x in (p, t))
    pc, tc = pf - pf.mean(-1, keepdims=True), tf - tf.mean(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pc * tc).sum(-1) / np.sqrt((pc**2).sum(-1) * (tc**2).sum(-1))


def _parts(pred, target, initial_step, domain_lengths):
    p, t, lengths = _prepare(pred, target, initial_step, domain_lengths)
    e = p - t
    ax = tuple(range(2, e.ndim - 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rmse = np.sqrt((e**2).mean(axis=ax))
        parts = {
            "rmse": rmse,
            "nrmse": rmse / np.sqrt((t**2).mean(axis=ax)),
            "cerr": e.mean(axis=ax),
            "brmse": np.sqrt(_boundary_mse(e**2)),
            "max_error": np.abs(e).max(axis=ax),
            "correlation": _correlation(p, t),
        }
    parts["spec"], parts["scale"] = _spectrum_bins(e, lengths)
    return parts, np.arange(initial_step, initial_step + e.shape[1])


def compute(pred, target, initial_step: int = 0, domain_lengths=None) -> xr.Dataset:
    """PDEBench's metrics per time step (see the module docstring for the formulas).

    ``pred``/``target``: numpy arrays or torch tensors ``[sample, time, *space, field]``. Frames
    before ``initial_step`` are given, not predicted, and are left out; the ``time`` coordinate keeps
    the original time indices. ``domain_lengths`` (one per spatial axis, default 1) scale fRMSE.
    """
    return _over_samples(*_parts(pred, target, initial_step, domain_lengths))


def compute_per_sample(pred, target, initial_step: int = 0, domain_lengths=None) -> xr.Dataset:
    """The same metrics per sample, over dims (sample, time, field); correlation over (sample, time).

    Per sample, crmse is |<e>_x|, max_error the max over space, and fRMSE uses sqrt(sum |E_k|^2) of
    that sample; ``compute`` is not the plain sample mean of these for crmse, fRMSE and max_error
    (PDEBench takes the root-mean-square, respectively the max, over samples there).
    """
    return _per_sample(*_parts(pred, target, initial_step, domain_lengths))


def compute_both(pred, target, initial_step: int = 0, domain_lengths=None) -> tuple[xr.Dataset, xr.Dataset]:
    """(``compute``, ``compute_per_sample``) from one pass over the errors and their spectra."""
    q, time = _parts(pred, target, initial_step, domain_lengths)
    return _over_samples(q, time), _per_sample(q, time)


def _over_samples(q: dict, time: np.ndarray) -> xr.Dataset:
    per_field = {  # each [time, field]
        "rmse": q["rmse"].mean(0),
        "nrmse": q["nrmse"].mean(0),
        "crmse": np.sqrt((q["cerr"] ** 2).mean(0)),
        "brmse": q["brmse"].mean(0),
        "max_error": q["max_error"].max(0),
    }
    f = np.sqrt(q["spec"].mean(0)) * q["scale"]  # [time, field, bins]
    for name, (lo, hi) in BANDS.items():
        per_field[f"frmse_{name}"] = _band_mean(f, lo, hi)
    order = ["rmse", "nrmse", "crmse", "brmse", "frmse_low", "frmse_mid", "frmse_high", "max_error"]
    data = {k: ("time", per_field[k].mean(-1)) for k in order}
    data["correlation"] = ("time", q["correlation"].mean(0))
    return xr.Dataset(data, coords={"time": time})


def _per_sample(q: dict, time: np.ndarray) -> xr.Dataset:
    dims = ("sample", "time", "field")
    data = {k: (dims, q[k]) for k in ("rmse", "nrmse", "brmse", "max_error")}
    data["crmse"] = (dims, np.abs(q["cerr"]))
    f = np.sqrt(q["spec"]) * q["scale"]
    for name, (lo, hi) in BANDS.items():
        data[f"frmse_{name}"] = (dims, _band_mean(f, lo, hi))
    data["correlation"] = (("sample", "time"), q["correlation"])
    return xr.Dataset(data, coords={"time": time})


def first_crossing(correlation, times, threshold: float = 0.8) -> float:
    """The time at which ``correlation`` first falls below ``threshold``, else ``times[-1]``.

    Both sequences are aligned (same length). The crossing is interpolated linearly between the
    last frame at or above the threshold and the first below it (a frame-grid value would quantize
    the correlation time to the frame spacing); a first frame already below gives ``times[0]``. A
    dip counts even if the correlation recovers later. A NaN correlation (a non-finite prediction,
    or a constant field) counts as a crossing at that frame, with nothing to interpolate.
    Never crossing returns the last time, i.e. the evaluated horizon: a right-censored value that
    keeps means over seeds finite (``inf`` would make every aggregate ``inf``); ``is_censored``
    tells which.
    """
    corr, times = np.asarray(correlation, float), np.asarray(times, float)
    below = np.flatnonzero(~(corr >= threshold))
    if not below.size:
        return float(times[-1])
    i = below[0]
    if i == 0 or np.isnan(corr[i]):
        return float(times[i])
    fraction = (corr[i - 1] - threshold) / (corr[i - 1] - corr[i])
    return float(times[i - 1] + fraction * (times[i] - times[i - 1]))


def is_censored(correlation, threshold: float = 0.8) -> bool:
    """True when ``correlation`` never falls below ``threshold`` (nor is NaN) within the horizon:
    ``first_crossing`` then returns the horizon, a lower bound of the correlation time."""
    return bool(np.all(np.asarray(correlation, float) >= threshold))


def correlation_time(pred, target, times, threshold: float = 0.8, initial_step: int = 0) -> float:
    """Correlation time: the first time (from ``times``, the physical time of every frame of the
    time axis) at which the sample-averaged Pearson correlation, over frames >= ``initial_step``,
    falls below ``threshold``; the last time if it never does (see ``first_crossing``)."""
    return correlation_times(pred, target, times, (threshold,), initial_step)[threshold]


def correlation_times(pred, target, times, thresholds=THRESHOLDS, initial_step: int = 0) -> dict:
    """``{threshold: correlation time}`` for several thresholds (default 0.8, 0.9, 0.95) at once."""
    return {thr: time for thr, (time, _) in
            correlation_times_censored(pred, target, times, thresholds, initial_step).items()}


def correlation_times_censored(pred, target, times, thresholds=THRESHOLDS, initial_step: int = 0) -> dict:
    """``{threshold: (correlation time, censored)}``: as ``correlation_times``, and whether the
    rollout never fell below the threshold within the horizon (``is_censored``)."""
    p, t, _ = _prepare(pred, target, initial_step, None)
    times = np.asarray(times, float).ravel()
    if times.size != p.shape[1] + initial_step:
        raise UptError(f"metrics: {times.size} times for {p.shape[1] + initial_step} time steps")
    corr = _correlation(p, t).mean(0)
    return {thr: (first_crossing(corr, times[initial_step:], thr), is_censored(corr, thr)) for thr in thresholds}
