"""The statistics behind ``claims.csv``: effects, intervals, tests, multiplicity and power.

Every rule the claims table applies, in the order the code below follows (numpy and scipy only):

1. **Effects live on the log scale.** Every value must be finite and > 0 (an error names the metric
   otherwise). For per-seed values ``a_s`` (arm) and ``c_s`` (control) the effect is
   ``d = mean_s log(a_s) - mean_s log(c_s)``, reported as the relative change ``exp(d) - 1`` (the
   ratio of the geometric means, minus 1) with the 95% interval ``exp(d -+ t * SE) - 1``. A relative
   interval is therefore never below -100%, and both arms' seed spreads enter it.

2. **Unpaired (Welch)** unless the arms share a trained stage: ``SE^2 = v_a / n_a + v_c / n_c``
   with ``v`` the sample variances (ddof 1) of the log values, and the Welch-Satterthwaite degrees
   of freedom ``SE^4 / ((v_a/n_a)^2 / (n_a-1) + (v_c/n_c)^2 / (n_c-1))``.
   **Paired** only when, for every seed, the two arms share an upstream trained stage run (the
   caller decides that, ``upt.evaluation.claims``): then the per-seed log ratios
   ``r_s = log a_s - log c_s`` over the seeds both hold give ``d = mean(r)``,
   ``SE = sd(r) / sqrt(n)``, ``n - 1`` degrees of freedom.
   One seed on a side, or no spread at all (``SE`` 0, or below ``TINY_SE``: rounding), leaves the
   interval and every p-value NaN: a verdict of ``inconclusive``, never a zero-width interval that
   would pretend to certainty.

3. **Predictions and verdicts.** A predicted relative range ``[low, high]`` is one of three kinds:
   a decrease (``high <= 0`` and ``low < 0``), an increase (``low >= 0``, ``high > 0``), or a range that
   holds 0 (no change, or "at most x% worse"). Two tests, each a one-sided t-test on the log scale
   whose p-value is doubled (capped at 1) so that ``p < 0.05`` is exactly "the 95% interval lies on
   that side of the bound" (``L = log(1 + low)``, ``H = log(1 + high)``, ``delta`` the true effect):

   =============  ============================================  =====================================
   kind           supported test (the claim)                    refuted test (against the claim)
   =============  ============================================  =====================================
   decrease       delta < 0                                     delta > H (weaker than the weakest
                                                                predicted effect, or of other sign)
   increase       delta > 0                                     delta < L
   holds 0        TOST: delta > L and delta < H,                delta < L or delta > H: the smaller
                  p = the larger of the two p-values            of the two p-values
   =============  ============================================  =====================================

   The verdict: ``refuted`` when ``p_refuted < 0.05``, else ``supported`` when
   ``p_supported < 0.05``, else ``inconclusive`` -- the same as reading the 95% interval
   (``verdict_from_interval``): supported = the interval excludes 0 in the predicted direction (for
   a range holding 0: lies inside the range), refuted = it excludes the predicted effect. The TOST
   is thus at 2.5% per side (the 95% interval inside the range), stricter than the usual 90% TOST.

4. **Multiplicity (Holm).** A dataset's primary claims form one family. The supported-test p-values
   are Holm-adjusted across that family, and separately the refuted-test p-values; the Holm verdict
   applies rule 3 to the adjusted p-values. A claim whose p-values are NaN (one seed) is not tested
   and not counted in the family. Secondary metrics are reported but never adjusted or counted.

5. **Power.** From the observed log-scale SE and df, the minimum detectable effect at 80% power and
   two-sided alpha 0.05 is ``mde_log = (t_{0.975,df} + t_{0.80,df}) * SE``, reported as
   ``exp(mde_log) - 1``. ``seeds_needed`` is the smallest number of seeds per arm at which the
   claim's weakest predicted non-zero effect (the finite, non-zero bound of the predicted range
   nearest 0 on the log scale, e.g. -10% for [-25%, -10%] and +15% for "at most 15% worse") reaches
   that MDE, with the observed per-seed log spreads held fixed (Welch: both arms with n seeds each;
   paired: the spread of the log ratios). NaN when the prediction has no finite non-zero bound or
   the spread is unknown; ``inf`` beyond ``MAX_SEEDS``. For a range holding 0 with one finite bound
   this is also the seeds at which a true null effect is ``supported`` with 80% probability.

6. **Rescaling a predicted effect to the sizes compared.** An effect predicted between sizes
   ``s0 -> s1`` (control -> arm, e.g. 16 -> 256 tokens) is assumed log-linear in size, so between
   ``c0 -> c1`` it is ``exp(log(1 + p) * log(c1/c0) / log(s1/s0)) - 1``; -30% for 16 -> 256 is
   ``0.7 ** (1/4) - 1`` for 16 -> 32.

7. **Scaling sweeps.** ``loglog_slope`` fits ``log(value) = a + b log(size)`` by least squares over
   every seed's point at every size (each point one independent run), with the t interval of ``b``
   (``N - 2`` df). The implied effect between sizes ``s0 -> s1`` is ``exp(b log(s1/s0)) - 1`` with
   the interval from ``b``'s. A claim on a sweep (``SweepEffect``) is judged by that implied effect,
   tested like any other (rules 3-5): its SE is ``SE_b |log(s1/s0)|``, and with ``n`` seeds per size
   ``SE_b = sd_resid / sqrt(n Sxx1)``, which is what its MDE and seeds_needed vary. Five sizes give
   the 16 -> 256 effect about the precision of comparing the two end points alone, but test the
   log-linear shape at three sizes between and never judge one doubling with a 16x prediction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats

from upt.errors import UptError

ALPHA = 0.05  # two-sided level of every interval and test
POWER = 0.80  # the power the MDE and seeds_needed are computed at
MAX_SEEDS = 10_000  # seeds_needed beyond this is reported as inf
VERDICTS = ("supported", "refuted", "inconclusive")
# A log-scale SE below this is rounding, not spread (identical values do not always average to
# themselves exactly): a relative spread of 1e-12 is below anything a run measures.
TINY_SE = 1e-12


# --- 1. values on the log scale -------------------------------------------------------------------

def log_values(values, name: str = "value") -> np.ndarray:
    """``log(values)``; every value must be finite and > 0 (the error names ``name``)."""
    values = np.asarray(values, float)
    bad = ~(np.isfinite(values) & (values > 0))
    if bad.any():
        raise UptError(f"{name}: the log-scale effect needs finite values > 0, got {values[bad][0]!r}")
    return np.log(values)


def _variance(x: np.ndarray) -> np.ndarray:
    """Sample variance (ddof 1) over the last axis; NaN for fewer than 2 values, without a warning."""
    n = x.shape[-1]
    if n < 2:
        return np.full(x.shape[:-1], np.nan)
    return x.var(axis=-1, ddof=1)


# --- 2. Welch and paired effects (vectorized: seeds on the last axis) ----------------------------

def welch_df(var_a, n_a, var_c, n_c):
    """Welch-Satterthwaite degrees of freedom (NaN where both variances are 0 or a side has n < 2)."""
    qa, qc = np.asarray(var_a, float) / n_a, np.asarray(var_c, float) / n_c
    with np.errstate(divide="ignore", invalid="ignore"):
        return (qa + qc) ** 2 / (qa**2 / (np.asarray(n_a) - 1) + qc**2 / (np.asarray(n_c) - 1))


def welch(log_arm, log_control):
    """``(d, SE, df)`` of the unpaired log effect; arrays over any leading axes."""
    la, lc = np.asarray(log_arm, float), np.asarray(log_control, float)
    va, vc = _variance(la), _variance(lc)
    d = la.mean(-1) - lc.mean(-1)
    se = np.sqrt(va / la.shape[-1] + vc / lc.shape[-1])
    return d, _no_zero(se), welch_df(va, la.shape[-1], vc, lc.shape[-1])


def paired(log_arm, log_control):
    """``(d, SE, df)`` of the paired log effect over aligned seeds; arrays over any leading axes."""
    r = np.asarray(log_arm, float) - np.asarray(log_control, float)
    n = r.shape[-1]
    se = np.sqrt(_variance(r) / n)
    return r.mean(-1), _no_zero(se), np.full(np.shape(se), n - 1.0)


def _no_zero(se):
    """A zero standard error means no observed spread, not certainty: NaN."""
    return np.where(se > TINY_SE, se, np.nan)


def t_interval(d, se, df, level: float = 1 - ALPHA):
    """``(low, high)`` of the t interval ``d -+ t_{(1+level)/2, df} * SE`` (log scale)."""
    half = stats.t.ppf(0.5 + level / 2, df) * se
    return d - half, d + half


@dataclass(frozen=True)
class Effect:
    """One claim's log effect ``d`` with its SE and df, and the spreads power analysis needs."""

    log_effect: float
    se: float
    df: float
    paired: bool
    n_arm: int
    n_control: int
    sd_arm: float  # per-seed sd of log(arm)
    sd_control: float
    sd_pairs: float  # per-seed sd of the log ratios (paired only, else NaN)

    @property
    def relative(self) -> float:
        """``exp(d) - 1``: the ratio of the geometric means, minus 1."""
        return math.expm1(self.log_effect)

    def interval(self, level: float = 1 - ALPHA) -> tuple[float, float]:
        """The relative interval ``exp(log interval) - 1`` (NaN where SE or df is unknown)."""
        low, high = t_interval(self.log_effect, self.se, self.df, level)
        return float(np.expm1(low)), float(np.expm1(high))

    def se_df(self, n):
        """``(SE, df)`` with ``n`` seeds per arm (an array is fine) and the observed spreads."""
        n = np.asarray(n, float)
        if self.paired:
            return _no_zero(self.sd_pairs / np.sqrt(n)), n - 1
        va, vc = self.sd_arm**2, self.sd_control**2
        return _no_zero(np.sqrt((va + vc) / n)), welch_df(va, n, vc, n)


