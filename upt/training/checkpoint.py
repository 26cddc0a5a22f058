"""Result checkpoints: what a stage hands to the next stage and to evaluation.

A checkpoint holds the specs needed to rebuild the model (and corrector) plus their weights, all
plain dicts and tensors, so it loads with ``torch.load(weights_only=True)``: loading a checkpoint
can never execute code. The latent cache identifies the encoder that produced it by the SHA-256
of its weights (:func:`module_hash`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from upt import __version__
from upt.atomic import atomic_output
from upt.errors import UptError
from upt.models.denoiser import LatentDenoiser
from upt.models.diffusion import DiffusionCorrector
from upt.models.fno import FNOSurrogate
from upt.models.presets import build_model
from upt.models.sizes import size_of
from upt.models.upt import UPT

FORMAT = 1


def model_from_spec(spec: dict) -> nn.Module:
    """A UPT from build_model's keywords (preset, dim_space, fields, history, cond_dim, ... +
    overrides), or the FNO baseline when ``family`` is ``fno``."""
    spec = dict(spec)
    if spec.pop("family", "upt") == "fno":
        return FNOSurrogate(**spec)
    return build_model(spec.pop("preset"), **spec)


def latent_dim(spec: dict) -> int:
    return size_of(spec).dim


def corrector_from_spec(spec: dict) -> DiffusionCorrector:
    """``spec``: dim, depth, heads, prediction, data_scale, sample_steps."""
    net = LatentDenoiser(spec["dim"], spec["depth"], spec["heads"])
    return DiffusionCorrector(net, prediction=spec["prediction"], data_scale=spec["data_scale"],
                              sample_steps=spec["sample_steps"])


def save_checkpoint(path: str | Path, *, stage: str, model_spec: dict, model: nn.Module,
                    corrector_spec: dict | None = None, corrector: nn.Module | None = None,
                    info: dict | None = None) -> None:
    payload = {"format": FORMAT, "stage": stage, "upt_version": __version__,
               "model_spec": model_spec, "model": model.state_dict(),
               "corrector_spec": corrector_spec,
               "corrector": corrector.state_dict() if corrector is not None else None,
               "info": info or {}}
    with atomic_output(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path) -> tuple[UPT, DiffusionCorrector | None, dict]:
    """(model, corrector or None, the raw payload) of a checkpoint written by save_checkpoint."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UptError(f"{path}: no such checkpoint") from None
    except Exception as err:  # pickle/zip errors of a truncated or foreign file
        raise UptError(f"{path}: not a readable upt checkpoint: {err}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UptError(f"{path}: not a upt checkpoint of format {FORMAT}")
    model = model_from_spec(payload["model_spec"])
    model.load_state_dict(payload["model"])
    corrector = None
    if payload["corrector_spec"] is not None:
        corrector = corrector_from_spec(payload["corrector_spec"])
        corrector.load_state_dict(payload["corrector"])
    return model, corrector, payload


def module_hash(module: nn.Module) -> str:
    """SHA-256 of a module's weights (names, dtypes, shapes and bytes), independent of the file."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
