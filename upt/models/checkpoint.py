"""Result checkpoints: what a stage hands to the next stage and to evaluation.

:func:`load_checkpoint` returns a :class:`Checkpoint`: the rebuilt model (and corrector), the stage
that wrote it and the specs and settings it was built from.

A checkpoint holds the specs needed to rebuild the model (and corrector) plus their weights, all
plain dicts and tensors, so it loads with ``torch.load(weights_only=True)``: loading a checkpoint
can never execute code. The latent cache identifies the encoder that produced it by the SHA-256
of its weights (:func:`module_hash`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from upt import __version__
from upt.atomic import atomic_output
from upt.errors import UptError
from upt.models.diffusion import DiffusionCorrector
from upt.models.factory import corrector_from_spec, model_from_spec

FORMAT = 1


@dataclass
class Checkpoint:
    """A trained result: the model (a UPT or the FNO), its diffusion corrector if it has one, and
    what rebuilds them (``model_spec``, ``corrector_spec``: keywords of upt.models.factory)."""

    stage: str
    model: nn.Module
    model_spec: dict
    corrector: DiffusionCorrector | None = None
    corrector_spec: dict | None = None
    info: dict = field(default_factory=dict)  # seed and the run's settings (plain JSON)

    @property
    def settings(self) -> dict:
        return self.info.get("settings", {})


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


def load_checkpoint(path: str | Path) -> Checkpoint:
    """The :class:`Checkpoint` written by :func:`save_checkpoint` at ``path``."""
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
    return Checkpoint(stage=payload["stage"], model=model, model_spec=payload["model_spec"], corrector=corrector,
                      corrector_spec=payload["corrector_spec"], info=payload["info"])


def module_hash(module: nn.Module) -> str:
    """SHA-256 of a module's weights (names, dtypes, shapes and bytes), independent of the file."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
