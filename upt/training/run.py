"""``upt train``: build one stage of one arm from its settings, run the loop, save the result.

``settings`` is the arm's resolved configuration for this stage (see :mod:`upt.config`)::

    {"seed": 0, "model": {"preset": "upt-cpu-s", ...overrides}, "history": 1, "params": [],
     "stage": {"epochs": ..., "batch_size": ..., "lr": ..., "horizon": ..., "queries": ...,
               "losses": {term: weight}, "corrector": {...}, "student_steps": ...}}

Which weights a stage starts from: autoencoder and joint start fresh (joint takes E and D from
``init`` when given, and A too when ``init`` is an operator or joint result); operator takes E and
D from the autoencoder ``init`` and reads the latent cache; diffusion takes the whole surrogate from ``init``; distill and consistency take surrogate and
teacher corrector from the diffusion result. Frozen parts stay bit-identical to ``init``.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np
import torch

from upt.config import DEFAULT_SAMPLE_STEPS, STUDENT_STAGES
from upt.data.dataset import FieldDataset
from upt.errors import UptError
from upt.models.diffusion import make_consistency_student, make_student
from upt.models.fno import matched_width
from upt.models.presets import count_parameters
from upt.training import distributed, stages
from upt.training.cache import LatentWindows, load_cache
from upt.training.checkpoint import (corrector_from_spec, latent_dim, load_checkpoint, model_from_spec,
                                     save_checkpoint)
from upt.training.loop import LoopSettings, fit

FIELD_STAGES = ("autoencoder", "joint", "fno")
LATENT_STAGES = ("operator", "diffusion") + STUDENT_STAGES


def run_stage(stage: str, settings: dict, data: str | Path, stats: str | Path, out: str | Path, *,
              init: str | Path | None = None, cache: str | Path | None = None) -> Path:
    """Train ``stage`` and write its result checkpoint to ``out`` (state and metrics beside it)."""
    if stage not in FIELD_STAGES + LATENT_STAGES:
        raise UptError(f"unknown stage {stage!r}; expected one of {', '.join(FIELD_STAGES + LATENT_STAGES)}")
    if stage in LATENT_STAGES and init is None:
        raise UptError(f"stage {stage} needs --init (the checkpoint it continues from)")
    if stage in LATENT_STAGES and cache is None:
        raise UptError(f"stage {stage} needs --cache (the latent cache of its encoder)")
    check_settings(settings)
    distributed.init()
    cfg, seed = settings["stage"], int(settings["seed"])
    _report_processes(stage, int(cfg.get("gpus", 0)))
    loop = LoopSettings(**{f.name: cfg[f.name] for f in dataclasses.fields(LoopSettings) if f.name in cfg})
    loop.seed = seed
    torch.manual_seed(seed)
    weights, horizon = dict(cfg.get("losses", {})), int(cfg.get("horizon", 1))
    base = load_checkpoint(init) if init is not None else None
    if stage in STUDENT_STAGES:  # checked before any data is read
        student_steps = _student_steps(stage, cfg, base, init)
        target_ema = _target_ema(cfg) if stage == "consistency" else None
    corrector_spec = None

    if stage in FIELD_STAGES:
        history, params = int(settings.get("history", 1)), tuple(settings.get("params", ()))
        preload_mb = int(cfg.get("preload_mb", 2048))
        train, val = (FieldDataset(data, stats, split, history=history, horizon=horizon, params=params,
                                   preload_mb=preload_mb) for split in ("train", "val"))
        dims = {"dim_space": len(train.grid_shape), "fields": len(train.fields), "history": history,
                "cond_dim": train.cond_dim}
        if stage == "fno":
            spec = _fno_spec(settings["model"], dims, train.grid_shape)
        else:
            spec = {**settings["model"], **dims, "grid_shape": list(train.grid_shape)}
        model = model_from_spec(spec)
        if base is not None:
            # E and D from the autoencoder; A too when it was trained (joint fine-tuning of a
            # frozen-encoder UPT continues from its operator)
            trained = ("encoder", "decoder") + (("approximator",) if base[2]["stage"] in ("operator", "joint") else ())
            _copy_modules(base[0], model, trained)
        if stage == "autoencoder":
            module = stages.AutoencoderStage(model, weights, train.pos, train.grid_shape, cfg.get("queries"),
                                             divergence=_divergence_scales(train))
        elif stage == "fno":
            module = stages.FNOStage(model, weights, train.pos, train.grid_shape)
        else:
            module = stages.JointStage(model, weights, train.pos, train.grid_shape, cfg.get("queries"),
                                       divergence=_divergence_scales(train))
    else:
        spec = {**base[2]["model_spec"], **settings["model"]}
        model = model_from_spec(spec)
        latents = load_cache(cache, base[0].encoder)
        train, val = (LatentWindows(latents, split, horizon) for split in ("train", "val"))
        if stage == "operator":
            _copy_modules(base[0], model, ("encoder", "decoder"))
            module = stages.OperatorStage(model, weights, latent_var=float(train.z.float().var()))
        elif stage == "diffusion":
            _copy_modules(base[0], model, ("encoder", "approximator", "decoder"))
            corrector_spec = {"dim": latent_dim(spec), "depth": 2, "heads": 2, "prediction": "v",
                              "sample_steps": DEFAULT_SAMPLE_STEPS, **cfg.get("corrector", {}),
                              "data_scale": _residual_scale(model, train)}
            module = stages.DiffusionStage(model, weights, corrector_from_spec(corrector_spec))
        elif stage == "distill":
            _copy_modules(base[0], model, ("encoder", "approximator", "decoder"))
            corrector_spec = {**base[2]["corrector_spec"], "sample_steps": student_steps}
            module = stages.DistillStage(model, weights, make_student(base[1], student_steps), base[1])
        else:
            _copy_modules(base[0], model, ("encoder", "approximator", "decoder"))
            corrector_spec = {**base[2]["corrector_spec"], "prediction": "consistency",
                              "sample_steps": student_steps}
            module = stages.ConsistencyStage(model, weights, make_consistency_student(base[1], student_steps),
                                             base[1], target_ema=target_ema)
    out = Path(out)
    fingerprint = json.dumps([settings, str(init), str(cache)], sort_keys=True)
    best = fit(module, train, val, loop, out.parent, fingerprint=fingerprint)
    if distributed.rank() == 0:
        save_checkpoint(out, stage=stage, model_spec=spec, model=best.model, corrector_spec=corrector_spec,
                        corrector=getattr(best, "corrector", None), info={"seed": seed, "settings": settings})
        (out.parent / "state.pt").unlink(missing_ok=True)  # the run is complete: its result is the checkpoint
    distributed.shutdown()
    return out


def _student_steps(stage: str, cfg: dict, base, init) -> int:
    """The student's ``student_steps``, checked against its teacher (the corrector in ``init``)."""
    if base[1] is None:
        raise UptError(f"{init}: stage {stage} needs a checkpoint with a diffusion corrector (its teacher)")
    steps, teacher = cfg.get("student_steps", 1), base[1]
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise UptError(f"student_steps of stage {stage} must be a whole number >= 1, got {steps!r}")
    if steps > teacher.sample_steps:
        raise UptError(f"student_steps of stage {stage} is {steps}, more than the {teacher.sample_steps} "
                       f"sampling steps (corrector.sample_steps) of its teacher {init}")
    if stage == "consistency" and teacher.prediction != "v":
        raise UptError(f"stage consistency needs a v-prediction teacher (corrector.prediction: v); "
                       f"{init} predicts {teacher.prediction!r}")
    return steps