def welch_effect(arm, control, name: str = "value") -> Effect:
    """The unpaired effect of per-seed values ``arm`` vs ``control`` (any seeds on each side)."""
    la, lc = log_values(arm, name), log_values(control, name)
    if la.size == 0 or lc.size == 0:
        raise UptError(f"{name}: an effect needs at least one seed on each side")
    d, se, df = welch(la, lc)
    return Effect(float(d), float(se), float(df), False, la.size, lc.size,
                  float(np.sqrt(_variance(la))), float(np.sqrt(_variance(lc))), math.nan)


def paired_effect(arm, control, name: str = "value") -> Effect:
    """The paired effect of aligned per-seed values (``arm[i]`` and ``control[i]``: one seed)."""
    la, lc = log_values(arm, name), log_values(control, name)
    if la.shape != lc.shape or la.size == 0:
        raise UptError(f"{name}: a paired effect needs the same seeds on both sides, "
                       f"got {la.size} and {lc.size} values")
    d, se, df = paired(la, lc)
    return Effect(float(d), float(se), float(df), True, la.size, lc.size, float(np.sqrt(_variance(la))),
                  float(np.sqrt(_variance(lc))), float(np.sqrt(_variance(la - lc))))


# --- 3. predictions, tests and verdicts -----------------------------------------------------------

