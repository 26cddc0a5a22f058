"""Training stages: what each stage trains and with which loss terms.

Every stage is an ``nn.Module`` run by the one loop in :mod:`upt.training.loop`: ``forward(batch,
generator)`` returns ``(total, terms)``, and exactly the parameters the stage trains have
``requires_grad`` (so a frozen encoder really is frozen, and DDP sees no unused parameters).
Loss weights come from the arm's config; a weight of 0 skips the term (``upt.losses.combine``).
Each class is the ``implementation`` of its entry in :data:`upt.vocabulary.STAGES` (which lists
its loss terms and what it trains and keeps); :meth:`Stage.build` makes it from a run's settings,
its training data and the checkpoint it continues from, for :func:`upt.training.run.run_stage`.

    autoencoder  E + D    reconstruction at query points (inverse encoding), latent-norm penalty
    operator     A        latent next-step and rollout MSE on the cached latents of a frozen E, relative
                          to the latents' variance; latent-norm drift along the rollout; optional
                          noise on A's input latents (``latent_noise``, training only)
    joint        E, A, D  physical next-step and rollout MSE at query points, inverse encoding and
                          decoding, latent norm, latent anchor, spectral, mean consistency,
                          divergence; optional ``latent_noise`` as in operator
    diffusion    corrector  denoising loss of the residual z_true - A(z) given A(z)
    distill      student    distance of a few-step student to the multi-step teacher sampler
    consistency  student    consistency distillation: the student agrees with its EMA target across
                            one teacher ODE step (``after_step`` moves the target after each update)
    fno          the FNO baselines: next-step and rollout MSE on the whole grid; PDEBench's protocol
                 is rollout only, unrolled over the whole trajectory (horizon null), with a step
                 schedule (config/pdebench.yaml, arm fno-pdebench)
"""

from __future__ import annotations

import contextlib
import copy

import numpy as np
import torch
from torch import nn

from upt import losses
from upt.errors import UptError
from upt.models.checkpoint import Checkpoint
from upt.models.diffusion import (DiffusionCorrector, consistency_loss, distillation_loss, ema_update,
                                  make_consistency_student, make_student)
from upt.models.factory import corrector_from_spec, model_from_spec
from upt.models.fno import matched_width
from upt.models.presets import count_parameters
from upt.models.upt import UPT
from upt.settings import StageSettings, check_losses, check_student_steps
from upt.training.latent_scale import channel_stats, latent_anchor, perturb


class Stage(nn.Module):
    name = "stage"
    corrector_spec: dict | None = None  # the spec of the corrector it trains, saved in its result

    def __init__(self, model: UPT, weights: dict[str, float], trains: tuple[nn.Module, ...],
                 **modules: nn.Module):
        super().__init__()
        check_losses(self.name, weights, f"stage {self.name}: losses")
        self.model, self.weights = model, weights
        for name, module in modules.items():  # e.g. the corrector, a frozen teacher
            setattr(self, name, module)
        self.requires_grad_(False)
        for module in trains:
            module.requires_grad_(True)
        # names, not the modules: they survive the deepcopies of the loop (best state, EMA)
        self.trained_names = tuple(name for name, m in self.named_modules() if any(m is t for t in trains))
        self.train()

    def train(self, mode: bool = True) -> "Stage":
        """Train mode for what the stage trains; the frozen rest stays in eval mode, so e.g. a frozen
        approximator with drop_path takes deterministic steps while a corrector learns from them.
        The loop calls ``stage.train()`` every epoch, and validation ``eval()`` then ``train()``."""
        super().train(mode)
        if mode:
            for name, module in self.named_modules():
                if not any(_within(name, t) or _within(t, name) for t in self.trained_names):
                    module.eval()
        return self

    @classmethod
    def build(cls, model, settings: StageSettings, train, base: Checkpoint | None) -> "Stage":
        """This stage for ``model`` (its kept modules already copied from ``base``), given the run's
        stage settings and its training split (a FieldDataset or LatentWindows)."""
        raise NotImplementedError

    @classmethod
    def check_init(cls, settings: StageSettings, base: Checkpoint, init: str) -> None:
        """Refuse an init this stage cannot continue from (before any data are read)."""

    def weight(self, term: str) -> float:
        return float(self.weights.get(term, 0.0))


