"""Evaluate one trained arm, or one baseline, on the test split and write its result files."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from upt.data.dataset import history_windows
from upt import vocabulary
from upt.errors import UptError
from upt.evaluation.scoring import (HORIZONS, TestSet, divergence_rms, latent_drift, reconstruction, score,
                                    timed, velocity_gradient_rms, write_results)
from upt.models.presets import count_parameters
from upt.models.checkpoint import load_checkpoint
from upt.settings import check_student_steps



def evaluate_model(checkpoint: str | Path, data: str | Path, stats: str | Path, out_dir: str | Path, *,
                   dataset: str, arm: str, seed: int, fine_data: str | Path | None = None,
                   batch_size: int = 32, horizons=HORIZONS, sample_steps: int | None = None) -> None:
    """Latent and physical rollouts, the one-step error, the autoencoder's reconstruction floor, and
    zero-shot super-resolution if possible. ``sample_steps`` overrides the corrector's sampling
    steps (a consistency student trained once serves every step count)."""
    result = load_checkpoint(checkpoint)
    model, corrector = result.model.eval(), result.corrector
    if sample_steps is not None:
        if corrector is None or corrector.prediction != "consistency":
            raise UptError(f"{checkpoint}: --sample-steps applies to a consistency student only")
        check_student_steps(sample_steps, None, "--sample-steps")
        corrector.sample_steps = sample_steps
    params = result.settings.get("params", ())
    test = TestSet.load(data, stats, model.history, params)
    u0, cond, pos, grid = test.initial(), test.cond(), test.data.pos, test.data.grid_shape
    generator = torch.Generator().manual_seed(seed)
    correct = (lambda z: corrector.correct(z, generator=generator)) if corrector is not None else None

    ids = test.trajectories()

    def rollout(mode, query_pos=None, last_only=False):
        return torch.cat([
            model.rollout(u, pos.expand(len(u), -1, -1), c, test.steps, grid_shape=grid, mode=mode,
                          correct=correct, last_only=last_only, mask=mask_of(model, t, pos),
                          query_pos=None if query_pos is None else query_pos.expand(len(u), -1, -1))
            for u, c, t in zip(u0.split(batch_size), cond.split(batch_size), ids.split(batch_size))])

    results, predictions, rows = {}, {}, [{"mode": "all", "metric": "params", "value": count_parameters(model)}]
    if corrector is not None:  # the sampler's cost per rollout step, beside its rollout times
        rows.append({"mode": "all", "metric": "nfe", "value": corrector.nfe})
    modes = getattr(model, "rollout_modes", vocabulary.ROLLOUT_MODES)  # the FNO baseline has no latent space
    u, c, t = u0[:batch_size], cond[:batch_size], ids[:batch_size]
    with torch.no_grad():  # one step per mode first: the first calls' one-off costs (allocator
        for mode in modes:  # growth, kernel selection) would otherwise be charged to the first mode timed
            model.rollout(u, pos.expand(len(u), -1, -1), c, 1, grid_shape=grid, mode=mode, mask=mask_of(model, t, pos))
    for mode in modes:
        predicted, seconds, peak = timed(lambda: rollout(mode))
        results[mode], predictions[mode] = score(test, predicted, horizons=horizons), predicted
        rows += [{"mode": mode, "metric": "rollout_seconds", "value": seconds},
                 {"mode": mode, "metric": "peak_mem_mb", "value": peak}]
        if mode == "latent":  # the cost of reaching the horizon when only its final state is wanted (a
            # physical rollout decodes every step anyway: its rollout_seconds is that cost already)
            _, final_seconds, _ = timed(lambda: rollout(mode, last_only=True))
            rows.append({"mode": mode, "metric": "final_frame_seconds", "value": final_seconds})
    results["one-step"] = score(test, one_step(model, test, correct, batch_size), horizons=horizons)
    rows += divergence_rows(test, predictions)
    if "latent" in modes:
        results["reconstruction"] = score(test, reconstruction(test, model), horizons=horizons)
        rows += [{"mode": "latent", "metric": k, "value": v} for k, v in latent_drift(test, model, correct).items()]
    if fine_data is not None and "latent" in modes:
        fine = TestSet.load(fine_data, stats, model.history, params)
        if list(fine.data.sample_ids) != list(test.data.sample_ids) or fine.data.n_times != test.data.n_times:
            raise UptError(f"{fine_data}: its test trajectories are not those of {data}")
        with torch.no_grad():
            results["latent-superres"] = score(test, rollout("latent", fine.data.pos), truth=fine,
                                               horizons=horizons)
    write_results(Path(out_dir), dataset, arm, seed, results, test, predictions, rows)


def divergence_rows(test: TestSet, predictions: dict) -> list[dict]:
    """How incompressible each mode's predicted velocity is, beside the truth (2D velocity data only):
    ``divergence_rms``; ``divergence_ratio``, that over the truth's (the truth's own divergence is
    the data's floor: discretization, or float32 rounding under spectral derivatives); and
    ``divergence_rel_grad``, that over the RMS of the same field's velocity gradient (scale-free;
    on a periodic domain the divergent fraction of the gradient, 0 to 1)."""
    true_frames = test.frames[:, test.data.history:]
    truth = divergence_rms(test, true_frames)
    if truth is None:
        return []

    def ratio(a, b):  # NaN for a zero scale (a constant field)
        return a / b if b > 0 else math.nan

    rows = [{"mode": "truth", "metric": "divergence_rms", "value": truth},
            {"mode": "truth", "metric": "divergence_rel_grad",
             "value": ratio(truth, velocity_gradient_rms(test, true_frames))}]
    for mode, frames in predictions.items():
        rms = divergence_rms(test, frames)
        rows += [{"mode": mode, "metric": "divergence_rms", "value": rms},
                 {"mode": mode, "metric": "divergence_ratio", "value": ratio(rms, truth)},
                 {"mode": mode, "metric": "divergence_rel_grad",
                  "value": ratio(rms, velocity_gradient_rms(test, frames))}]
    return rows


def mask_of(model, trajectories: torch.Tensor, pos: torch.Tensor):
    """The points a point-cloud view observes of these trajectories (None: all of them, or the FNO)."""
    observe = getattr(model, "observation_mask", None)
    return None if observe is None else observe(trajectories, pos.shape[0])


@torch.no_grad()
def one_step(model, test: TestSet, correct, batch_size: int) -> torch.Tensor:
    """Teacher-forced: each frame predicted from the true frames before it. [S, steps, N, C]."""
    h, s = test.data.history, len(test.frames)
    windows = history_windows(test.frames, h)[:, : test.steps]  # [S, steps, N, hC]
    cond = test.cond()
    flat_u, flat_c = windows.flatten(0, 1), cond.flatten(0, 1)
    flat_t = test.trajectories().repeat_interleave(test.steps)
    pos = test.data.pos
    out = []
    for u, c, t in zip(flat_u.split(batch_size), flat_c.split(batch_size), flat_t.split(batch_size)):
        out.append(model.rollout(u, pos.expand(len(u), -1, -1), c[:, None], 1, grid_shape=test.data.grid_shape,
                                 correct=correct, mask=mask_of(model, t, pos))[:, 0])
    return torch.cat(out).unflatten(0, (s, test.steps))


def evaluate_baseline(kind: str, data: str | Path, stats: str | Path, out_dir: str | Path, *,
                      dataset: str, seed: int, history: int = 1, solver: str | None = None,
                      coarsen: int = 4, horizons=HORIZONS) -> None:
    """Persistence, the spatial mean, or the numerical solver on a ``coarsen`` times coarser grid
    (mode ``physical``).

    The coarse-solver run also times the solver at the data's own resolution on the same test
    trajectories (arm ``solver``, mode ``reference``): the cost a surrogate must undercut.
    """
    baseline = vocabulary.baseline(kind)
    test = TestSet.load(data, stats, history)
    predict = baseline.load()
    rows = []
    predicted, seconds, peak = timed(lambda: predict(test, solver=solver, coarsen=coarsen))
    if baseline.solver:  # the cost a surrogate must undercut: the solver at the data's own resolution
        _, reference_seconds, _ = timed(lambda: predict(test, solver=solver, coarsen=1))
        rows.append({"mode": "reference", "metric": "rollout_seconds", "value": reference_seconds,
                     "arm": "solver"})
    rows += [{"mode": "physical", "metric": "rollout_seconds", "value": seconds},
             {"mode": "physical", "metric": "peak_mem_mb", "value": peak},
             {"mode": "all", "metric": "params", "value": 0}]
    results = {"physical": score(test, predicted, horizons=horizons)}
    rows += divergence_rows(test, {"physical": predicted})
    write_results(Path(out_dir), dataset, kind, seed, results, test, {"physical": predicted}, rows)
