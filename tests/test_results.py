"""The results contract (upt.results): paths, columns, checked readers and atomic writers."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from upt.errors import UptError
from upt.results import (ARMS, CLAIMS_COLUMNS, CURVES, EVAL_FILES, EVAL_METRICS, EVAL_SUMMARY, LATENTS, MODEL,
                         PREDICTIONS, RUN_METRICS, SUMMARY, SUMMARY_COLUMNS, SUMMARY_STATS, TABLES, Layout,
                         read_arms, read_benchmark, read_claims, read_curves, read_eval_metrics, read_predictions,
                         read_run_metrics, read_summary, read_summary_stats, read_training, write_arms,
                         write_evaluation, write_netcdf, write_summary, write_table)

LAYOUT = Layout("results")
# (method, wildcard names, values, the path those values give): the layout as the workflow writes it
PATHS = [
    ("dataset_dir", ("dataset",), ("b",), "results/b"),
    ("raw", ("dataset",), ("b",), "results/b/raw.h5"),
    ("data", ("dataset",), ("b",), "results/b/data.nc"),
    ("data_fine", ("dataset",), ("b",), "results/b/data_fine.nc"),
    ("stats", ("dataset",), ("b",), "results/b/stats.json"),
    ("run_dir", ("dataset", "arm", "seed", "stage"), ("b", "upt-s", 3, "operator"),
     "results/b/train/upt-s/seed3/operator"),
    ("eval_dir", ("dataset", "arm", "seed"), ("b", "upt-s", 3), "results/b/eval/upt-s/seed3"),
    ("figures", ("dataset",), ("b",), "results/figures/b"),
    ("dataset_log", ("dataset",), ("b",), "results/logs/b/convert.log"),
    ("train_log", ("dataset", "arm", "seed", "stage"), ("b", "upt-s", 3, "operator"),
     "results/logs/b/train/upt-s/seed3/operator.log"),
    ("cache_log", ("dataset", "arm", "seed", "stage"), ("b", "upt-s", 3, "autoencoder"),
     "results/logs/b/train/upt-s/seed3/autoencoder-cache.log"),
    ("eval_log", ("dataset", "arm", "seed"), ("b", "upt-s", 3), "results/logs/b/eval/upt-s/seed3.log"),
    ("train_benchmark", ("dataset", "arm", "seed", "stage"), ("b", "upt-s", 3, "operator"),
     "results/benchmarks/b/train/upt-s/seed3/operator.tsv"),
    ("eval_benchmark", ("dataset", "arm", "seed"), ("b", "upt-s", 3), "results/benchmarks/b/eval/upt-s/seed3.tsv"),
    ("dataset_benchmark", ("dataset",), ("b",), "results/benchmarks/b/convert.tsv"),
    ("cache_benchmark", ("dataset", "arm", "seed", "stage"), ("b", "upt-s", 3, "autoencoder"),
     "results/benchmarks/b/train/upt-s/seed3/autoencoder-cache.tsv"),
]


def _call(method: str, args: tuple):
    extra = ("convert",) if method in ("dataset_log", "dataset_benchmark") else ()
    return getattr(LAYOUT, method)(*args, *extra)


@pytest.mark.parametrize("method, names, values, path", PATHS, ids=[p[0] for p in PATHS])
def test_wildcard_names_give_the_pattern_of_the_real_path(method, names, values, path):
    pattern = _call(method, tuple(f"{{{n}}}" for n in names))
    assert _call(method, values) == path
    assert pattern.format(**dict(zip(names, values))) == path  # the pattern Snakemake fills in
    assert isinstance(pattern, str) and pattern.startswith("results/")


def test_file_paths():
    assert LAYOUT.run_file("b", "a", 0, "autoencoder") == "results/b/train/a/seed0/autoencoder/model.pt"
    assert [LAYOUT.run_file("b", "a", 0, "autoencoder", n).rsplit("/", 1)[1] for n in (MODEL, RUN_METRICS, LATENTS)] \
        == ["model.pt", "metrics.csv", "latents.pt"]
    assert [LAYOUT.eval_file("b", "a", 1, n) for n in EVAL_FILES] == [
        f"results/b/eval/a/seed1/{n}" for n in ("summary.csv", "metrics.nc", "predictions.nc")]
    assert [LAYOUT.table("b", n) for n in TABLES] == [
        f"results/b/{n}" for n in ("summary.csv", "summary_stats.csv", "claims.csv", "curves.nc", "training.csv",
                                   "arms.json")]
    assert LAYOUT.figures() == "results/figures" and LAYOUT.log("paper_figures") == "results/logs/paper_figures.log"
    assert Layout("/abs/out").stats("{dataset}") == "/abs/out/{dataset}/stats.json"
    with pytest.raises(AttributeError):  # frozen
        LAYOUT.root = "elsewhere"


def test_contract_module_imports_neither_torch_nor_xarray():
    code = "import sys, upt.results; print(sorted({'torch', 'xarray'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _summary(n: int = 2) -> pd.DataFrame:
    return pd.DataFrame([("b", "a", s, "latent", "nrmse", 0.1 * (s + 1)) for s in range(n)], columns=SUMMARY_COLUMNS)


def test_reader_refuses_a_table_without_a_column_naming_file_and_column(tmp_path):
    path = tmp_path / SUMMARY
    _summary().drop(columns=["value", "mode"]).to_csv(path, index=False)
    with pytest.raises(UptError) as err:
        read_summary(path)
    assert str(path) in str(err.value) and "mode, value" in str(err.value)
    path.write_text("")
    with pytest.raises(UptError, match="empty file"):
        read_summary(path)
    with pytest.raises(UptError, match="no such file"):
        read_summary(tmp_path / "absent.csv")
    for reader in (read_summary_stats, read_training, read_claims, read_run_metrics):
        with pytest.raises(UptError, match=str(path)):
            pd.DataFrame({"x": [1]}).to_csv(path, index=False)
            reader(path)


def test_netcdf_and_json_readers_check_dimensions_and_keys(tmp_path):
    ds = xr.Dataset({"nrmse": (("mode", "time"), np.ones((1, 2)))}, coords={"mode": ["latent"], "time": [0.1, 0.2]})
    write_netcdf(tmp_path / EVAL_METRICS, ds)
    assert read_eval_metrics(tmp_path / EVAL_METRICS).identical(ds)
    with pytest.raises(UptError, match=r"curves\.nc: missing dimension\(s\) arm, seed"):
        write_netcdf(tmp_path / CURVES, ds)
        read_curves(tmp_path / CURVES)
    with pytest.raises(UptError, match="sample"):
        read_predictions(tmp_path / EVAL_METRICS)
    arms = {"a": {"tokens": 8, "dim": 16, "approximator": "pure", "kind": "upt", "reference": True}}
    write_arms(tmp_path / ARMS, arms)
    assert read_arms(tmp_path / ARMS) == arms
    assert (tmp_path / ARMS).read_text().endswith("}\n")
    (tmp_path / ARMS).write_text('{"a": {"tokens": 8}}')
    with pytest.raises(UptError, match=r"arms\.json: arm a: missing key\(s\) dim, approximator, kind, reference"):
        read_arms(tmp_path / ARMS)


def test_writers_put_columns_in_contract_order_and_round_trip(tmp_path):
    table = _summary().assign(extra=1)[["value", "extra", "metric", "mode", "seed", "arm", "dataset"]]
    write_summary(tmp_path / SUMMARY, table)
    back = read_summary(tmp_path / SUMMARY)
    assert list(back.columns) == [*SUMMARY_COLUMNS, "extra"]
    pd.testing.assert_frame_equal(back[list(SUMMARY_COLUMNS)], _summary())
    # the bytes are pandas' own CSV of the table in contract order (the files before the contract)
    assert (tmp_path / SUMMARY).read_text() == table[[*SUMMARY_COLUMNS, "extra"]].to_csv(index=False)
    write_table(tmp_path / "claims.csv", pd.DataFrame(columns=CLAIMS_COLUMNS), CLAIMS_COLUMNS)
    assert read_claims(tmp_path / "claims.csv").empty  # a header-only table is a valid empty one
    (tmp_path / "bench.tsv").write_text("s\th:m:s\tmax_rss\n1.5\t0:00:01\t120.0\n")
    assert read_benchmark(tmp_path / "bench.tsv").iloc[-1]["max_rss"] == 120.0


def test_a_writer_missing_a_column_writes_nothing(tmp_path):
    with pytest.raises(UptError, match=rf"{SUMMARY_STATS}: missing column\(s\) n, mean"):
        write_table(tmp_path / SUMMARY_STATS, pd.DataFrame({"dataset": ["b"]}),
                    ("dataset", "n", "mean"))
    assert not list(tmp_path.iterdir())


def test_a_failed_write_leaves_no_half_written_file(tmp_path, monkeypatch):
    path = tmp_path / SUMMARY
    write_summary(path, _summary(1))
    before = path.read_bytes()

    def half_then_fail(self, target, **kwargs):
        with open(target, "w") as f:
            f.write("dataset,arm,se")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        write_summary(path, _summary(3))
    assert path.read_bytes() == before  # the complete earlier file, untouched
    with pytest.raises(OSError, match="disk full"):
        write_summary(tmp_path / "new.csv", _summary(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == [SUMMARY]  # no new file, no temporary left behind

    def fail_netcdf(self, target, **kwargs):
        open(target, "wb").write(b"CDF")
        raise RuntimeError("killed")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", fail_netcdf)
    with pytest.raises(RuntimeError, match="killed"):
        write_netcdf(tmp_path / CURVES, xr.Dataset())
    assert sorted(p.name for p in tmp_path.iterdir()) == [SUMMARY]


def test_write_evaluation_and_eval_files_by_seed_number(tmp_path):
    layout = Layout(str(tmp_path))
    metrics = xr.Dataset({"nrmse": (("mode", "time"), np.ones((1, 2)))},
                         coords={"mode": ["latent"], "time": [0.1, 0.2]})
    predictions = xr.Dataset({"u_true": (("sample", "time", "x"), np.zeros((1, 2, 4)))})
    for seed in (10, 2):
        write_evaluation(layout.eval_dir("b", "a", seed), _summary(1), metrics, predictions)
    (tmp_path / "b" / "eval" / "a" / "seedx").mkdir()
    assert layout.eval_files("b", "a", PREDICTIONS) == [layout.eval_file("b", "a", s, PREDICTIONS) for s in (2, 10)]
    assert read_summary(layout.eval_file("b", "a", 2, EVAL_SUMMARY)).equals(_summary(1))
    assert layout.eval_files("b", "missing", PREDICTIONS) == []
    with pytest.raises(UptError, match="sample"):  # checked before anything is written
        write_evaluation(layout.eval_dir("b", "a", 3), _summary(1), metrics, metrics)
    assert not (tmp_path / "b" / "eval" / "a" / "seed3").exists()
