# Data stage: a PDEBench-layout HDF5 file (generated or downloaded) -> canonical netCDF -> statistics.


rule generate:
    """Run an embedded solver; writes PDEBench's own HDF5 layout."""
    output:
        LAYOUT.raw("{dataset}"),
    log:
        LAYOUT.dataset_log("{dataset}", "generate"),
    benchmark:
        LAYOUT.dataset_benchmark("{dataset}", "generate")
    conda:
        "../../envs/upt.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        gen=lambda wc: dataset_config(wc.dataset)["source"]["generate"],
        options=generate_options,
        version=UPT_VERSION,
    shell:
        "upt generate {params.gen[pde]} {output} --samples {params.gen[samples]}"
        " --resolution {params.gen[resolution]} --seed {params.gen[seed]} {params.options}"
        " > {log} 2>&1"


rule download:
    """Fetch one PDEBench file, MD5-verified and resumable."""
    output:
        f"{config['pdebench_root']}/{{relpath}}",
    log:
        f"{config['pdebench_root']}/logs/{{relpath}}.log",
    benchmark:
        f"{config['pdebench_root']}/benchmarks/{{relpath}}.tsv"
    wildcard_constraints:
        relpath="|".join(re.escape(p) for p in PDEBENCH_FILES) or "__none__",
    retries: 3
    conda:
        "../../envs/upt.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=600,
    params:
        pde=lambda wc: PDEBENCH_FILES[wc.relpath][0],
        file=lambda wc: PDEBENCH_FILES[wc.relpath][1],
        table=f"--url-table {config['url_table']}" if config["url_table"] else "",
        root=lambda wc, output: output[0][: -len(wc.relpath) - 1],
    shell:
        "upt download --pde {params.pde} --root {params.root} --files {params.file} {params.table}"
        " > {log} 2>&1"


rule convert:
    """PDEBench HDF5 -> canonical netCDF (reduced resolution, train/val/test split recorded)."""
    input:
        raw_file,
    output:
        LAYOUT.data("{dataset}"),
    log:
        LAYOUT.dataset_log("{dataset}", "convert"),
    benchmark:
        LAYOUT.dataset_benchmark("{dataset}", "convert")
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
        "upt convert {input} {output} --reduce-x {params.convert[reduce_x]}"
        " --reduce-t {params.convert[reduce_t]} {params.frames} --val-fraction {params.splits[val_fraction]}"
        " --test-fraction {params.splits[test_fraction]} --split-seed {params.splits[seed]}"
        " > {log} 2>&1"


rule stats:
    """Per-field normalization statistics from the training split only."""
    input:
        LAYOUT.data("{dataset}"),
    output:
        LAYOUT.stats("{dataset}"),
    log:
        LAYOUT.dataset_log("{dataset}", "stats"),
    benchmark:
        LAYOUT.dataset_benchmark("{dataset}", "stats")
    conda:
        "../../envs/upt.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        version=UPT_VERSION,
    shell:
        "upt stats {input} {output} > {log} 2>&1"
