"""upt.plotting on small synthetic result files in the results contract's format."""

from __future__ import annotations

import logging

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402
from scipy import stats as sps  # noqa: E402

from upt.errors import UptError  # noqa: E402
from upt.plotting import (FIGURES, claims_figure, claims_table, modes_table,  # noqa: E402
                          format_interval, main_table, markdown_table, plot_all,
                          plot_command, sweep_arms)
from upt.results import (ARMS, CLAIMS, CLAIMS_COLUMNS, CURVES, PREDICTIONS, SUMMARY, SUMMARY_COLUMNS,  # noqa: E402
                         SUMMARY_STATS, TRAINING, TRAINING_COLUMNS, Layout, read_claims, read_summary_stats,
                         write_arms, write_claims, write_netcdf, write_summary, write_summary_stats,
                         write_training)

SEEDS, MODES, TIMES = (0, 1), ("latent", "physical"), np.linspace(0.1, 0.5, 5)
REF = "upt-s"


def _arms(sweeps: bool) -> dict:
    arms = {REF: {"tokens": 32, "dim": 32, "approximator": "transformer", "kind": "upt", "reference": True},
            "baseline": {"tokens": 16, "dim": 32, "approximator": "ushaped", "kind": "upt", "reference": False},
            "persistence": {"tokens": None, "dim": None, "approximator": None, "kind": "baseline",
                            "reference": False}}
    if sweeps:
        for n in (16, 64):
            arms[f"tokens-{n}"] = {**arms[REF], "tokens": n, "reference": False}
        arms["width-64"] = {**arms[REF], "dim": 64, "reference": False}
    return arms


def _level(arm: str, mode: str, seed: int) -> float:
    """A deterministic nRMSE level per arm, mode and seed."""
    base = 1.0 if arm == "persistence" else 0.1 + 0.02 * (sum(map(ord, arm)) % 7)
    return base * (1.2 if mode == "physical" else 1.0) + 0.02 * seed


def _build(root, dataset: str, sweeps: bool, grid: tuple[int, ...], full: bool = True) -> None:
    """results/<dataset>/ in the contract's format; ``full=False`` leaves out curves.nc and training.csv."""
    layout = Layout(str(root))
    arms = _arms(sweeps)
    write_arms(layout.table(dataset, ARMS), arms)
    rows, curves = [], np.full((len(arms), len(SEEDS), 3, len(TIMES)), np.nan)
    for a, arm in enumerate(arms):
        modes = ("physical",) if arm == "persistence" else MODES
        for s, seed in enumerate(SEEDS):
            for mode in modes:
                level = _level(arm, mode, seed)
                curves[a, s, MODES.index(mode), :] = level * (1 + np.arange(len(TIMES)))
                rows += [(arm, seed, mode, "nrmse", level), (arm, seed, mode, "corr_time_0.8", 0.5 - level / 4),
                         (arm, seed, mode, "rollout_seconds", (1.0 if mode == "latent" else 20.0) + seed),
                         (arm, seed, mode, "peak_mem_mb", 300.0 + arms[arm]["tokens"] if arms[arm]["tokens"]
                          else 250.0)]
            curves[a, s, 2, :] = 0.01  # one-step: in the file, never drawn as a rollout
            if arm != "persistence":
                rows += [(arm, seed, "all", "train_seconds", 10.0 * (arms[arm]["tokens"] or 1) + seed)]
    rows += [("solver", seed, "reference", "rollout_seconds", 5.0 + seed) for seed in SEEDS]
    summary = pd.DataFrame([(dataset, *row) for row in rows], columns=SUMMARY_COLUMNS)
    write_summary(layout.table(dataset, SUMMARY), summary)
    stats = []
    for (arm, mode, metric), g in summary.groupby(["arm", "mode", "metric"], sort=False):
        v = g["value"].to_numpy()
        half = sps.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
        stats.append({"dataset": dataset, "arm": arm, "mode": mode, "metric": metric, "n": len(v),
                      "mean": v.mean(), "ci_low": v.mean() - half, "ci_high": v.mean() + half,
                      "diff_mean": np.nan, "diff_ci_low": np.nan, "diff_ci_high": np.nan, "reference": REF})
    write_summary_stats(layout.table(dataset, SUMMARY_STATS), pd.DataFrame(stats))
    judged = [("a claim", "supported", -0.3, -0.4, -0.2), ("another", "inconclusive", 0.05, -0.1, 0.2)]
    write_claims(layout.table(dataset, CLAIMS), pd.DataFrame(
        [(c, REF, "persistence", "nrmse", "latent", "lower", e, lo, hi, len(SEEDS), v, True,
          "unpaired: no shared trained stage", 0.01, 0.02, v, 0.12, 4.0, -0.25, -0.1, 1.0, 1.0, 0.05, 0.05, "")
         for c, v, e, lo, hi in judged], columns=CLAIMS_COLUMNS))
    if full:
        _write_curves_and_training(layout, dataset, arms, curves)
    _write_predictions(layout, dataset, grid)


