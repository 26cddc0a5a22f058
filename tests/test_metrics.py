"""upt.metrics against values worked out by hand from PDEBench's definitions (see the module docstring)."""

import math

import numpy as np
import pytest
import torch

from upt import metrics as M
from upt.errors import UptError


def wave(n, k, amp=1.0, other=None):
    """amp * cos(2 pi k x) on the periodic grid x_j = j / n (1D), or along x of an n x other grid."""
    x = np.arange(n) / n
    w = amp * np.cos(2 * np.pi * k * x)
    return w if other is None else np.repeat(w[:, None], other, axis=1)


def as_array(err, samples=1, times=1, fields=1):
    """A spatial error field as [sample, time, *space, field]."""
    return np.broadcast_to(err[None, None, ..., None], (samples, times, *err.shape, fields)).copy()


def metrics_of(err, target=None, **kw):
    err = np.asarray(err, float)
    target = np.zeros_like(err) if target is None else target
    return M.compute(target + err, target, **kw)


# ------------------------------------------------------------------------------- rmse, nrmse, crmse


@pytest.mark.parametrize("space", [(8,), (4, 6)])
def test_constant_error(space):
    rng = np.random.default_rng(0)
    target = rng.normal(size=(3, 2, *space, 2))
    ds = metrics_of(np.full(target.shape, 0.5), target)
    for name in ("rmse", "crmse", "brmse", "max_error"):
        np.testing.assert_allclose(ds[name].values, [0.5, 0.5])
    # only mode 0: |E_0| / N = 0.5; low bins: 0..3 of 0..4 (1D, rfft) or 0..1 (4 x 6: min(2, 3) bins)
    np.testing.assert_allclose(ds.frmse_low.values, [0.5 / (4 if len(space) == 1 else 2)] * 2)
    mid = [0, 0] if len(space) == 1 else [np.nan, np.nan]  # 2D 4 x 6 has no bin 4: empty band
    np.testing.assert_allclose(ds.frmse_mid.values, mid, atol=1e-12)
    assert list(ds.time.values) == [0, 1]


def test_sample_reductions_rmse_mean_crmse_root_mean_square():
    err = np.stack([np.full((1, 4, 1), 0.5), np.full((1, 4, 1), 1.5)])  # two samples
    ds = metrics_of(err)
    assert ds.rmse.item() == pytest.approx(1.0)
    assert ds.crmse.item() == pytest.approx(math.sqrt((0.25 + 2.25) / 2))
    assert ds.max_error.item() == pytest.approx(1.5)


def test_nrmse_known_target_rms():
    n = 16
    target = np.zeros((1, 1, n, 2))
    target[..., 0] = 2.0  # RMS 2
    target[0, 0, :, 1] = 3 * np.sin(2 * np.pi * np.arange(n) / n)  # RMS 3 / sqrt(2)
    err = np.zeros_like(target)
    err[..., 0], err[..., 1] = 0.5, 0.3
    ds = metrics_of(err, target)
    assert ds.nrmse.item() == pytest.approx((0.5 / 2 + 0.3 / (3 / math.sqrt(2))) / 2)
    assert ds.rmse.item() == pytest.approx(0.4)


@pytest.mark.parametrize("err", [wave(16, 1), wave(8, 2, other=6)])
def test_crmse_zero_mean_error_vanishes(err):
    ds = metrics_of(as_array(err))
    assert ds.crmse.item() == pytest.approx(0, abs=1e-12)
    assert ds.rmse.item() == pytest.approx(1 / math.sqrt(2))


def test_crmse_constant_offset_2d():
    assert metrics_of(as_array(np.full((4, 5), -0.7))).crmse.item() == pytest.approx(0.7)


# ------------------------------------------------------------------------------------------- brmse


def test_brmse_1d_ends_only_vs_interior():
    ends = np.zeros(6)
    ends[0], ends[-1] = 1.0, 3.0
    assert metrics_of(as_array(ends)).brmse.item() == pytest.approx(math.sqrt((1 + 9) / 2))
    inner = np.zeros(6)
    inner[1:-1] = 5.0
    assert metrics_of(as_array(inner)).brmse.item() == 0.0


def test_brmse_2d_edges_corners_twice_interior_ignored():
    ring = np.ones((4, 5))
    ring[1:-1, 1:-1] = 0.0
    assert metrics_of(as_array(ring)).brmse.item() == pytest.approx(1.0)
    corner = np.zeros((4, 5))
    corner[0, 0] = 2.0  # in the x=0 edge and the y=0 edge: 2 * 2^2 / (2*4 + 2*5)
    assert metrics_of(as_array(corner)).brmse.item() == pytest.approx(math.sqrt(8 / 18))
    inner = np.zeros((4, 5))
    inner[1:-1, 1:-1] = 7.0
    assert metrics_of(as_array(inner)).brmse.item() == 0.0


