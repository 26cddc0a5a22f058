"""Named model sizes: the table an ablation arm's ``model.preset`` names.

Plain data, no torch: the workflow reads it while building the DAG (to label arms by latent size),
and importing torch there would cost every ``snakemake`` call, including each cluster job's, a
second or more. :func:`upt.models.presets.build_model` turns a size into a UPT.
"""

import math
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class ModelSize:
    tokens: int  # latent tokens T
    dim: int  # latent width D (also the encoder's width)
    depth: int  # approximator blocks (a U spreads them over its stages)
    heads: int  # attention heads everywhere
    approx_hidden: int  # approximator width
    approximator: str = "pure"  # "pure" | "ushaped"
    levels: int = 1  # U-shape: times the token count is halved
    mlp_ratio: float = 4.0
    drop_path: float = 0.0  # rate at the last approximator block (linear from 0)
    patch_size: int | None = 4  # grid encoder, per axis; None: the size that makes `tokens` patches
    enc_depth: int = 2  # encoder blocks over patches / supernodes
    supernodes: int = 256  # mesh encoder
    neighbours: int = 16  # mesh encoder: points averaged into each supernode
    dec_layers: int = 2  # decoder cross-attention blocks
    dec_hidden: int = 64  # decoder width
    log_clamp: float | None = None  # decoder output clamp threshold (None: off)
    pos_freqs: int | None = None  # decoder position octaves; None: all the training grid resolves
    pooling: str = "local"  # grid encoder, fewer tokens than patches: "local" means or "perceiver"


PRESETS: dict[str, ModelSize] = {
    "upt-tiny": ModelSize(
        tokens=4, dim=16, depth=3, heads=2, approx_hidden=16, patch_size=4, enc_depth=1,
        supernodes=8, neighbours=4, dec_layers=1, dec_hidden=16,
    ),
    "upt-cpu-s": ModelSize(
        tokens=32, dim=32, depth=3, heads=2, approx_hidden=32, enc_depth=1, supernodes=64,
        dec_layers=1, dec_hidden=32,
    ),
    "upt-cpu-m": ModelSize(
        tokens=64, dim=64, depth=4, heads=4, approx_hidden=64, enc_depth=1, supernodes=128,
        dec_layers=2, dec_hidden=64,
    ),
    # The predecessor's golden configuration: 16 tokens x 32, U-shaped, approximator width 64.
    "ups-16x32": ModelSize(
        tokens=16, dim=32, depth=5, heads=4, approx_hidden=64, approximator="ushaped", levels=2,
        enc_depth=1, dec_layers=2, dec_hidden=32,
    ),
    # UPT paper sizes (tokens x latent width). The approximator runs wider than the latent (as the
    # predecessor's 32 -> 64), with 64-wide heads, which puts the totals near the names.
    "upt-8m": ModelSize(
        tokens=256, dim=128, depth=4, heads=4, approx_hidden=256, enc_depth=4, supernodes=512,
        dec_layers=2, dec_hidden=128, patch_size=None,
    ),
    "upt-17m": ModelSize(
        tokens=256, dim=192, depth=5, heads=6, approx_hidden=384, enc_depth=3, supernodes=1024,
        dec_layers=2, dec_hidden=192, patch_size=None,
    ),
    "upt-68m": ModelSize(
        tokens=512, dim=384, depth=12, heads=8, approx_hidden=512, levels=2, enc_depth=4,
        supernodes=2048, dec_layers=2, dec_hidden=384, patch_size=None,
    ),
}


def band_limit(points: int) -> int:
    """How many octaves of Fourier position features sin/cos(pi 2^k x), k = 0, 1, ..., a grid of
    ``points`` cells per unit length resolves without aliasing: the finest, pi 2^(K-1), stays at or
    below half the grid's Nyquist frequency pi * points. Finer features alternate sign or sit
    constant on the training points and take values never seen in training between them, which
    costs the decoder at super-resolution points (16-22% more error, measured)."""
    return max(1, int(math.floor(math.log2(max(points, 2)))))


def size_of(model: dict) -> ModelSize:
    """The size an arm's ``model`` settings name: its preset with the ModelSize fields it overrides
    (other keys, e.g. ``encoder`` or the FNO's, are not sizes and are ignored here)."""
    fields = {f for f in ModelSize.__dataclass_fields__}
    return replace(PRESETS[model["preset"]], **{k: v for k, v in model.items() if k in fields})


