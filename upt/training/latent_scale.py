"""Per-channel statistics of latent tokens, and the two training aids built on them.

The decoder layer-normalizes the tokens it reads, so an encoder's latent scale is arbitrary and
only a scale measured on its own latents means anything:

- latent noise (stage setting ``latent_noise``): Gaussian noise of ``latent_noise`` x each channel's
  spread on the approximator's input latent and on every latent it feeds back during a training
  rollout. The approximator is trained on clean encoder latents but rolled out on its own
  predictions, whose one-step error is ~20% of the channel spread on Burgers; training on inputs
  that are off by a similar amount teaches it to pull them back (benchmarks/bench_learning.py).
- the latent anchor (joint loss term ``latent_anchor``): the distance of a batch's per-channel mean
  and spread from the reference ones, in units of the reference spread. A physical loss read
  through the decoder's LayerNorm leaves the latent scale free, and joint training drifts it; the
  anchor holds the encoder's latents and the rolled-out ones at the scale they started from.
"""

from __future__ import annotations

import torch


def channel_stats(z: torch.Tensor, chunk: int = 2**20) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) [D] of latents z [..., D] over every axis but the last.

    Summed in float64 over ``chunk`` rows at a time, so a large latent cache is never copied whole."""
    flat = z.detach().reshape(-1, z.shape[-1])
    total = torch.zeros(z.shape[-1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for rows in flat.split(chunk):
        rows = rows.double().cpu()
        total += rows.sum(0)
        squares += (rows ** 2).sum(0)
    mean = total / len(flat)
    return mean.float(), (squares / len(flat) - mean ** 2).clamp_min(0).sqrt().float()


def perturb(z: torch.Tensor, scale: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """z + scale * N(0, 1), channel c with std scale[c]; the draw comes from ``generator`` (on the
    CPU, so a run is reproducible on any device). Additive: the gradient passes through unchanged."""
    noise = torch.randn(z.shape, generator=generator, device=generator.device)
    return z + scale.to(z) * noise.to(z)


def latent_anchor(z: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """mean over channels c of ((m_c - mean_c)^2 + (s_c - std_c)^2) / std_c^2, where m_c and s_c are
    the mean and spread of channel c over every token of the batch z [..., D].

    Zero at the reference statistics; a latent scaled by a (zero reference mean) costs (a - 1)^2, so
    a weight w against a loss that is flat in the scale pins it, and against one that pushes with
    slope g bounds |a - 1| by about g / (2 w)."""
    flat = z.reshape(-1, z.shape[-1])
    m, s = flat.mean(0), flat.std(0, unbiased=False)
    std = std.to(z).clamp_min(1e-6)
    return (((m - mean.to(z)) ** 2 + (s - std) ** 2) / std ** 2).mean()
