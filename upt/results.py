"""The results contract: where every result file lives, what it is called, which columns its
tables hold, and how they are read and written (docs/architecture.md, "Results contract").

The tree under the results root (``config["results"]``)::

    <root>/<dataset>/raw.h5, data.nc, data_fine.nc, stats.json     the data stage
    <root>/<dataset>/train/<owner arm>/seed<s>/<stage>/            one training run:
        model.pt, metrics.csv, latents.pt (encoder stages), state.pt (while unfinished)
    <root>/<dataset>/eval/<arm>/seed<s>/                           one evaluation:
        summary.csv, metrics.nc, predictions.nc
    <root>/<dataset>/summary.csv, summary_stats.csv, claims.csv,   the dataset's aggregate tables
        curves.nc, training.csv, arms.json
    <root>/figures/<dataset>/                                      its figures and Markdown tables
    <root>/logs/<dataset>/<step>.log, logs/<dataset>/train/<owner>/seed<s>/<stage>.log, ...
    <root>/benchmarks/<dataset>/train/<owner>/seed<s>/<stage>.tsv, benchmarks/<dataset>/eval/<arm>/seed<s>.tsv

:class:`Layout` returns these paths as strings: given wildcard names (``"{dataset}"``) they are
Snakemake patterns, given values they are real paths. Every table is written atomically
(:func:`upt.atomic.atomic_output`) with its columns in the contract's order, and read back with
its columns checked: a missing one is a :class:`~upt.errors.UptError` naming the file.

Torch-free (and xarray only when a netCDF file is read): the workflow imports it at parse time.
"""

from __future__ import annotations

import glob
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

if TYPE_CHECKING:  # imported where a table is read: a training job needs only the paths
    import pandas as pd

from upt.atomic import atomic_output
from upt.errors import UptError

# --- file names -----------------------------------------------------------------------------------

# A dataset's data stage
RAW = "raw.h5"
DATA = "data.nc"
DATA_FINE = "data_fine.nc"
STATS = "stats.json"

# A training run's files
MODEL = "model.pt"
RUN_METRICS = "metrics.csv"
LATENTS = "latents.pt"
STATE = "state.pt"
RUN_FILES = (MODEL, RUN_METRICS, LATENTS, STATE)

# An evaluation's files (one arm and seed)
EVAL_SUMMARY = "summary.csv"
EVAL_METRICS = "metrics.nc"
PREDICTIONS = "predictions.nc"
EVAL_FILES = (EVAL_SUMMARY, EVAL_METRICS, PREDICTIONS)

# A dataset's aggregate tables (``upt aggregate``)
SUMMARY = "summary.csv"
SUMMARY_STATS = "summary_stats.csv"
CLAIMS = "claims.csv"
CURVES = "curves.nc"
TRAINING = "training.csv"
ARMS = "arms.json"
TABLES = (SUMMARY, SUMMARY_STATS, CLAIMS, CURVES, TRAINING, ARMS)

# --- columns (in the order the files hold them) ---------------------------------------------------

# summary.csv, an evaluation's and a dataset's: one row per arm x seed x mode x metric
SUMMARY_COLUMNS = ("dataset", "arm", "seed", "mode", "metric", "value")
# summary_stats.csv: mean and 95% t-interval over seeds, and the paired difference to the reference
SUMMARY_STATS_COLUMNS = ("dataset", "arm", "mode", "metric", "n", "mean", "ci_low", "ci_high", "reference",
                         "diff_mean", "diff_ci_low", "diff_ci_high")
# training.csv: every epoch of every stage run, with the run's stop_reason ("plateau" or "cap") and
# plateau_gain (upt.training.plateau) repeated on each of its rows
TRAINING_COLUMNS = ("dataset", "arm", "seed", "stage", "epoch", "step", "train_loss", "val_loss", "seconds",
                    "run_seconds", "max_rss_mb", "stop_reason", "plateau_gain")