def tile_factor(cells, tokens: int) -> int | None:
    """The integer f that coarsens a grid of ``cells`` per axis into exactly ``tokens`` cells of f
    (1D) or f x f (2D) each, f dividing every side; None if there is none. The one rule behind the
    automatic patch size (cells = points) and the grid encoder's local pooling (cells = patches)."""
    cells = tuple(int(n) for n in cells)
    f = round((math.prod(cells) / tokens) ** (1 / len(cells)))
    ok = f >= 1 and all(n % f == 0 for n in cells) and math.prod(n // f for n in cells) == tokens
    return f if ok else None


def size_errors(size: ModelSize, grid_shape, encoder: str = "grid") -> list[str]:
    """Why ``size`` cannot run on a grid of ``grid_shape`` (empty when it can): the checks the
    workflow runs at parse time and :func:`upt.models.presets.build_model` runs again."""
    errors = []
    grid = tuple(int(n) for n in grid_shape)
    if size.pos_freqs is not None and size.pos_freqs > band_limit(min(grid)):
        errors.append(f"pos_freqs={size.pos_freqs} exceeds the {band_limit(min(grid))} octaves a "
                      f"{'x'.join(map(str, grid))} grid resolves")
    if encoder != "grid" or size.pooling == "perceiver":  # a perceiver takes any number of patches
        return errors
    if size.patch_size is None:
        patch = tile_factor(grid, size.tokens)
        if patch is None:
            return errors + [f"no patch size cuts the grid {grid} into tokens={size.tokens} patches; "
                             f"set patch_size (fewer tokens than patches are pooled locally)"]
        size = replace(size, patch_size=patch)
    if any(n % size.patch_size for n in grid):
        return errors + [f"patch_size={size.patch_size} does not divide the grid {grid}"]
    patches = [n // size.patch_size for n in grid]
    if size.tokens > math.prod(patches):
        return errors + [f"tokens={size.tokens} exceed the {math.prod(patches)} patches of the grid {grid} "
                         f"(patch_size={size.patch_size}); lower patch_size"]
    if tile_factor(patches, size.tokens) is None:
        errors.append(f"tokens={size.tokens} do not tile the {'x'.join(map(str, patches))} patches of the "
                      f"grid {grid} (patch_size={size.patch_size}): tokens must be the patch count divided "
                      f"by f^{len(grid)} for an integer f dividing every side")
    return errors


def resolve_patch_size(size: ModelSize, grid_shape) -> ModelSize:
    """``size`` with an automatic patch size (None) made concrete for this grid."""
    if size.patch_size is not None or grid_shape is None:
        return size
    patch = tile_factor(grid_shape, size.tokens)
    if patch is None:
        raise ValueError(f"no patch size cuts the grid {tuple(grid_shape)} into {size.tokens} patches")
    return replace(size, patch_size=patch)


def position_octaves(size: ModelSize, grid_shape, encoder: str = "grid",
                     observed_fraction: float | None = None) -> tuple[int, int]:
    """(encoder, decoder) octaves of position features: band-limited to what each one sees, the
    decoder's capped by ``pos_freqs``. The grid encoder sees the patch grid; the mesh encoder sees
    the points themselves, a fraction ``observed_fraction`` of the grid's, whose spacing per axis is
    that of a grid of min(grid) * fraction^(1/d) points (UPT embeds point coordinates at their own
    resolution; the patch grid's 3 octaves on 32^2 left it blind to finer structure). Without a
    grid (point clouds of unknown spacing), ``pos_freqs`` or 8."""
    if grid_shape is None:
        octaves = size.pos_freqs or 8
        return octaves, octaves
    decoder = band_limit(min(grid_shape))
    if size.pos_freqs is not None:
        decoder = min(decoder, size.pos_freqs)
    if encoder == "mesh":
        per_axis = min(grid_shape) * (observed_fraction or 1.0) ** (1 / len(grid_shape))
        return band_limit(int(per_axis)), decoder
    return min(decoder, band_limit(min(grid_shape) // (size.patch_size or 1))), decoder
