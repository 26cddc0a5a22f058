"""DDP under ``torchrun``: NCCL on GPUs, gloo on CPU (so the tests exercise the same code path).

Without torchrun's environment everything here is a no-op and the run is a single process.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def init() -> None:
    """Join the process group that torchrun describes in the environment, if any."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not active():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)


def shutdown() -> None:
    if active():
        dist.destroy_process_group()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def wrap(stage: nn.Module) -> nn.Module:
    """DDP over the stage: its forward computes the loss, so gradients are averaged across ranks."""
    ids = [device().index] if device().type == "cuda" else None
    return nn.parallel.DistributedDataParallel(stage, device_ids=ids)


def mean(values: dict[str, float]) -> dict[str, float]:
    """Average logged values over the ranks (each rank saw its own shard of the global batch)."""
    if not active() or not values:
        return values
    tensor = torch.tensor(list(values.values()), dtype=torch.float64,
                          device=device() if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(tensor)
    return dict(zip(values, (tensor / world_size()).tolist()))
