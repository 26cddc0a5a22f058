"""benchmarks/bench_speedups.py: the before/after table from interleaved runs, and a real run of one row."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_speedups", REPO / "benchmarks" / "bench_speedups.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def test_summary_takes_medians_per_side_and_their_ratio():
    bench = load_bench()
    runs = pd.DataFrame([{"speedup": "x", "side": side, "revision": rev, "repeat": r, "value": v, "unit": "s"}
                         for r, (b, a) in enumerate([(4.0, 1.0), (6.0, 2.0), (5.0, 9.0)])
                         for side, rev, v in (("before", "abc^", b), ("after", "abc", a))])
    table = bench.summarize(runs)
    assert "| x | abc^ | abc | s | 5 | 2 | 2.50x |" in table  # medians 5 and 2, not means 5 and 4
    assert "Medians of 3 interleaved runs" in table


def test_one_speedup_runs_end_to_end_and_unknown_names_are_refused(tmp_path):
    bench = load_bench()
    bench.main(["--only", "AdamW", "--repeats", "1", "--out", str(tmp_path)])
    runs = pd.read_csv(tmp_path / "speedups.csv")
    assert list(runs["side"]) == ["before", "after"] and (runs["value"] > 0).all()
    assert "AdamW" in (tmp_path / "speedups.md").read_text()
    with pytest.raises(SystemExit, match="matches none"):
        bench.main(["--only", "no-such-speedup", "--out", str(tmp_path)])


def test_every_commit_it_checks_out_is_in_the_history():
    import subprocess

    bench = load_bench()
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    shallow = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--is-shallow-repository"],
                             capture_output=True, text=True).stdout.strip()
    if shallow == "true":
        pytest.skip("a shallow clone holds no history to check out")
    for speedup in bench.SPEEDUPS:
        if not speedup.checkout:
            continue
        for rev in (speedup.before, speedup.after):
            done = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
                                  capture_output=True)
            assert done.returncode == 0, f"{speedup.name}: revision {rev} is not in this repository"