def _within(name: str, outer: str) -> bool:
    """Whether module ``name`` is ``outer`` or inside it ("" is the stage itself)."""
    return outer == "" or name == outer or name.startswith(outer + ".")


class FieldStage(Stage):
    """A stage that reads fields on the grid (``pos`` [N, d], ``grid_shape``) from FieldDataset."""

    def __init__(self, model, weights, trains, pos: torch.Tensor, grid_shape, queries: int | None):
        super().__init__(model, weights, trains)
        self.register_buffer("pos", pos, persistent=False)
        self.grid_shape, self.queries = tuple(grid_shape), queries

    @classmethod
    def model_spec(cls, model: dict, dims: dict, grid_shape) -> dict:
        """The factory spec of a fresh model: the arm's model settings on this dataset's grid."""
        return {**model, **dims, "grid_shape": list(grid_shape)}

    @classmethod
    def build(cls, model, settings, train, base):
        return cls(model, settings.losses, train.pos, train.grid_shape, settings.queries,
                   divergence=divergence_scales(train))

    def query_index(self, generator: torch.Generator) -> torch.Tensor | None:
        """Query-based training: a random subset of output points per batch (training only)."""
        n = self.pos.shape[0]
        if not self.training or self.queries is None or self.queries >= n:
            return None
        return torch.randperm(n, generator=generator)[: self.queries].to(self.pos.device)

    def encode(self, u, batch, pos=None):
        """E(u) at the grid points, or at the trajectory's own subset of them (point-cloud view)."""
        mask = self.model.observation_mask(batch.get("trajectory"), self.pos.shape[0])
        pos = self.pos.expand(u.shape[0], -1, -1) if pos is None else pos
        return self.model.encode(u, pos, self.grid_shape, mask)


def advance(model: UPT, z: torch.Tensor, cond: torch.Tensor, steps: int, noise=None) -> torch.Tensor:
    """The approximator's latent rollout z_1 .. z_steps from z_0: [B, steps, T, D].

    ``noise``: z -> a perturbed z, applied to every latent the approximator reads (z_0 and each
    fed-back prediction); the predictions returned are the approximator's own, unperturbed."""
    zs = []
    for s in range(steps):
        z = model.step(z if noise is None else noise(z), cond[:, s])
        zs.append(z)
    return torch.stack(zs, dim=1)


def latent_noise(stage: nn.Module, scale: torch.Tensor | None, generator: torch.Generator):
    """The ``noise`` of :func:`advance`: Gaussian, per-channel std ``scale`` [D], in training mode
    only (never in validation or evaluation); None without a scale."""
    if scale is None or not stage.training:
        return None
    return lambda z: perturb(z, scale, generator)