# claims.csv: the config's claims, judged (upt.evaluation.claims)
CLAIMS_COLUMNS = ("claim", "arm", "control", "metric", "mode", "expected", "effect", "ci_low", "ci_high",
                  "n_seeds", "verdict", "primary", "pairing", "p_value", "p_holm", "verdict_holm", "mde",
                  "seeds_needed", "predicted_low", "predicted_high", "arm_mean", "control_mean", "arm_cv",
                  "control_cv", "note")
# A run's metrics.csv: the columns the contract relies on (the training loop writes more, e.g. lr
# and one train_<term> per loss term); `stop` is empty but on the last row: why the run stopped
RUN_METRICS_COLUMNS = ("epoch", "step", "train_loss", "val_loss", "seconds", "stop")
# Snakemake's benchmark TSV: the columns read (wall seconds and peak resident memory in MB)
BENCHMARK_COLUMNS = ("s", "max_rss")
# arms.json: per arm, what the figures need to know of it
ARM_KEYS = ("tokens", "dim", "approximator", "kind", "reference")

# The dimensions of the netCDF files
EVAL_METRICS_DIMS = ("mode", "time")
CURVES_DIMS = ("arm", "seed", "mode", "time")
PREDICTIONS_DIMS = ("sample", "time")


# --- paths ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Layout:
    """Every path under the results root ``root``, as a string (a Snakemake pattern when given
    ``"{wildcard}"`` names). ``owner`` is the arm a training run is stored under (the first arm of
    those sharing it)."""

    root: str

    # data
    def dataset_dir(self, dataset: str) -> str:
        return f"{self.root}/{dataset}"

    def raw(self, dataset: str) -> str:
        """A generated dataset's PDEBench-layout HDF5 file."""
        return f"{self.dataset_dir(dataset)}/{RAW}"

    def data(self, dataset: str) -> str:
        return f"{self.dataset_dir(dataset)}/{DATA}"

    def data_fine(self, dataset: str) -> str:
        """The same test trajectories without spatial reduction (zero-shot super-resolution)."""
        return f"{self.dataset_dir(dataset)}/{DATA_FINE}"

    def stats(self, dataset: str) -> str:
        return f"{self.dataset_dir(dataset)}/{STATS}"

    # training
    def run_dir(self, dataset: str, owner: str, seed, stage: str) -> str:
        return f"{self.dataset_dir(dataset)}/train/{owner}/seed{seed}/{stage}"

    def run_file(self, dataset: str, owner: str, seed, stage: str, name: str = MODEL) -> str:
        """One of a run's :data:`RUN_FILES`."""
        return f"{self.run_dir(dataset, owner, seed, stage)}/{name}"

    # evaluation
    def eval_dir(self, dataset: str, arm: str, seed) -> str:
        return f"{self.dataset_dir(dataset)}/eval/{arm}/seed{seed}"

    def eval_file(self, dataset: str, arm: str, seed, name: str) -> str:
        """One of an evaluation's :data:`EVAL_FILES`."""
        return f"{self.eval_dir(dataset, arm, seed)}/{name}"

    def eval_files(self, dataset: str, arm: str, name: str) -> list[str]:
        """The existing ``name`` files of every evaluated seed of ``arm``, by seed number."""
        escaped = Layout(glob.escape(self.root))
        pattern = escaped.eval_file(glob.escape(dataset), glob.escape(arm), "*", name)
        found = []
        for path in glob.glob(pattern):
            match = re.fullmatch(r"seed(\d+)", Path(path).parent.name)
            if match and os.path.isfile(path):
                found.append((int(match.group(1)), path))
        return [path for _, path in sorted(found)]

    # aggregate and figures
    def table(self, dataset: str, name: str) -> str:
        """One of a dataset's aggregate :data:`TABLES`."""
        return f"{self.dataset_dir(dataset)}/{name}"

    def figures(self, dataset: str | None = None) -> str:
        """A dataset's figures folder (the root of all of them without ``dataset``)."""
        return f"{self.root}/figures" if dataset is None else f"{self.root}/figures/{dataset}"

    # logs and benchmarks: a job's log is <root>/logs/<job>.log, its benchmark
    # <root>/benchmarks/<job>.tsv, with the same job name
    def log(self, job: str) -> str:
        """The log of a job, e.g. ``paper_figures`` (one that spans every dataset)."""
        return f"{self.root}/logs/{job}.log"

    def benchmark(self, job: str) -> str:
        """The benchmark TSV of a job, e.g. ``paper_figures``."""
        return f"{self.root}/benchmarks/{job}.tsv"

    def dataset_log(self, dataset: str, step: str) -> str:
        """The log of one dataset's step, e.g. ``convert`` or ``aggregate``."""
        return self.log(f"{dataset}/{step}")

    def dataset_benchmark(self, dataset: str, step: str) -> str:
        return self.benchmark(f"{dataset}/{step}")

    def train_log(self, dataset: str, owner: str, seed, stage: str) -> str:
        return self.log(_train_job(dataset, owner, seed, stage))

    def train_benchmark(self, dataset: str, owner: str, seed, stage: str) -> str:
        return self.benchmark(_train_job(dataset, owner, seed, stage))

    def cache_log(self, dataset: str, owner: str, seed, stage: str) -> str:
        return self.log(_train_job(dataset, owner, seed, stage) + "-cache")

    def cache_benchmark(self, dataset: str, owner: str, seed, stage: str) -> str:
        return self.benchmark(_train_job(dataset, owner, seed, stage) + "-cache")

    def eval_log(self, dataset: str, arm: str, seed) -> str:
        return self.log(_eval_job(dataset, arm, seed))

    def eval_benchmark(self, dataset: str, arm: str, seed) -> str:
        return self.benchmark(_eval_job(dataset, arm, seed))


