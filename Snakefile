# upt: the benchmarking pipeline, read top to bottom as its DAG (DESIGN.md §3).
#
#   generate | download  ->  convert  ->  stats  ->  (train, cache, evaluate, aggregate, plot)
#
# Each rule calls one `upt` subcommand; run any step by hand with the same command line.

configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"


rule all_ablations:
    """Every dataset of the config through the whole pipeline."""
    input:
        expand(f"{RESULTS}/{{dataset}}/stats.json", dataset=DATASETS),


rule all_data:
    """Only the data stage: converted datasets and their normalization statistics."""
    input:
        expand(f"{RESULTS}/{{dataset}}/stats.json", dataset=DATASETS),
