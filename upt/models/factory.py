"""The model factory: a model or a corrector from its spec, the plain dict a checkpoint stores.

Evaluation, benchmarks and training build every model here (docs/architecture.md).
"""

from __future__ import annotations

from torch import nn

from upt.errors import UptError
from upt.models.denoiser import LatentDenoiser
from upt.models.diffusion import DiffusionCorrector
from upt.models.fno import FNOSurrogate
from upt.models.fno_pdebench import PDEBenchFNOSurrogate
from upt.models.presets import build_model


# The FNO baselines by ``variant``: neuraloperator's FNO, or PDEBench's own FNO1d/FNO2d.
FNO_VARIANTS = {"neuralop": FNOSurrogate, "pdebench": PDEBenchFNOSurrogate}


def model_from_spec(spec: dict) -> nn.Module:
    """A UPT from build_model's keywords (preset, dim_space, fields, history, cond_dim, ... +
    overrides), or an FNO baseline when ``family`` is ``fno`` (``variant``: neuralop, the default,
    or pdebench)."""
    spec = dict(spec)
    if spec.pop("family", "upt") == "fno":
        variant = spec.pop("variant", "neuralop")
        if variant not in FNO_VARIANTS:
            raise UptError(f"model.variant: unknown FNO variant {variant!r}; known: {', '.join(FNO_VARIANTS)}")
        return FNO_VARIANTS[variant](**spec)
    return build_model(spec.pop("preset"), **spec)


def corrector_from_spec(spec: dict) -> DiffusionCorrector:
    """``spec``: dim, depth, heads, prediction, data_scale, sample_steps."""
    net = LatentDenoiser(spec["dim"], spec["depth"], spec["heads"])
    return DiffusionCorrector(net, prediction=spec["prediction"], data_scale=spec["data_scale"],
                              sample_steps=spec["sample_steps"])