def prediction_kind(predicted: tuple[float, float]) -> str:
    """``decrease`` | ``increase`` | ``holds0`` for a predicted relative range ``[low, high]``."""
    low, high = predicted
    if high <= 0 and low < 0:
        return "decrease"
    if low >= 0 and high > 0:
        return "increase"
    return "holds0"


def log_bounds(predicted: tuple[float, float]) -> tuple[float, float]:
    """``(log(1 + low), log(1 + high))``; an open side stays infinite."""
    return tuple(b if math.isinf(b) else math.log1p(b) for b in predicted)


def p_below(effect: Effect, bound: float) -> float:
    """p-value for "the log effect is below ``bound``": twice the one-sided t p-value, capped at 1
    (NaN where SE is NaN)."""
    return float(np.minimum(1.0, 2 * stats.t.cdf((effect.log_effect - bound) / effect.se, effect.df)))


def p_above(effect: Effect, bound: float) -> float:
    """p-value for "the log effect is above ``bound``" (as ``p_below``)."""
    return float(np.minimum(1.0, 2 * stats.t.sf((effect.log_effect - bound) / effect.se, effect.df)))


def claim_pvalues(effect: Effect, predicted: tuple[float, float]) -> tuple[float, float]:
    """``(p_supported, p_refuted)`` of a claim predicting the relative range ``predicted``."""
    low, high = log_bounds(predicted)
    kind = prediction_kind(predicted)
    if kind == "decrease":
        return p_below(effect, 0.0), p_above(effect, high)
    if kind == "increase":
        return p_above(effect, 0.0), p_below(effect, low)
    return (max(p_above(effect, low), p_below(effect, high)),  # TOST: inside the range
            min(p_below(effect, low), p_above(effect, high)))  # wholly outside it


