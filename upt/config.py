"""Parse-time checks of a workflow config beyond its JSON schema (docs/architecture.md).

The schema (workflow/schemas/config.schema.yaml) checks each value's type and range; this module
checks what needs the whole config: every arm named anywhere exists, every arm's model fits the
grid of each generated dataset it runs on, and every planned run's settings parse
(:func:`upt.arms.plan`). Errors name the offending key.
"""

from __future__ import annotations

from upt import vocabulary
from upt.arms import arms_of, plan, resolve_arm


def grid_of(dataset: dict) -> tuple[int, ...] | None:
    """The training grid of a generated dataset, known before any data exist (None if downloaded)."""
    generate = dataset["source"].get("generate")
    if generate is None:
        return None
    reduce_x = int(dataset.get("convert", {}).get("reduce_x", 1))
    dims = vocabulary.GENERATORS[generate["pde"]].dims
    if generate["resolution"] % reduce_x:
        raise ValueError(f"resolution {generate['resolution']} is not divisible by convert.reduce_x {reduce_x}")
    return (int(generate["resolution"]) // reduce_x,) * dims


def check_config(config: dict) -> None:
    """What the JSON schema cannot see, checked when the workflow is parsed: every arm named
    anywhere exists (and no arm takes a baseline's name), every arm's model fits the grid of each
    generated dataset it runs on, and every stage run of every arm parses as typed settings.
    Raises ValueError naming the offending key."""
    from upt.models.sizes import size_errors, size_of

    arms = set(config["arms"])
    reserved = sorted(arms & set(vocabulary.BASELINES))
    if reserved:
        raise ValueError(f"arms.{reserved[0]}: the name is a baseline's ({', '.join(vocabulary.BASELINES)})")

    def known(name: str, key: str, names=arms, kind: str = "arm") -> None:
        if name not in names:
            raise ValueError(f"{key}: unknown {kind} {name!r}; {'the config defines' if kind == 'arm' else 'known'}: "
                             f"{', '.join(names)}")

    # the vocabulary's names (upt.vocabulary), wherever the config uses one
    arm_like = {"base": config["base"], **{f"arms.{a}": config["arms"][a] for a in config["arms"]},
                **{f"datasets.{d}.base": ds["base"] for d, ds in config["datasets"].items() if "base" in ds}}
    for where, arm in arm_like.items():
        for i, stage in enumerate(arm.get("pipeline", [])):
            known(stage, f"{where}.pipeline[{i}]", vocabulary.STAGES, "stage")
        for stage in arm.get("stages", {}):
            known(stage, f"{where}.stages.{stage}", vocabulary.STAGES, "stage")
        if "preset" in arm.get("model", {}):
            known(arm["model"]["preset"], f"{where}.model.preset", vocabulary.PRESETS, "model preset")
    for d, ds in config["datasets"].items():
        if "generate" in ds["source"]:
            known(ds["source"]["generate"]["pde"], f"datasets.{d}.source.generate.pde", vocabulary.GENERATORS,
                  "generator")
        evaluation = ds.get("evaluation", {})
        for i, baseline in enumerate(evaluation.get("baselines", [])):
            known(baseline, f"datasets.{d}.evaluation.baselines[{i}]", vocabulary.BASELINES, "baseline")
        if evaluation.get("solver") is not None:
            known(evaluation["solver"], f"datasets.{d}.evaluation.solver", vocabulary.GENERATORS, "solver")

    if "reference_arm" in config:
        known(config["reference_arm"], "reference_arm")
    for i, claim in enumerate(config.get("claims", [])):
        known(claim["arm"], f"claims[{i}].arm")
        known(claim["control"], f"claims[{i}].control")
        for arm in claim.get("sweep") or {}:
            known(arm, f"claims[{i}].sweep")
    for name in arms:
        model = config["arms"][name].get("model", {})
        if "match_params_of" in model:
            known(model["match_params_of"], f"arms.{name}.model.match_params_of")
        elif "match_part" in model:
            raise ValueError(f"arms.{name}.model.match_part: only with match_params_of (the arm to match)")
    for dataset_name, dataset in config["datasets"].items():
        generate = dataset["source"].get("generate") or {}
        if generate.get("pde") == "ns2d" and generate["resolution"] % 2:
            raise ValueError(f"datasets.{dataset_name}.source.generate.resolution: {generate['resolution']} is odd; "
                             f"the spectral Navier-Stokes solver needs an even grid")
        for arm in dataset.get("arms") or []:
            known(arm, f"datasets.{dataset_name}.arms")
        if "reference_arm" in config and config["reference_arm"] not in arms_of(config, dataset_name):
            raise ValueError(f"datasets.{dataset_name}.arms: the reference arm {config['reference_arm']!r} "
                             f"must be among them (tables and figures compare against it)")
        plan(config, dataset_name)  # every stage run's settings parse (upt.settings)
        grid = grid_of(dataset)
        if grid is None:
            continue
        for arm_name in arms_of(config, dataset_name):
            model = resolve_arm(config, arm_name, dataset_name)["model"]
            if model.get("family", "upt") != "upt":
                continue
            size = size_of(model)
            if "observed_fraction" in model and model.get("encoder", "grid") != "mesh":
                raise ValueError(f"arms.{arm_name}.model.observed_fraction: a point-cloud view needs encoder: mesh")
            for error in size_errors(size, grid, model.get("encoder", "grid")):
                raise ValueError(f"arms.{arm_name}.model on dataset {dataset_name}: {error}")
