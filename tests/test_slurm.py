"""The Slurm profile: a dry run parses it, and a training job is submitted with the right flags."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
TEST_CONFIG = REPO / ".test" / "config.yaml"

pytest.importorskip("snakemake_executor_plugin_slurm")
pytestmark = pytest.mark.slow  # `snakemake --profile slurm` runs, with a local data stage


def run(workdir: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """snakemake from a copy of the repository root (where `--profile slurm` is looked up)."""
    cmd = [sys.executable, "-m", "snakemake", "--profile", "slurm", *args, "--configfile", str(TEST_CONFIG)]
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture
def checkout(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    for name in ("Snakefile", "workflow", "slurm", "config", ".test", "envs"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, root / name)
    return root


def test_profile_dry_run(checkout):
    proc = run(checkout, "-n", "all_ablations")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "train" in proc.stdout


def gpu_config(checkout: Path, config: dict) -> Path:
    """The test config on GPUs: one per training job, and an arm that asks for two."""
    config["base"]["training"]["gpus"] = 1
    config["arms"]["ddp"] = {"training": {"gpus": 2}}
    path = checkout / ".test" / "gpus.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_training_jobs_are_submitted_with_gpus_partition_memory_and_time(checkout, tmp_path, workflow_config):
    """A fake sbatch records its arguments; the run is stopped once both training jobs are submitted."""
    bin_dir, record = tmp_path / "bin", tmp_path / "sbatch.txt"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\necho "$@" >> {record}\necho 4242\n')
    (bin_dir / "sacctmgr").write_text("#!/bin/sh\necho YOUR_ACCOUNT\n")
    (bin_dir / "sacct").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "squeue").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "scancel").write_text("#!/bin/sh\nexit 0\n")
    for tool in bin_dir.iterdir():
        tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    config = gpu_config(checkout, workflow_config)
    # The data stage runs locally first, so the jobs the profile submits are the training jobs.
    local = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "all_data", "--configfile",
                            str(config)], cwd=checkout, capture_output=True, text=True, env=env, timeout=300)
    assert local.returncode == 0, local.stderr[-3000:]
    targets = [f"results/burgers1d/train/{arm}/seed0/autoencoder/model.pt" for arm in ("small", "ddp")]
    cmd = [sys.executable, "-m", "snakemake", "--profile", "slurm", *targets, "--configfile", str(config)]
    proc = subprocess.Popen(cmd, cwd=checkout, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while (not record.exists() or len(record.read_text().splitlines()) < 2) \
                and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        proc.kill()  # the fake jobs would never finish
        proc.wait(30)
    jobs = {arm: line.split() for line in record.read_text().splitlines()
            for arm in ("small", "ddp") if f"arm={arm}," in line}
    assert set(jobs) == {"small", "ddp"}, record.read_text()
    for arm, gpus in (("small", 1), ("ddp", 2)):
        submitted = jobs[arm]
        for flag in ("-A YOUR_ACCOUNT", "-p YOUR_GPU_PARTITION", "-t 720", "--mem 32000"):
            assert " ".join(submitted).count(flag) == 1, (arm, flag, submitted)
        assert f"--gpus={gpus}" in submitted and "--cpus-per-gpu=8" in submitted, (arm, submitted)
