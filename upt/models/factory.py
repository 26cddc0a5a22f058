"""The model factory: a model or a corrector from its spec, the plain dict a checkpoint stores.

Evaluation, benchmarks and training build every model here (docs/architecture.md).
"""

from __future__ import annotations

from torch import nn

from upt.models.denoiser import LatentDenoiser
from upt.models.diffusion import DiffusionCorrector
from upt.models.fno import FNOSurrogate
from upt.models.presets import build_model


def model_from_spec(spec: dict) -> nn.Module:
    """A UPT from build_model's keywords (preset, dim_space, fields, history, cond_dim, ... +
    overrides), or the FNO baseline when ``family`` is ``fno``."""
    spec = dict(spec)
    if spec.pop("family", "upt") == "fno":
        return FNOSurrogate(**spec)
    return build_model(spec.pop("preset"), **spec)


def corrector_from_spec(spec: dict) -> DiffusionCorrector:
    """``spec``: dim, depth, heads, prediction, data_scale, sample_steps."""
    net = LatentDenoiser(spec["dim"], spec["depth"], spec["heads"])
    return DiffusionCorrector(net, prediction=spec["prediction"], data_scale=spec["data_scale"],
                              sample_steps=spec["sample_steps"])
