"""One look for every figure: paper sizes, fonts, arm colours, and deterministic atomic saving.

Arms keep the same colour in every figure of a dataset (``Palette`` is built once from all arms):
the reference arm is black and drawn thickest, the persistence baseline grey and dashed, other
baselines dash-dotted, and every other arm takes the next colour of a fixed qualitative list.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping

import matplotlib as mpl
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter

from upt import vocabulary
from upt.atomic import atomic_output

DPI = 150
WIDTH = 6.75  # inches: the full text width of a two-column paper
REFERENCE_COLOR = "#000000"
PERSISTENCE_COLOR = "#8c8c8c"
PERSISTENCE = "persistence"
SOLVER = "solver"
# Arms drawn as baselines when arms.json does not say: the vocabulary's baselines, the FNO and the
# full-resolution solver's timing row.
KNOWN_BASELINES = frozenset({*vocabulary.BASELINES, "fno", SOLVER})
ROLLOUT_MODES = vocabulary.ROLLOUT_MODES
MODE_COLORS = {"latent": "#0173b2", "physical": "#de8f05"}  # seaborn "colorblind" 0 and 1

PNG_METADATA = {"Software": None}
PDF_METADATA = {"Creator": None, "Producer": None, "CreationDate": None}

LABELS = {
    "nrmse": "nRMSE",
    "rmse": "RMSE (field units)",
    "corr_time_0.8": "correlation time at 0.8 (sim. time)",
    "corr_time_0.9": "correlation time at 0.9 (sim. time)",
    "corr_time_0.95": "correlation time at 0.95 (sim. time)",
    "rollout_seconds": "rollout wall time (s)",
    "train_seconds": "training wall time (s)",
    "peak_mem_mb": "peak memory (MB)",
    "correlation": "Pearson correlation",
}


class NoData(ValueError):
    """A figure's data are absent from the results (e.g. no token sweep): skip it, don't fail."""


def label(metric: str) -> str:
    return LABELS.get(metric, metric.replace("_", " "))


def _rc() -> dict:
    rc = dict(sns.axes_style("whitegrid"))
    rc.update({
        "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": 7,
        "ytick.labelsize": 7, "legend.fontsize": 7, "legend.title_fontsize": 7, "legend.frameon": False,
        "axes.spines.top": False, "axes.spines.right": False, "axes.edgecolor": "0.3",
        "grid.color": "0.9", "grid.linewidth": 0.6, "lines.linewidth": 1.3, "lines.markersize": 4,
        "errorbar.capsize": 2, "figure.dpi": DPI, "savefig.dpi": DPI, "pdf.fonttype": 42,
        "ps.fonttype": 42, "image.interpolation": "nearest", "axes.titleweight": "normal",
        "xtick.bottom": True, "ytick.left": True, "figure.autolayout": False,
        "figure.constrained_layout.use": False,
    })
    return rc


RC = _rc()


def styled(fn: Callable[..., Figure]) -> Callable[..., Figure]:
    """Run a figure function under the package's rcParams (nothing leaks into the caller's)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with mpl.rc_context(RC):
            return fn(*args, **kwargs)
    return wrapper


class _PlainLog(LogFormatter):
    """Log-axis labels as plain numbers ("0.3", "1", "10") instead of "3×10⁻¹"."""

    def _num_to_string(self, x, vmin, vmax):
        return f"{x:g}"


def log_scale(ax, axis: str = "y") -> None:
    """A log axis labelled with plain numbers (minor ticks too when it spans under a decade)."""
    getattr(ax, f"set_{axis}scale")("log")
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_formatter(_PlainLog())
    target.set_minor_formatter(_PlainLog(labelOnlyBase=False, minor_thresholds=(1, 0.4)))


def new_figure(height: float, width: float = WIDTH) -> Figure:
    """A pyplot-free figure (no global state, nothing to close) with constrained layout."""
    return Figure(figsize=(width, height), layout="constrained")