def verdict_from_pvalues(p_supported: float, p_refuted: float, alpha: float = ALPHA) -> str:
    """Rule 3: refuted first (a real but weaker effect refutes a predicted size), then supported."""
    if p_refuted < alpha:
        return "refuted"
    return "supported" if p_supported < alpha else "inconclusive"


def verdict_from_interval(ci_low: float, ci_high: float, predicted: tuple[float, float]) -> str:
    """The same verdict read off a (relative) 95% interval; NaN bounds give ``inconclusive``."""
    low, high = predicted
    if not (np.isfinite(ci_low) and np.isfinite(ci_high)):
        return "inconclusive"
    kind = prediction_kind(predicted)
    if kind == "decrease":
        return "refuted" if ci_low > high else "supported" if ci_high < 0 else "inconclusive"
    if kind == "increase":
        return "refuted" if ci_high < low else "supported" if ci_low > 0 else "inconclusive"
    if ci_high < low or ci_low > high:
        return "refuted"
    return "supported" if low < ci_low and ci_high < high else "inconclusive"


# --- 4. Holm ---------------------------------------------------------------------------------------

def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm-adjusted p-values, in the input's order; NaN entries stay NaN and are not counted.

    Sorted ascending, ``p_(i)`` becomes ``max_{j <= i} min(1, (m - j + 1) p_(j))``.
    """
    p = np.asarray(pvalues, float)
    out = np.full(p.shape, np.nan)
    tested = np.flatnonzero(np.isfinite(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    m = order.size
    out[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    return out


# --- 5. power --------------------------------------------------------------------------------------

def _detectable(se, df, alpha: float, power: float):
    """The log effect detected with ``power`` by a two-sided level-``alpha`` t-test."""
    return (stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)) * se


def mde(effect: Effect, alpha: float = ALPHA, power: float = POWER) -> float:
    """Minimum detectable relative effect ``exp(mde_log) - 1`` at the observed SE and df."""
    return float(np.expm1(_detectable(effect.se, effect.df, alpha, power)))


def weakest_predicted(predicted: tuple[float, float]) -> float:
    """The finite non-zero bound of ``predicted`` nearest 0 on the log scale (NaN if none)."""
    bounds = [b for b in predicted if np.isfinite(b) and b != 0]
    return min(bounds, key=lambda b: abs(math.log1p(b))) if bounds else math.nan


def seeds_needed(effect: Effect, predicted: tuple[float, float], alpha: float = ALPHA,
                 power: float = POWER) -> float:
    """Seeds per arm at which the weakest predicted effect is the MDE (rule 5)."""
    target = weakest_predicted(predicted)
    if not np.isfinite(target):
        return math.nan
    n = np.arange(2, MAX_SEEDS + 1)
    se, df = effect.se_df(n)
    if not np.isfinite(se).any():
        return math.nan
    enough = np.flatnonzero(_detectable(se, df, alpha, power) <= abs(math.log1p(target)))
    return float(n[enough[0]]) if enough.size else math.inf


# --- 6. rescaling a prediction ---------------------------------------------------------------------

def rescale_effect(effect: float, seed_sizes: Sequence[float], compared_sizes: Sequence[float]) -> float:
    """A relative effect predicted for sizes ``s0 -> s1``, log-linear in size, at ``c0 -> c1``."""
    (s0, s1), (c0, c1) = seed_sizes, compared_sizes
    if min(s0, s1, c0, c1) <= 0 or s0 == s1:
        raise UptError(f"sizes: need positive sizes and two different seed sizes, got {seed_sizes} "
                       f"and {compared_sizes}")
    exponent = math.log(c1 / c0) / math.log(s1 / s0)
    if math.isinf(effect):  # an open side stays open (on the other side if the sizes run backwards)
        return effect if exponent > 0 else -effect
    return math.expm1(math.log1p(effect) * exponent)


# --- 7. log-log slope over a sweep ----------------------------------------------------------------

@dataclass(frozen=True)
class Slope:
    """``log(value) = intercept + slope * log(size)``, with the slope's t interval."""

    slope: float
    se: float
    df: float
    intercept: float
    sd_resid: float = math.nan  # residual sd of the fit (NaN without residual df)

    def interval(self, level: float = 1 - ALPHA) -> tuple[float, float]:
        low, high = t_interval(self.slope, self.se, self.df, level)
        return float(low), float(high)

    def effect(self, s0: float, s1: float, level: float = 1 - ALPHA) -> tuple[float, float, float]:
        """``(exp(b log(s1/s0)) - 1, low, high)``: the relative change from size s0 to s1."""
        k = math.log(s1 / s0)
        ends = sorted(np.expm1(k * np.array(self.interval(level))))
        return math.expm1(k * self.slope), float(ends[0]), float(ends[1])


