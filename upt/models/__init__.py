"""UPT models: encoders, approximators, the any-point decoder, the latent denoiser, the composite
and named size presets.

The names below load their submodule on first use (PEP 562), so importing a torch-free submodule
such as :mod:`upt.models.sizes` (the workflow does, while building its DAG) does not import torch.
"""

import importlib

_HOMES = {
    "PureTransformer": "approximators", "UShapedTransformer": "approximators",
    "AnyPointDecoder": "decoder", "log_clamp": "decoder",
    "LatentDenoiser": "denoiser",
    "GridEncoder": "encoders", "MeshParticleEncoder": "encoders",
    "build_model": "presets", "count_parameters": "presets", "parameter_table": "presets",
    "PRESETS": "sizes", "ModelSize": "sizes",
    "UPT": "upt",
    "model_from_spec": "factory", "corrector_from_spec": "factory",
    "Checkpoint": "checkpoint", "load_checkpoint": "checkpoint", "save_checkpoint": "checkpoint",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