def _train_job(dataset: str, owner: str, seed, stage: str) -> str:
    return f"{dataset}/train/{owner}/seed{seed}/{stage}"


def _eval_job(dataset: str, arm: str, seed) -> str:
    return f"{dataset}/eval/{arm}/seed{seed}"

# --- readers --------------------------------------------------------------------------------------

def _require(path, kind: str, have: Iterable[str], wanted: Sequence[str]) -> None:
    have = set(have)
    missing = [c for c in wanted if c not in have]
    if missing:
        raise UptError(f"{path}: missing {kind} {', '.join(missing)} (the results contract needs "
                       f"{', '.join(wanted)})")


def read_table(path: str | os.PathLike, columns: Sequence[str], sep: str = ",") -> pd.DataFrame:
    """A CSV (or TSV) table that must hold ``columns`` (others may follow)."""
    import pandas as pd

    try:
        table = pd.read_csv(path, sep=sep)
    except FileNotFoundError:
        raise UptError(f"{path}: no such file") from None
    except pd.errors.EmptyDataError:
        raise UptError(f"{path}: empty file (no header)") from None
    _require(path, "column(s)", table.columns, columns)
    return table


def read_summary(path) -> pd.DataFrame:
    """An evaluation's or a dataset's ``summary.csv``."""
    return read_table(path, SUMMARY_COLUMNS)


def read_summary_stats(path) -> pd.DataFrame:
    return read_table(path, SUMMARY_STATS_COLUMNS)


def read_training(path) -> pd.DataFrame:
    return read_table(path, TRAINING_COLUMNS)


def read_claims(path) -> pd.DataFrame:
    return read_table(path, CLAIMS_COLUMNS)


def read_run_metrics(path) -> pd.DataFrame:
    """A training run's ``metrics.csv``."""
    return read_table(path, RUN_METRICS_COLUMNS)


