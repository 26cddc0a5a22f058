"""The Slurm profile: a dry run parses it, and a training job is submitted with the right flags."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TEST_CONFIG = REPO / ".test" / "config.yaml"

pytest.importorskip("snakemake_executor_plugin_slurm")


def run(workdir: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """snakemake from a copy of the repository root (where `--profile slurm` is looked up)."""
    cmd = [sys.executable, "-m", "snakemake", "--profile", "slurm", *args, "--configfile", str(TEST_CONFIG)]
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture
def checkout(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    for name in ("Snakefile", "workflow", "slurm", "config", ".test"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, root / name)
    return root


def test_profile_dry_run(checkout):
    proc = run(checkout, "-n", "all_ablations")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "train" in proc.stdout


def test_training_job_is_submitted_with_gpu_partition_memory_and_time(checkout, tmp_path):
    """A fake sbatch records its arguments; a fake sacct reports the job as failed."""
    bin_dir, record = tmp_path / "bin", tmp_path / "sbatch.txt"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\necho "$@" >> {record}\necho 4242\n')
    (bin_dir / "sacct").write_text("#!/bin/sh\necho '4242|FAILED|1:0'\n")
    (bin_dir / "squeue").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "scancel").write_text("#!/bin/sh\nexit 0\n")
    for tool in bin_dir.iterdir():
        tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    # The data stage runs locally first, so the first job the profile submits is a training job.
    local = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "all_data", "--configfile",
                            str(TEST_CONFIG)], cwd=checkout, capture_output=True, text=True, env=env, timeout=300)
    assert local.returncode == 0, local.stderr[-3000:]
    target = "results/burgers1d/train/small/seed0/autoencoder/model.pt"
    run(checkout, target, "--retries", "0", "--slurm-init-seconds-before-status-checks", "1", env=env)
    submitted = record.read_text()
    assert "-p YOUR_GPU_PARTITION" in submitted or "--partition YOUR_GPU_PARTITION" in submitted, submitted
    assert "gpu" in submitted and "--mem 32000" in submitted, submitted
    assert "-t 720" in submitted or "--time 720" in submitted, submitted
    assert "-A YOUR_ACCOUNT" in submitted or "--account YOUR_ACCOUNT" in submitted, submitted