def save_figure(fig: Figure, out_dir: str | Path, name: str,
                formats: Iterable[str] = ("png", "pdf")) -> list[Path]:
    """Write ``name.png`` (dpi 150) and ``name.pdf`` atomically, with no timestamps or versions in
    their metadata, so the same figure gives the same bytes on every run."""
    with mpl.rc_context(RC):  # lay out once, not twice per format: the saves then only render
        fig.draw_without_rendering()
        fig.set_layout_engine(None)  # positions are fixed now; no second draw per save
    paths = []
    for ext in formats:
        metadata = {"png": PNG_METADATA, "pdf": PDF_METADATA}[ext]
        path = Path(out_dir) / f"{name}.{ext}"
        with mpl.rc_context(RC), atomic_output(path) as tmp:
            fig.savefig(tmp, format=ext, dpi=DPI, metadata=metadata)
        paths.append(path)
    return paths


_OTHER_COLORS = [c for c in sns.color_palette("tab10").as_hex() if c != "#7f7f7f"] + [
    c for c in sns.color_palette("tab20").as_hex()[1::2] if c != "#c7c7c7"]


@dataclass
class Palette:
    """Colours and line styles per arm, fixed for a whole dataset."""

    arms: list[str]
    reference: str | None = None
    kinds: Mapping[str, str] = field(default_factory=dict)
    colors: dict[str, str] = field(init=False)

    def __post_init__(self):
        self.arms = list(dict.fromkeys(self.arms))
        cycle = itertools.cycle(_OTHER_COLORS)
        self.colors = {}
        for arm in self.arms:
            if arm == self.reference:
                self.colors[arm] = REFERENCE_COLOR
            elif arm in (PERSISTENCE, SOLVER):
                self.colors[arm] = PERSISTENCE_COLOR
            else:
                self.colors[arm] = next(cycle)

    @classmethod
    def build(cls, arms: Iterable[str], reference: str | None = None,
              kinds: Mapping[str, str] | None = None) -> "Palette":
        """Reference first, UPT arms in the given order, baselines last (persistence at the end)."""
        kinds = dict(kinds or {})
        arms = list(dict.fromkeys(arms))
        probe = cls([], reference, kinds)
        ordered = ([a for a in arms if a == reference] + [a for a in arms if a != reference
                                                          and not probe.is_baseline(a)]
                   + [a for a in arms if probe.is_baseline(a) and a != PERSISTENCE]
                   + [a for a in arms if a == PERSISTENCE])
        return cls(ordered, reference, kinds)

    def is_baseline(self, arm: str) -> bool:
        return self.kinds.get(arm) == "baseline" or (arm not in self.kinds and arm in KNOWN_BASELINES)

    def color(self, arm: str) -> str:
        if arm not in self.colors:  # an arm first seen late: give it the next free colour
            used = set(self.colors.values())
            free = [c for c in _OTHER_COLORS if c not in used] or _OTHER_COLORS
            self.colors[arm] = free[0]
            self.arms.append(arm)
        return self.colors[arm]

    def line(self, arm: str) -> dict:
        """Keyword arguments for ``Axes.plot`` of one arm."""
        style = {"color": self.color(arm), "label": arm, "linestyle": "-", "linewidth": 1.2, "zorder": 2}
        if arm == self.reference:
            style.update(linewidth=2.2, zorder=4, label=f"{arm} (reference)")
        elif arm == PERSISTENCE:
            style.update(linestyle="--", linewidth=1.5, zorder=3)
        elif self.is_baseline(arm):
            style.update(linestyle="-.", zorder=3)
        return style

    def order(self, arms: Iterable[str]) -> list[str]:
        """``arms`` in palette order (unknown ones last, in the order given)."""
        arms = list(dict.fromkeys(arms))
        return [a for a in self.arms if a in arms] + [a for a in arms if a not in self.arms]