def test_brmse_3d_one_face():
    face = np.zeros((3, 3, 3))
    face[0] = 1.0  # 9 points on x=0, 6 on y faces, 6 on z faces; 2 * (9 + 9 + 9) face points
    assert metrics_of(as_array(face)).brmse.item() == pytest.approx(math.sqrt(21 / 54))


# ------------------------------------------------------------------------------------------- frmse
# A mode A cos(2 pi k x) has |E_k| = A N / 2 at +k (only non-negative modes are counted), so bin k
# holds F = A / 2 * prod(L); a band's value is that divided by its number of bins.


@pytest.mark.parametrize(
    "k, band, nbins",  # 1D, nx = 32: bins 0..16 (rfft), low 4, mid 8, high 12..16 = 5
    [(2, "low", 4), (6, "mid", 8), (13, "high", 5)],
)
def test_frmse_1d_bands(k, band, nbins):
    ds = metrics_of(as_array(wave(32, k, amp=0.8)), domain_lengths=[2.0])
    for name in ("low", "mid", "high"):
        expect = 0.8 / 2 * 2.0 / nbins if name == band else 0.0
        assert ds[f"frmse_{name}"].item() == pytest.approx(expect, abs=1e-12)


@pytest.mark.parametrize(
    "k, band, nbins",  # 2D, 32 x 32: bins 0..15, low 4, mid 8, high 12..15 = 4
    [(2, "low", 4), (6, "mid", 8), (13, "high", 4)],
)
def test_frmse_2d_bands(k, band, nbins):
    ds = metrics_of(as_array(wave(32, k, amp=0.8, other=32)), domain_lengths=(2.0, 3.0))
    for name in ("low", "mid", "high"):
        expect = 0.8 / 2 * 6.0 / nbins if name == band else 0.0
        assert ds[f"frmse_{name}"].item() == pytest.approx(expect, abs=1e-12)


def test_frmse_2d_radial_bin_and_quadrant():
    x = np.arange(16) / 16
    xx, yy = np.meshgrid(x, x, indexing="ij")
    diag = np.cos(2 * np.pi * (3 * xx + 3 * yy))  # mode (3, 3): radius floor(sqrt 18) = 4 -> mid
    assert metrics_of(as_array(diag)).frmse_mid.item() == pytest.approx(0.5 / 4)  # bins 4..7 of 0..7
    assert metrics_of(as_array(diag)).frmse_low.item() == pytest.approx(0, abs=1e-12)
    anti = np.cos(2 * np.pi * (3 * xx - 3 * yy))  # modes (3,-3), (-3,3): outside PDEBench's quadrant
    assert metrics_of(as_array(anti)).frmse_mid.item() == pytest.approx(0, abs=1e-12)


def test_frmse_root_mean_square_over_samples_and_3d():
    err = np.stack([as_array(wave(32, 1, amp=a))[0] for a in (1.0, 3.0)])
    assert metrics_of(err).frmse_low.item() == pytest.approx(math.sqrt((1 + 9) / 2) / 2 / 4)
    cube = np.broadcast_to(wave(8, 2, amp=2.0)[:, None, None], (8, 8, 8))  # bins 0..3: all low
    ds = metrics_of(as_array(cube))
    assert ds.frmse_low.item() == pytest.approx(2.0 / 2 / 4)
    assert np.isnan(ds.frmse_high.item())  # an empty band is NaN, as a mean over no bins


# ------------------------------------------------------------------------------ max error, samples


def test_max_error_max_over_samples_then_mean_over_fields():
    err = np.zeros((2, 1, 3, 2))
    err[0, 0, 1] = [1.0, -3.0]
    err[1, 0, 2] = [-2.0, 1.0]
    assert metrics_of(err).max_error.item() == pytest.approx((2 + 3) / 2)


def test_per_sample_values():
    err = np.stack([np.full((1, 4, 1), -0.5), np.full((1, 4, 1), 1.5)])
    ps = M.compute_per_sample(err, np.zeros_like(err))
    np.testing.assert_allclose(ps.crmse.values[:, 0, 0], [0.5, 1.5])
    np.testing.assert_allclose(ps.rmse.values[:, 0, 0], [0.5, 1.5])
    assert ps.correlation.dims == ("sample", "time")


# ------------------------------------------------------------------------------------- correlation


def test_correlation_identical_negated_and_known():
    t = np.array([[1.0, 2.0], [3.0, 4.0]])[None, None]  # [1, 1, x=2, field=2]
    assert M.compute(t, t).correlation.item() == pytest.approx(1.0)
    assert M.compute(-t, t).correlation.item() == pytest.approx(-1.0)
    p = np.array([[1.0, 3.0], [2.0, 4.0]])[None, None]  # centred dot 4, norms^2 5 and 5 -> 0.8
    assert M.compute(p, t).correlation.item() == pytest.approx(0.8)
    t2 = np.concatenate([t, np.array([[1.0, -1.0], [1.0, -1.0]])[None, None]])
    p2 = np.concatenate([p, np.array([[1.0, 1.0], [-1.0, -1.0]])[None, None]])  # orthogonal: 0
    assert M.compute(p2, t2).correlation.item() == pytest.approx(0.4)


