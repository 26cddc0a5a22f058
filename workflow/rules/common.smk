# Config validation, the stage plans, and the path, input and option helpers the rule files use.
# Wiring only: no science here (that lives in the upt package).

import json
import re
from pathlib import Path

from snakemake.utils import validate

import upt
from upt import vocabulary
from upt.arms import plan, resolve_arm, sample_steps
from upt.config import check_config
from upt.data.download import read_url_table, select_rows
from upt.models.sizes import size_of
from upt.results import (
    EVAL_FILES,
    EVAL_METRICS,
    EVAL_SUMMARY,
    LATENTS,
    MODEL,
    PREDICTIONS,
    RUN_METRICS,
    SUMMARY_STATS,
    TABLES,
    Layout,
)

validate(config, "../schemas/config.schema.yaml")
try:
    check_config(config)
except ValueError as err:
    raise WorkflowError(f"invalid config: {err}") from None

# Every path under results/ (upt/results.py): given "{wildcard}" names, Snakemake patterns.
LAYOUT = Layout(config["results"])
DATASETS = list(config["datasets"])
# Recorded as a parameter so that results say which code produced them (and rerun when it changes).
UPT_VERSION = upt.__version__


def dataset_config(dataset):
    return config["datasets"][dataset]


def _pdebench_files():
    """Relative path under pdebench_root -> (pde, filename) for every downloaded dataset."""
    wanted = [
        d["source"]["download"]
        for d in config["datasets"].values()
        if "download" in d["source"]
    ]
    if not wanted:
        return {}
    table = read_url_table(config["url_table"])
    files = {}
    for want in wanted:
        row = select_rows(table, want["pde"], [want["file"]]).iloc[0]
        files[str(Path(row["Path"]) / row["Filename"])] = (want["pde"], want["file"])
    return files


PDEBENCH_FILES = _pdebench_files()


def seeds_of(dataset):
    """The seeds a dataset runs: its own `seeds`, else the config's."""
    return dataset_config(dataset).get("seeds") or config["seeds"]


def cli_flags(settings, keys):
    """`--key value` for each of `keys` the settings set (the schema keeps them non-zero when set)."""
    return " ".join(
        f"--{key.replace('_', '-')} {settings[key]}"
        for key in keys
        if settings.get(key)
    )


def generate_options(wildcards):
    """The generator's optional flags the config sets (each PDE has its own default viscosity)."""
    return cli_flags(
        dataset_config(wildcards.dataset)["source"]["generate"],
        ("nu", "t_end", "frames"),
    )


def frames_option(wildcards):
    """The time window of a conversion: --frames and --skip-frames where the config sets them."""
    return cli_flags(
        dataset_config(wildcards.dataset)["convert"], ("frames", "skip_frames")
    )


def raw_file(wildcards):
    """The PDEBench-layout HDF5 file a dataset is converted from: generated or downloaded."""
    source = dataset_config(wildcards.dataset)["source"]
    if "generate" in source:
        return LAYOUT.raw(wildcards.dataset)
    download = source["download"]
    relpath = next(
        p for p, f in PDEBENCH_FILES.items() if f == (download["pde"], download["file"])
    )
    return f"{config['pdebench_root']}/{relpath}"


# --- training (workflow/rules/training.smk) ---------------------------------------------------

PLANS = {dataset: plan(config, dataset) for dataset in DATASETS}
RUNS = {
    (dataset, run.owner, run.stage): run
    for dataset, chains in PLANS.items()
    for chain in chains.values()
    for run in chain
}


def run_path(dataset, run, seed, name=MODEL):
    """One file of a planned run (stored under the arm that owns it)."""
    return LAYOUT.run_file(dataset, run.owner, seed, run.stage, name)


def run_benchmark(dataset, run, seed):
    return LAYOUT.train_benchmark(dataset, run.owner, seed, run.stage)


# What arms.json says of a baseline (the FNO and the training-free baselines): no latent space.
BASELINE_SUMMARY = {
    "tokens": None,
    "dim": None,
    "approximator": None,
    "kind": "baseline",
}


def arm_summary(arm):
    """What the figures need to know of an arm: its latent size and approximator, or that it is a baseline."""
    model = arm["model"]
    if model.get("family") == "fno":
        return dict(BASELINE_SUMMARY)
    size = size_of(model)
    return {
        "tokens": size.tokens,
        "dim": size.dim,
        "approximator": size.approximator,
        "kind": "upt",
    }


