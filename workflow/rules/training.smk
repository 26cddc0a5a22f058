# Training: every arm x seed as a chain of stage runs (upt.config.plan), shared where arms agree.
#
#   train(autoencoder) -> cache -> train(operator) [-> train(diffusion) -> train(distill | consistency)]
#   train(autoencoder) -> train(joint)
#
# A run lives in train/<owner arm>/seed<seed>/<stage>/; its state.pt survives a failed attempt, so
# a retry (or a Slurm re-queue) resumes it. A stage's `training.gpus` is its job's `gpu` resource;
# more than one launches it under torchrun.

import dataclasses
import json

from upt.config import plan, resolve_arm
from upt.models.sizes import PRESETS, ModelSize

SIZE_FIELDS = {f.name for f in dataclasses.fields(ModelSize)}

PLANS = {dataset: plan(config, dataset) for dataset in DATASETS}
RUNS = {(dataset, run.owner, run.stage): run
        for dataset, chains in PLANS.items() for chain in chains.values() for run in chain}


def run_path(dataset, run, seed, name="model.pt"):
    return f"{RESULTS}/{dataset}/train/{run.owner}/seed{seed}/{run.stage}/{name}"


def run_benchmark(dataset, run, seed):
    return f"{RESULTS}/benchmarks/{dataset}/train/{run.owner}/seed{seed}/{run.stage}.tsv"


def arm_summary(arm):
    """What the figures need to know of an arm: its latent size and approximator, or that it is a baseline."""
    model = arm["model"]
    if model.get("family") == "fno":
        return {"tokens": None, "dim": None, "approximator": None, "kind": "baseline"}
    size = dataclasses.replace(PRESETS[model["preset"]], **{k: v for k, v in model.items() if k in SIZE_FIELDS})
    return {"tokens": size.tokens, "dim": size.dim, "approximator": size.approximator, "kind": "upt"}


def final_model(dataset, arm, seed):
    """The checkpoint an arm's evaluation reads: the last run of its chain."""
    return run_path(dataset, PLANS[dataset][arm][-1], seed)


def _run(wildcards):
    return RUNS[(wildcards.dataset, wildcards.arm, wildcards.stage)]


def gpus(wildcards):
    return int(_run(wildcards).settings["stage"].get("gpus", 0))


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
    inputs = {"data": f"{RESULTS}/{wildcards.dataset}/data.nc", "stats": f"{RESULTS}/{wildcards.dataset}/stats.json"}
    if run.init is not None:
        inputs["init"] = run_path(wildcards.dataset, run.init, wildcards.seed)
    if run.encoder is not None:
        inputs["cache"] = run_path(wildcards.dataset, run.encoder, wildcards.seed, "latents.pt")
    return inputs


rule train:
    """One stage of one arm and seed: `upt train <stage>` (resumes from state.pt on retry)."""
    input:
        unpack(train_inputs),
    output:
        model=f"{RESULTS}/{{dataset}}/train/{{arm}}/seed{{seed}}/{{stage}}/model.pt",
        metrics=f"{RESULTS}/{{dataset}}/train/{{arm}}/seed{{seed}}/{{stage}}/metrics.csv",
    wildcard_constraints:
        stage="autoencoder|operator|joint|diffusion|distill|consistency|fno",
        seed=r"\d+",
    params:
        settings=lambda wc: json.dumps(_run(wc).settings_for(int(wc.seed))),
        init=lambda wc, input: f"--init {input.init}" if "init" in input.keys() else "",
        cache=lambda wc, input: f"--cache {input.cache}" if "cache" in input.keys() else "",
        launcher=launcher,
        version=UPT_VERSION,
    log:
        f"{RESULTS}/logs/{{dataset}}/train/{{arm}}/seed{{seed}}/{{stage}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{dataset}}/train/{{arm}}/seed{{seed}}/{{stage}}.tsv"
    threads: lambda wc: max(1, gpus(wc))
    retries: 2
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
        gpu=gpus,
    shell:
        "{params.launcher} upt train {wildcards.stage} --data {input.data} --stats {input.stats}"
        " --settings {params.settings:q} --out {output.model} {params.init} {params.cache} > {log} 2>&1"


rule cache:
    """Encode every trajectory with a trained encoder, frozen; records the encoder's hash."""
    input:
        model=f"{RESULTS}/{{dataset}}/train/{{arm}}/seed{{seed}}/{{stage}}/model.pt",
        data=f"{RESULTS}/{{dataset}}/data.nc",
        stats=f"{RESULTS}/{{dataset}}/stats.json",
    output:
        f"{RESULTS}/{{dataset}}/train/{{arm}}/seed{{seed}}/{{stage}}/latents.pt",
    wildcard_constraints:
        stage="autoencoder|joint",
        seed=r"\d+",
    params:
        params=lambda wc: " ".join(_run(wc).settings["params"]),
        version=UPT_VERSION,
    log:
        f"{RESULTS}/logs/{{dataset}}/train/{{arm}}/seed{{seed}}/{{stage}}-cache.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        "upt cache {input.model} --data {input.data} --stats {input.stats} --out {output}"
        " --params {params.params} > {log} 2>&1"
