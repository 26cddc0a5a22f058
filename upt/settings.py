"""Typed settings of one training run, parsed and checked once (docs/architecture.md, "Settings").

``upt train <stage> --settings`` receives the JSON the workflow writes for one arm, stage and seed
(:func:`upt.arms.stage_settings`); :meth:`TrainSettings.parse` turns it into these dataclasses. The
workflow parses every planned run the same way when it reads the config, so a mistyped or unknown
key fails there, naming the arm and the key, before any job starts; and a hand-written
``--settings`` fails the same way instead of training with a default.

Torch-free: the workflow imports it at parse time.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field

from upt import vocabulary
from upt.errors import UptError

DEFAULT_SAMPLE_STEPS = 16  # the teacher's sampling steps when corrector.sample_steps is not set
NOISY_STAGES = ("operator", "joint")  # the stages that train an approximator, and take latent_noise
SCHEDULES = ("cosine", "step")  # learning-rate schedules of the training loop


@dataclass(frozen=True)
class _LoopFields:
    """The training loop's own settings, which a stage's settings carry too (all but the seed)."""

    epochs: int = 10  # the cap; with patience a run may stop earlier, on a validation plateau
    batch_size: int = 16  # global batch, split across DDP ranks
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: float = 0.05  # fraction of all steps spent warming up linearly
    min_lr: float = 0.02  # final learning rate as a fraction of lr (cosine floor)
    grad_clip: float = 1.0
    ema: float | None = None  # EMA decay of the weights used for validation and the result
    checkpoint_every: int = 200  # steps between resume checkpoints (plus every epoch end)
    workers: int = 0  # DataLoader worker processes
    max_steps_per_epoch: int | None = None  # cap on a large dataset's epoch
    # "cosine": warm-up then cosine decay to min_lr; "step": lr x lr_gamma every lr_step_epochs
    # epochs, PDEBench's StepLR (warmup and min_lr do not apply)
    schedule: str = "cosine"
    lr_step_epochs: int = 100
    lr_gamma: float = 0.5
    # early stopping (upt.training.plateau): stop after `patience` epochs in a row whose validation
    # loss is not below the last improving epoch's by more than `min_delta` of it (None: run to the cap)
    patience: int | None = None
    min_delta: float = 0.01
    plateau_decay: float | None = None  # on the first plateau scale the LR by this and go on instead


@dataclass(frozen=True)
class LoopSettings(_LoopFields):
    """What the training loop (:func:`upt.training.loop.fit`) needs."""

    seed: int = 0


@dataclass(frozen=True)
class CorrectorSettings:
    """The latent diffusion corrector of the diffusion stage (its denoiser and sampler)."""

    depth: int = 2
    heads: int = 2
    prediction: str = "v"  # "v" or "eps"
    sample_steps: int = DEFAULT_SAMPLE_STEPS


@dataclass(frozen=True)
class StageSettings(_LoopFields):
    """``deep_merge(arm.training, arm.stages[stage])``: the loop's settings and the stage's own."""

    gpus: int = 0  # the job's GPUs; more than 1 runs one DDP process per GPU
    preload_mb: int = 2048  # a split up to this size is held in memory
    horizon: int | None = 1  # steps of the rollout loss; None: the whole trajectory after the history
    queries: int | None = None  # output points supervised per batch (None: all)
    losses: dict[str, float] = field(default_factory=dict)  # loss term -> weight
    corrector: CorrectorSettings = field(default_factory=CorrectorSettings)
    student_steps: int = 1  # distill and consistency: the student's sampling steps
    target_ema: float = 0.95  # consistency: decay of the EMA target
    # operator and joint: std of the Gaussian noise on the approximator's input latents during
    # training, as a fraction of each latent channel's std (upt.training.latent_scale)
    latent_noise: float = 0.0

    def loop(self, seed: int) -> LoopSettings:
        return LoopSettings(seed=seed, **{f.name: getattr(self, f.name) for f in dataclasses.fields(_LoopFields)})


# The keys a model setting may have: a preset's size fields (upt.models.sizes.ModelSize), what
# build_model takes besides, and the FNO baseline's (``match`` is an arm's model, resolved from
# ``match_params_of`` by the planner).
def _model_keys() -> set[str]:
    from upt.models.sizes import ModelSize

    return {f.name for f in dataclasses.fields(ModelSize)} | {
        "preset", "family", "encoder", "approximator", "observed_fraction", "periodic", "modes", "layers", "hidden", "match",
        "variant", "match_part"}


@dataclass(frozen=True)
class TrainSettings:
    """Everything ``upt train`` is told about one run besides its files."""

    seed: int
    model: dict  # {"preset": name, ...overrides} or {"family": "fno", ...}
    stage: StageSettings
    history: int = 1  # past frames the encoder sees
    params: tuple[str, ...] = ()  # PDE parameters the approximator is conditioned on

    @classmethod
    def parse(cls, raw: dict, stage: str, where: str = "--settings") -> TrainSettings:
        """Check ``raw`` (plain JSON) for stage ``stage``; an error names ``where`` and the key."""
        kind = vocabulary.stage(stage)
        settings = _parse(cls, raw, "", where)
        unknown = sorted(set(settings.model) - _model_keys())
        if unknown:
            raise UptError(f"{where}: model.{unknown[0]}: unknown model option; "
                           f"known: {', '.join(sorted(_model_keys()))}")
        check_losses(kind.name, settings.stage.losses, f"{where}: stage.losses")
        if kind.teacher:
            check_student_steps(settings.stage.student_steps, None, f"{where}: stage.student_steps")
        if settings.stage.schedule not in SCHEDULES:
            raise UptError(f"{where}: stage.schedule must be one of {', '.join(SCHEDULES)}, "
                           f"got {settings.stage.schedule!r}")
        if settings.stage.lr_step_epochs < 1 or not 0 < settings.stage.lr_gamma <= 1:
            raise UptError(f"{where}: stage.lr_step_epochs must be >= 1 and stage.lr_gamma in (0, 1], got "
                           f"{settings.stage.lr_step_epochs} and {settings.stage.lr_gamma}")
        if settings.stage.horizon is None and kind.reads != "fields":
            raise UptError(f"{where}: stage.horizon null (the whole trajectory) is for stages that read "
                           f"fields; stage {stage} reads {kind.reads}")
        if settings.stage.latent_noise < 0 or (settings.stage.latent_noise and kind.name not in NOISY_STAGES):
            raise UptError(f"{where}: stage.latent_noise must be >= 0, and only stages {', '.join(NOISY_STAGES)} "
                           f"take it; got {settings.stage.latent_noise} for stage {kind.name}")
        if not 0 <= settings.stage.target_ema < 1:
            raise UptError(f"{where}: stage.target_ema must be in [0, 1), got {settings.stage.target_ema}")
        check_early_stopping(settings.stage, f"{where}: stage")
        if settings.stage.corrector.prediction not in ("v", "eps"):
            raise UptError(f"{where}: stage.corrector.prediction must be 'v' or 'eps', "
                           f"got {settings.stage.corrector.prediction!r}")
        return settings


def check_losses(stage: str, weights: dict, where: str) -> None:
    """Every weighted term is one of the stage's loss terms (vocabulary.STAGES[stage].losses)."""
    terms = vocabulary.stage(stage).losses
    unknown = sorted(set(weights) - set(terms))
    if unknown:
        raise UptError(f"{where}.{unknown[0]}: stage {stage} has no loss term {unknown[0]!r}; "
                       f"it has {', '.join(terms)}")


