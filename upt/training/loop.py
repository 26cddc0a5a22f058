"""The one training loop every stage runs through (autoencoder, operator, joint, diffusion, distill,
consistency).

A stage is an ``nn.Module`` whose ``forward(batch, generator)`` returns ``(total_loss, terms)`` and
whose trainable parameters are exactly the ones with ``requires_grad``; a stage that keeps weights
the optimizer does not step (the consistency stage's EMA target) updates them in an optional
``after_step()``, called after every optimizer step. The loop owns everything
else: AdamW with linear warm-up and cosine decay over the ``epochs`` cap (or PDEBench's step
decay, ``schedule: step``), gradient clipping, EMA, bf16 autocast on CUDA, DDP under ``torchrun``,
validation each epoch with best-checkpoint selection on the validation split, early stopping on a validation plateau (:mod:`upt.training.plateau`), a
metrics CSV whose last row says why the run stopped, checkpoints every N steps and on SIGTERM, and
bit-for-bit resume on CPU.

Determinism: the data order of epoch e comes from a generator seeded by (seed, e) and each step's
own randomness (query points) from one seeded by (seed, step), so neither depends on whether the
run was interrupted; the global torch RNG (drop-path, diffusion noise) is saved in the state.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import json
import math
import signal
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from upt.atomic import atomic_output
from upt.errors import Preempted, UptError
from upt.results import RUN_METRICS, STATE
from upt.settings import LoopSettings
from upt.training import distributed, plateau


def warmup_cosine(total_steps: int, warmup: float, min_lr: float) -> Callable[[int], float]:
    warm = max(1, round(warmup * total_steps))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, total_steps - warm))
        return min_lr + (1 - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def step_decay(steps_per_epoch: int, every_epochs: int, gamma: float) -> Callable[[int], float]:
    """PDEBench's StepLR(step_size=every_epochs, gamma): lr x gamma every ``every_epochs`` epochs."""
    return lambda step: gamma ** (step // (steps_per_epoch * every_epochs))


def adamw(params: list[nn.Parameter], **kwargs) -> torch.optim.AdamW:
    """AdamW with torch's fused kernel on CPU and CUDA: one pass over all parameters instead of a
    Python loop of small ops per tensor, which a profile showed taking 15% of a small model's CPU
    training step (the fused step itself is ~5x faster; see the README's speed-ups). The kernel
    takes real floating-point tensors only: the FNO's complex spectral weights keep the default."""
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    return torch.optim.AdamW(params, fused=fused or None, **kwargs)


def step_generator(seed: int, step: int) -> torch.Generator:
    """Randomness of one step, identical on every rank and after a resume."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def fit(stage: nn.Module, train: Dataset, val: Dataset, settings: LoopSettings, out_dir: str | Path,
        *, collate: Callable | None = None, device: torch.device | None = None,
        fingerprint: str = "") -> nn.Module:
    """Train ``stage``; return the module whose weights scored best on ``val`` (EMA if enabled).

    ``out_dir`` receives ``state.pt`` (resume state, rewritten every ``checkpoint_every`` steps and on
    SIGTERM) and ``metrics.csv`` (one row per epoch: its learning rate, losses, ``stale`` epochs
    without improvement, and on the last row ``stop``, "plateau" or "cap"). An existing
    ``state.pt`` of the same run (same loop settings, stage and ``fingerprint`` of everything else
    that shapes the run) is resumed; one left by a differently configured run is ignored and
    overwritten.
    """
    out_dir = Path(out_dir)
    rank, world = distributed.rank(), distributed.world_size()
    device = device or distributed.device()
    stage.to(device)
    if settings.batch_size % world:
        raise UptError(f"batch_size {settings.batch_size} is not divisible by {world} DDP processes")
    steps_per_epoch = len(train) // settings.batch_size
    if settings.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, settings.max_steps_per_epoch)
    if steps_per_epoch == 0:
        raise UptError(f"{len(train)} training windows are fewer than batch_size {settings.batch_size}")
    total = settings.epochs * steps_per_epoch

    params = [p for p in stage.parameters() if p.requires_grad]
    optimizer = adamw(params, lr=settings.lr, weight_decay=settings.weight_decay)
    schedule = (step_decay(steps_per_epoch, settings.lr_step_epochs, settings.lr_gamma) if settings.schedule == "step"
                else warmup_cosine(total, settings.warmup, settings.min_lr))
    ema = (AveragedModel(stage, multi_avg_fn=get_ema_multi_avg_fn(settings.ema), use_buffers=True)
           if settings.ema else None)
    trainer = distributed.wrap(stage) if world > 1 else stage
    after_step = getattr(stage, "after_step", None)

    progress = {"step": 0, "epoch": 0, "best_val": math.inf, "best": None, "rows": [], "sums": {},
                "plateau": plateau.new_state(), "stop": None}

    def lr() -> float:  # of the next step: the schedule, scaled down after a plateau (plateau_decay)
        return settings.lr * schedule(progress["step"]) * progress["plateau"]["lr_scale"]
    state_path = out_dir / STATE
    run_id = json.dumps([getattr(stage, "name", None), asdict(settings), fingerprint], sort_keys=True)
    saved = torch.load(state_path, map_location="cpu", weights_only=True) if state_path.exists() else None
    if saved is not None and saved["run_id"] != run_id:
        warnings.warn(f"{state_path} was left by a differently configured run; starting afresh")
        saved = None
    if saved is not None:
        stage.load_state_dict(saved["stage"])
        optimizer.load_state_dict(saved["optimizer"])
        if ema is not None:
            ema.load_state_dict(saved["ema"])
        torch.set_rng_state(saved["rng"])
        progress = saved["progress"]

    def save_state() -> None:
        if rank != 0:
            return
        with atomic_output(state_path) as tmp:
            torch.save({"stage": stage.state_dict(), "optimizer": optimizer.state_dict(),
                        "ema": ema.state_dict() if ema else None,
                        "rng": torch.get_rng_state(), "progress": progress,
                        "run_id": run_id}, tmp)

    stop = {"sigterm": False}
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.update(sigterm=True))
    bar = tqdm(total=total, initial=progress["step"], disable=None if rank == 0 else True,
               desc=getattr(stage, "name", "train"))
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                else contextlib.nullcontext())
    try:
        while progress["epoch"] < settings.epochs and progress["stop"] is None:
            epoch, started = progress["epoch"], time.perf_counter()
            order = torch.randperm(len(train), generator=step_generator(settings.seed, -1 - epoch))
            batches = order[: steps_per_epoch * settings.batch_size].view(steps_per_epoch, -1)
            done_in_epoch = progress["step"] - epoch * steps_per_epoch
            shards = [b[rank::world].tolist() for b in batches[done_in_epoch:]]
            # Its own generator: a DataLoader otherwise draws its worker seed from the global RNG,
            # which would shift the global random stream on every resume.
            loader = DataLoader(train, batch_sampler=shards, collate_fn=collate, num_workers=settings.workers,
                                generator=step_generator(settings.seed, -1 - epoch))
            stage.train()
            for batch in loader:
                batch = _to(batch, device)
                with autocast:
                    loss, terms = trainer(batch, step_generator(settings.seed, progress["step"]))
                _check_finite(loss, terms, progress["step"], "loss")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                norm = nn.utils.clip_grad_norm_(params, settings.grad_clip)
                _check_finite(norm, terms, progress["step"], "gradient norm")
                for group in optimizer.param_groups:
                    group["lr"] = lr()
                optimizer.step()
                if after_step is not None:
                    after_step()
                if ema is not None:
                    ema.update_parameters(stage)
                progress["step"] += 1
                for name, value in {"loss": loss.detach(), **terms}.items():
                    progress["sums"][name] = progress["sums"].get(name, 0.0) + float(value)
                bar.update()
                bar.set_postfix(loss=f"{loss.item():.4g}")
                if stop["sigterm"]:
                    save_state()
                    raise Preempted(f"SIGTERM at step {progress['step']}; state saved to {state_path}")
                if progress["step"] % settings.checkpoint_every == 0:
                    save_state()
            model = ema.module if ema is not None else stage
            val_loss = validate(model, val, settings, collate, device)
            if plateau.after_epoch(progress["plateau"], val_loss, settings.patience, settings.min_delta,
                                   settings.plateau_decay):
                progress["stop"] = plateau.PLATEAU
            elif epoch + 1 == settings.epochs:
                progress["stop"] = plateau.CAP
            row = {"epoch": epoch + 1, "step": progress["step"], "lr": lr(),
                   **{f"train_{k}": v / steps_per_epoch for k, v in distributed.mean(progress["sums"]).items()},
                   "val_loss": val_loss, "seconds": time.perf_counter() - started,
                   "stale": progress["plateau"]["stale"], "stop": progress["stop"] or ""}
            progress["rows"].append(row)
            if val_loss < progress["best_val"]:
                progress["best_val"], progress["best"] = val_loss, copy.deepcopy(model.state_dict())
            progress["epoch"], progress["sums"] = epoch + 1, {}
            save_state()
            if rank == 0:
                bar.write(f"epoch {epoch + 1}/{settings.epochs}: train {row['train_loss']:.5g} "
                          f"val {val_loss:.5g}" + (f" (stop: {row['stop']})" if row["stop"] else ""))
                with atomic_output(out_dir / RUN_METRICS) as tmp:
                    write_rows(tmp, progress["rows"])
    finally:
        bar.close()
        signal.signal(signal.SIGTERM, previous)
    best = copy.deepcopy(stage)
    best.load_state_dict(progress["best"])
    return best


def write_rows(path, rows: list[dict]) -> None:
    """The epochs' rows as CSV, columns in order of first appearance, NaN and None as empty cells
    (what pandas writes; the csv module keeps pandas' ~0.2 s import off every training job)."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, columns, restval="")
        writer.writeheader()
        writer.writerows({k: "" if v is None or (isinstance(v, float) and math.isnan(v)) else v
                          for k, v in row.items()} for row in rows)


@torch.no_grad()
def validate(model: nn.Module, val: Dataset, settings: LoopSettings, collate, device) -> float:
    """Mean stage loss over the validation split (every window, fixed randomness)."""
    model.eval()
    rng_state = torch.get_rng_state()  # validation must not shift the training randomness
    torch.manual_seed(settings.seed)
    total, count = 0.0, 0
    for batch in DataLoader(val, batch_size=settings.batch_size, collate_fn=collate):
        batch = _to(batch, device)
        loss, _ = model(batch, step_generator(settings.seed, -10**6 - count))
        n = len(next(iter(batch.values())))
        total, count = total + float(loss) * n, count + n
    torch.set_rng_state(rng_state)
    model.train()
    loss = total / max(count, 1)  # every rank validates the whole split with the same weights
    if not math.isfinite(loss):
        raise UptError(f"validation loss is {loss}")
    return loss


def _check_finite(value: torch.Tensor, terms: dict, step: int, what: str) -> None:
    if not torch.isfinite(value):
        detail = ", ".join(f"{k}={float(v):.4g}" for k, v in terms.items())
        raise UptError(f"non-finite {what} ({value.item()}) at step {step}; loss terms: {detail}")


def _to(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
