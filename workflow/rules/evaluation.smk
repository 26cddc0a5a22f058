# Evaluation and reporting: every arm x seed and every baseline on the test split, then one
# dataset's tables, curves and figures.
#
#   train -> evaluate (latent, physical, one-step, super-resolution) -\
#            evaluate_baseline (persistence, coarse solver)            -> aggregate -> plot


rule convert_fine:
    """The same trajectories (and split) without spatial reduction: the super-resolution grid."""
    input:
        raw_file,
    output:
        f"{RESULTS}/{{dataset}}/data_fine.nc",
    log:
        f"{RESULTS}/logs/{{dataset}}/convert_fine.log",
    conda:
        "../../envs/upt.yaml"
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        convert=lambda wc: dataset_config(wc.dataset)["convert"],
        frames=frames_option,
        splits=lambda wc: dataset_config(wc.dataset)["splits"],
        version=UPT_VERSION,
    shell:
        "upt convert {input} {output} --reduce-x 1 --reduce-t {params.convert[reduce_t]} {params.frames}"
        " --val-fraction {params.splits[val_fraction]} --test-fraction {params.splits[test_fraction]}"
        " --split-seed {params.splits[seed]} > {log} 2>&1"


EVAL_OUTPUTS = {
    name: f"{RESULTS}/{{dataset}}/eval/{{arm}}/seed{{seed}}/{name}"
    for name in ("summary.csv", "metrics.nc", "predictions.nc")
}


rule evaluate:
    """Rollouts of one trained arm and seed on the test split, with timings."""
    input:
        checkpoint=lambda wc: final_model(wc.dataset, wc.arm, wc.seed),
        data=f"{RESULTS}/{{dataset}}/data.nc",
        stats=f"{RESULTS}/{{dataset}}/stats.json",
        fine=fine_data,
    output:
        **EVAL_OUTPUTS,
    log:
        f"{RESULTS}/logs/{{dataset}}/eval/{{arm}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{dataset}}/eval/{{arm}}/seed{{seed}}.tsv"
    wildcard_constraints:
        arm="|".join(re.escape(a) for d in DATASETS for a in PLANS[d]),
        seed=r"\d+",
    conda:
        "../../envs/upt.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        fine=lambda wc, input: f"--fine-data {input.fine}" if input.fine else "",
        out=lambda wc: eval_dir(wc.dataset, wc.arm, wc.seed),
        horizons=lambda wc: " ".join(
            map(str, evaluation_config(wc.dataset)["horizons"])
        ),
        version=UPT_VERSION,
    shell:
        "upt evaluate --checkpoint {input.checkpoint} --data {input.data} --stats {input.stats}"
        " {params.fine} --out {params.out} --dataset {wildcards.dataset} --arm {wildcards.arm}"
        " --seed {wildcards.seed} --horizons {params.horizons} > {log} 2>&1"


rule evaluate_baseline:
    """Persistence or the numerical solver on a coarser grid, through the same metrics."""
    input:
        data=f"{RESULTS}/{{dataset}}/data.nc",
        stats=f"{RESULTS}/{{dataset}}/stats.json",
    output:
        **EVAL_OUTPUTS,
    log:
        f"{RESULTS}/logs/{{dataset}}/eval/{{arm}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{dataset}}/eval/{{arm}}/seed{{seed}}.tsv"
    wildcard_constraints:
        arm="|".join(BASELINES),
        seed=r"\d+",
    conda:
        "../../envs/upt.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        out=lambda wc: eval_dir(wc.dataset, wc.arm, wc.seed),
        horizons=lambda wc: " ".join(
            map(str, evaluation_config(wc.dataset)["horizons"])
        ),
        solver=lambda wc: (
            f"--solver {evaluation_config(wc.dataset)['solver']}"
            if evaluation_config(wc.dataset)["solver"]
            else ""
        ),
        coarsen=lambda wc: evaluation_config(wc.dataset)["coarsen"],
        history=lambda wc: resolve_arm(config, config["reference_arm"], wc.dataset)[
            "history"
        ],
        version=UPT_VERSION,
    shell:
        "upt evaluate --baseline {wildcards.arm} --data {input.data} --stats {input.stats}"
        " --out {params.out} --dataset {wildcards.dataset} --seed {wildcards.seed}"
        " --history {params.history} {params.solver} --coarsen {params.coarsen}"
        " --horizons {params.horizons} > {log} 2>&1"


AGGREGATE_OUTPUTS = {
    name.split(".")[0]: f"{RESULTS}/{{dataset}}/{name}"
    for name in (
        "summary.csv",
        "summary_stats.csv",
        "claims.csv",
        "curves.nc",
        "training.csv",
        "arms.json",
    )
}


rule aggregate:
    """Tidy tables over arms x seeds x modes, summaries with 95% intervals, per-time curves."""
    input:
        aggregate_inputs,
    output:
        summary=report(
            AGGREGATE_OUTPUTS["summary"],
            caption="../report/summary.rst",
            category="Tables",
            subcategory="{dataset}",
        ),
        summary_stats=report(
            AGGREGATE_OUTPUTS["summary_stats"],
            caption="../report/summary_stats.rst",
            category="Tables",
            subcategory="{dataset}",
        ),
        claims=report(
            AGGREGATE_OUTPUTS["claims"],
            caption="../report/claims.rst",
            category="Tables",
            subcategory="{dataset}",
        ),
        curves=AGGREGATE_OUTPUTS["curves"],
        training=AGGREGATE_OUTPUTS["training"],
        arms=AGGREGATE_OUTPUTS["arms"],
    log:
        f"{RESULTS}/logs/{{dataset}}/aggregate.log",
    conda:
        "../../envs/upt.yaml"
    params:
        manifest=lambda wc: manifest(wc.dataset),
        out_dir=lambda wc: f"{RESULTS}/{wc.dataset}",
        version=UPT_VERSION,
    shell:
        "upt aggregate --manifest {params.manifest:q} --out-dir {params.out_dir} > {log} 2>&1"


rule plot:
    """Every figure of one dataset, drawn from its result tables alone."""
    input:
        **AGGREGATE_OUTPUTS,
        predictions=lambda wc: f"{eval_dir(wc.dataset, config['reference_arm'], seeds_of(wc.dataset)[0])}/predictions.nc",
    output:
        report(
            directory(f"{RESULTS}/figures/{{dataset}}"),
            patterns=["{name}.png"],
            caption="../report/figures.rst",
            category="Figures",
            subcategory="{dataset}",
        ),
    log:
        f"{RESULTS}/logs/{{dataset}}/plot.log",
    conda:
        "../../envs/upt.yaml"
    params:
        results=lambda wc, input: str(Path(input.summary).parent.parent),
        figures=lambda wc, output: str(Path(output[0]).parent),
        version=UPT_VERSION,
    shell:
        "upt plot --results {params.results} --datasets {wildcards.dataset} --out {params.figures} > {log} 2>&1"


# It declares no inputs on purpose: Snakemake would rebuild missing ones, and this only redraws.
rule paper_figures:
    """Redraw every figure from results/ alone: no model, no checkpoint, no training is needed."""
    log:
        f"{RESULTS}/logs/paper_figures.log",
    conda:
        "../../envs/upt.yaml"
    params:
        results=RESULTS,
        datasets=DATASETS,
        figures=f"{RESULTS}/figures",
    shell:
        "upt plot --results {params.results} --datasets {params.datasets} --out {params.figures} > {log} 2>&1"
