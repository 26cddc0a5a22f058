"""The real workflow, end to end through the `snakemake` command line, on tiny data."""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml

from pdebench_files import write_1d_tensor

REPO = Path(__file__).resolve().parents[1]
TEST_CONFIG = REPO / ".test" / "config.yaml"

pytestmark = pytest.mark.slow  # every test runs the `snakemake` command line (1 s to a minute each)


def snakemake(workdir: Path, target: str, config: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Build ``target`` with the repository's Snakefile in ``workdir``, this interpreter's `upt` on PATH."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--cores", "2", target, *args, "--configfile", str(config)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def test_dry_run_parses_default_and_pdebench_configs(tmp_path):
    outputs = {name: snakemake(tmp_path, "all_ablations", REPO / "config" / name, "-n").stdout
               for name in ("config.yaml", "pdebench.yaml", "ns2d.yaml", "ns2d-64.yaml")}
    assert all("all_ablations" in out for out in outputs.values())
    assert "download" in outputs["pdebench.yaml"]  # the PDEBench config fetches its files
    assert "results/ns2d-study/" in outputs["ns2d.yaml"]  # a study keeps its own results
    assert "results/ns2d-64/" in outputs["ns2d-64.yaml"]


@pytest.mark.parametrize("edit,needle", [
    (lambda c: c["datasets"]["burgers1d"]["convert"].update(reduce_x=0), "reduce_x"),
    (lambda c: c["datasets"]["burgers1d"].update(convrt={}), "convrt"),
    (lambda c: c["datasets"]["burgers1d"]["source"]["generate"].update(samples="many"), "samples"),
    (lambda c: c.update(reference_arm="smal"), "reference_arm: unknown arm 'smal'"),
    (lambda c: c["claims"][0].update(control="nope"), "claims[0].control: unknown arm 'nope'"),
    (lambda c: c["arms"].update(wide={"model": {"tokens": 64}}), "arms.wide.model on dataset burgers1d: tokens=64"),
])
def test_invalid_config_fails_naming_the_key(tmp_path, workflow_config, edit, needle):
    config = workflow_config
    edit(config)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    proc = snakemake(tmp_path, "all_ablations", tmp_path / "bad.yaml", "-n", check=False)
    assert proc.returncode != 0
    assert needle in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


def test_all_ablations_end_to_end(tmp_path):
    snakemake(tmp_path, "all_ablations", TEST_CONFIG)
    results = tmp_path / "results"
    for dataset, field in (("burgers1d", "u"), ("diffreact2d", "v")):
        with h5py.File(results / dataset / "raw.h5") as raw, xr.open_dataset(results / dataset / "data.nc") as ds:
            assert ds[field].dims[:2] == ("sample", "time") and np.isfinite(ds[field].values).all()
            assert set(ds["split"].values.astype(str)) == {"train", "val", "test"}
            if dataset == "burgers1d":  # converted values are the raw file's, reduced by [::K]
                np.testing.assert_array_equal(ds["u"].values, raw["tensor"][:, ::10, ::2])
        assert "mean" in (results / dataset / "stats.json").read_text()
        assert (results / "logs" / dataset / "convert.log").exists()
    train = results / "burgers1d" / "train"
    # Arms share the runs they agree on: joint and distill reuse small's autoencoder (and operator).
    assert sorted(p.relative_to(train).as_posix() for p in train.rglob("model.pt")) == [
        "distill/seed0/diffusion/model.pt", "distill/seed0/distill/model.pt", "fno/seed0/fno/model.pt",
        "joint/seed0/joint/model.pt", "small/seed0/autoencoder/model.pt", "small/seed0/operator/model.pt"]
    assert not list(train.rglob("state.pt"))  # finished runs leave only their result
    assert (results / "benchmarks" / "burgers1d" / "train" / "joint" / "seed0" / "joint.tsv").exists()

    stats = pd.read_csv(results / "burgers1d" / "summary_stats.csv")
    assert {"small", "joint", "distill", "fno", "persistence", "mean", "coarse-solver"} <= set(stats["arm"])
    assert set(stats.query("arm == 'small'")["mode"]) == {"latent", "physical", "one-step", "latent-superres",
                                                          "reconstruction", "all"}
    assert {"nrmse_step1", "nrmse_step5", "corr_step10"} <= set(stats.query("arm == 'mean'")["metric"])
    claims = pd.read_csv(results / "burgers1d" / "claims.csv")
    assert list(claims["arm"]) == ["joint"] and claims["verdict"].isin(["supported", "refuted", "inconclusive"]).all()
    assert (results / "figures" / "burgers1d" / "claims_table.md").read_text().startswith("| claim |")
    summary = pd.read_csv(results / "burgers1d" / "summary.csv")
    assert list(summary.columns[:6]) == ["dataset", "arm", "seed", "mode", "metric", "value"]
    figures = results / "figures" / "burgers1d"
    drawn = {p.name: p.read_bytes() for p in figures.glob("*.png")}
    assert {"error_vs_time.png", "metric_bars.png", "prediction_vs_truth.png", "training_curves.png"} <= set(drawn)

    rerun = snakemake(tmp_path, "all_ablations", TEST_CONFIG)
    assert "Nothing to be done" in rerun.stdout + rerun.stderr

    # Without any checkpoint, paper_figures redraws the same figures from results/ alone.
    for checkpoint in results.rglob("*.pt"):
        checkpoint.unlink()
    for figure in figures.glob("*.png"):
        figure.unlink()
    snakemake(tmp_path, "paper_figures", TEST_CONFIG)
    assert {p.name: p.read_bytes() for p in figures.glob("*.png")} == drawn

    report = snakemake(tmp_path, "all_ablations", TEST_CONFIG, "--report", "report.html", check=False)
    assert report.returncode == 0, report.stderr[-2000:]
    assert (tmp_path / "report.html").stat().st_size > 10_000


@pytest.fixture
def file_server(tmp_path, monkeypatch):
    """Serve ``tmp_path/served`` over HTTP on 127.0.0.1 (ephemeral port), stopped after the test."""
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{srv.server_address[1]}/"
    srv.shutdown()
    srv.server_close()


def test_download_rule_from_a_mirror(tmp_path, file_server, workflow_config):
    root, url = file_server
    data = write_1d_tensor(root / "1D_Burgers_Sols_Nu0.01.hdf5", samples=5)
    md5 = hashlib.md5((root / "1D_Burgers_Sols_Nu0.01.hdf5").read_bytes()).hexdigest()
    pd.DataFrame([{"PDE": "Burgers", "Filename": "1D_Burgers_Sols_Nu0.01.hdf5", "URL": url + "1D_Burgers_Sols_Nu0.01.hdf5",
                   "Path": "1D/Burgers/Train/", "MD5": md5}]).to_csv(tmp_path / "mirror.csv", index=False)
    config = {**workflow_config, "pdebench_root": "pdebench",
              "url_table": str(tmp_path / "mirror.csv"),
              "datasets": {"burgers": {"source": {"download": {"pde": "Burgers", "file": "1D_Burgers_Sols_Nu0.01.hdf5"}},
                                       "splits": {"val_fraction": 0.2, "test_fraction": 0.2}}}}
    (tmp_path / "mirror.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    snakemake(tmp_path, "all_data", tmp_path / "mirror.yaml")
    assert (tmp_path / "pdebench" / "1D" / "Burgers" / "Train" / "1D_Burgers_Sols_Nu0.01.hdf5").exists()
    with xr.open_dataset(tmp_path / "results" / "burgers" / "data.nc") as ds:
        np.testing.assert_array_equal(ds["u"].values, data)
        assert ds.attrs["source_md5"] == md5


def test_multi_gpu_arm_trains_as_ddp_processes_under_torchrun(tmp_path, workflow_config):
    """An arm with training.gpus 2 runs its stage through torchrun: 2 gloo processes on this CPU."""
    config = workflow_config
    config["arms"]["ddp"] = {"training": {"gpus": 2}}
    (tmp_path / "ddp.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    target = "results/burgers1d/train/ddp/seed0/autoencoder/model.pt"
    dry = snakemake(tmp_path, target, tmp_path / "ddp.yaml", "-n", "-p").stdout
    assert "OMP_NUM_THREADS=1 torchrun --standalone --nproc-per-node=2 --no-python upt train autoencoder" in dry
    snakemake(tmp_path, target, tmp_path / "ddp.yaml")
    log = (tmp_path / "results" / "logs" / "burgers1d" / "train" / "ddp" / "seed0" / "autoencoder.log").read_text()
    assert "autoencoder: 2 processes on cpu" in log
    assert (tmp_path / target).exists()
