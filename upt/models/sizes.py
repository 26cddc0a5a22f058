"""Named model sizes: the table an ablation arm's ``model.preset`` names.

Plain data, no torch: the workflow reads it while building the DAG (to label arms by latent size),
and importing torch there would cost every ``snakemake`` call, including each cluster job's, a
second or more. :func:`upt.models.presets.build_model` turns a size into a UPT.
"""

from dataclasses import dataclass


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
    patch_size: int = 4  # grid encoder, per axis
    enc_depth: int = 2  # encoder blocks over patches / supernodes
    supernodes: int = 256  # mesh encoder
    neighbours: int = 16  # mesh encoder: points averaged into each supernode
    dec_layers: int = 2  # decoder cross-attention blocks
    dec_hidden: int = 64  # decoder width
    log_clamp: float | None = None  # decoder output clamp threshold (None: off)


PRESETS: dict[str, ModelSize] = {
    "upt-tiny": ModelSize(
        tokens=8, dim=16, depth=3, heads=2, approx_hidden=16, patch_size=4, enc_depth=1,
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
        dec_layers=2, dec_hidden=128,
    ),
    "upt-17m": ModelSize(
        tokens=256, dim=192, depth=5, heads=6, approx_hidden=384, enc_depth=3, supernodes=1024,
        dec_layers=2, dec_hidden=192,
    ),
    "upt-68m": ModelSize(
        tokens=512, dim=384, depth=12, heads=8, approx_hidden=512, levels=2, enc_depth=4,
        supernodes=2048, dec_layers=2, dec_hidden=384,
    ),
}
