"""The README's budget table: job times read from a Snakemake log, summed per dataset and step."""

from __future__ import annotations

import pytest

from upt.errors import UptError
from upt.plotting.budget import budget_table, latest_run, read_log

LOG = """\
  Command: /venv/bin/snakemake --cores 2 all_ablations
Provided cores: 2
[Wed Dec  2 01:15:03 2026]
localrule generate:
    output: results/b/raw.h5
    jobid: 4
    wildcards: dataset=b
[Wed Dec  2 01:15:03 2026]
localrule train:
    output: results/b/train/a/seed0/autoencoder/model.pt
    jobid: 7
    wildcards: dataset=b, arm=a, seed=0, stage=autoencoder
[Wed Dec  2 01:15:07 2026]
Finished jobid: 4 (Rule: generate)
[Wed Dec  2 01:16:03 2026]
Finished jobid: 7 (Rule: train)
[Wed Dec  2 01:16:03 2026]
localrule all_ablations:
    jobid: 0
[Wed Dec  2 01:16:03 2026]
Finished jobid: 0 (Rule: all_ablations)
3 of 3 steps (100%) done
Elapsed time: 0:01:00.500000
"""


def test_job_seconds_and_the_table(tmp_path):
    path = tmp_path / "2026-12-02T011502.snakemake.log"
    path.write_text(LOG)
    run = read_log(path)
    assert run.cores == 2 and run.target == "all_ablations" and run.elapsed.total_seconds() == 60.5
    jobs = run.jobs.set_index("jobid")
    assert jobs.loc[4, "seconds"] == 4 and jobs.loc[7, "seconds"] == 60 and jobs.loc[7, "stage"] == "autoencoder"
    table = budget_table(run)
    # 64 job-seconds over 60.5 s x 2 cores; the training run first, counted under its stage
    assert "2 jobs on 2 cores: **1.0 minutes** elapsed; 1.1 job-minutes" in table and "53%" in table
    rows = [line for line in table.splitlines() if line.startswith("| b |")]
    assert rows == ["| b | train autoencoder | 1 | 1.0 | 94% |", "| b | generate | 1 | 0.1 | 6% |"]


def test_an_unfinished_run_is_skipped_and_none_is_an_error(tmp_path):
    (tmp_path / "2026-12-03T000000.snakemake.log").write_text(LOG.split("3 of 3")[0])  # newer, unfinished
    (tmp_path / "2026-12-02T000000.snakemake.log").write_text(LOG)
    assert latest_run(tmp_path, "all_ablations").path.name.startswith("2026-12-02")
    with pytest.raises(UptError, match="no finished Snakemake run of 'all_models'"):
        latest_run(tmp_path, "all_models")
    with pytest.raises(UptError, match="not the log of a finished Snakemake run"):
        read_log(tmp_path / "2026-12-03T000000.snakemake.log")


def test_runs_of_another_config_are_told_apart(tmp_path):
    study = LOG.replace("--cores 2 all_ablations", "all_ablations --configfile config/ns2d.yaml --cores 2")
    (tmp_path / "2026-12-04T000000.snakemake.log").write_text(study)  # newer: the study's run
    (tmp_path / "2026-12-02T000000.snakemake.log").write_text(LOG)
    assert latest_run(tmp_path, "all_ablations").path.name.startswith("2026-12-02")
    run = latest_run(tmp_path, "all_ablations", "config/ns2d.yaml")
    assert run.path.name.startswith("2026-12-04") and run.target == "all_ablations"
    with pytest.raises(UptError, match="with --configfile config/study.yaml"):
        latest_run(tmp_path, "all_ablations", "config/study.yaml")


def test_the_command_line_takes_one_log_file_too(tmp_path):
    import subprocess
    import sys

    (tmp_path / "2026-12-04T000000.snakemake.log").write_text(LOG)
    # a later run of another target, without --cores (Snakemake then logs "1 (use --cores ...)")
    other = LOG.replace("--cores 2 all_ablations", "x").replace("Provided cores: 2",
                                                              "Provided cores: 1 (use --cores to define parallelism)")
    (tmp_path / "2026-12-05T000000.snakemake.log").write_text(other)
    by_dir = subprocess.run([sys.executable, "-m", "upt.plotting.budget", str(tmp_path)],
                            capture_output=True, text=True, check=True).stdout
    by_file = subprocess.run([sys.executable, "-m", "upt.plotting.budget", str(tmp_path / "2026-12-05T000000.snakemake.log")],
                             capture_output=True, text=True, check=True).stdout
    assert "2026-12-04T000000" in by_dir and "2026-12-05T000000" in by_file
