"""benchmarks/bench_encoder_stall.py: the stall level, the epoch a run leaves it, and a run that never does."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_encoder_stall", REPO / "benchmarks" / "bench_encoder_stall.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(arm, seed, losses, stop="cap"):
    return pd.DataFrame({"dataset": "d", "arm": arm, "seed": seed, "stage": "autoencoder",
                         "epoch": np.arange(1, len(losses) + 1), "val_loss": losses, "stop_reason": stop})


def test_escape_epoch_is_where_the_best_loss_halves_the_early_level(tmp_path):
    bench = load_bench()
    training = pd.concat([
        run("mesh", 0, [0.9, 0.5, 0.42, 0.40, 0.41, 0.39, 0.19, 0.05]),  # best by epoch 4: 0.40; < 0.20 at 7
        run("mesh", 1, [0.9, 0.6, 0.45, 0.43, 0.42, 0.41, 0.40, 0.38], stop="plateau"),  # never halves 0.43
        run("mesh", 0, [5.0], ).assign(stage="operator"),  # another stage: ignored
    ])
    table = bench.stall_table(training, "autoencoder", early=4).set_index("seed")
    assert table.loc[0, "early"] == 0.40 and table.loc[0, "final"] == 0.05 and table.loc[0, "escape_epoch"] == 7
    assert table.loc[1, "early"] == 0.43 and np.isnan(table.loc[1, "escape_epoch"])
    assert table.loc[1, "stop_reason"] == "plateau" and table.loc[1, "epochs"] == 8
    text = bench.markdown(table.reset_index(), "autoencoder", 4)
    assert "| mesh | 1 | 0.43 | 0.38 | never | 8 | plateau |" in text
    bench.plot(training, "autoencoder", tmp_path / "stall.png")
    assert (tmp_path / "stall.png").stat().st_size > 0


def test_a_bench_learning_work_directory_reads_as_training_rows(tmp_path):
    bench = load_bench()
    for seed, losses in ((0, [0.8, 0.4, 0.1]), (1, [0.8, 0.7, 0.65])):
        stage = tmp_path / "mesh-lr" / f"seed{seed}" / "autoencoder"
        stage.mkdir(parents=True)
        pd.DataFrame({"epoch": [1, 2, 3], "val_loss": losses, "stop": ["", "", "plateau" if seed else ""]}).to_csv(
            stage / "metrics.csv", index=False)
    runs = bench.read_learning_runs(tmp_path)
    table = bench.stall_table(runs, "autoencoder", early=1).set_index("seed")
    assert list(table["arm"]) == ["mesh-lr", "mesh-lr"]
    assert table.loc[0, "escape_epoch"] == 3 and table.loc[0, "stop_reason"] == "cap"  # 0.4 is not below 0.8 / 2
    assert np.isnan(table.loc[1, "escape_epoch"]) and table.loc[1, "stop_reason"] == "plateau"


def test_a_tagged_training_file_keeps_its_arms_apart(tmp_path):
    bench = load_bench()
    path = tmp_path / "training.csv"
    from upt.results import TRAINING_COLUMNS

    rows = run("mesh", 0, [0.9, 0.5, 0.42, 0.40, 0.19])
    rows.reindex(columns=list(TRAINING_COLUMNS)).to_csv(path, index=False)
    assert set(bench.read_tagged(str(path))["arm"]) == {"mesh"}
    tagged = bench.read_tagged(f"{path}@first-run")
    assert set(tagged["arm"]) == {"mesh@first-run"} and len(tagged) == 5