def check_early_stopping(loop: _LoopFields, where: str) -> None:
    """patience >= 1 (or None), 0 <= min_delta < 1, 0 < plateau_decay < 1 (or None)."""
    if loop.patience is not None and loop.patience < 1:
        raise UptError(f"{where}.patience must be >= 1 (or null: run to the epochs cap), got {loop.patience}")
    if not 0 <= loop.min_delta < 1:
        raise UptError(f"{where}.min_delta must be in [0, 1) (a relative improvement), got {loop.min_delta}")
    if loop.plateau_decay is not None and not 0 < loop.plateau_decay < 1:
        raise UptError(f"{where}.plateau_decay must be in (0, 1) (or null), got {loop.plateau_decay}")


def check_student_steps(steps: int, teacher_steps: int | None, where: str) -> None:
    """A student samples in a whole number of steps, at least 1 and at most its teacher's."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise UptError(f"{where} must be a whole number >= 1, got {steps!r}")
    if teacher_steps is not None and steps > teacher_steps:
        raise UptError(f"{where} = {steps} is more than the teacher's {teacher_steps} sampling steps "
                       f"(corrector.sample_steps)")


def _parse(cls, raw, path: str, where: str):
    """``cls`` (a dataclass) from a JSON mapping at ``path``: unknown keys, missing keys and wrong
    types fail naming ``where`` and the key."""
    if not isinstance(raw, dict):
        raise UptError(f"{where}: {path or 'settings'}: expected a mapping, got {raw!r:.80}")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise UptError(f"{where}: {_join(path, unknown[0])}: unknown key; expected one of {', '.join(names)}")
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in raw
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise UptError(f"{where}: {_join(path, missing[0])}: missing")
    hints = typing.get_type_hints(cls)
    return cls(**{name: _value(hints[name], value, _join(path, name), where) for name, value in raw.items()})


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _value(hint, value, key: str, where: str):
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (hint,) = [a for a in args if a is not type(None)]
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _parse(hint, value, key, where)
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif hint is str:
        ok = isinstance(value, str)
    elif hint is dict or origin is dict:
        ok = isinstance(value, dict)
        if ok and args:
            return {k: _value(args[1], v, f"{key}.{k}", where) for k, v in value.items()}
    elif origin is tuple:
        ok = isinstance(value, (list, tuple))
        if ok:
            return tuple(_value(args[0], v, f"{key}[{i}]", where) for i, v in enumerate(value))
    else:  # pragma: no cover - a field type this parser does not know is a programming error
        raise TypeError(f"{key}: unsupported settings type {hint}")
    if not ok:
        name = "a number" if hint is float else getattr(hint, "__name__", str(hint))
        raise UptError(f"{where}: {key}: expected {name}, got {value!r:.80}")
    return value
