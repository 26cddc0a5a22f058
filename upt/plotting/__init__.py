"""Figures and the main table, redrawn from ``results/<dataset>/`` alone (no checkpoint, no data).

``plot_all`` reads the result files fixed by the results contract through its readers
(:mod:`upt.results`: summary_stats.csv, curves.nc, training.csv, claims.csv, arms.json,
eval/<arm>/seed<s>/predictions.nc), draws every figure whose data exist, and writes
``<out_dir>/<dataset>/<figure>.png`` (dpi 150) and ``.pdf`` atomically and byte-for-byte
reproducibly, plus ``main_table.md`` (per-horizon rollout errors beside the baselines),
``modes_table.md`` (latent beside physical rollouts) and ``claims_table.md``. A figure whose data are missing is skipped with a logged reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import pandas as pd
import xarray as xr

from upt.atomic import atomic_output
from upt.errors import UptError
from upt.plotting.bars import latent_vs_physical, metric_bars
from upt.plotting.curves import error_vs_time, training_curves
from upt.plotting.fields import prediction_vs_truth
from upt.plotting.scaling import scaling, sweep_arms, token_scaling, width_scaling
from upt.plotting.style import SOLVER, NoData, Palette, save_figure
from upt.plotting.claims import claims_figure
from upt.plotting.tables import claims_table, format_interval, main_table, markdown_table, modes_table, reference_of
from upt.results import (ARMS, CLAIMS, CURVES, PREDICTIONS, SUMMARY_STATS, TRAINING, Layout, read_arms, read_claims,
                         read_curves, read_predictions, read_summary_stats, read_training)

__all__ = ["FIGURES", "Results", "claims_figure", "claims_table", "modes_table", "error_vs_time", "format_interval", "latent_vs_physical", "load_results",
           "main_table", "markdown_table", "metric_bars", "plot_all", "plot_command", "prediction_vs_truth",
           "scaling", "sweep_arms", "token_scaling", "training_curves", "width_scaling"]

log = logging.getLogger(__name__)
FIGURES = ("error_vs_time", "metric_bars", "token_scaling", "width_scaling", "latent_vs_physical",
           "prediction_vs_truth", "training_curves", "claims")


@dataclass
class Results:
    """Everything plotting reads for one dataset; ``None`` (or empty) where a file is absent."""

    dataset: str
    summary_stats: pd.DataFrame | None = None
    curves: xr.Dataset | None = None
    training: pd.DataFrame | None = None
    arms: dict = field(default_factory=dict)
    predictions: xr.Dataset | None = None
    reference: str | None = None
    claims: pd.DataFrame | None = None

    def palette(self) -> Palette:
        arms = list(self.arms)
        if self.summary_stats is not None:
            arms += list(self.summary_stats["arm"].astype(str))
        if self.curves is not None:
            arms += [str(a) for a in self.curves["arm"].values]
        if self.training is not None:
            arms += list(self.training["arm"].astype(str))
        kinds = {a: info["kind"] for a, info in self.arms.items() if info and info.get("kind")}
        return Palette.build([a for a in arms if a != SOLVER], self.reference, kinds)


def _layout(folder: Path) -> tuple[Layout, str]:
    """The layout of the results root holding ``folder`` (= ``<root>/<dataset>``), and its name there."""
    return Layout(str(folder.parent)), folder.name


def load_results(folder: str | Path, dataset: str | None = None) -> Results:
    """Read ``folder`` (= ``results/<dataset>``); the predictions are the reference arm's, first seed."""
    folder = Path(folder)
    dataset = dataset or folder.name
    layout, name = _layout(folder)
    res = Results(dataset)

    def present(table: str) -> str | None:
        path = layout.table(name, table)
        return path if Path(path).is_file() else None

    if path := present(SUMMARY_STATS):
        stats = read_summary_stats(path)
        if (stats["dataset"] == dataset).any():
            stats = stats[stats["dataset"] == dataset]
        res.summary_stats = stats.reset_index(drop=True)
    if path := present(CURVES):
        res.curves = read_curves(path)
    if path := present(TRAINING):
        res.training = read_training(path)
    if path := present(CLAIMS):
        res.claims = read_claims(path)
    if path := present(ARMS):
        res.arms = read_arms(path)
    res.reference = (next((a for a, info in res.arms.items() if info and info.get("reference")), None)
                     or reference_of(res.summary_stats)
                     or (res.curves.attrs.get("reference_arm") if res.curves is not None else None))
    if res.reference:
        found = layout.eval_files(name, res.reference, PREDICTIONS)
        if found:
            res.predictions = read_predictions(found[0])
    return res


