"""The ``upt`` command line: one subcommand per pipeline step, each callable by hand or by a rule.

Subcommands import their implementation lazily so ``upt --help`` stays fast and a step that needs
torch does not slow down one that only moves files.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from upt import __version__, vocabulary
from upt.errors import Preempted, UptError


def _generate(args: argparse.Namespace) -> None:
    if args.pde != "ns2d" and (args.t_end is not None or args.frames is not None):
        raise UptError(f"--t-end and --frames apply to ns2d only; {args.pde} has PDEBench's fixed frames")
    if args.pde == "burgers1d":
        from upt.data.solvers.burgers import generate_burgers1d

        generate_burgers1d(args.out, samples=args.samples, nu=0.01 if args.nu is None else args.nu,
                           resolution=args.resolution, seed=args.seed)
    elif args.pde == "ns2d":
        from upt.data.solvers import ns2d

        ns2d.generate_ns2d(args.out, samples=args.samples, resolution=args.resolution,
                           nu=ns2d.NU if args.nu is None else args.nu, seed=args.seed,
                           t_end=ns2d.T_END if args.t_end is None else args.t_end,
                           frames=ns2d.FRAMES if args.frames is None else args.frames)
    else:
        from upt.data.solvers.diffreact import generate_diffreact2d

        generate_diffreact2d(args.out, samples=args.samples, resolution=args.resolution, seed=args.seed)


def _download(args: argparse.Namespace) -> None:
    from upt.data.download import download

    paths = download(args.pde, args.root, files=args.files, url_table=args.url_table,
                     retries=args.retries)
    for path in paths:
        print(path)


def _convert(args: argparse.Namespace) -> None:
    from upt.data.convert import convert

    convert(args.src, args.dst, reduce_x=args.reduce_x, reduce_t=args.reduce_t, frames=args.frames,
            skip_frames=args.skip_frames,
            val_fraction=args.val_fraction, test_fraction=args.test_fraction, split_seed=args.split_seed,
            md5=args.md5)


def _stats(args: argparse.Namespace) -> None:
    from upt.data.stats import compute_stats

    compute_stats(args.src, args.dst)


def _settings(value: str) -> dict:
    """Inline JSON (as the workflow passes it) or the path of a JSON/YAML file."""
    import json

    import yaml

    try:
        if value.lstrip().startswith("{"):
            return json.loads(value)
        return yaml.safe_load(Path(value).read_text())
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise argparse.ArgumentTypeError(f"cannot read settings {value[:80]!r}: {err}") from None


def _train(args: argparse.Namespace) -> None:
    from upt.lazy_dynamo import defer_optimizer_dynamo_import
    from upt.training.run import run_stage

    defer_optimizer_dynamo_import()  # ~1 s of each training job's start-up (upt/lazy_dynamo.py)

    run_stage(args.stage, args.settings, args.data, args.stats, args.out, init=args.init, cache=args.cache)


def _cache(args: argparse.Namespace) -> None:
    from upt.training.cache import build_cache

    build_cache(args.checkpoint, args.data, args.stats, args.out, params=args.params)


def _evaluate(args: argparse.Namespace) -> None:
    from upt.evaluation.evaluate import evaluate_baseline, evaluate_model

    common = dict(dataset=args.dataset, seed=args.seed, horizons=tuple(args.horizons))
    if (args.checkpoint is None) == (args.baseline is None):
        raise UptError("give exactly one of --checkpoint (a trained arm) and --baseline")
    if args.checkpoint is not None:
        evaluate_model(args.checkpoint, args.data, args.stats, args.out, arm=args.arm,
                       fine_data=args.fine_data, sample_steps=args.sample_steps, **common)
    else:
        evaluate_baseline(args.baseline, args.data, args.stats, args.out, history=args.history,
                          solver=args.solver, coarsen=args.coarsen, **common)


def _aggregate(args: argparse.Namespace) -> None:
    from upt.evaluation.aggregate import aggregate

    aggregate(args.manifest, args.out_dir)


def _plot(args: argparse.Namespace) -> None:
    from upt.plotting import plot_command

    plot_command(args.results, args.datasets, args.out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="upt", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"upt {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("generate", help="run an embedded solver and write PDEBench's HDF5 layout")
    p.add_argument("pde", choices=list(vocabulary.GENERATORS))
    p.add_argument("out", type=Path)
    p.add_argument("--samples", type=int, required=True)
    p.add_argument("--resolution", type=int, required=True,
                   help="grid points per spatial axis (even for ns2d)")
    p.add_argument("--nu", type=float, default=None,
                   help="viscosity: Burgers' PDEBench nu (the PDE uses nu/pi; default 0.01) or ns2d's (1e-3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--t-end", type=float, default=None, help="ns2d: last saved time (default 50)")
    p.add_argument("--frames", type=int, default=None, help="ns2d: saved frames in [0, t-end] (default 51)")
    p.set_defaults(func=_generate)

    p = sub.add_parser("download", help="fetch PDEBench files, MD5-verified, resumable")
    p.add_argument("--pde", required=True, help="the PDE column of the URL table, e.g. Burgers")
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("--files", nargs="+", default=None, help="file names to fetch (default: all of --pde)")
    p.add_argument("--url-table", type=Path, default=None, help="a table with PDEBench's columns (a mirror)")
    p.add_argument("--retries", type=int, default=5)
    p.set_defaults(func=_download)

    p = sub.add_parser("convert", help="PDEBench HDF5 -> canonical netCDF with a train/val/test split")
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    p.add_argument("--reduce-x", type=int, default=1, help="keep every K-th spatial point ([::K])")
    p.add_argument("--reduce-t", type=int, default=1, help="keep every K-th frame ([::K])")
    p.add_argument("--frames", type=int, default=None,
                   help="keep N frames after --reduce-t and --skip-frames (default: all)")
    p.add_argument("--skip-frames", type=int, default=0,
                   help="drop the first K frames after --reduce-t (an initial transient)")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--test-fraction", type=float, default=0.1)
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--md5", default=None, help="record this MD5 of SRC in the provenance (skips hashing)")
    p.set_defaults(func=_convert)

    p = sub.add_parser("stats", help="per-field normalization statistics from the training split")
    p.add_argument("src", type=Path, help="a converted netCDF file")
    p.add_argument("dst", type=Path, help="output JSON")
    p.set_defaults(func=_stats)

    p = sub.add_parser("train", help="train one stage of one ablation arm (runs under torchrun too)")
    p.add_argument("stage", choices=list(vocabulary.STAGES))
    p.add_argument("--data", type=Path, required=True, help="converted netCDF file")
    p.add_argument("--stats", type=Path, required=True, help="normalization statistics JSON")
    p.add_argument("--settings", type=_settings, required=True, help="the arm's settings: JSON or a file")
    p.add_argument("--out", type=Path, required=True, help="result checkpoint (state and metrics beside it)")
    p.add_argument("--init", type=Path, default=None, help="checkpoint of the previous stage")
    p.add_argument("--cache", type=Path, default=None,
                   help=f"latent cache ({', '.join(vocabulary.LATENT_STAGES)})")
    p.set_defaults(func=_train)

    p = sub.add_parser("cache", help="encode every trajectory with a trained, frozen encoder")
    p.add_argument("checkpoint", type=Path, help="the autoencoder checkpoint")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--stats", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--params", nargs="*", default=(), help="PDE parameters used as conditions")
    p.set_defaults(func=_cache)

    p = sub.add_parser("evaluate", help="rollouts of a trained arm or a baseline on the test split")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--stats", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="directory for metrics.nc, summary.csv, predictions.nc")
    p.add_argument("--dataset", required=True)
    p.add_argument("--arm", default=None, help="the arm's name (default: the baseline's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", type=Path, default=None, help="the arm's final checkpoint")
    p.add_argument("--fine-data", type=Path, default=None, help="the same test data on a finer grid")
    p.add_argument("--baseline", choices=list(vocabulary.BASELINES), default=None)
    p.add_argument("--solver", choices=list(vocabulary.GENERATORS), default=None,
                   help="the numerical solver of a solver baseline: the generator of the dataset's PDE")
    p.add_argument("--coarsen", type=int, default=4, help="coarse-solver grid: this many times coarser")
    p.add_argument("--history", type=int, default=1, help="given frames for a baseline")
    p.add_argument("--sample-steps", type=int, default=None,
                   help="sample the checkpoint's corrector in this many steps instead of its own "
                        "(a consistency student's steps do not change its training)")
    p.add_argument("--horizons", type=int, nargs="+", default=[1, 5, 10],
                   help="steps after the given frames at which nRMSE and correlation are reported")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("aggregate", help="one dataset's evaluations -> summary tables and curves")
    p.add_argument("--manifest", type=_settings, required=True, help="what to collect: JSON or a file")
    p.add_argument("--out-dir", type=Path, required=True)
    p.set_defaults(func=_aggregate)

    p = sub.add_parser("plot", help="draw every figure from results/ alone")
    p.add_argument("--results", type=Path, required=True, help="the results directory")
    p.add_argument("--datasets", nargs="+", required=True)
    p.add_argument("--out", type=Path, required=True, help="figures go to OUT/<dataset>/")
    p.set_defaults(func=_plot)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except UptError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except Preempted as err:  # Slurm pre-emption: the state is saved, a retry resumes it
        print(f"preempted: {err}", file=sys.stderr)
        return 128 + signal.SIGTERM
    return 0