def final_model(dataset, arm, seed):
    """The checkpoint an arm's evaluation reads: the last run of its chain."""
    return run_path(dataset, PLANS[dataset][arm][-1], seed)


def _run(wildcards):
    return RUNS[(wildcards.dataset, wildcards.arm, wildcards.stage)]


def gpus(wildcards):
    return _run(wildcards).typed.stage.gpus


def launcher(wildcards, threads):
    """More than one GPU: one DDP process per GPU under torchrun (--standalone finds a free port, so
    several multi-GPU jobs can share a node). Snakemake sets OMP_NUM_THREADS to the job's threads,
    which torchrun would hand to every process; each gets its share instead."""
    n = gpus(wildcards)
    if n <= 1:
        return ""
    return f"OMP_NUM_THREADS={max(1, threads // n)} torchrun --standalone --nproc-per-node={n} --no-python"


def train_inputs(wildcards):
    run = _run(wildcards)
    inputs = {
        "data": LAYOUT.data(wildcards.dataset),
        "stats": LAYOUT.stats(wildcards.dataset),
    }
    if run.init is not None:
        inputs["init"] = run_path(wildcards.dataset, run.init, wildcards.seed)
    if run.encoder is not None:
        inputs["cache"] = run_path(
            wildcards.dataset, run.encoder, wildcards.seed, LATENTS
        )
    return inputs


# --- evaluation (workflow/rules/evaluation.smk) -----------------------------------------------


def evaluation_config(dataset):
    return dataset_config(dataset)["evaluation"]


def baselines_of(dataset):
    return evaluation_config(dataset)["baselines"]


def fine_data(wildcards):
    """The test data at the source's full resolution, for zero-shot super-resolution."""
    return (
        [LAYOUT.data_fine(wildcards.dataset)]
        if evaluation_config(wildcards.dataset)["superres"]
        else []
    )


def sample_steps_option(wildcards):
    """--sample-steps for an arm whose last run is shared with an arm that samples differently."""
    steps = sample_steps(config, wildcards.dataset, wildcards.arm)
    return "" if steps is None else f"--sample-steps {steps}"


def evaluated_arms(dataset):
    return list(PLANS[dataset]) + list(baselines_of(dataset))


def eval_seed(dataset, arm, seed):
    """The seed whose evaluation stands for `seed`: a baseline has no trained weights and no
    randomness, so it is evaluated once (the dataset's first seed) and listed under every seed.
    """
    return seeds_of(dataset)[0] if arm in baselines_of(dataset) else seed


def aggregate_inputs(wildcards):
    d = wildcards.dataset
    evals = [
        LAYOUT.eval_file(d, arm, eval_seed(d, arm, seed), name)
        for arm in evaluated_arms(d)
        for seed in seeds_of(d)
        for name in (EVAL_SUMMARY, EVAL_METRICS)
    ]
    runs = [
        path
        for arm in PLANS[d]
        for seed in seeds_of(d)
        for run in PLANS[d][arm]
        for path in (run_path(d, run, seed, RUN_METRICS), run_benchmark(d, run, seed))
    ]
    return sorted(set(evals + runs))


def manifest(dataset):
    """What `upt aggregate` collects (see upt/evaluation/aggregate.py)."""
    arms = {
        arm: arm_summary(resolve_arm(config, arm, dataset)) for arm in PLANS[dataset]
    }
    arms.update({name: dict(BASELINE_SUMMARY) for name in baselines_of(dataset)})
    seeds = seeds_of(dataset)
    return json.dumps(
        {
            "dataset": dataset,
            "reference": config["reference_arm"],
            "arms": arms,
            "evals": {
                arm: {
                    s: LAYOUT.eval_dir(dataset, arm, eval_seed(dataset, arm, s))
                    for s in seeds
                }
                for arm in evaluated_arms(dataset)
            },
            "runs": {
                arm: {
                    s: [
                        {
                            "stage": run.stage,
                            "dir": LAYOUT.run_dir(dataset, run.owner, s, run.stage),
                            "benchmark": run_benchmark(dataset, run, s),
                        }
                        for run in chain
                    ]
                    for s in seeds
                }
                for arm, chain in PLANS[dataset].items()
            },
            "claims": config.get("claims", []),
        }
    )