def _jobs(res: Results, palette: Palette) -> list[tuple[str, str | None, Callable]]:
    """(figure, reason it cannot be drawn or None, function drawing it)."""
    stats, ref = res.summary_stats, res.reference
    no_stats = None if stats is not None else f"no {SUMMARY_STATS}"
    no_arms = no_stats or (None if res.arms else f"no {ARMS}")
    return [
        ("error_vs_time", None if res.curves is not None else f"no {CURVES}",
         lambda: error_vs_time(res.curves, palette=palette, reference=ref)),
        ("metric_bars", no_stats, lambda: metric_bars(stats, palette=palette, reference=ref)),
        ("token_scaling", no_arms, lambda: token_scaling(stats, res.arms, res.training, ref)),
        ("width_scaling", no_arms, lambda: width_scaling(stats, res.arms, res.training, ref)),
        ("latent_vs_physical", no_stats,
         lambda: latent_vs_physical(stats, palette=palette, reference=ref)),
        ("prediction_vs_truth", None if res.predictions is not None else
         f"no {PREDICTIONS} in any evaluation of the reference arm {ref}",
         lambda: prediction_vs_truth(res.predictions, arm=ref)),
        ("training_curves", None if res.training is not None else f"no {TRAINING}",
         lambda: training_curves(res.training, palette=palette, reference=ref)),
        ("claims", None if res.claims is not None else f"no {CLAIMS}", lambda: claims_figure(res.claims)),
    ]


def plot_all(results_dir: str | Path, dataset: str, out_dir: str | Path,
             formats: Iterable[str] = ("png", "pdf")) -> list[Path]:
    """Draw every figure of ``dataset`` whose data exist under ``results_dir/<dataset>/`` into
    ``out_dir/<dataset>/`` (each in ``formats``), write ``main_table.md``, return the paths written."""
    folder = Path(Layout(str(results_dir)).dataset_dir(dataset))
    if not folder.is_dir():
        raise UptError(f"{folder}: no results for dataset {dataset!r}")
    res = load_results(folder, dataset)
    palette = res.palette()
    target = Path(out_dir) / dataset
    written: list[Path] = []
    for name, reason, draw in _jobs(res, palette):
        if reason is None:
            try:
                fig = draw()
            except NoData as exc:
                reason = str(exc)
        if reason is not None:
            log.info("%s: skipping %s: %s", dataset, name, reason)
            continue
        written += save_figure(fig, target, name, formats)
    tables = {}
    if res.summary_stats is not None:
        tables["main_table.md"] = main_table(res.summary_stats, res.reference, palette.kinds)
        tables["modes_table.md"] = modes_table(res.summary_stats, res.reference, palette.kinds)
    if res.claims is not None and not res.claims.empty:
        tables["claims_table.md"] = claims_table(res.claims)
    notes = {}
    if "claims_table.md" in tables:
        from upt.evaluation.claims import median_mde

        primary = res.claims[res.claims["primary"].astype(bool)]
        verdicts, holm = (", ".join(f"{n} {v}" for v, n in primary[c].value_counts().items())
                          for c in ("verdict", "verdict_holm"))
        notes["claims_table.md"] = (
            f"\n{len(primary)} claims judged ({verdicts}; Holm-adjusted over the dataset's claims: "
            f"{holm}); median minimum detectable effect at 80% power: "
            f"{median_mde(res.claims):.1%} (upt/evaluation/statistics.py).\n")
    for name, table in tables.items():
        target.mkdir(parents=True, exist_ok=True)
        with atomic_output(target / name) as tmp:
            tmp.write_text(markdown_table(table) + notes.get(name, ""))
        written.append(target / name)
    if not written:
        log.warning("%s: nothing to plot in %s", dataset, folder)
    return written


def plot_command(results_dir: str | Path, datasets: Iterable[str] | None, out_dir: str | Path) -> list[Path]:
    """``upt plot``: ``plot_all`` for each dataset (every folder of ``results_dir`` holding result
    files if ``datasets`` is empty); prints each path written (skip reasons go to stderr) and returns them."""
    if not logging.getLogger().handlers and not log.handlers:  # a bare CLI run: show why figures are skipped
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    results_dir = Path(results_dir)
    names = list(datasets or [])
    if not names:
        layout, tables = Layout(str(results_dir)), (SUMMARY_STATS, CURVES, TRAINING)
        names = sorted(p.name for p in results_dir.glob("*") if p.is_dir()
                       and any(Path(layout.table(p.name, t)).is_file() for t in tables))
        if not names:
            raise UptError(f"{results_dir}: no dataset folder with {', '.join(tables[:-1])} or {tables[-1]}")
    written = []
    for name in names:
        paths = plot_all(results_dir, name, out_dir)
        for path in paths:
            print(path)
        written += paths
    return written
