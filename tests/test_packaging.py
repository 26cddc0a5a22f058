"""The conda environment and pyproject.toml ask for the same packages; the CLI is installed."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"torch": "pytorch", "matplotlib": "matplotlib-base", "netCDF4": "netcdf4"}


def requirement(spec: str) -> tuple[str, str]:
    name, version = re.match(r"([A-Za-z0-9_.-]+)\s*(.*)", spec).groups()
    return name, version.replace(" ", "")


def test_conda_environment_matches_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = dict(requirement(s) for s in project["dependencies"])
    wanted.update(requirement(s) for s in project["optional-dependencies"]["baselines"])
    env = yaml.safe_load((REPO / "envs" / "upt.yaml").read_text())["dependencies"]
    conda = dict(requirement(s) for s in env if isinstance(s, str) and s not in ("pip",))
    pip = dict(requirement(s) for entry in env if isinstance(entry, dict) for s in entry["pip"])
    for name, version in wanted.items():
        got = conda.get(CONDA_NAMES.get(name, name).lower(), pip.get(name))
        assert got == version, f"{name}{version} in pyproject.toml, {got!r} in envs/upt.yaml"


def test_cli_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "upt", "--help"], capture_output=True, text=True, check=True)
    for command in ("generate", "download", "convert", "stats", "train", "cache", "evaluate", "aggregate", "plot"):
        assert command in out.stdout


def test_workflow_is_lint_clean_and_snakefmt_formatted():
    """`snakemake --lint` finds nothing and the rule files are as snakefmt writes them."""
    bin_dir = Path(sys.executable).parent
    lint = subprocess.run([str(bin_dir / "snakemake"), "--lint"], cwd=REPO, capture_output=True, text=True)
    assert "Congratulations, your workflow is in a good condition" in lint.stdout + lint.stderr, lint.stdout
    files = ["Snakefile", *sorted(str(p.relative_to(REPO)) for p in (REPO / "workflow" / "rules").glob("*.smk"))]
    fmt = subprocess.run([str(bin_dir / "snakefmt"), "--check", *files], cwd=REPO, capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_every_rule_that_runs_work_declares_its_log_benchmark_threads_resources_and_env():
    """What the Snakemake workflow catalog expects of a rule, and what a cluster profile needs."""
    rules = {}
    for path in [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]:
        text = path.read_text()
        for match in re.finditer(r"^rule (\w+):\n(.*?)(?=^rule |\Z)", text, re.S | re.M):
            rules[match.group(1)] = match.group(2)
    working = {name: body for name, body in rules.items() if "    shell:" in body}
    assert {"train", "evaluate", "aggregate", "plot", "generate", "convert"} <= set(working)
    for name, body in working.items():
        missing = [key for key in ("log", "benchmark", "threads", "resources", "conda")
                   if f"    {key}:" not in body]
        assert not missing, f"rule {name} lacks {missing}"
