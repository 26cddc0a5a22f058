# Training: every arm x seed as a chain of stage runs (upt.arms.plan), shared where arms agree.
#
#   train(autoencoder) -> cache -> train(operator) [-> train(diffusion) -> train(distill | consistency)]
#   train(autoencoder) -> train(joint)
#
# A run lives in train/<owner arm>/seed<seed>/<stage>/; its state.pt survives a failed attempt, so
# a retry (or a Slurm re-queue) resumes it. A stage's `training.gpus` is its job's `gpu` resource;
# more than one launches it under torchrun.


rule train:
    """One stage of one arm and seed: `upt train <stage>` (resumes from state.pt on retry)."""
    input:
        unpack(train_inputs),
    output:
        model=LAYOUT.run_file("{dataset}", "{arm}", "{seed}", "{stage}", MODEL),
        metrics=LAYOUT.run_file("{dataset}", "{arm}", "{seed}", "{stage}", RUN_METRICS),
    log:
        LAYOUT.train_log("{dataset}", "{arm}", "{seed}", "{stage}"),
    benchmark:
        LAYOUT.train_benchmark("{dataset}", "{arm}", "{seed}", "{stage}")
    wildcard_constraints:
        stage="|".join(vocabulary.STAGES),
        seed=r"\d+",
    retries: 2
    conda:
        "../../envs/upt.yaml"
    threads: lambda wc: max(1, gpus(wc))
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
        gpu=gpus,
    params:
        settings=lambda wc: json.dumps(_run(wc).settings_for(int(wc.seed))),
        init=lambda wc, input: f"--init {input.init}" if "init" in input.keys() else "",
        cache=lambda wc, input: (
            f"--cache {input.cache}" if "cache" in input.keys() else ""
        ),
        launcher=launcher,
        version=UPT_VERSION,
    shell:
        "{params.launcher} upt train {wildcards.stage} --data {input.data} --stats {input.stats}"
        " --settings {params.settings:q} --out {output.model} {params.init} {params.cache} > {log} 2>&1"


rule cache:
    """Encode every trajectory with a trained encoder, frozen; records the encoder's hash."""
    input:
        model=LAYOUT.run_file("{dataset}", "{arm}", "{seed}", "{stage}", MODEL),
        data=LAYOUT.data("{dataset}"),
        stats=LAYOUT.stats("{dataset}"),
    output:
        LAYOUT.run_file("{dataset}", "{arm}", "{seed}", "{stage}", LATENTS),
    log:
        LAYOUT.cache_log("{dataset}", "{arm}", "{seed}", "{stage}"),
    benchmark:
        LAYOUT.cache_benchmark("{dataset}", "{arm}", "{seed}", "{stage}")
    wildcard_constraints:
        stage="|".join(vocabulary.ENCODER_STAGES),
        seed=r"\d+",
    conda:
        "../../envs/upt.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        params=lambda wc: " ".join(_run(wc).typed.params),
        version=UPT_VERSION,
    shell:
        "upt cache {input.model} --data {input.data} --stats {input.stats} --out {output}"
        " --params {params.params} > {log} 2>&1"
