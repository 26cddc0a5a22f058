"""Ablation arms: small named overrides of one base, resolved into the stage runs they need.

An arm is ``deep_merge(config["base"], config["arms"][name])``. Its ``pipeline`` lists the training
stages it runs in order; each stage's settings are ``deep_merge(training, stages[stage])``.

Two arms whose pipelines agree up to some stage (same settings, same model as far as that stage can
see) share that stage's run: the run lives under the first such arm in config order, e.g. an arm
that only adds a diffusion corrector reuses the reference arm's autoencoder and operator, and an arm
that only changes the approximator reuses its autoencoder. So adding an arm never renames another's
outputs, and nothing is trained twice.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass

# Model fields that only shape the approximator: the autoencoder stage does not depend on them.
APPROXIMATOR_ONLY = ("depth", "approx_hidden", "approximator", "levels", "drop_path")
# Stages that train the encoder; a latent stage reads the cache of the latest of them.
ENCODER_STAGES = ("autoencoder", "joint")
# Stages that distill the diffusion stage's corrector (the teacher) into a few-step student.
STUDENT_STAGES = ("distill", "consistency")
LATENT_STAGES = ("operator", "diffusion") + STUDENT_STAGES
DEFAULT_SAMPLE_STEPS = 16  # the teacher's sampling steps when corrector.sample_steps is not set


def deep_merge(base: dict, override: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def resolve_arm(config: dict, arm: str, dataset: str | None = None) -> dict:
    """base + the dataset's own ``base`` overrides (e.g. a 2D grid's patch size) + the arm's
    overrides; ``model.match_params_of: <arm>`` becomes ``model.match``, that arm's model on the
    same dataset, so a baseline can be sized to the same parameter count."""
    if arm not in config["arms"]:
        raise KeyError(f"unknown arm {arm!r}; the config defines {', '.join(config['arms'])}")
    base = config["base"]
    if dataset is not None:
        base = deep_merge(base, config["datasets"][dataset].get("base", {}))
    resolved = deep_merge(base, config["arms"][arm])
    other = resolved["model"].pop("match_params_of", None)
    if other is not None:
        resolved["model"]["match"] = resolve_arm(config, other, dataset)["model"]
    return resolved


def stage_settings(arm: dict, stage: str, seed: int) -> dict:
    """What ``upt train <stage> --settings`` receives for this arm and seed."""
    return {"seed": seed, "model": arm["model"], "history": arm["history"], "params": arm["params"],
            "stage": deep_merge(arm["training"], arm["stages"][stage])}


@dataclass(frozen=True)
class StageRun:
    """One training run: ``stage`` of the arm ``owner`` (the first arm that needs it)."""

    stage: str
    owner: str
    settings: dict  # without the seed (filled in per seed)
    init: StageRun | None  # the run this one continues from
    encoder: StageRun | None  # the run whose encoder made the latent cache (latent stages)

    def settings_for(self, seed: int) -> dict:
        return {**self.settings, "seed": seed}


def arms_of(config: dict, dataset: str) -> list[str]:
    """The arms a dataset runs: its own ``arms`` list, else every arm of the config."""
    return list(config["datasets"][dataset].get("arms") or config["arms"])


def plan(config: dict, dataset: str) -> dict[str, list[StageRun]]:
    """arm -> the chain of stage runs that produces its final model, shared runs deduplicated."""
    owners: dict[str, StageRun] = {}
    chains = {}
    for arm_name in arms_of(config, dataset):
        arm = resolve_arm(config, arm_name, dataset)
        chain, signature, previous, encoder = [], [], None, None
        for stage in arm["pipeline"]:
            settings = stage_settings(arm, stage, seed=0)
            if stage in STUDENT_STAGES:
                _check_student_steps(arm_name, arm, stage, settings["stage"])
            del settings["seed"]
            seen = dict(settings)
            if stage == "autoencoder":
                seen["model"] = {k: v for k, v in arm["model"].items() if k not in APPROXIMATOR_ONLY}
            signature.append([stage, seen])
            key = json.dumps(signature, sort_keys=True)
            if key not in owners:
                if stage in LATENT_STAGES and encoder is None:
                    raise ValueError(f"arm {arm_name}: stage {stage} needs an encoder stage "
                                     f"({' or '.join(ENCODER_STAGES)}) before it in its pipeline")
                owners[key] = StageRun(stage, arm_name, settings, previous, encoder if stage in LATENT_STAGES else None)
            previous = owners[key]
            if stage in ENCODER_STAGES:
                encoder = previous
            chain.append(previous)
        chains[arm_name] = chain
    return chains


def _check_student_steps(arm_name: str, arm: dict, stage: str, settings: dict) -> None:
    """A student stage's ``student_steps`` is a whole number in [1, the teacher's sample_steps]:
    checked here so that a bad value fails before any training, not after the teacher's."""
    steps = settings.get("student_steps", 1)
    diffusion = deep_merge(arm["training"], arm["stages"].get("diffusion", {}))
    teacher = diffusion.get("corrector", {}).get("sample_steps", DEFAULT_SAMPLE_STEPS)
    key = f"arm {arm_name}: stages.{stage}.student_steps"
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"{key} must be a whole number >= 1, got {steps!r}")
    if steps > teacher:
        raise ValueError(f"{key} = {steps} is more than the teacher's {teacher} steps "
                         f"(stages.diffusion.corrector.sample_steps)")


def grid_of(dataset: dict) -> tuple[int, ...] | None:
    """The training grid of a generated dataset, known before any data exist (None if downloaded)."""
    generate = dataset["source"].get("generate")
    if generate is None:
        return None
    reduce_x = int(dataset.get("convert", {}).get("reduce_x", 1))
    dims = 1 if generate["pde"] == "burgers1d" else 2
    if generate["resolution"] % reduce_x:
        raise ValueError(f"resolution {generate['resolution']} is not divisible by convert.reduce_x {reduce_x}")
    return (int(generate["resolution"]) // reduce_x,) * dims


def check_config(config: dict) -> None:
    """What the JSON schema cannot see, checked when the workflow is parsed: every arm named
    anywhere exists, and every arm's model fits the grid of each generated dataset it runs on.
    Raises ValueError naming the offending key."""
    from upt.models.sizes import size_errors, size_of

    arms = set(config["arms"])

    def known(name: str, key: str) -> None:
        if name not in arms:
            raise ValueError(f"{key}: unknown arm {name!r}; the config defines {', '.join(config['arms'])}")

    if "reference_arm" in config:
        known(config["reference_arm"], "reference_arm")
    for i, claim in enumerate(config.get("claims", [])):
        known(claim["arm"], f"claims[{i}].arm")
        known(claim["control"], f"claims[{i}].control")
    for name in arms:
        model = config["arms"][name].get("model", {})
        if "match_params_of" in model:
            known(model["match_params_of"], f"arms.{name}.model.match_params_of")
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