def _write_curves_and_training(layout, dataset, arms, curves) -> None:
    write_netcdf(layout.table(dataset, CURVES), xr.Dataset(
        {"nrmse": (("arm", "seed", "mode", "time"), curves)},
        coords={"arm": list(arms), "seed": list(SEEDS), "mode": [*MODES, "one-step"], "time": TIMES},
        attrs={"dataset": dataset, "reference_arm": REF}))
    train = [(dataset, arm, seed, stage, epoch, 10 * epoch, _level(arm, "latent", seed) / (epoch + 1),
              1.2 * _level(arm, "latent", 0) / (epoch + 1), 2.0, 30.0, 500.0 + (arms[arm]["tokens"] or 0),
              "cap", 0.0)
             for arm in arms if arm != "persistence" for seed in SEEDS
             for stage in ("autoencoder", "operator") for epoch in range(3)]
    write_training(layout.table(dataset, TRAINING), pd.DataFrame(train, columns=TRAINING_COLUMNS))


def _write_predictions(layout, dataset, grid) -> None:
    rng = np.random.default_rng(0)
    dims = ("sample", "time", *"xy"[: len(grid)])
    shape = (2, len(TIMES) + 1, *grid)
    coords = {"time": np.linspace(0.0, 0.5, shape[1]), **{d: np.arange(n) for d, n in zip("xy", grid)}}
    fields = ("u",) if len(grid) == 1 else ("u", "v")
    data = {}
    for f in fields:
        true = rng.normal(size=shape)
        data[f"{f}_true"] = (dims, true)
        for mode in MODES:
            data[f"{f}_{mode}"] = (dims, true + 0.1 * rng.normal(size=shape))
    write_netcdf(layout.eval_file(dataset, REF, 0, PREDICTIONS),
                 xr.Dataset(data, coords=coords, attrs={"dataset": dataset, "arm": REF, "seed": 0, "initial_step": 1}))


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    _build(root, "burgers1d", sweeps=True, grid=(16,))
    _build(root, "diffreact2d", sweeps=False, grid=(8, 8), full=False)
    return root


@pytest.fixture(scope="module")
def figures_1d(results, tmp_path_factory):
    out = tmp_path_factory.mktemp("figures")
    return out, plot_command(results, ["burgers1d"], out)


def test_every_figure_is_written_as_png_and_pdf(figures_1d):
    out, written = figures_1d
    for name in FIGURES:
        for ext, magic in (("png", b"\x89PNG"), ("pdf", b"%PDF")):
            path = out / "burgers1d" / f"{name}.{ext}"
            assert path in written
            assert path.read_bytes().startswith(magic) and path.stat().st_size > 1000
    assert not list((out / "burgers1d").glob(".*tmp*"))  # atomic writes leave no temporary files
    assert (out / "burgers1d" / "main_table.md").read_text().startswith("| arm |")


def test_missing_sweep_is_skipped_with_a_reason(results, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="upt.plotting"):
        written = plot_all(results, "diffreact2d", tmp_path)
    names = {p.name for p in written}
    drawn = {name for name in FIGURES if {f"{name}.png", f"{name}.pdf"} <= names}
    assert drawn == {"metric_bars", "latent_vs_physical", "prediction_vs_truth", "claims"}  # 2D snapshots
    for name, reason in (("token_scaling", "no tokens sweep"), ("width_scaling", "no width sweep"),
                         ("error_vs_time", "no curves.nc"), ("training_curves", "no training.csv")):
        assert f"diffreact2d: skipping {name}: {reason}" in caplog.text


def test_same_inputs_give_identical_png_bytes(results, figures_1d, tmp_path):
    first, _ = figures_1d
    again = plot_all(results, "burgers1d", tmp_path, formats=("png",))
    assert len([p for p in again if p.suffix == ".png"]) == len(FIGURES)
    for path in again:
        assert path.read_bytes() == (first / "burgers1d" / path.name).read_bytes(), path.name


def test_sweeps_come_from_arms_json():
    arms = _arms(sweeps=True)
    assert sweep_arms(arms, "tokens") == {"tokens-16": 16, REF: 32, "tokens-64": 64}
    assert sweep_arms(arms, "width") == {REF: 32, "width-64": 64}
    assert sweep_arms(arms, "tokens", available={REF}) == {}
    assert sweep_arms(_arms(sweeps=False), "width") == {}


