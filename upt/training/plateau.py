"""Early stopping on a validation plateau, and the plateau check of a finished run.

The loop (:func:`upt.training.loop.fit`) keeps a :func:`new_state` in its saved progress and calls
:func:`after_epoch` with each epoch's validation loss. An epoch *improves* when its validation loss
is below the reference (the loss of the last improving epoch) by more than ``min_delta`` of it;
``patience`` epochs in a row without one are a plateau. On the first plateau a run with
``plateau_decay`` multiplies its learning rate by that factor and goes on (the usual step anneal:
the cosine schedule runs over the cap, so an early plateau is met at a high learning rate); on the
next plateau, or the first without ``plateau_decay``, it stops. Every DDP rank validates the whole
split with the same weights, so every rank takes the same decision.

:func:`plateau_gain` is the quantity the outside check uses on a finished run: the relative
improvement of the best validation loss over the last quarter of its epochs on the best before.

Torch-free: ``upt aggregate`` reads it too.
"""

from __future__ import annotations

import math
from typing import Sequence

PLATEAU, CAP = "plateau", "cap"  # why a run stopped (metrics.csv's ``stop``, training.csv's ``stop_reason``)
NOT_AT_PLATEAU_GAIN = 0.10  # a run that reached its cap still improving by more than this is flagged


def new_state() -> dict:
    """The early-stopping state of a fresh run (plain values: it is saved in ``state.pt``)."""
    return {"reference": math.inf, "stale": 0, "lr_scale": 1.0}


def improves(loss: float, reference: float, min_delta: float) -> bool:
    """``loss`` is lower than ``reference`` by more than ``min_delta`` of it (relative)."""
    return loss < reference - min_delta * abs(reference) if math.isfinite(reference) else True


def after_epoch(state: dict, val_loss: float, patience: int | None, min_delta: float,
                plateau_decay: float | None) -> bool:
    """Update ``state`` with an epoch's validation loss; True when the run stops on a plateau
    (never without ``patience``). On the first plateau with ``plateau_decay`` it scales the
    learning rate (``state["lr_scale"]``) and restarts the patience window instead."""
    if improves(val_loss, state["reference"], min_delta):
        state["reference"], state["stale"] = val_loss, 0
        return False
    state["stale"] += 1
    if patience is None or state["stale"] < patience:
        return False
    if plateau_decay is not None and state["lr_scale"] == 1.0:
        state["lr_scale"], state["stale"] = plateau_decay, 0
        return False
    return True


def plateau_gain(val_losses: Sequence[float]) -> float:
    """Relative improvement of the best validation loss over the last quarter of the epochs
    (``ceil(n / 4)``, at least one) on the best of the epochs before; NaN for a single epoch."""
    losses = list(val_losses)
    if len(losses) < 2:
        return math.nan
    before = min(losses[: len(losses) - math.ceil(len(losses) / 4)])
    best = min(losses)
    return (before - best) / abs(before) if before != best else 0.0