@contextlib.contextmanager
def evaluating(module: nn.Module):
    """``module`` in eval mode inside the block (deterministic: no drop-path), its mode restored after."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


@torch.no_grad()
def encoder_stats(model: UPT, train, samples: int = 256, batch_size: int = 64):
    """Per-channel (mean, std) [D] of the encoder's latents of up to ``samples`` evenly spaced
    training windows (FieldDataset): the joint stage's stand-in for a latent cache's statistics."""
    index = torch.linspace(0, len(train) - 1, min(samples, len(train))).long()
    latents = []
    with evaluating(model):
        for chunk in index.split(batch_size):
            batch = torch.utils.data.default_collate([train[i] for i in chunk.tolist()])
            mask = model.observation_mask(batch["trajectory"], train.pos.shape[0])
            latents.append(model.encode(batch["u"], train.pos.expand(len(chunk), -1, -1), train.grid_shape, mask))
    return channel_stats(torch.cat(latents))


def _select(x: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
    """Points ``index`` of x [..., N, C] (all of them when index is None)."""
    return x if index is None else x[..., index, :]


DIVERGENCE_FIELDS = 4  # fields per batch the autoencoder's divergence prior decodes on the whole grid


class AutoencoderStage(FieldStage):
    name = "autoencoder"

    def __init__(self, model, weights, pos, grid_shape, queries=None, divergence=None):
        super().__init__(model, weights, (model.encoder, model.decoder), pos, grid_shape, queries)
        # divergence: see divergence_scales (a 2D velocity: the incompressibility prior)
        self.divergence = divergence

    def forward(self, batch, generator):
        u = batch["u"]
        index = self.query_index(generator)
        z = self.encode(u, batch)
        pos_q = _select(self.pos, index).expand(u.shape[0], -1, -1)
        latest = _select(u[..., -self.model.fields:], index)
        return losses.combine({
            "reconstruction": (self.weight("reconstruction"),
                               lambda: losses.next_step_mse(self.model.decode(z, pos_q), latest)),
            "latent_norm": (self.weight("latent_norm"), lambda: losses.latent_norm_penalty(z)),
            # the divergence prior on the decoded velocity, on the whole grid of the batch's first
            # DIVERGENCE_FIELDS fields (an unbiased estimate of the batch mean: decoding every
            # field on every point cost the 2D autoencoder 3.5x its epoch)
            "divergence": (self.weight("divergence"), divergence_term(
                self.divergence, lambda few=z[:DIVERGENCE_FIELDS]: self.model.decode(
                    few, self.pos.expand(len(few), -1, -1)), self.grid_shape)),
        })


class JointStage(FieldStage):
    """UPT-style joint training of E, A and D end to end; the inverse losses are optional terms.

    ``reference``: per-channel (mean, std) [D] of the latents of the encoder it starts from
    (:func:`encoder_stats`), which the ``latent_anchor`` term holds the latents to and which scales
    ``latent_noise`` (a fraction of each channel's std) on the approximator's inputs."""

    name = "joint"

    def __init__(self, model, weights, pos, grid_shape, queries=None, divergence=None,
                 reference: tuple[torch.Tensor, torch.Tensor] | None = None, latent_noise: float = 0.0):
        super().__init__(model, weights, (model.encoder, model.approximator, model.decoder), pos,
                         grid_shape, queries)
        # divergence: see divergence_scales (a 2D velocity: the incompressibility prior)
        self.divergence = divergence
        if reference is None and (latent_noise > 0 or self.weight("latent_anchor") > 0):
            raise ValueError("latent_noise and the latent_anchor term need the reference latent statistics")
        mean, std = reference if reference is not None else (None, None)
        self.register_buffer("latent_mean", mean)
        self.register_buffer("latent_std", std)
        self.register_buffer("noise_scale", latent_noise * std if latent_noise > 0 else None)

    @classmethod
    def build(cls, model, settings, train, base):
        needs = settings.latent_noise > 0 or settings.losses.get("latent_anchor", 0) > 0
        return cls(model, settings.losses, train.pos, train.grid_shape, settings.queries,
                   divergence=divergence_scales(train), reference=encoder_stats(model, train) if needs else None,
                   latent_noise=settings.latent_noise)

    def forward(self, batch, generator):
        u, target, cond = batch["u"], batch["target"], batch["cond"]
        b, horizon = u.shape[0], target.shape[1]
        index = self.query_index(generator)
        pos = self.pos.expand(b, -1, -1)
        pos_q = _select(self.pos, index).expand(b, -1, -1)
        z = self.encode(u, batch)
        noise = latent_noise(self, self.noise_scale, generator)
        cache = {}

        def latents():  # z_1 .. z_horizon, computed once for every term that needs them
            if "z" not in cache:
                cache["z"] = advance(self.model, z, cond, horizon, noise).unbind(1)
            return cache["z"]

        def next_full():  # next frame on the whole grid (spectral, conservation and divergence)
            if "full" not in cache:
                cache["full"] = self.model.decode(latents()[0], pos)
            return cache["full"]

        def rollout():
            pred = torch.stack([self.model.decode(zs, pos_q) for zs in latents()], dim=1)
            return losses.rollout_mse(pred, _select(target, index))

        fields = self.model.fields
        return losses.combine({
            "next_step": (self.weight("next_step"), lambda: losses.next_step_mse(
                self.model.decode(latents()[0], pos_q), _select(target[:, 0], index))),
            "rollout": (self.weight("rollout"), rollout),
            "inverse_encoding": (self.weight("inverse_encoding"), lambda: losses.inverse_encoding_loss(
                lambda *_: z, lambda zz, _: self.model.decode(zz, pos_q), u, pos,
                target=_select(u[..., -fields:], index))),
            "inverse_decoding": (self.weight("inverse_decoding"), lambda: losses.inverse_decoding_loss(
                lambda uu, p: self.encode(uu, batch, p), self.model.decode, z, pos,
                context=u[..., :-fields] if u.shape[-1] > fields else None)),
            "latent_norm": (self.weight("latent_norm"), lambda: losses.latent_norm_penalty(z)),
            # the encoder's latents and the rolled-out ones, held at the reference statistics
            "latent_anchor": (self.weight("latent_anchor"), lambda: torch.stack(
                [latent_anchor(zs, self.latent_mean, self.latent_std) for zs in (z, *latents())]).mean()),
            "spectral": (self.weight("spectral"), lambda: losses.spectral_loss(
                next_full(), target[:, 0], self.grid_shape)),
            "mean_consistency": (self.weight("mean_consistency"), lambda: losses.mean_consistency(
                next_full(), target[:, 0])),
            "divergence": (self.weight("divergence"), divergence_term(self.divergence, next_full, self.grid_shape)),
        })


def divergence_scales(train):
    """(channel of Vx, channel of Vy, (std_x / dx, std_y / dy), periodic) of a FieldDataset with a 2D
    velocity, else None: what the divergence term needs (periodic: its spectral derivative)."""
    if not {"Vx", "Vy"} <= set(train.fields) or len(train.grid_shape) != 2:
        return None
    dx, dy = (float(np.diff(train.coords[d][:2])[0]) for d in ("x", "y"))
    ix, iy = train.fields.index("Vx"), train.fields.index("Vy")
    return ix, iy, (float(train.std[ix]) / dx, float(train.std[iy]) / dy), losses.periodic_domain(train.attrs,
                                                                                                  train.path)


def divergence_term(divergence, decoded, grid_shape):
    """The divergence penalty of a decoded velocity ``decoded()`` [B, N, C] on the grid, as a term.

    ``divergence``: (channel of Vx, channel of Vy, (std_x / dx, std_y / dy), periodic), None without
    a 2D velocity. Normalized fields: d(std * v_n)/dx = std * dv_n/dx, so the spacing is scaled by
    1/std. On a periodic domain the derivatives are spectral, as in the evaluation's divergence_rms:
    central differences would penalize the truth itself."""
    def term():
        if divergence is None:
            raise ValueError("the divergence penalty needs Vx and Vy on a 2D grid")
        ix, iy, (sx, sy), periodic = divergence
        v = decoded()[..., [ix, iy]].reshape(-1, *grid_shape, 2)
        return losses.divergence_penalty(v, (1.0 / sx, 1.0 / sy), periodic)
    return term


class OperatorStage(Stage):
    """Reads the latent cache (LatentWindows): z [B, T, D], target [B, horizon, T, D], cond.

    The latent MSE terms are divided by ``latent_var``, the variance of the training split's
    latents: an encoder's latent scale is arbitrary (its decoder normalizes the tokens), so raw
    latent MSEs of two arms are not comparable, while these relative ones are.

    ``noise_scale`` [D]: the std of the Gaussian noise on every latent the approximator reads in a
    training rollout, per channel (``latent_noise`` x the channel's std over the training latents)."""

    name = "operator"

    def __init__(self, model, weights, latent_var: float = 1.0, noise_scale: torch.Tensor | None = None):
        super().__init__(model, weights, (model.approximator,))
        self.latent_var = float(latent_var)
        self.register_buffer("noise_scale", noise_scale)

    @classmethod
    def build(cls, model, settings, train, base):
        noise = settings.latent_noise * channel_stats(train.z)[1] if settings.latent_noise > 0 else None
        return cls(model, settings.losses, latent_var=float(train.z.float().var()), noise_scale=noise)

    def forward(self, batch, generator):
        z, target, cond = batch["z"], batch["target"], batch["cond"]
        noise = latent_noise(self, self.noise_scale, generator)
        cache = {}

        def latents():
            if "z" not in cache:
                cache["z"] = advance(self.model, z, cond, target.shape[1], noise)
            return cache["z"]

        return losses.combine({
            "next_step": (self.weight("next_step"),
                          lambda: losses.next_step_mse(latents()[:, 0], target[:, 0]) / self.latent_var),
            "rollout": (self.weight("rollout"), lambda: losses.rollout_mse(latents(), target) / self.latent_var),
            "latent_drift": (self.weight("latent_drift"), lambda: losses.latent_drift(latents(), target)),
        })


class DiffusionStage(Stage):
    """The corrector learns r = z_true - A(z) given A(z), with A frozen (latent cache batches)."""

    name = "diffusion"

    def __init__(self, model, weights, corrector: DiffusionCorrector):
        super().__init__(model, weights, (corrector,), corrector=corrector)

    @classmethod
    def build(cls, model, settings, train, base):
        c = settings.corrector
        spec = {"dim": int(train.z.shape[-1]), "depth": c.depth, "heads": c.heads, "prediction": c.prediction,
                "sample_steps": c.sample_steps, "data_scale": residual_scale(model, train)}
        stage = cls(model, settings.losses, corrector_from_spec(spec))
        stage.corrector_spec = spec
        return stage

    def forward(self, batch, generator):
        with torch.no_grad():
            z_pred = self.model.step(batch["z"], batch["cond"][:, 0])
        return losses.combine({"denoising": (self.weight("denoising"),
                                             lambda: self.corrector.residual_loss(batch["target"][:, 0], z_pred))})


class StudentStage(Stage):
    """A few-step student of the diffusion corrector its init holds (the teacher)."""

    @classmethod
    def check_init(cls, settings, base, init):
        if base.corrector is None:
            raise UptError(f"{init}: stage {cls.name} needs a checkpoint with a diffusion corrector (its teacher)")
        check_student_steps(settings.student_steps, base.corrector.sample_steps,
                            f"student_steps of stage {cls.name} (teacher {init})")

    @staticmethod
    def student_spec(base: Checkpoint, settings, **changes) -> dict:
        return {**base.corrector_spec, "sample_steps": settings.student_steps, **changes}


class DistillStage(StudentStage):
    """A few-step student (``corrector``) learns to reproduce the multi-step teacher's samples."""

    name = "distill"

    def __init__(self, model, weights, student: DiffusionCorrector, teacher: DiffusionCorrector):
        super().__init__(model, weights, (student,), corrector=student, teacher=teacher)

    @classmethod
    def build(cls, model, settings, train, base):
        stage = cls(model, settings.losses, make_student(base.corrector, settings.student_steps), base.corrector)
        stage.corrector_spec = cls.student_spec(base, settings)
        return stage

    def forward(self, batch, generator):
        with torch.no_grad():
            z_pred = self.model.step(batch["z"], batch["cond"][:, 0])
        noise = torch.randn(z_pred.shape, generator=generator).to(z_pred)
        return losses.combine({"distillation": (self.weight("distillation"), lambda: distillation_loss(
            self.corrector, self.teacher, z_pred, noise=noise))})


class ConsistencyStage(StudentStage):
    """Consistency distillation of the teacher into ``corrector``, against an EMA ``target`` of it.

    The target is a submodule, so the loop checkpoints it with the stage and a resume is exact; it is
    frozen (no gradient) and moved toward the student by :meth:`after_step`, which the loop calls
    after every optimizer step. ``target_ema`` is its decay mu."""

    name = "consistency"

    def __init__(self, model, weights, student: DiffusionCorrector, teacher: DiffusionCorrector,
                 target_ema: float = 0.95):
        if not 0.0 <= target_ema < 1.0:
            raise ValueError(f"target_ema must be in [0, 1), got {target_ema}")
        super().__init__(model, weights, (student,), corrector=student, teacher=teacher,
                         target=copy.deepcopy(student))
        self.target_ema = target_ema

    @classmethod
    def check_init(cls, settings, base, init):
        super().check_init(settings, base, init)
        if base.corrector.prediction != "v":
            raise UptError(f"stage consistency needs a v-prediction teacher (corrector.prediction: v); "
                           f"{init} predicts {base.corrector.prediction!r}")

    @classmethod
    def build(cls, model, settings, train, base):
        student = make_consistency_student(base.corrector, settings.student_steps)
        stage = cls(model, settings.losses, student, base.corrector, target_ema=settings.target_ema)
        stage.corrector_spec = cls.student_spec(base, settings, prediction="consistency")
        return stage

    def forward(self, batch, generator):
        with torch.no_grad():
            z_pred = self.model.step(batch["z"], batch["cond"][:, 0])
        residual = batch["target"][:, 0] - z_pred
        n = torch.randint(self.teacher.sample_steps, z_pred.shape[:1], generator=generator).to(z_pred.device)
        noise = torch.randn(z_pred.shape, generator=generator).to(z_pred)
        return losses.combine({"consistency": (self.weight("consistency"), lambda: consistency_loss(
            self.corrector, self.target, self.teacher, residual, z_pred, n=n, noise=noise))})

    def after_step(self) -> None:
        ema_update(self.target, self.corrector, self.target_ema)


class FNOStage(FieldStage):
    """The FNO baseline, trained end to end in physical space on the whole grid."""

    name = "fno"

    def __init__(self, model, weights, pos, grid_shape):
        super().__init__(model, weights, (model,), pos, grid_shape, queries=None)

    @classmethod
    def model_spec(cls, model, dims, grid_shape):
        """The FNO's spec; with ``match`` (a UPT arm's model), its width matches that arm's parameters
        (``match_part: approximator``: only its approximator's, the parameters spent on dynamics, as
        the FNO spends all of its own)."""
        variant = model.get("variant", "neuralop")
        default_modes, default_hidden = (12, 20) if variant == "pdebench" else (16, 32)  # PDEBench's: 12, 20
        spec = {"family": "fno", "variant": variant, "modes": int(model.get("modes", default_modes)),
                "layers": int(model.get("layers", 4)), **dims}
        if "match" in model:
            matched = model_from_spec({**model["match"], **dims, "grid_shape": list(grid_shape)})
            part = model.get("match_part", "all")
            target = count_parameters(matched.approximator if part == "approximator" else matched)
            spec["hidden"] = matched_width(target, lambda hidden: model_from_spec({**spec, "hidden": hidden}))
        else:
            spec["hidden"] = int(model.get("hidden", default_hidden))
        return spec

    @classmethod
    def build(cls, model, settings, train, base):
        return cls(model, settings.losses, train.pos, train.grid_shape)

    def forward(self, batch, generator):
        u, target, cond = batch["u"], batch["target"], batch["cond"]
        cache = {}

        def rollout():
            if "pred" not in cache:
                pos = self.pos.expand(u.shape[0], -1, -1)
                cache["pred"] = self.model.rollout(u, pos, cond, target.shape[1], grid_shape=self.grid_shape)
            return cache["pred"]

        return losses.combine({
            "next_step": (self.weight("next_step"), lambda: losses.next_step_mse(rollout()[:, 0], target[:, 0])),
            "rollout": (self.weight("rollout"), lambda: losses.rollout_mse(rollout(), target)),
        })


@torch.no_grad()
def residual_scale(model, windows, samples: int = 512) -> float:
    """Std of the residual z_true - A(z) the corrector learns (over up to ``samples`` windows of
    LatentWindows), so it meets unit-variance noise."""
    index = torch.linspace(0, len(windows) - 1, min(samples, len(windows))).long().tolist()
    batch = torch.utils.data.default_collate([windows[i] for i in index])
    with evaluating(model):  # the frozen approximator's deterministic step, as the corrector will see it
        residual = batch["target"][:, 0] - model.step(batch["z"], batch["cond"][:, 0])
    return float(residual.std().clamp_min(1e-6))
