"""Where a pipeline run's time went, from Snakemake's own log of it (for the README's budget table).

Snakemake logs every job's start (``[timestamp]`` then ``localrule <name>:`` or ``rule <name>:``
with its ``jobid`` and ``wildcards``) and end (``[timestamp]`` then ``Finished jobid: N``), and the
run's ``Provided cores``, ``N of N steps (100%) done`` and ``Elapsed time``. :func:`read_log`
turns one log into one row per job; :func:`budget_table` sums them per dataset and step (a
training run counts under its stage) into Markdown. Run by ``make readme``::

    python -m upt.plotting.budget .snakemake/log all_ablations > docs/results/budget.md
    python -m upt.plotting.budget .snakemake/log all_ablations config/ns2d.yaml   # a study's run
    python -m upt.plotting.budget .snakemake/log/<one run>.snakemake.log          # that run
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd

from upt.errors import UptError

STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
START = re.compile(r"^(?:local)?rule (\S+):$")
FIELD = re.compile(r"^    (\w+): (.*)$")
FINISHED = re.compile(r"^Finished jobid: (\d+)")
ELAPSED = re.compile(r"^Elapsed time: (?:(\d+) days?, )?(\d+):(\d\d):(\d\d(?:\.\d+)?)$")


@dataclass
class Run:
    """One finished Snakemake run: its target, cores, elapsed time and jobs (one row each)."""

    path: Path
    target: str  # the last word of the command that is not an option or an option's value
    configfile: str | None  # its --configfile (None: the workflow's default config)
    cores: int
    elapsed: timedelta
    jobs: pd.DataFrame  # jobid, rule, dataset, stage, seconds


def read_log(path: str | Path) -> Run:
    """Parse one Snakemake log; a run that did not finish is an error naming the file."""
    path = Path(path)
    lines = path.read_text().splitlines()
    stamp, started, rows = None, {}, []
    cores = target = configfile = elapsed = None
    for i, line in enumerate(lines):
        if match := STAMP.match(line):
            stamp = datetime.strptime(" ".join(match[1].split()), "%a %b %d %H:%M:%S %Y")
        elif line.startswith("  Command: "):
            target, configfile = parse_command(line.split()[2:])
        elif line.startswith("Provided cores: "):
            cores = int(line.split(": ")[1].split()[0])  # "1 (use --cores to define parallelism)" too
        elif (match := START.match(line)) and stamp is not None:
            fields = {}
            for following in lines[i + 1:]:
                field = FIELD.match(following)
                if field is None:
                    break
                fields[field[1]] = field[2]
            wildcards = dict(item.split("=", 1) for item in fields.get("wildcards", "").split(", ") if "=" in item)
            started[fields.get("jobid")] = (match[1], wildcards, stamp)
        elif (match := FINISHED.match(line)) and match[1] in started:
            rule, wildcards, begin = started.pop(match[1])
            rows.append({"jobid": int(match[1]), "rule": rule, "dataset": wildcards.get("dataset", ""),
                         "stage": wildcards.get("stage", ""), "seconds": (stamp - begin).total_seconds()})
        elif match := ELAPSED.match(line):
            days, hours, minutes, seconds = match.groups()
            elapsed = timedelta(days=int(days or 0), hours=int(hours), minutes=int(minutes), seconds=float(seconds))
    if elapsed is None or cores is None:
        raise UptError(f"{path}: not the log of a finished Snakemake run (no 'Provided cores' or 'Elapsed time')")
    return Run(path, target or "", configfile, cores, elapsed, pd.DataFrame(rows, columns=["jobid", "rule", "dataset", "stage",
                                                                               "seconds"]))


def parse_command(words: list[str]) -> tuple[str | None, str | None]:
    """(target, configfile) of a snakemake command line's arguments: the last word that is neither
    an option nor an option's value, and the value of ``--configfile`` (None without one)."""
    target = configfile = None
    takes_value = {"--cores", "-c", "--jobs", "-j", "--configfile", "--configfiles", "--profile",
                   "--directory", "-d", "--snakefile", "-s", "--report", "--config", "-C"}
    i = 0
    while i < len(words):
        word = words[i]
        if word in takes_value:
            if word in ("--configfile", "--configfiles") and i + 1 < len(words):
                configfile = words[i + 1]
            i += 2
            continue
        if not word.startswith("-"):
            target = word
        i += 1
    return target, configfile


def latest_run(log_dir: str | Path, target: str, configfile: str | None = None) -> Run:
    """The newest finished run of ``target`` (e.g. ``all_ablations``) among the logs of ``log_dir``,
    with ``--configfile configfile`` (None: a run of the default config, without one)."""
    for path in sorted(Path(log_dir).glob("*.snakemake.log"), reverse=True):  # names start with the date
        try:
            run = read_log(path)
        except UptError:
            continue
        if run.target == target and run.configfile == configfile:
            return run
    of = f" with --configfile {configfile}" if configfile else ""
    raise UptError(f"{log_dir}: no finished Snakemake run of {target!r}{of}")


def budget_table(run: Run) -> str:
    """Markdown: the run's elapsed time, then job-minutes per dataset and step, largest first."""
    jobs = run.jobs.assign(step=[f"train {s}" if r == "train" else r for r, s in zip(run.jobs["rule"],
                                                                                        run.jobs["stage"])])
    jobs = jobs[jobs["rule"] != run.target]
    table = (jobs.groupby(["dataset", "step"])["seconds"].agg(["count", "sum"]).reset_index()
             .sort_values("sum", ascending=False, kind="stable"))
    total = float(jobs["seconds"].sum())
    minutes = run.elapsed.total_seconds() / 60
    lines = [f"{len(jobs)} jobs on {run.cores} cores: **{minutes:.1f} minutes** elapsed; "
             f"{total / 60:.1f} job-minutes, i.e. the cores were busy "
             f"{total / (run.elapsed.total_seconds() * run.cores):.0%} of the time (Snakemake's log "
             f"{run.path.name}).", "",
             "| dataset | step | jobs | job-minutes | share |", "|---|---|---|---|---|"]
    for row in table.itertuples():
        lines.append(f"| {row.dataset or '-'} | {row.step} | {row.count} | {row.sum / 60:.1f} | "
                     f"{row.sum / total:.0%} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    log_dir = sys.argv[1] if len(sys.argv) > 1 else ".snakemake/log"
    target = sys.argv[2] if len(sys.argv) > 2 else "all_ablations"
    configfile = sys.argv[3] if len(sys.argv) > 3 else None
    try:
        # a log file names one run itself (e.g. a study's first run, before a partial rerun)
        run = read_log(log_dir) if Path(log_dir).is_file() else latest_run(log_dir, target, configfile)
        sys.stdout.write(budget_table(run))
    except UptError as err:
        sys.exit(f"error: {err}")
