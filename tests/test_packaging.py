"""Pinned installs (constraints.txt, envs/upt.yaml), the generated config docs, the installed CLI
and its start-up."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
# conda-forge name -> pip name
PIP_NAMES = {"pytorch": "torch", "matplotlib-base": "matplotlib", "netcdf4": "netCDF4"}


def requirement(spec: str) -> tuple[str, str]:
    name, version = re.match(r"([A-Za-z0-9_.-]+)\s*(.*)", spec).groups()
    return name, version.replace(" ", "")


def pins() -> dict[str, str]:
    """constraints.txt as {canonical name: version}; every line that is not a comment is NAME==VERSION."""
    pinned = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep and version and not set(version) & set("<>=!~ ,"), \
                f"constraints.txt: {line!r} is not NAME==VERSION"
            assert canonicalize_name(name) not in pinned, f"constraints.txt pins {name} twice"
            pinned[canonicalize_name(name)] = version
    return pinned


def pyproject_requirements() -> list[Requirement]:
    """Every dependency pyproject.toml names, its extras' included (but the extras naming upt itself)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] + [s for extra in project["optional-dependencies"].values() for s in extra]
    return [req for req in map(Requirement, specs) if canonicalize_name(req.name) != "upt"]


def test_constraints_pin_every_dependency_within_its_range():
    pinned = pins()
    requirements = pyproject_requirements()
    names = {canonicalize_name(r.name) for r in requirements}
    assert {"torch", "numpy", "snakemake", "neuraloperator", "pytest"} <= names  # the extras are read too
    for req in requirements:
        version = pinned.get(canonicalize_name(req.name))
        assert version is not None, f"{req.name} is in pyproject.toml but not pinned in constraints.txt (make lock)"
        assert req.specifier.contains(version, prereleases=True), f"{req.name}=={version} is outside {req}"
    # the CPU wheel's version, and no local label that PyPI's torch would not match
    assert pinned["torch"] == "2.13.0"


def test_conda_environment_pins_the_constrained_versions():
    """envs/upt.yaml names pyproject's run-time dependencies and the baselines' and pins each, and
    every other package it lists, at the version of constraints.txt."""
    pinned = pins()
    env = yaml.safe_load((REPO / "envs" / "upt.yaml").read_text())["dependencies"]
    entries = [s for s in env if isinstance(s, str)] + [s for e in env if isinstance(e, dict) for s in e["pip"]]
    listed = {}
    for entry in entries:
        name, version = requirement(entry)
        if name in ("python", "pip"):
            continue
        assert version.startswith("==") and not version.startswith("==="), f"envs/upt.yaml: {entry!r} is not pinned"
        listed[canonicalize_name(PIP_NAMES.get(name, name))] = version[2:]
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = {canonicalize_name(Requirement(s).name)
              for s in project["dependencies"] + project["optional-dependencies"]["baselines"]}
    assert wanted <= set(listed), f"envs/upt.yaml lacks {sorted(wanted - set(listed))}"
    for name, version in listed.items():
        assert pinned.get(name) == version, \
            f"{name}=={version} in envs/upt.yaml, {pinned.get(name)!r} in constraints.txt"


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


def test_config_readme_is_the_text_generated_from_the_schema():
    """config/README.md cannot go stale: after a schema change, `make config-docs` rewrites it."""
    from upt.config_docs import SCHEMA, render

    expected = render(yaml.safe_load(SCHEMA.read_text()))
    assert (REPO / "config" / "README.md").read_text() == expected, "config/README.md is stale: run make config-docs"


def test_config_docs_rows_and_a_key_without_description():
    from upt.config_docs import render
    from upt.errors import UptError

    schema = {"description": "A config.", "type": "object", "required": ["n"], "properties": {
        "n": {"type": "integer", "minimum": 1, "description": "how many <things>"},
        "mode": {"enum": ["a", "b"], "default": "a", "description": "`<mode>` a | b"},
        "xs": {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0}, "minItems": 2, "maxItems": 2,
               "description": "a pair"},
        "sub": {"type": "object", "description": "inline", "properties": {
            "k": {"type": ["string", "null"], "default": None, "description": "a key"}}}}}
    page = render(schema)
    assert "A config." in page
    assert "| `n` | integer (>= 1) | required | how many &lt;things> |" in page
    assert '| `mode` | `"a"` \\| `"b"` | `"a"` | `<mode>` a \\| b |' in page
    assert "| `xs` | list of number > 0 (exactly 2 items) |  | a pair |" in page
    assert "| `sub.k` | string or null | `null` | a key |" in page
    del schema["properties"]["sub"]["properties"]["k"]["description"]
    with pytest.raises(UptError, match=r"keys without a description: top level: sub\.k"):
        render(schema)


# In a fresh interpreter: one fused AdamW step from the CLI's training path, then whether torch._dynamo
# was imported. The first step of AdamW moves each weight by lr * g / (|g| + eps) after the decay
# p * (1 - lr * wd) (m / (1 - b1) = g and v / (1 - b2) = g^2), whatever the betas.
ADAMW_STEP = """
import sys, torch
from upt.lazy_dynamo import defer_optimizer_dynamo_import
assert defer_optimizer_dynamo_import() > 0
if sys.argv[1] == "dynamo":
    import torch._dynamo  # as torch.compile would: torch's own wrappers take over
p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
optimizer = torch.optim.AdamW([p], lr=0.1, weight_decay=0.5, fused=True)
optimizer.zero_grad()
(p * torch.tensor([3.0, -1.0, 0.0])).sum().backward()
optimizer.step()
optimizer.load_state_dict(optimizer.state_dict())
print(repr(p.detach().tolist()), "torch._dynamo" in sys.modules)
"""


@pytest.mark.parametrize("dynamo", ["dynamo", "eager"])
def test_optimizer_steps_without_importing_dynamo_and_unchanged(dynamo):
    out = subprocess.run([sys.executable, "-c", ADAMW_STEP, dynamo], capture_output=True, text=True, check=True)
    values, loaded = out.stdout.split("]")
    lr, wd, eps = 0.1, 0.5, 1e-8
    expected = [p * (1 - lr * wd) - lr * g / (abs(g) + eps) for p, g in ((1.0, 3.0), (-2.0, -1.0), (0.5, 0.0))]
    assert [float(v) for v in values.strip(" [").split(",")] == pytest.approx(expected, rel=1e-6, abs=1e-7)
    assert loaded.strip() == str(dynamo == "dynamo")