def read_benchmark(path) -> pd.DataFrame:
    """A Snakemake benchmark TSV (one row per measured attempt)."""
    return read_table(path, BENCHMARK_COLUMNS, sep="\t")


def read_netcdf(path, dims: Sequence[str] = ()):
    """A netCDF file loaded into memory (and closed), which must have the dimensions ``dims``."""
    import xarray as xr

    if not Path(path).is_file():
        raise UptError(f"{path}: no such file")
    ds = xr.load_dataset(path)
    _require(path, "dimension(s)", ds.sizes, dims)
    return ds


def read_eval_metrics(path):
    """An evaluation's ``metrics.nc``: every per-time metric over mode x time."""
    return read_netcdf(path, EVAL_METRICS_DIMS)


def read_curves(path):
    """A dataset's ``curves.nc``: every per-time metric over arm x seed x mode x time."""
    return read_netcdf(path, CURVES_DIMS)


def read_predictions(path):
    """An evaluation's ``predictions.nc``: ``<field>_true`` and ``<field>_<mode>`` of a few samples."""
    return read_netcdf(path, PREDICTIONS_DIMS)


def read_arms(path) -> dict:
    """A dataset's ``arms.json``: {arm: {tokens, dim, approximator, kind, reference}}."""
    try:
        arms = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UptError(f"{path}: no such file") from None
    except json.JSONDecodeError as err:
        raise UptError(f"{path}: not JSON ({err})") from None
    if not isinstance(arms, dict) or not all(isinstance(info, dict) for info in arms.values()):
        raise UptError(f"{path}: not an object of arm -> object")
    for arm, info in arms.items():
        _require(f"{path}: arm {arm}", "key(s)", info, ARM_KEYS)
    return arms


# --- writers --------------------------------------------------------------------------------------

def write_table(path: str | os.PathLike, table: pd.DataFrame, columns: Sequence[str]) -> None:
    """``table`` as CSV, atomically: ``columns`` first in their order (any others after them)."""
    _require(path, "column(s)", table.columns, columns)
    table = table[list(columns) + [c for c in table.columns if c not in columns]]
    with atomic_output(path) as tmp:
        table.to_csv(tmp, index=False)


def write_summary(path, table: pd.DataFrame) -> None:
    write_table(path, table, SUMMARY_COLUMNS)


def write_summary_stats(path, table: pd.DataFrame) -> None:
    write_table(path, table, SUMMARY_STATS_COLUMNS)


def write_training(path, table: pd.DataFrame) -> None:
    write_table(path, table, TRAINING_COLUMNS)


def write_claims(path, table: pd.DataFrame) -> None:
    write_table(path, table, CLAIMS_COLUMNS)


def write_netcdf(path, ds) -> None:
    """An xarray Dataset as netCDF, atomically."""
    with atomic_output(path) as tmp:
        ds.to_netcdf(tmp)


def write_json(path, payload) -> None:
    """JSON indented by 2 with a final newline, atomically."""
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2) + "\n")


def write_arms(path, arms: dict) -> None:
    for arm, info in arms.items():
        _require(f"{path}: arm {arm}", "key(s)", info, ARM_KEYS)
    write_json(path, arms)


def write_evaluation(out_dir: str | os.PathLike, summary: pd.DataFrame, metrics, predictions) -> None:
    """One evaluation's files in ``out_dir``: metrics.nc (mode x time), predictions.nc (a few test
    samples) and, last, summary.csv (tidy rows)."""
    out_dir = Path(out_dir)
    _require(out_dir / EVAL_METRICS, "dimension(s)", metrics.sizes, EVAL_METRICS_DIMS)
    _require(out_dir / PREDICTIONS, "dimension(s)", predictions.sizes, PREDICTIONS_DIMS)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_netcdf(out_dir / EVAL_METRICS, metrics)
    write_netcdf(out_dir / PREDICTIONS, predictions)
    write_summary(out_dir / EVAL_SUMMARY, summary)
