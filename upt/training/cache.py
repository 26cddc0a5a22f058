"""The latent cache: every trajectory encoded once by the trained, frozen encoder.

Operator, diffusion and distillation stages of frozen-encoder arms read latents instead of fields,
so they never run the encoder. The cache records the SHA-256 of the weights of the encoder that made
it (:func:`upt.models.checkpoint.module_hash`: the same for every checkpoint that carries that
encoder, different for any other), and :func:`load_cache` refuses a cache whose hash does not match
the encoder of the run that reads it (docs/architecture.md, "Lessons": train and test latents must come from the
same, trained encoder).

Layout (``torch.save``; loads with ``weights_only=True``)::

    {"encoder_hash": str, "history": int,
     "splits": {split: {"z": [S, T', tokens, dim], "cond": [S, T' - 1, P]}}}

where latent j of a trajectory encodes frames j .. j+history-1 (the state at frame j+history-1),
T' = T - history + 1, and cond[j] conditions the step from latent j to latent j+1.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from upt.atomic import atomic_output
from upt.data.dataset import FieldDataset, history_windows
from upt.errors import UptError
from upt.models.checkpoint import load_checkpoint, module_hash


@torch.no_grad()
def build_cache(encoder_checkpoint: str | Path, data: str | Path, stats: str | Path, out: str | Path,
                *, params=(), splits=("train", "val", "test"), batch_size: int = 64) -> dict:
    checkpoint = load_checkpoint(encoder_checkpoint)
    model = checkpoint.model.eval()
    history = checkpoint.model_spec.get("history", 1)
    cache = {"encoder_hash": module_hash(model.encoder), "history": history, "splits": {}}
    for split in splits:
        ds = FieldDataset(data, stats, split, history=history, horizon=1, params=params)
        steps = ds.n_times - history + 1
        latents = []
        for i in range(ds.n_samples):
            frames = ds.trajectory(i)  # [T, N, C]
            windows = history_windows(frames, history)  # [T', N, hC]
            pos = ds.pos.expand(batch_size, -1, -1)
            mask = model.observation_mask(torch.tensor([int(ds.sample_ids[i])]), ds.pos.shape[0])
            latents.append(torch.cat([model.encode(w, pos[: len(w)], ds.grid_shape,
                                                   None if mask is None else mask.expand(len(w), -1))
                                      for w in windows.split(batch_size)]))
        cond = ds.cond_for(0, steps - 1).expand(ds.n_samples, -1, -1).contiguous()
        cache["splits"][split] = {"z": torch.stack(latents), "cond": cond}
    with atomic_output(out) as tmp:
        torch.save(cache, tmp)
    return cache


def load_cache(path: str | Path, encoder: torch.nn.Module) -> dict:
    """The cache at ``path``, after checking that ``encoder`` is the encoder that made it."""
    try:
        cache = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UptError(f"{path}: no such latent cache") from None
    expected = module_hash(encoder)
    if cache.get("encoder_hash") != expected:
        raise UptError(f"{path}: latent cache was built by encoder {str(cache.get('encoder_hash'))[:12]}, "
                       f"but this run's encoder is {expected[:12]}; rebuild the cache")
    return cache


class LatentWindows(Dataset):
    """Windows of cached latents: z [tokens, dim], target [horizon, tokens, dim], cond [horizon, P]."""

    def __init__(self, cache: dict, split: str, horizon: int = 1):
        self.z, self.cond = cache["splits"][split]["z"], cache["splits"][split]["cond"]
        self.horizon = horizon
        self.windows = self.z.shape[1] - horizon
        if self.windows < 1:
            raise UptError(f"horizon {horizon} does not fit {self.z.shape[1]} cached latents per trajectory")

    def __len__(self) -> int:
        return self.z.shape[0] * self.windows

    def __getitem__(self, i: int) -> dict:
        s, j = divmod(i, self.windows)
        return {"z": self.z[s, j].float(), "target": self.z[s, j + 1:j + 1 + self.horizon].float(),
                "cond": self.cond[s, j:j + self.horizon]}
