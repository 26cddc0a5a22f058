"""The project's vocabulary: every training stage, baseline, rollout mode, model preset and data
generator by name, with what the rest of the code needs to know about it (docs/architecture.md,
"Vocabulary").

Everything that lists these names reads them from here: the CLI's choices, the workflow's wildcard
constraints, the arm planner (:mod:`upt.arms`), the settings parser (:mod:`upt.settings`), the
training run (:mod:`upt.training.run`, which looks a stage up instead of branching on its name)
and the evaluation of baselines. The config schema keeps its own enums (JSON Schema cannot import
Python); ``tests/test_vocabulary.py`` checks that they agree with this module.

Adding a stage or a baseline is one entry here plus its implementation, the object named by
``implementation`` ("module:attribute", imported only when it is used, so this module stays
torch-free for the workflow's parse).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from upt.models.sizes import PRESETS as _SIZES

# The parts of a surrogate a stage can train or carry over from its init.
MODULES = ("encoder", "approximator", "decoder", "corrector", "fno")


@dataclass(frozen=True)
class Stage:
    """One kind of training run (``upt train <name>``)."""

    name: str
    reads: str  # "fields": the dataset's frames; "latents": the latent cache of an encoder stage
    trains: tuple[str, ...]  # the modules its optimizer updates (all others are frozen)
    losses: tuple[str, ...]  # its loss terms: the keys of ``stages.<name>.losses``
    init: str  # "none", "optional" or "required": whether it continues from a previous run
    keeps: tuple[str, ...]  # the modules it takes from its init (those the init's run holds trained)
    implementation: str  # the training module (a ``upt.training.stages.Stage`` subclass)
    teacher: bool = False  # its init must hold a diffusion corrector, which it distills
    # Settings of ``stages.<name>`` that shape only how its result samples, not its training: arms
    # that differ only in them share one trained run, each evaluated with its own value.
    sampling: tuple[str, ...] = ()
    summary: str = ""

    @property
    def encodes(self) -> bool:
        """Trains the encoder: a later latent stage reads the cache of its encoder."""
        return "encoder" in self.trains

    @property
    def holds(self) -> tuple[str, ...]:
        """The modules its result holds trained weights for (trained here or taken from its init)."""
        return tuple(m for m in MODULES if m in self.trains or m in self.keeps)

    def load(self):
        return _load(self.implementation)


_STAGES = "upt.training.stages"
STAGES = {stage.name: stage for stage in (
    Stage("autoencoder", "fields", ("encoder", "decoder"), ("reconstruction", "latent_norm", "divergence"),
          init="none", keeps=(), implementation=f"{_STAGES}:AutoencoderStage",
          summary="E and D: reconstruction at query points"),
    Stage("operator", "latents", ("approximator",), ("next_step", "rollout", "latent_drift"),
          init="required", keeps=("encoder", "decoder"), implementation=f"{_STAGES}:OperatorStage",
          summary="A on the cached latents of a frozen E"),
    Stage("joint", "fields", ("encoder", "approximator", "decoder"),
          ("next_step", "rollout", "inverse_encoding", "inverse_decoding", "latent_norm", "latent_anchor", "spectral",
           "mean_consistency", "divergence"),
          init="optional", keeps=("encoder", "approximator", "decoder"), implementation=f"{_STAGES}:JointStage",
          summary="E, A and D end to end on the physical loss"),
    Stage("diffusion", "latents", ("corrector",), ("denoising",), init="required",
          keeps=("encoder", "approximator", "decoder"), implementation=f"{_STAGES}:DiffusionStage",
          summary="a latent diffusion corrector of A's residual"),
    Stage("distill", "latents", ("corrector",), ("distillation",), init="required",
          keeps=("encoder", "approximator", "decoder"), implementation=f"{_STAGES}:DistillStage",
          teacher=True, summary="a few-step student of the corrector, by regression on its samples"),
    Stage("consistency", "latents", ("corrector",), ("consistency",), init="required",
          keeps=("encoder", "approximator", "decoder"), implementation=f"{_STAGES}:ConsistencyStage",
          teacher=True, sampling=("student_steps",), summary="a few-step student of the corrector, by consistency distillation"),
    Stage("fno", "fields", ("fno",), ("next_step", "rollout"), init="none", keeps=(),
          implementation=f"{_STAGES}:FNOStage", summary="the FNO baseline on the whole grid"),
)}
ENCODER_STAGES = tuple(name for name, s in STAGES.items() if s.encodes)
LATENT_STAGES = tuple(name for name, s in STAGES.items() if s.reads == "latents")
STUDENT_STAGES = tuple(name for name, s in STAGES.items() if s.teacher)
LOSS_TERMS = tuple(dict.fromkeys(term for s in STAGES.values() for term in s.losses))


@dataclass(frozen=True)
class Baseline:
    """A prediction that needs no training, scored by the same code as the surrogates (mode physical).

    ``implementation(test, solver=..., coarsen=...)`` returns the normalized prediction
    [S, steps, N, C] of a ``upt.evaluation.scoring.TestSet``."""

    name: str
    implementation: str
    solver: bool = False  # runs the dataset's numerical solver (and times it at full resolution too)
    summary: str = ""

    def load(self):
        return _load(self.implementation)


_BASELINES = "upt.evaluation.baselines"
BASELINES = {b.name: b for b in (
    Baseline("persistence", f"{_BASELINES}:persistence", summary="the last given frame, forever"),
    Baseline("mean", f"{_BASELINES}:spatial_mean", summary="the last given frame's spatial mean, forever"),
    Baseline("coarse-solver", f"{_BASELINES}:coarse_solver", solver=True,
             summary="the numerical solver on a coarser grid"),
)}

# Rollout modes: how a prediction was made (the ``mode`` column of summary.csv).
MODES = {
    "latent": "encode once, roll out in latent space, decode each step",
    "physical": "decode and re-encode each step (baselines: their own prediction)",
    "one-step": "teacher-forced: each frame from the true frames before it",
    "reconstruction": "D(E(u)) of each true frame: the autoencoder's floor",
    "latent-superres": "latent rollout decoded zero-shot on a finer grid",
}
# The autoregressive rollouts of a UPT (the FNO has only physical, its ``rollout_modes``).
ROLLOUT_MODES = ("latent", "physical")
# Rows of summary.csv that are not a rollout: a model's size (``all``), the truth's own divergence
# (``truth``) and the full-resolution solver's time (``reference``).
PSEUDO_MODES = ("all", "truth", "reference")

# Model presets: the named sizes of upt.models.sizes.
PRESETS = tuple(_SIZES)


@dataclass(frozen=True)
class Generator:
    """An embedded solver that writes PDEBench's HDF5 layout (``upt generate <name>``)."""

    name: str
    dims: int  # spatial dimensions of its grid
    summary: str = ""


GENERATORS = {g.name: g for g in (
    Generator("burgers1d", 1, "1D viscous Burgers, PDEBench's initial conditions"),
    Generator("diffreact2d", 2, "2D FitzHugh-Nagumo diffusion-reaction"),
    Generator("ns2d", 2, "2D incompressible Navier-Stokes, pseudo-spectral, forced"),
)}


def stage(name: str) -> Stage:
    return _lookup(STAGES, name, "stage")


def baseline(name: str) -> Baseline:
    return _lookup(BASELINES, name, "baseline")


def _lookup(table: dict, name: str, kind: str):
    if name not in table:
        from upt.errors import UptError

        raise UptError(f"unknown {kind} {name!r}; known: {', '.join(table)}")
    return table[name]


def _load(path: str):
    module, attribute = path.split(":")
    return getattr(importlib.import_module(module), attribute)
