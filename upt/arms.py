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
from dataclasses import dataclass, field

from upt import vocabulary
from upt.settings import TrainSettings, check_student_steps

# Model fields that only shape the approximator: a stage that does not train or hold the
# approximator (the autoencoder) does not depend on them.
APPROXIMATOR_ONLY = ("depth", "approx_hidden", "approximator", "levels", "drop_path")


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
    """What ``upt train <stage> --settings`` receives for this arm and seed (plain JSON; parsed
    into :class:`upt.settings.TrainSettings`)."""
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
    # the settings parsed when the run was planned (seed 0): what the workflow reads of them, e.g.
    # the GPUs its job asks for
    typed: TrainSettings = field(repr=False, compare=False)

    def settings_for(self, seed: int) -> dict:
        return {**self.settings, "seed": seed}


def sample_steps(config: dict, dataset: str, arm: str) -> int | None:
    """The sampling steps an arm's evaluation overrides its checkpoint's with: its last stage's
    ``student_steps`` where that stage's training ignores them (and so its run may be shared with an
    arm that samples in another number of steps), else None."""
    resolved = resolve_arm(config, arm, dataset)
    last = resolved["pipeline"][-1]
    if "student_steps" not in vocabulary.stage(last).sampling:
        return None
    return TrainSettings.parse(stage_settings(resolved, last, seed=0), last).stage.student_steps


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
            kind = vocabulary.stage(stage)
            settings = stage_settings(arm, stage, seed=0)
            parsed = TrainSettings.parse(settings, stage, where=f"arms.{arm_name} (stage {stage})")
            if kind.teacher:
                teacher = TrainSettings.parse(stage_settings(arm, "diffusion", seed=0), "diffusion")
                check_student_steps(parsed.stage.student_steps, teacher.stage.corrector.sample_steps,
                                    f"arms.{arm_name}: stages.{stage}.student_steps")
            del settings["seed"]
            seen = dict(settings)
            # e.g. a consistency student's steps: its training never reads them (upt.vocabulary)
            seen["stage"] = {k: v for k, v in settings["stage"].items() if k not in kind.sampling}
            if "approximator" not in kind.holds:
                seen["model"] = {k: v for k, v in arm["model"].items() if k not in APPROXIMATOR_ONLY}
            signature.append([stage, seen])
            key = json.dumps(signature, sort_keys=True)
            if key not in owners:
                latent = kind.reads == "latents"
                if latent and encoder is None:
                    raise ValueError(f"arm {arm_name}: stage {stage} needs an encoder stage "
                                     f"({' or '.join(vocabulary.ENCODER_STAGES)}) before it in its pipeline")
                owners[key] = StageRun(stage, arm_name, settings, previous, encoder if latent else None, parsed)
            previous = owners[key]
            if kind.encodes:
                encoder = previous
            chain.append(previous)
        chains[arm_name] = chain
    return chains
