"""Evaluation: rollouts on the test split in physical units, baselines, aggregation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from upt import metrics
from upt.data.convert import convert
from upt.data.solvers.burgers import generate_burgers1d
from upt.data.stats import compute_stats
from upt.errors import UptError
from upt.evaluation.aggregate import aggregate, interval
from upt.evaluation.evaluate import evaluate_baseline, evaluate_model
from upt.results import (ARMS, CURVES, EVAL_METRICS, EVAL_SUMMARY, PREDICTIONS, SUMMARY_COLUMNS, SUMMARY_STATS,
                         Layout, read_arms, read_curves, read_summary, read_summary_stats, write_netcdf,
                         write_summary)
from upt.training.cache import build_cache
from upt.training.run import run_stage


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    generate_burgers1d(root / "raw.h5", samples=12, nu=0.05, resolution=32, seed=0)
    convert(root / "raw.h5", root / "data.nc", reduce_x=2, reduce_t=20, val_fraction=0.25, test_fraction=0.25)
    convert(root / "raw.h5", root / "fine.nc", reduce_t=20, val_fraction=0.25, test_fraction=0.25)
    compute_stats(root / "data.nc", root / "stats.json")
    return root


@pytest.fixture(scope="module")
def model(data):
    settings = {"seed": 0, "model": {"preset": "upt-tiny"}, "history": 1, "params": [],
                "stage": {"epochs": 1, "batch_size": 8, "losses": {"reconstruction": 1.0, "next_step": 1.0}}}
    ae = data / "ae" / "model.pt"
    run_stage("autoencoder", {**settings, "stage": {**settings["stage"], "losses": {"reconstruction": 1.0}}},
              data / "data.nc", data / "stats.json", ae)
    build_cache(ae, data / "data.nc", data / "stats.json", data / "latents.pt")
    op = data / "op" / "model.pt"
    run_stage("operator", {**settings, "stage": {**settings["stage"], "losses": {"next_step": 1.0}}},
              data / "data.nc", data / "stats.json", op, init=ae, cache=data / "latents.pt")
    return op


def test_persistence_scores_exactly_the_metrics_of_a_copied_frame(data, tmp_path):
    evaluate_baseline("persistence", data / "data.nc", data / "stats.json", tmp_path, dataset="b", seed=0)
    with xr.open_dataset(data / "data.nc") as ds:
        test = ds["u"].values[ds["split"].values.astype(str) == "test"][..., None]  # [S, T, x, 1]
        times = ds["time"].values
    copied = np.repeat(test[:, :1], test.shape[1], axis=1)
    expected = metrics.compute(copied, test, initial_step=1)
    summary = read_summary(tmp_path / EVAL_SUMMARY).set_index(["mode", "metric"])["value"]
    for name in ("rmse", "nrmse", "max_error", "correlation"):
        assert summary[("physical", name)] == pytest.approx(float(expected[name].mean()), rel=1e-6)
    assert summary[("physical", "corr_time_0.8")] == pytest.approx(
        metrics.correlation_time(copied, test, times, 0.8, initial_step=1))
    with xr.open_dataset(tmp_path / EVAL_METRICS) as curves:
        assert list(curves["mode"].values) == ["physical"]
        np.testing.assert_allclose(curves["time"].values, times[1:])  # the given frame is not scored


def test_model_rollouts_in_every_mode(data, model, tmp_path):
    evaluate_model(model, data / "data.nc", data / "stats.json", tmp_path, dataset="b", arm="op", seed=0,
                   fine_data=data / "fine.nc")
    summary = read_summary(tmp_path / EVAL_SUMMARY)
    assert set(summary["mode"]) == {"latent", "physical", "one-step", "latent-superres", "reconstruction", "all"}
    by = summary.set_index(["mode", "metric"])["value"]
    with xr.open_dataset(tmp_path / EVAL_METRICS) as curves:  # step k = the k-th frame after the given one
        for k in (1, 5, 10):
            for mode in ("latent", "physical", "reconstruction"):
                assert by[(mode, f"nrmse_step{k}")] == pytest.approx(float(curves["nrmse"].sel(mode=mode)[k - 1]))
                assert by[(mode, f"corr_step{k}")] == pytest.approx(
                    float(curves["correlation"].sel(mode=mode)[k - 1]))
    assert by[("latent", "latent_drift")] >= 0 and by[("latent", "latent_drift_final")] >= 0
    assert (summary.query("metric == 'rollout_seconds'")["value"] > 0).all()
    with xr.open_dataset(tmp_path / PREDICTIONS) as pred, xr.open_dataset(data / "data.nc") as ds:
        truth = ds["u"].values[ds["split"].values.astype(str) == "test"]
        np.testing.assert_allclose(pred["u_true"].values, truth[: pred.sizes["sample"]], rtol=1e-5, atol=1e-5)
        # The given first frame is the truth in every mode; later frames are predictions.
        np.testing.assert_allclose(pred["u_latent"].values[:, 0], truth[: pred.sizes["sample"], 0], rtol=1e-5, atol=1e-5)
        assert not np.allclose(pred["u_latent"].values[:, 1:], pred["u_true"].values[:, 1:])
    # Latent rollout of one step is the one-step prediction of the first frame.
    with xr.open_dataset(tmp_path / EVAL_METRICS) as curves:
        first = curves.isel(time=0)
        assert float(first["rmse"].sel(mode="latent")) == pytest.approx(float(first["rmse"].sel(mode="one-step")),
                                                                         rel=1e-5)


def test_mean_baseline_predicts_the_last_given_frames_spatial_mean_everywhere(data, tmp_path):
    # On the full-resolution grid: the finite-volume solver conserves the mean of its cell values
    # exactly, while every other point of a reduced grid only approximates it.
    evaluate_baseline("mean", data / "fine.nc", data / "stats.json", tmp_path, dataset="b", seed=0,
                      horizons=(1, 3))
    with xr.open_dataset(data / "fine.nc") as ds:
        test = ds["u"].values[ds["split"].values.astype(str) == "test"][..., None].astype(np.float64)
    # Burgers on a periodic domain conserves the mean: the prediction is exact in it at every step.
    np.testing.assert_allclose(test.mean(2), np.repeat(test[:, :1].mean(2), test.shape[1], axis=1), atol=1e-5)
    flat = np.broadcast_to(test[:, :1].mean(2, keepdims=True), test.shape)
    expected = metrics.compute(flat, test, initial_step=1)
    summary = read_summary(tmp_path / EVAL_SUMMARY).set_index(["mode", "metric"])["value"]
    assert summary[("physical", "nrmse")] == pytest.approx(float(expected["nrmse"].mean()), rel=1e-5)
    assert summary[("physical", "nrmse_step3")] == pytest.approx(float(expected["nrmse"][2]), rel=1e-5)
    assert summary[("physical", "crmse")] == pytest.approx(0.0, abs=1e-6)  # the spatial sum is exact
    with pytest.raises(UptError, match="horizon 99"):
        evaluate_baseline("mean", data / "data.nc", data / "stats.json", tmp_path / "x", dataset="b", seed=0,
                          horizons=(99,))


def test_evaluation_is_reproducible_on_one_machine(data, model, tmp_path):
    """Two evaluations of one checkpoint give identical metrics (timings aside)."""
    runs = []
    for name in ("a", "b"):
        evaluate_model(model, data / "data.nc", data / "stats.json", tmp_path / name, dataset="b", arm="op", seed=0)
        table = read_summary(tmp_path / name / EVAL_SUMMARY)
        runs.append(table[~table["metric"].isin(["rollout_seconds", "final_frame_seconds", "peak_mem_mb"])])
    pd.testing.assert_frame_equal(runs[0].reset_index(drop=True), runs[1].reset_index(drop=True))


def test_coarse_solver_is_accurate_and_timed(data, tmp_path):
    evaluate_baseline("coarse-solver", data / "data.nc", data / "stats.json", tmp_path, dataset="b", seed=0,
                      solver="burgers1d", coarsen=2)
    summary = read_summary(tmp_path / EVAL_SUMMARY)
    nrmse = summary.query("arm == 'coarse-solver' and metric == 'nrmse'")["value"].item()
    persistence = tmp_path / "p"
    evaluate_baseline("persistence", data / "data.nc", data / "stats.json", persistence, dataset="b", seed=0)
    assert nrmse < 0.5 * read_summary(persistence / EVAL_SUMMARY).query("metric == 'nrmse'")["value"].item()
    assert summary.query("arm == 'solver' and mode == 'reference'")["value"].item() > 0


def test_interval_matches_hand_computation():
    mean, low, high = interval(np.array([1.0, 2.0, 3.0]))
    half = 4.302652729911275 * 1.0 / np.sqrt(3)  # t_{0.975, 2} * sd / sqrt(n)
    assert (mean, low, high) == pytest.approx((2.0, 2.0 - half, 2.0 + half))
    assert np.isnan(interval(np.array([1.0]))[1])


def test_aggregate_pairs_differences_with_the_reference(tmp_path):
    layout, evals = Layout(str(tmp_path)), {}
    for arm, offset in (("ref", 0.0), ("other", 0.5)):
        for seed in (0, 1):
            value = 1.0 + seed + offset
            write_summary(layout.eval_file("b", arm, seed, EVAL_SUMMARY),
                          pd.DataFrame([("b", arm, seed, "latent", "nrmse", value)], columns=SUMMARY_COLUMNS))
            write_netcdf(layout.eval_file("b", arm, seed, EVAL_METRICS),
                         xr.Dataset({"nrmse": (("mode", "time"), [[value, value]])},
                                    coords={"mode": ["latent"], "time": [0.1, 0.2]}))
            evals.setdefault(arm, {})[seed] = layout.eval_dir("b", arm, seed)
    manifest = {"dataset": "b", "reference": "ref", "evals": evals, "runs": {},
                "arms": {"ref": {"tokens": 8, "dim": 16, "approximator": "pure", "kind": "upt"},
                         "other": {"tokens": 16, "dim": 16, "approximator": "pure", "kind": "upt"}}}
    aggregate(manifest, layout.dataset_dir("b"))
    stats = read_summary_stats(layout.table("b", SUMMARY_STATS)).set_index("arm")
    assert stats.loc["other", "mean"] == pytest.approx(2.0) and stats.loc["other", "diff_mean"] == pytest.approx(0.5)
    assert stats.loc["other", "diff_ci_low"] == pytest.approx(0.5)  # a constant paired difference
    assert dict(read_curves(layout.table("b", CURVES)).sizes) == {"arm": 2, "seed": 2, "mode": 1, "time": 2}
    assert read_arms(layout.table("b", ARMS))["ref"]["reference"] is True
