"""The one function that turns a named size (:mod:`upt.models.sizes`) into a UPT.

An ablation arm names a preset and may override any of its fields, e.g.
``build_model("upt-cpu-s", dim_space=1, fields=1, tokens=128, drop_path=0.1)``.
"""

import dataclasses

import torch
from torch import nn

from upt.errors import UptError
from upt.models.approximators import PureTransformer, UShapedTransformer
from upt.models.decoder import AnyPointDecoder
from upt.models.encoders import GridEncoder, MeshParticleEncoder
from upt.models.sizes import PRESETS, ModelSize, position_octaves, resolve_patch_size, size_errors
from upt.models.upt import UPT


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def build_model(
    preset: str,
    *,
    dim_space: int,
    fields: int,
    history: int = 1,
    cond_dim: int = 1,
    encoder: str = "grid",
    approximator: str | None = None,
    grid_shape=None,
    observed_fraction: float | None = None,
    periodic: bool = False,
    **overrides,
) -> UPT:
    """A UPT of the named size; `approximator` None keeps the preset's, overrides replace fields.
    ``periodic``: the domain [0, 1)^d wraps around (circular conv padding in the grid encoder,
    periodic position features in the encoder and the decoder)."""
    if preset not in PRESETS:
        raise UptError(f"unknown model preset {preset!r}; known: {', '.join(PRESETS)}")
    if not isinstance(periodic, bool):
        raise UptError(f"model option periodic must be true or false, not {periodic!r}")
    unknown = set(overrides) - {f.name for f in dataclasses.fields(ModelSize)}
    if unknown:
        raise UptError(f"unknown model option(s) {sorted(unknown)} for preset {preset!r}")
    size = dataclasses.replace(PRESETS[preset], **overrides)
    approximator = approximator or size.approximator
    if observed_fraction is not None and (encoder != "mesh" or not 0 < observed_fraction <= 1):
        raise UptError(f"observed_fraction={observed_fraction}: a point-cloud view needs encoder 'mesh' and a "
                       f"fraction in (0, 1]")
    if grid_shape is not None:
        errors = size_errors(size, grid_shape, encoder)
        if errors:
            raise UptError(f"preset {preset!r} with {overrides}: {'; '.join(errors)}")
        if encoder == "grid":
            size = resolve_patch_size(size, grid_shape)
    elif encoder == "grid" and size.patch_size is None:
        size = dataclasses.replace(size, patch_size=4)  # no grid to fit (size tables): the CPU presets' patch
    enc_freqs, dec_freqs = position_octaves(size, grid_shape, encoder, observed_fraction)

    common = dict(dim=size.dim, tokens=size.tokens, heads=size.heads, depth=size.enc_depth)
    in_channels = history * fields
    if encoder == "grid":
        enc = GridEncoder(
            dim_space, in_channels, patch_size=size.patch_size, mlp_ratio=size.mlp_ratio,
            num_freqs=enc_freqs, pooling=size.pooling, periodic=periodic, **common
        )
    elif encoder == "mesh":
        enc = MeshParticleEncoder(
            dim_space, in_channels, supernodes=size.supernodes, neighbours=size.neighbours,
            mlp_ratio=size.mlp_ratio, num_freqs=enc_freqs, periodic=periodic, **common,
        )
    else:
        raise UptError(f"encoder must be 'grid' or 'mesh', not {encoder!r}")

    approx = dict(
        dim=size.dim, hidden=size.approx_hidden, depth=size.depth, heads=size.heads,
        cond_dim=cond_dim, mlp_ratio=size.mlp_ratio, drop_path=size.drop_path,
    )
    if approximator == "pure":
        approx = PureTransformer(**approx)
    elif approximator == "ushaped":
        approx = UShapedTransformer(levels=size.levels, **approx)
    else:
        raise UptError(f"approximator must be 'pure' or 'ushaped', not {approximator!r}")

    dec = AnyPointDecoder(
        dim_space, size.dim, fields, heads=size.heads, layers=size.dec_layers,
        hidden=size.dec_hidden, mlp_ratio=size.mlp_ratio, log_clamp=size.log_clamp,
        num_freqs=dec_freqs, periodic=periodic,
    )
    return UPT(enc, approx, dec, history=history, fields=fields, observed_fraction=observed_fraction)


def parameter_table() -> str:
    """Markdown table of every preset's size on 1D Burgers (1 field, cond = time and nu) and
    2D diffusion-reaction (2 fields, cond = time), grid encoder, the preset's approximator."""
    rows = [
        "| preset | tokens x dim | approximator | 1D Burgers | 2D diffusion-reaction |",
        "|---|---|---|---|---|",
    ]
    for name, size in PRESETS.items():
        with torch.device("meta"):  # sizes only: no memory, no init time
            burgers = build_model(name, dim_space=1, fields=1, cond_dim=2)
            diffreact = build_model(name, dim_space=2, fields=2, cond_dim=1)
        rows.append(
            f"| {name} | {size.tokens} x {size.dim} | {size.approximator} (depth {size.depth}) "
            f"| {count_parameters(burgers) / 1e6:.2f}M | {count_parameters(diffreact) / 1e6:.2f}M |"
        )
    return "\n".join(rows)
