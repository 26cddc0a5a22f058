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
LATENT_STAGES = ("operator", "diffusion", "distill")


def deep_merge(base: dict, override: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def resolve_arm(config: dict, arm: str) -> dict:
    """base + the arm's overrides; ``model.match_params_of: <arm>`` becomes ``model.match``, that
    arm's model, so a baseline can be sized to the same parameter count."""
    if arm not in config["arms"]:
        raise KeyError(f"unknown arm {arm!r}; the config defines {', '.join(config['arms'])}")
    resolved = deep_merge(config["base"], config["arms"][arm])
    other = resolved["model"].pop("match_params_of", None)
    if other is not None:
        resolved["model"]["match"] = resolve_arm(config, other)["model"]
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
        arm = resolve_arm(config, arm_name)
        chain, signature, previous, encoder = [], [], None, None
        for stage in arm["pipeline"]:
            settings = stage_settings(arm, stage, seed=0)
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
