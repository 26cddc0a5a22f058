"""Rollout time: latent vs physical rollout, their components, and the numerical solver on the same trajectories.

A latent rollout encodes once, advances the tokens T times and decodes (every frame, or only the
final one); a physical rollout decodes and re-encodes after every step. With e, a, d the times of
one encode, one approximator step and one decode at all grid points,

    latent_final = e + T a + d,   latent_all = e + T (a + d),   physical = T (e + a + d),

so physical / latent_final ~ T (e + a + d) / (e + T a + d) (the "component bound"), which grows
with T towards (e + a + d) / a: a 10x speed-up needs e + d >= 9 a, whatever the horizon. The
solver is upt's own solver of the data (``baselines.solve``, no coarsening: Burgers' finite volumes,
or the pseudo-spectral Navier-Stokes solver with ``--pde ns2d``) from the same initial conditions
over the same frames.

Weights are untrained (fresh initialization): the time of a forward pass depends on shapes, not on
weight values. Data: Burgers trajectories generated per grid size (same seed, so the same initial
conditions sampled at every resolution), converted and loaded as the test split like ``upt evaluate``.

    python benchmarks/bench_rollout.py [--presets upt-cpu-s upt-8m] [--arms upt-s] [--config config/config.yaml]
        [--resolutions 128 256 1024] [--trajectories 8] [--frames 41] [--repeats 3] [--budget 10] [--device cpu]
    python benchmarks/bench_rollout.py --pde ns2d --presets upt-8m --arms upt-s --resolutions 64 128 --frames 21

writes ``rollout_speed.csv`` and ``rollout_speed.png`` (``rollout_speed_ns2d.*`` for 2D Navier-Stokes,
whose resolutions are points per side and whose arms are built as the config's ns2d dataset builds them).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import torch
import yaml

from gpu_check import sync
from upt.arms import resolve_arm
from upt.data.convert import convert
from upt.data.solvers.burgers import DT_SAVE, T_END, generate_burgers1d
from upt.data.solvers.ns2d import generate_ns2d
from upt.data.stats import compute_stats
from upt.evaluation import baselines
from upt.evaluation.scoring import TestSet
from upt.models.presets import count_parameters
from upt.models.factory import model_from_spec

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SAVED_STEPS = round(T_END / DT_SAVE)  # the generator saves 201 frames; convert keeps every reduce_t-th
ROLLOUTS = {"latent_all": ("latent", False), "latent_final": ("latent", True),
            "physical": ("physical", False), "physical_final": ("physical", True)}


def median_time(fn, repeats: int, device, budget_s: float = float("inf")) -> tuple[float, int]:
    """(median seconds, runs): at most ``repeats`` runs, fewer once they took ``budget_s`` in all
    (a 40-step rollout of upt-8m takes ~10 s on 2 cores, the solver at 1024 points ~25 s)."""
    times = []
    while len(times) < repeats and sum(times) < budget_s:
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return float(np.median(times)), len(times)


def burgers_test_set(tmp: Path, points: int, trajectories: int, frames: int, nu: float) -> TestSet:
    raw, data, stats = (tmp / f"burgers{points}.{ext}" for ext in ("h5", "nc", "json"))
    # One extra trajectory as the training split (stats need one); all the others are test.
    generate_burgers1d(raw, samples=trajectories + 1, nu=nu, resolution=points, seed=0)
    convert(raw, data, reduce_t=SAVED_STEPS // (frames - 1), val_fraction=0.0,
            test_fraction=trajectories / (trajectories + 1), md5="0" * 32)
    compute_stats(data, stats)
    return TestSet.load(data, stats, history=1)


def ns2d_test_set(tmp: Path, points: int, trajectories: int, frames: int) -> TestSet:
    """Navier-Stokes at ``points`` per side, one saved frame per second over ``frames - 1`` seconds."""
    raw, data, stats = (tmp / f"ns{points}.{ext}" for ext in ("h5", "nc", "json"))
    generate_ns2d(raw, samples=trajectories + 1, resolution=points, seed=0, t_end=float(frames - 1), frames=frames)
    convert(raw, data, val_fraction=0.0, test_fraction=trajectories / (trajectories + 1), md5="0" * 32)
    compute_stats(data, stats)
    return TestSet.load(data, stats, history=1)


def model_specs(presets: list[str], config: Path, arms: list[str], dataset: str | None = None) -> dict[str, dict]:
    """label -> model spec: bare presets, and arms of a pipeline config as that config builds them
    (on ``dataset``, with its own base overrides, where given)."""
    specs = {preset: {"preset": preset} for preset in presets}
    if arms:
        cfg = yaml.safe_load(config.read_text())
        for arm in arms:
            model = resolve_arm(cfg, arm, dataset if dataset in cfg["datasets"] else None)["model"]
            if model.get("family", "upt") != "upt":
                raise SystemExit(f"arm {arm} is not a UPT (family {model['family']}): it has no latent rollout")
            specs[f"{arm} ({config.name})"] = model
    return specs


def time_model(spec: dict, test: TestSet, repeats: int, budget_s: float, device) -> tuple[list[dict], int]:
    torch.manual_seed(0)
    grid, steps = test.data.grid_shape, test.steps
    model = model_from_spec({**spec, "dim_space": len(grid), "fields": len(test.data.fields),
                             "cond_dim": test.data.cond_dim, "grid_shape": list(grid)}).eval().to(device)
    u0, cond = test.initial().to(device), test.cond().to(device)
    pos = test.data.pos.to(device).expand(len(u0), -1, -1)
    rows = []
    with torch.inference_mode():
        # Warm-up: the first calls pay for allocator growth and oneDNN kernel selection. A rollout
        # runs the same three calls at the same shapes, so warming them warms every rollout too.
        z = model.encode(u0, pos, grid)
        model.decode(model.step(z, cond[:, 0]), pos)
        parts = {"encode": lambda: model.encode(u0, pos, grid), "step": lambda: model.step(z, cond[:, 0]),
                 "decode": lambda: model.decode(z, pos)}
        for name, fn in parts.items():  # milliseconds each, so more repeats for a stable median
            seconds, runs = median_time(fn, 5 * repeats, device, budget_s)
            rows.append({"quantity": name, "seconds": seconds, "runs": runs})
        for name, (mode, last_only) in ROLLOUTS.items():
            seconds, runs = median_time(lambda: model.rollout(u0, pos, cond, steps, grid_shape=grid, mode=mode,
                                                              last_only=last_only), repeats, device, budget_s)
            rows.append({"quantity": name, "seconds": seconds, "runs": runs})
    return rows, count_parameters(model)


def ratios(t: dict, steps: int) -> dict:
    e, a, d = t["encode"], t["step"], t["decode"]
    return {"speedup_final": t["physical"] / t["latent_final"], "speedup_all": t["physical"] / t["latent_all"],
            "bound": steps * (e + a + d) / (e + steps * a + d), "bound_long": (e + a + d) / a,
            "solver_vs_final": t["solver"] / t["latent_final"]}


def markdown_summary(tidy: pd.DataFrame) -> str:
    """The README's table from the tidy CSV: per model and grid, the final-frame rollout times,
    the measured speed-up of latent over physical rollout, its component bound, and the solver."""
    from upt.plotting.tables import markdown_table

    times = tidy.dropna(subset=["seconds"]).pivot_table(index=["preset", "points"], columns="quantity",
                                                        values="seconds", sort=False)
    ups = tidy.dropna(subset=["speedup"]).pivot_table(index=["preset", "points"], columns="quantity",
                                                      values="speedup", sort=False)
    solver = times.xs("solver", level="preset")["solver"] if "solver" in times.index.get_level_values(0) else None
    rows = []
    for (preset, points), t in times.drop(index="solver", level="preset", errors="ignore").iterrows():
        u = ups.loc[(preset, points)]
        rows.append({"model": preset, "grid": points, "latent, final frame (s)": f"{t['latent_final']:.3g}",
                     "physical (s)": f"{t['physical']:.3g}", "speed-up": f"{u['speedup_final']:.3g}x",
                     "bound T(e+a+d)/(e+Ta+d)": f"{u['bound']:.3g}x",
                     "solver (s)": f"{solver.loc[points]:.3g}" if solver is not None else "—"})
    return markdown_table(pd.DataFrame(rows).set_index("model"))


def plot(table: pd.DataFrame, path: Path, title: str) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 6))
    styles = {"latent_final": "-", "latent_all": "--", "physical": ":"}
    for i, (preset, part) in enumerate(table.groupby("preset", sort=False)):
        for quantity, style in styles.items():
            left.plot(part["points"], part[quantity], style, marker="o", color=f"C{i}", label=f"{preset} {quantity}")
        right.plot(part["points"], part["speedup_final"], "-", marker="o", color=f"C{i}", label=f"{preset} measured")
        right.plot(part["points"], part["bound"], "--", color=f"C{i}", label=f"{preset} component bound")
    solver = table.drop_duplicates("points")
    left.plot(solver["points"], solver["solver"], "-", marker="s", color="k", label="solver")
    left.set(xscale="log", yscale="log", xlabel="grid points", ylabel="seconds per batch rollout", title=title)
    right.axhline(10, color="grey", lw=0.8)
    right.set(xscale="log", yscale="log", xlabel="grid points", ylabel="physical / latent (final frame)",
              title="latent speed-up vs the e+a+d bound")
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=150)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # Defaults take ~4 min on 2 cores. upt-17m (~2x upt-8m) is opt-in; 4096 points too, but there the
    # solver's viscous step limit (dt ~ dx^2) makes generating the data alone take ~20 min.
    parser.add_argument("--presets", nargs="*", default=["upt-cpu-s", "upt-8m"])
    parser.add_argument("--arms", nargs="*", default=["upt-s"], help="UPT arms of --config, as it builds them")
    parser.add_argument("--config", type=Path, default=Path("config/config.yaml"))
    parser.add_argument("--resolutions", nargs="+", type=int, default=[128, 256, 1024],
                        help="128: the default pipeline's grid; 1024: PDEBench's native")
    parser.add_argument("--trajectories", type=int, default=8)
    parser.add_argument("--frames", type=int, default=41, help="frames incl. the initial one (PDEBench: 41)")
    parser.add_argument("--nu", type=float, default=0.01)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget", type=float, default=10.0, help="stop repeating a measurement after this many s")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    parser.add_argument("--pde", choices=["burgers1d", "ns2d"], default="burgers1d")
    args = parser.parse_args()
    if args.pde == "burgers1d" and (args.frames < 2 or SAVED_STEPS % (args.frames - 1)):
        parser.error(f"--frames - 1 must divide the generator's {SAVED_STEPS} saved steps")
    args.out.mkdir(parents=True, exist_ok=True)
    device, started, rows = torch.device(args.device), time.perf_counter(), []
    specs = model_specs(args.presets, args.config, args.arms, args.pde)
    name = "rollout_speed" if args.pde == "burgers1d" else f"rollout_speed_{args.pde}"
    common = {"trajectories": args.trajectories, "steps": args.frames - 1, "threads": torch.get_num_threads(),
              "device": str(device)}
    for points in args.resolutions:
        with tempfile.TemporaryDirectory() as tmp:
            if args.pde == "burgers1d":
                test = burgers_test_set(Path(tmp), points, args.trajectories, args.frames, args.nu)
            else:
                test = ns2d_test_set(Path(tmp), points, args.trajectories, args.frames)
            nu = baselines.pde_viscosity(test)
        # numpy: nothing to warm up
        seconds, runs = median_time(lambda: baselines.solve(test, args.pde, nu, 1), args.repeats,
                                    torch.device("cpu"), args.budget)
        rows.append({"preset": "solver", "points": points, "params": 0, "quantity": "solver", "seconds": seconds,
                     "runs": runs})
        for preset, spec in specs.items():
            timings, params = time_model(spec, test, args.repeats, args.budget, device)
            rows += [{"preset": preset, "points": points, "params": params, **r} for r in timings]
            print(f"[{time.perf_counter() - started:.0f} s] {preset} at {points} points done", flush=True)
    long = pd.DataFrame(rows).assign(**common)
    wide = long[long["preset"] != "solver"].pivot_table(index=["preset", "points"], columns="quantity",
                                                        values="seconds", sort=False).reset_index()
    wide = wide.merge(long[long["preset"] == "solver"][["points", "seconds"]].rename(columns={"seconds": "solver"}))
    wide = wide.join(pd.DataFrame([ratios(r, args.frames - 1) for r in wide.to_dict("records")]))
    speedups = wide.melt(id_vars=["preset", "points"], value_vars=["speedup_final", "speedup_all", "bound",
                                                                  "bound_long", "solver_vs_final"],
                         var_name="quantity", value_name="speedup").assign(**common)
    tidy = pd.concat([long, speedups], ignore_index=True).astype({"params": "Int64", "runs": "Int64"})
    tidy.to_csv(args.out / f"{name}.csv", index=False)
    shown = ["preset", "points", "encode", "step", "decode", "latent_all", "latent_final", "physical",
             "physical_final", "solver", "speedup_final", "bound", "bound_long", "solver_vs_final"]
    print(wide[shown].to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    print(f"{args.trajectories} trajectories x {args.frames - 1} steps, {common['threads']} threads, {device}; "
          f"seconds per batch; total {time.perf_counter() - started:.0f} s")
    (args.out / f"{name}.md").write_text(markdown_summary(tidy))
    plot(wide, args.out / f"{name}.png",
         f"{args.trajectories} trajectories x {args.frames - 1} steps ({device}, {common['threads']} threads)")


if __name__ == "__main__":
    main()
