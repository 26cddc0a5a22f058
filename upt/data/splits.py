"""Train/validation/test splits by trajectory, fixed by a seed and stored with the data.

Splitting whole trajectories (never time steps of one trajectory) keeps test dynamics unseen in
training. The labels live in the converted file's ``split`` coordinate, so every later step reads the
same split and the file alone says which trajectories were held out.
"""

from __future__ import annotations

import numpy as np

from upt.errors import UptError

SPLITS = ("train", "val", "test")


def assign_splits(n_samples: int, val_fraction: float, test_fraction: float, seed: int) -> np.ndarray:
    """Return one label per trajectory (``"train"``, ``"val"`` or ``"test"``), disjoint by construction.

    A non-zero fraction gets at least one trajectory, so tiny test configs still evaluate something.
    """
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise UptError(f"{name} must be in [0, 1), got {value}")
    n_val = _count(n_samples, val_fraction)
    n_test = _count(n_samples, test_fraction)
    if n_samples - n_val - n_test < 1:
        raise UptError(f"{n_samples} trajectories leave none for training with val_fraction="
                       f"{val_fraction} and test_fraction={test_fraction}")
    order = np.random.default_rng(seed).permutation(n_samples)
    labels = np.full(n_samples, "train", dtype=object)
    labels[order[:n_test]] = "test"
    labels[order[n_test:n_test + n_val]] = "val"
    return labels


def _count(n: int, fraction: float) -> int:
    return max(1, round(n * fraction)) if fraction > 0 else 0


def split_indices(labels, split: str) -> np.ndarray:
    """Positions of the trajectories labelled ``split`` (labels as stored in a converted file)."""
    if split not in SPLITS:
        raise UptError(f"unknown split '{split}'; expected one of {', '.join(SPLITS)}")
    return np.flatnonzero(np.asarray(labels).astype(str) == split)