def _target_ema(cfg: dict) -> float:
    """Decay mu of the consistency stage's EMA target. 0.95 is Song et al.'s choice for consistency
    distillation: the target trails the student by ~20 updates, which matters for runs as short as
    the CPU arms (a 0.999 target would barely leave its starting point in a few hundred steps)."""
    decay = cfg.get("target_ema", 0.95)
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 <= decay < 1:
        raise UptError(f"target_ema of stage consistency must be a number in [0, 1), got {decay!r}")
    return float(decay)


# What ``--settings`` may hold besides the loop's own fields (LoopSettings): a typo fails naming
# the key instead of silently training with a default.
SETTINGS_KEYS = {"seed", "model", "history", "params", "stage"}
STAGE_KEYS = {"gpus", "preload_mb", "horizon", "queries", "losses", "corrector", "student_steps", "target_ema"}


def check_settings(settings: dict) -> None:
    """Refuse unknown keys in ``upt train --settings`` (the workflow's schema checks the config too)."""
    if not isinstance(settings, dict) or not isinstance(settings.get("stage"), dict):
        raise UptError("--settings must be a JSON object with a 'stage' object")
    unknown = set(settings) - SETTINGS_KEYS
    unknown |= {f"stage.{k}" for k in set(settings["stage"]) - STAGE_KEYS
                - {f.name for f in dataclasses.fields(LoopSettings)}}
    if unknown:
        raise UptError(f"unknown settings key(s) {sorted(unknown)}; see workflow/schemas/config.schema.yaml")
    if "seed" not in settings:
        raise UptError("--settings is missing 'seed'")


