"""UPT models: encoders, approximators, the any-point decoder, the latent denoiser, the composite
and named size presets."""

from upt.models.approximators import PureTransformer, UShapedTransformer
from upt.models.decoder import AnyPointDecoder, log_clamp
from upt.models.denoiser import LatentDenoiser
from upt.models.encoders import GridEncoder, MeshParticleEncoder
from upt.models.presets import PRESETS, ModelSize, build_model, count_parameters, parameter_table
from upt.models.upt import UPT

__all__ = [
    "PRESETS",
    "UPT",
    "AnyPointDecoder",
    "GridEncoder",
    "LatentDenoiser",
    "MeshParticleEncoder",
    "ModelSize",
    "PureTransformer",
    "UShapedTransformer",
    "build_model",
    "count_parameters",
    "log_clamp",
    "parameter_table",
]