def loglog_slope(sizes: Sequence[float], values_per_size: Sequence[Sequence[float]], name: str = "value") -> Slope:
    """OLS of ``log(value)`` on ``log(size)`` over every seed's value at every size."""
    if len(sizes) != len(values_per_size):
        raise UptError(f"{name}: {len(sizes)} sizes but {len(values_per_size)} lists of values")
    log_sizes = log_values(sizes, "sizes")
    x = np.concatenate([np.full(len(v), ls) for ls, v in zip(log_sizes, values_per_size)])
    y = np.concatenate([log_values(v, name) for v in values_per_size])
    if np.unique(x).size < 2:
        raise UptError(f"{name}: a slope needs values at two or more sizes")
    xc = x - x.mean()
    slope = float((xc * (y - y.mean())).sum() / (xc**2).sum())
    intercept = float(y.mean() - slope * x.mean())
    df = y.size - 2
    resid = y - intercept - slope * x
    sd_resid = math.sqrt((resid**2).sum() / df) if df > 0 else math.nan
    se = sd_resid / math.sqrt((xc**2).sum()) if df > 0 else math.nan
    return Slope(slope, se if se > 0 else math.nan, float(df) if df > 0 else math.nan, intercept, sd_resid)


@dataclass(frozen=True)
class SweepEffect(Effect):
    """The effect between two sizes of a sweep implied by its log-log slope (rule 7), as an
    :class:`Effect`, so tests, MDE and seeds_needed apply unchanged. ``log_effect = b log(s1/s0)``,
    ``SE = SE_b log(s1/s0)``; with ``n`` seeds at each of the sweep's sizes the slope's SE is
    ``sd_resid / sqrt(n * Sxx1)`` (``Sxx1``: the spread of log sizes over one seed per size) with
    ``n * sizes - 2`` df, which is what power analysis varies."""

    span: float = math.nan  # log(s1 / s0)
    sd_resid: float = math.nan  # residual sd of the fit
    sxx1: float = math.nan  # sum over sizes of (log size - mean)^2, one seed per size
    n_sizes: int = 0

    def se_df(self, n):
        n = np.asarray(n, float)
        return _no_zero(abs(self.span) * self.sd_resid / np.sqrt(n * self.sxx1)), n * self.n_sizes - 2


def sweep_effect(sizes: Sequence[float], values_per_size: Sequence[Sequence[float]], s0: float, s1: float,
                 name: str = "value") -> SweepEffect:
    """The effect from size ``s0`` to ``s1`` implied by the log-log slope over the whole sweep."""
    fit = loglog_slope(sizes, values_per_size, name)
    span = math.log(s1 / s0)
    log_sizes = np.log(np.asarray(sizes, float))
    counts = dict(zip(map(float, sizes), (len(v) for v in values_per_size)))
    return SweepEffect(fit.slope * span, abs(span) * fit.se, fit.df, False, counts.get(float(s1), 0),
                       counts.get(float(s0), 0),
                       math.nan, math.nan, math.nan, span=span, sd_resid=fit.sd_resid,
                       sxx1=float(((log_sizes - log_sizes.mean()) ** 2).sum()), n_sizes=len(sizes))