def _report_processes(stage: str, gpus: int) -> None:
    """Say where the run trains, and warn when that is not what its settings asked for (e.g. an
    arm meant for 4 GPUs started without torchrun trains correctly, just 4x slower)."""
    world, device = distributed.world_size(), distributed.device()
    if distributed.rank() != 0:
        return
    print(f"{stage}: {world} process{'es' if world > 1 else ''} on {device.type}", flush=True)
    if gpus > 1 and world != gpus:
        warnings.warn(f"settings ask for {gpus} GPUs (training.gpus) but {world} process(es) run; "
                      f"launch with torchrun --nproc-per-node={gpus} to use them")
    if gpus and device.type != "cuda":
        warnings.warn(f"settings ask for {gpus} GPUs (training.gpus) but CUDA is not available: training on CPU")


def _fno_spec(model: dict, dims: dict, grid_shape) -> dict:
    """The FNO's spec; with ``match`` (a UPT arm's model), its width matches that arm's parameters."""
    spec = {"family": "fno", "modes": int(model.get("modes", 16)), "layers": int(model.get("layers", 4)), **dims}
    if "match" in model:
        target = count_parameters(model_from_spec({**model["match"], **dims, "grid_shape": list(grid_shape)}))
        spec["hidden"] = matched_width(target, **{k: v for k, v in spec.items() if k != "family"})
    else:
        spec["hidden"] = int(model.get("hidden", 32))
    return spec


def _copy_modules(source, target, names) -> None:
    for name in names:
        try:
            getattr(target, name).load_state_dict(getattr(source, name).state_dict())
        except RuntimeError as err:
            raise UptError(f"the {name} of --init does not match this arm's model: {str(err)[:200]}") from None


@torch.no_grad()
def _residual_scale(model, windows: LatentWindows, samples: int = 512) -> float:
    """Std of the residual z_true - A(z) the corrector learns, so it meets unit-variance noise."""
    index = torch.linspace(0, len(windows) - 1, min(samples, len(windows))).long().tolist()
    batch = torch.utils.data.default_collate([windows[i] for i in index])
    residual = batch["target"][:, 0] - model.step(batch["z"], batch["cond"][:, 0])
    return float(residual.std().clamp_min(1e-6))


def _divergence_scales(train: FieldDataset):
    """(channel of Vx, channel of Vy, (std_x / dx, std_y / dy)) for 2D velocity data, else None."""
    if not {"Vx", "Vy"} <= set(train.fields) or len(train.grid_shape) != 2:
        return None
    dx, dy = (float(np.diff(train.coords[d][:2])[0]) for d in ("x", "y"))
    ix, iy = train.fields.index("Vx"), train.fields.index("Vy")
    return ix, iy, (float(train.std[ix]) / dx, float(train.std[iy]) / dy)
