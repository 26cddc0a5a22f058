"""The claims figure: each seed claim's measured effect with its 95% interval, beside the
range the seed predicted, coloured by verdict (from ``results/<dataset>/claims.csv`` alone)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from upt.plotting.style import NoData, new_figure, styled
from upt.results import CLAIMS

VERDICT_COLORS = {"supported": "#1a9850", "refuted": "#d73027", "inconclusive": "#7f7f7f"}


@styled
def claims_figure(claims: pd.DataFrame) -> Figure:
    """One row per claim: the relative effect arm / control - 1 (dot) and its 95% interval
    (whiskers), the seed's predicted range (shaded band, clipped to the axes where open), 0 dashed."""
    if "primary" in claims:  # secondary metrics are reported in the table, not judged here
        claims = claims[claims["primary"].astype(bool)]
    claims = claims[np.isfinite(claims["effect"].astype(float))].reset_index(drop=True)
    if claims.empty:
        raise NoData(f"{CLAIMS}: no claim with a measured effect")
    fig = new_figure(height=0.45 * len(claims) + 1.2)
    ax = fig.subplots()
    finite = np.concatenate([claims[c].to_numpy(float) for c in ("effect", "ci_low", "ci_high")])
    finite = finite[np.isfinite(finite)]
    span = max(0.5, float(np.abs(finite).max()) * 1.15) if finite.size else 1.0
    for i, row in claims.iterrows():
        low = max(float(row["predicted_low"]), -span)
        high = min(float(row["predicted_high"]), span)
        ax.fill_betweenx([i - 0.35, i + 0.35], low, high, color="#4575b4", alpha=0.15, lw=0)
        color = VERDICT_COLORS.get(row["verdict"], "black")
        err = np.array([[row["effect"] - row["ci_low"]], [row["ci_high"] - row["effect"]]], float)
        ax.errorbar(row["effect"], i, xerr=np.nan_to_num(err, nan=0.0), fmt="o", color=color, capsize=3)
    ax.axvline(0.0, color="black", lw=0.8, ls="--")
    ax.set_yticks(range(len(claims)),
                  [f"{r['arm']} vs {r['control']}\n{r['metric']} ({r['mode']})" for _, r in claims.iterrows()],
                  fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(-span, span)
    ax.set_xlabel("relative effect, arm / control - 1 (95% interval; band: the seed's prediction)")
    handles = [ax.plot([], [], "o", color=c, label=v)[0] for v, c in VERDICT_COLORS.items()]
    ax.legend(handles=handles, fontsize=7, loc="lower right")
    n = sorted(set(claims["n_seeds"].astype(int)))
    ax.set_title(f"The seed's claims over {n[0] if len(n) == 1 else f'{n[0]}-{n[-1]}'} seeds", fontsize=9)
    return fig