def test_main_table_cell_is_mean_plus_minus_half_width(results):
    stats = read_summary_stats(Layout(str(results)).table("burgers1d", SUMMARY_STATS))
    seeds = np.array([_level(REF, "latent", s) for s in SEEDS])  # 0.12 and 0.14
    mean = seeds.mean()
    half = 12.706204736 * seeds.std(ddof=1) / np.sqrt(2)  # t(0.975, 1 dof) s / sqrt(n)
    table = modes_table(stats)
    assert table.loc[REF, "nRMSE (latent)"] == f"{mean:.2f} ± {half:.2f}" == "0.13 ± 0.13"
    assert table.index[0] == REF and table.index[-1] == "persistence"
    assert table.loc["persistence", "nRMSE (latent)"] == "—"  # never filled from another mode
    assert "solver" not in table.index
    # The main table: each row's own rollout mode, said in its mode column
    table = main_table(stats)
    assert table.loc[REF, "nRMSE (mean)"] == "0.13 ± 0.13" and table.loc[REF, "mode"] == "latent"
    persistence = np.array([_level("persistence", "physical", s) for s in SEEDS]).mean()
    assert table.loc["persistence", "mode"] == "physical"
    assert table.loc["persistence", "nRMSE (mean)"].startswith(f"{persistence:.1f}")
    assert table.index[0] == REF and table.index[-1] == "persistence"


def test_claims_table_and_figure(results):
    claims = read_claims(Layout(str(results)).table("burgers1d", CLAIMS))
    table = claims_table(claims)
    assert table.loc["a claim", "effect [95% CI]"] == "-30.0% [-40.0%, -20.0%]"
    assert table.loc["another", "verdict"] == "**inconclusive**"
    assert table.loc["a claim", "Holm verdict"] == "supported" and table.loc["a claim", "MDE (80%)"] == "12.0%"
    assert table.loc["a claim", "seeds needed"] == "4" and table.loc["a claim", "pairing"] == "unpaired"
    assert table.loc["a claim", "predicted"] == "[-25.0%, -10.0%]"
    assert claims_figure(claims) is not None


def test_markdown_table_without_tabulate():
    df = pd.DataFrame({"a": ["1 ± 0.1", "x|y"]}, index=pd.Index(["r1", "r2"], name="arm"))
    assert markdown_table(df) == "| arm | a |\n| :--- | ---: |\n| r1 | 1 ± 0.1 |\n| r2 | x\\|y |\n"


def test_missing_dataset_is_a_user_error(results, tmp_path):
    with pytest.raises(UptError, match="nope"):
        plot_command(results, ["nope"], tmp_path)


def test_interval_formatting():
    assert format_interval(0.012345, 0.00234) == "0.0123 ± 0.0023"
    assert format_interval(12.345, 0.5) == "12.35 ± 0.50"
    assert format_interval(4567.0, 123.0) == "4567 ± 123"
    assert format_interval(0.12, float("nan")) == "0.12"  # one seed: no interval
    assert format_interval(float("nan"), 0.1) == "—"
    assert format_interval(0.47658850, 5.5e-17) == "0.477 ± 0"  # identical seeds, up to rounding


def test_one_comparison_across_datasets(tmp_path):
    from upt.plotting.comparison import main as comparison
    from upt.plotting.tables import claims_across

    def row(arm, control, metric, primary, effect, low, high):
        return {**{c: np.nan for c in CLAIMS_COLUMNS}, "claim": "c", "arm": arm, "control": control, "metric": metric,
                "mode": "physical", "primary": primary, "effect": effect, "ci_low": low, "ci_high": high,
                "n_seeds": 3, "verdict": "refuted" if primary else "secondary", "verdict_holm": "refuted",
                "arm_mean": 0.2, "control_mean": 0.05, "mde": 0.5}

    one = pd.DataFrame([row("upt-s", "fno", "nrmse", True, 3.0, 1.5, 6.0),
                        row("upt-s", "fno", "nrmse_step1", False, 0.8, 0.6, 1.0),
                        row("drop-path", "upt-s", "nrmse", True, 0.1, -0.1, 0.3)])  # another control: left out
    two = pd.DataFrame([row("upt-s", "fno-dynamics", "nrmse", True, -0.1, np.nan, np.nan)])
    table = claims_across({"1D": one, "2D": two}, ["fno", "fno-dynamics"])
    assert list(table.index) == ["1D", "1D", "2D"] and list(table["row"]) == ["primary", "secondary", "primary"]
    assert table.iloc[0]["effect [95% CI]"] == "+300.0% [+150.0%, +600.0%]" and table.iloc[0]["verdict"] == "**refuted**"
    assert table.iloc[1]["verdict"] == "—" and table.iloc[2]["effect [95% CI]"] == "-10.0%"  # no interval
    assert table.iloc[0]["arm"] == "0.2" and table.iloc[0]["control"] == "0.05"

    path = tmp_path / "claims.csv"
    one.to_csv(path, index=False)
    comparison([str(tmp_path / "out.md"), "--control", "fno", f"Burgers={path}", f"gone={tmp_path / 'no.csv'}"])
    text = (tmp_path / "out.md").read_text()
    assert "| Burgers | upt-s vs fno | nrmse (physical) | primary |" in text and "gone" not in text
    with pytest.raises(SystemExit, match="no claim with control"):
        comparison([str(tmp_path / "out.md"), "--control", "nothing", f"Burgers={path}"])
