# upt: the benchmarking pipeline, read top to bottom as its DAG (docs/architecture.md).
#
#   generate | download  ->  convert  ->  stats  ->  train (per arm, seed and stage) <-> cache
#     ->  evaluate (per arm and seed; baselines too)  ->  aggregate  ->  plot
#
# Each rule calls one `upt` subcommand; run any step by hand with the same command line.

# --configfile replaces the embedded default instead of being merged into it (Snakemake's own
# behaviour), so config/pdebench.yaml runs PDEBench's datasets and arms only.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"


wildcard_constraints:
    dataset="|".join(re.escape(d) for d in DATASETS),


include: "workflow/rules/data.smk"
include: "workflow/rules/training.smk"
include: "workflow/rules/evaluation.smk"


rule all_ablations:
    """Every dataset of the config through the whole pipeline: tables, curves and figures."""
    input:
        expand(LAYOUT.table("{dataset}", SUMMARY_STATS), dataset=DATASETS),
        expand(LAYOUT.figures("{dataset}"), dataset=DATASETS),


rule all_models:
    """Train every arm x seed of every dataset (no evaluation)."""
    input:
        [
            final_model(dataset, arm, seed)
            for dataset in DATASETS
            for arm in PLANS[dataset]
            for seed in seeds_of(dataset)
        ],


rule all_data:
    """Only the data stage: converted datasets and their normalization statistics."""
    input:
        expand(LAYOUT.stats("{dataset}"), dataset=DATASETS),