def series(corrs):
    """[1, T, 4, 1] pair whose Pearson correlation at step i is exactly corrs[i]."""
    a, b = np.array([1.0, -1, 1, -1]), np.array([1.0, 1, -1, -1])  # zero-mean, orthogonal, same norm
    target = np.tile(a, (len(corrs), 1))
    pred = np.stack([c * a + math.sqrt(1 - c * c) * b for c in corrs])
    return pred[None, ..., None], target[None, ..., None]


def test_initial_step_excludes_given_frames():
    err = np.array([100.0, 1.0, 2.0, 3.0])[None, :, None, None] * np.ones((1, 4, 5, 1))
    ds = metrics_of(err, initial_step=1)
    assert list(ds.time.values) == [1, 2, 3]
    np.testing.assert_allclose(ds.rmse.values, [1, 2, 3])


def test_correlation_time_first_crossing_interpolated():
    pred, target = series([1.0, 0.92, 0.85, 0.7, 0.9, 0.5])
    times = 0.1 * np.arange(6)
    # 0.8 is crossed between 0.85 (t = 0.2) and 0.7 (t = 0.3): 0.2 + 0.1 * (0.85 - 0.8) / (0.85 - 0.7)
    assert M.correlation_time(pred, target, times) == pytest.approx(0.2 + 0.1 / 3)  # first dip, not the later one
    got = M.correlation_times(pred, target, times)
    assert got == pytest.approx({0.8: 0.2 + 0.1 / 3, 0.9: 0.1 + 0.1 * 0.02 / 0.07, 0.95: 0.1 * 0.05 / 0.08})
    assert all(isinstance(v, float) for v in got.values())
    assert M.correlation_time(pred, target, times, 0.95, initial_step=2) == pytest.approx(0.2)  # first frame below
    np.testing.assert_allclose(M.compute(pred, target).correlation.values, [1, 0.92, 0.85, 0.7, 0.9, 0.5])
    # a frame exactly at the threshold is not below it, but the interpolated crossing is that frame's time
    assert M.first_crossing([0.9, 0.8, 0.7], [0.0, 1.0, 2.0], 0.8) == pytest.approx(1.0)
    assert M.first_crossing([0.9, 0.8, 0.7], [0.0, 1.0, 2.0], 0.75) == pytest.approx(1.5)


def test_correlation_time_never_crossing_returns_horizon_censored_and_nan_counts():
    pred, target = series([1.0, 0.95, 0.9, 0.85])
    times = [0.0, 0.5, 1.0, 1.5]
    assert M.correlation_time(pred, target, times, 0.8) == 1.5
    # 0.92: crossed between 0.95 (t = 0.5) and 0.9 (t = 1.0) at 0.5 + 0.5 * 0.03 / 0.05 = 0.8
    assert M.correlation_times_censored(pred, target, times, (0.8, 0.92)) == {0.8: (1.5, True),
                                                                               0.92: (pytest.approx(0.8), False)}
    assert M.is_censored([1.0, 0.85], 0.8) and not M.is_censored([1.0, np.nan], 0.8)
    pred[0, 2] = np.nan  # a blown-up prediction is decorrelated: a crossing at that frame, not interpolated
    assert M.correlation_time(pred, target, times, 0.8) == 1.0
    assert M.correlation_times_censored(pred, target, times, (0.8,)) == {0.8: (1.0, False)}


# -------------------------------------------------------------------------------- inputs and errors


def test_torch_input_equals_numpy():
    rng = np.random.default_rng(1)
    p, t = rng.normal(size=(2, 3, 8, 6, 2)), rng.normal(size=(2, 3, 8, 6, 2))
    a = M.compute(p, t, initial_step=1)
    b = M.compute(torch.from_numpy(p).float(), torch.from_numpy(t), initial_step=1)
    for name in a.data_vars:
        np.testing.assert_allclose(a[name].values, b[name].values, rtol=1e-5)


@pytest.mark.parametrize(
    "shape_p, shape_t, kw, match",
    [
        ((1, 2, 4, 1), (1, 2, 5, 1), {}, "differs"),
        ((1, 2, 4), (1, 2, 4), {}, "sample, time"),
        ((1, 2, 4, 1), (1, 2, 4, 1), {"initial_step": 2}, "initial_step"),
        ((1, 2, 4, 1), (1, 2, 4, 1), {"domain_lengths": [1.0, 1.0]}, "domain lengths"),
    ],
)
def test_shape_errors(shape_p, shape_t, kw, match):
    with pytest.raises(UptError, match=match):
        M.compute(np.zeros(shape_p), np.zeros(shape_t), **kw)


def test_times_length_error():
    with pytest.raises(UptError, match="times"):
        M.correlation_time(np.zeros((1, 3, 4, 1)), np.zeros((1, 3, 4, 1)), [0.0, 1.0])
