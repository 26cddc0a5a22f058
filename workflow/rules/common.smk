# Config validation and the path helpers every rule file shares. Wiring only: no science here.

import re
from pathlib import Path

from snakemake.utils import validate

import upt
from upt.config import check_config
from upt.data.download import read_url_table, select_rows


validate(config, "../schemas/config.schema.yaml")
try:
    check_config(config)
except ValueError as err:
    raise WorkflowError(f"invalid config: {err}") from None

RESULTS = config["results"]
DATASETS = list(config["datasets"])
# Recorded as a parameter so that results say which code produced them (and rerun when it changes).
UPT_VERSION = upt.__version__


wildcard_constraints:
    dataset="|".join(re.escape(d) for d in DATASETS),


def dataset_config(dataset):
    return config["datasets"][dataset]


def _pdebench_files():
    """Relative path under pdebench_root -> (pde, filename) for every downloaded dataset."""
    wanted = [d["source"]["download"] for d in config["datasets"].values() if "download" in d["source"]]
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


def generate_options(wildcards):
    """The generator's optional flags the config sets (each PDE has its own default viscosity)."""
    gen = dataset_config(wildcards.dataset)["source"]["generate"]
    flags = {"nu": "--nu", "t_end": "--t-end", "frames": "--frames"}
    return " ".join(f"{flag} {gen[key]}" for key, flag in flags.items() if gen.get(key) is not None)


def frames_option(wildcards):
    """The time window of a conversion: --frames and --skip-frames where the config sets them."""
    convert = dataset_config(wildcards.dataset)["convert"]
    flags = {"frames": "--frames", "skip_frames": "--skip-frames"}
    return " ".join(f"{flag} {convert[key]}" for key, flag in flags.items() if convert.get(key))


def raw_file(wildcards):
    """The PDEBench-layout HDF5 file a dataset is converted from: generated or downloaded."""
    source = dataset_config(wildcards.dataset)["source"]
    if "generate" in source:
        return f"{RESULTS}/{wildcards.dataset}/raw.h5"
    download = source["download"]
    relpath = next(p for p, f in PDEBENCH_FILES.items() if f == (download["pde"], download["file"]))
    return f"{config['pdebench_root']}/{relpath}"

