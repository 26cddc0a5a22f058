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
        LAYOUT.data_fine("{dataset}"),
    log:
        LAYOUT.dataset_log("{dataset}", "convert_fine"),
    benchmark:
        LAYOUT.dataset_benchmark("{dataset}", "convert_fine")
    conda:
        "../../envs/upt.yaml"
    threads: 1
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


# Named by stem: output.summary, output.metrics, output.predictions
EVAL_OUTPUTS = {
    Path(name).stem: LAYOUT.eval_file("{dataset}", "{arm}", "{seed}", name)
    for name in EVAL_FILES
}


rule evaluate:
    """Rollouts of one trained arm and seed on the test split, with timings."""
    input:
        checkpoint=lambda wc: final_model(wc.dataset, wc.arm, wc.seed),
        data=LAYOUT.data("{dataset}"),
        stats=LAYOUT.stats("{dataset}"),
        fine=fine_data,
    output:
        **EVAL_OUTPUTS,
    log:
        LAYOUT.eval_log("{dataset}", "{arm}", "{seed}"),
    benchmark:
        LAYOUT.eval_benchmark("{dataset}", "{arm}", "{seed}")
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
        out=lambda wc, output: Path(output.summary).parent,
        horizons=lambda wc: " ".join(
            map(str, evaluation_config(wc.dataset)["horizons"])
        ),
        sample_steps=sample_steps_option,
        version=UPT_VERSION,
    shell:
        "upt evaluate --checkpoint {input.checkpoint} --data {input.data} --stats {input.stats}"
        " {params.fine} --out {params.out} --dataset {wildcards.dataset} --arm {wildcards.arm}"
        " --seed {wildcards.seed} --horizons {params.horizons} {params.sample_steps} > {log} 2>&1"


rule evaluate_baseline:
    """Persistence or the numerical solver on a coarser grid, through the same metrics."""
    input:
        data=LAYOUT.data("{dataset}"),
        stats=LAYOUT.stats("{dataset}"),
    output:
        **EVAL_OUTPUTS,
    log:
        LAYOUT.eval_log("{dataset}", "{arm}", "{seed}"),
    benchmark:
        LAYOUT.eval_benchmark("{dataset}", "{arm}", "{seed}")
    wildcard_constraints:
        arm="|".join(vocabulary.BASELINES),
        seed=r"\d+",
    conda:
        "../../envs/upt.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        out=lambda wc, output: Path(output.summary).parent,
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
    name.split(".")[0]: LAYOUT.table("{dataset}", name) for name in TABLES
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
        LAYOUT.dataset_log("{dataset}", "aggregate"),
    benchmark:
        LAYOUT.dataset_benchmark("{dataset}", "aggregate")
    conda:
        "../../envs/upt.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        manifest=lambda wc: manifest(wc.dataset),
        out_dir=lambda wc, output: Path(output.summary).parent,
        version=UPT_VERSION,
    shell:
        "upt aggregate --manifest {params.manifest:q} --out-dir {params.out_dir} > {log} 2>&1"


rule plot:
    """Every figure of one dataset, drawn from its result tables alone."""
    input:
        **AGGREGATE_OUTPUTS,
        predictions=lambda wc: LAYOUT.eval_file(
            wc.dataset, config["reference_arm"], seeds_of(wc.dataset)[0], PREDICTIONS
        ),
    output:
        report(
            directory(LAYOUT.figures("{dataset}")),
            patterns=["{name}.png"],
            caption="../report/figures.rst",
            category="Figures",
            subcategory="{dataset}",
        ),
    log:
        LAYOUT.dataset_log("{dataset}", "plot"),
    benchmark:
        LAYOUT.dataset_benchmark("{dataset}", "plot")
    conda:
        "../../envs/upt.yaml"
    # The results root and the figures root, inferred from the files (`snakemake --lint` asks so):
    # <root>/<dataset>/summary.csv and <root>/figures/<dataset>.
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
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
        LAYOUT.log("paper_figures"),
    benchmark:
        LAYOUT.benchmark("paper_figures")
    conda:
        "../../envs/upt.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        results=LAYOUT.root,
        datasets=DATASETS,
        figures=LAYOUT.figures(),
    shell:
        "upt plot --results {params.results} --datasets {params.datasets} --out {params.figures} > {log} 2>&1"
