"""upt.evaluation.statistics against hand-worked examples and a coverage simulation."""

import math

import numpy as np
import pytest
from scipy import stats

from upt.errors import UptError
from upt.evaluation import statistics as st

# Student-t quantiles from the table: t_{0.975} with 1, 2, 4 df, t_{0.80} with 4 df
T975_1, T975_2, T975_4, T80_4 = 12.706204736, 4.302652730, 2.776445105, 0.940964577

DECREASE, EQUIV, INCREASE = (-0.25, -0.10), (-math.inf, 0.15), (0.0, math.inf)


def test_welch_two_seeds_by_hand():
    # log arm = [0, 0.2] (mean 0.1, var 0.02), log control = [0.3, 0.5] (mean 0.4, var 0.02)
    e = st.welch_effect(np.exp([0.0, 0.2]), np.exp([0.3, 0.5]))
    se = math.sqrt(0.02 / 2 + 0.02 / 2)  # df = (0.01 + 0.01)^2 / (0.01^2 + 0.01^2) = 2
    assert not e.paired and e.log_effect == pytest.approx(-0.3) and e.se == pytest.approx(se)
    assert e.df == pytest.approx(2.0)
    assert e.relative == pytest.approx(math.exp(-0.3) - 1)
    low, high = e.interval()
    assert low == pytest.approx(math.exp(-0.3 - T975_2 * se) - 1, rel=1e-6)
    assert high == pytest.approx(math.exp(-0.3 + T975_2 * se) - 1, rel=1e-6)


def test_welch_df_carries_both_unequal_variances():
    # var 0.02 and 0.08 over 2 seeds each: SE^2 = 0.01 + 0.04, df = 0.05^2 / (0.01^2 + 0.04^2) = 25/17
    e = st.welch_effect(np.exp([0.0, 0.2]), np.exp([0.3, 0.7]))
    assert e.se == pytest.approx(math.sqrt(0.05)) and e.df == pytest.approx(25 / 17)


def test_paired_two_seeds_by_hand():
    # per-seed log ratios [-0.3, -0.2]: mean -0.25, sd 0.1/sqrt(2), SE 0.05, 1 df
    e = st.paired_effect(np.exp([0.0, 0.2]), np.exp([0.3, 0.4]))
    assert e.paired and e.log_effect == pytest.approx(-0.25) and e.se == pytest.approx(0.05) and e.df == 1
    low, high = e.interval()
    assert low == pytest.approx(math.exp(-0.25 - T975_1 * 0.05) - 1, rel=1e-6)
    assert high == pytest.approx(math.exp(-0.25 + T975_1 * 0.05) - 1, rel=1e-6)


def test_interval_never_below_minus_one_under_huge_spread():
    for effect in (st.welch_effect([1e-4, 1e4, 1.0], [1.0, 1.1, 0.9]),
                   st.paired_effect([1e-4, 1e4, 1.0], [1.0, 1.1, 0.9])):
        low, high = effect.interval()
        assert -1 < low < effect.relative < high and np.isfinite(high)


def test_one_seed_and_zero_spread_are_inconclusive_not_a_crash():
    for effect in (st.welch_effect([0.5], [1.0]), st.paired_effect([0.5], [1.0]),
                   st.welch_effect([0.5, 0.5], [1.0, 1.0]), st.paired_effect([0.5, 1.0], [1.0, 2.0])):
        assert effect.relative == pytest.approx(-0.5)
        assert all(np.isnan(effect.interval()))
        p_sup, p_ref = st.claim_pvalues(effect, DECREASE)
        assert np.isnan(p_sup) and np.isnan(p_ref)
        assert st.verdict_from_pvalues(p_sup, p_ref) == "inconclusive"
        assert np.isnan(st.mde(effect)) and np.isnan(st.seeds_needed(effect, DECREASE))


def test_non_positive_values_name_the_metric():
    with pytest.raises(UptError, match="nrmse.*> 0"):
        st.welch_effect([1.0, 0.0], [1.0, 1.0], "nrmse")
    with pytest.raises(UptError, match="corr_time_0.8"):
        st.paired_effect([1.0, -1.0], [1.0, 1.0], "corr_time_0.8")


def test_pvalues_match_the_interval_verdict():
    # p < 0.05 for a test is exactly "the 95% interval lies on that side of the bound"
    rng = np.random.default_rng(3)
    for _ in range(100):
        effect = st.Effect(rng.normal(0, 0.3), rng.uniform(0.01, 0.3), rng.choice([1, 2, 4, 9.5]), False,
                           3, 3, 0.1, 0.1, math.nan)
        low, high = effect.interval()
        for predicted in (DECREASE, EQUIV, INCREASE, (-math.inf, 0.0), (-0.1, 0.15)):
            assert st.verdict_from_pvalues(*st.claim_pvalues(effect, predicted)) == \
                st.verdict_from_interval(low, high, predicted)


def test_pvalues_by_hand():
    # d = -0.3, SE 0.1, 4 df: t = -3 for "below 0"; one-sided p doubled
    effect = st.Effect(-0.3, 0.1, 4.0, False, 5, 5, 0.1, 0.1, math.nan)
    p_sup, p_ref = st.claim_pvalues(effect, DECREASE)
    assert p_sup == pytest.approx(2 * stats.t.cdf(-3.0, 4))
    assert p_ref == pytest.approx(min(1.0, 2 * stats.t.sf((-0.3 - math.log(0.9)) / 0.1, 4)))
    # "at most 15% worse": TOST with an open lower side reduces to the upper test
    p_sup, p_ref = st.claim_pvalues(effect, EQUIV)
    assert p_sup == pytest.approx(2 * stats.t.cdf((-0.3 - math.log(1.15)) / 0.1, 4)) and p_ref == 1.0


def test_holm_against_a_hand_example():
    # sorted 0.005, 0.01, 0.03, 0.04 -> 4*0.005, 3*0.01, 2*0.03, max(1*0.04, 0.06)
    np.testing.assert_allclose(st.holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(st.holm([0.01, np.nan, 0.04]), [0.02, np.nan, 0.04])  # NaN: not tested
    np.testing.assert_allclose(st.holm([0.6, 0.5]), [1.0, 1.0])
    assert st.holm([]).size == 0


def test_mde_against_the_hand_formula():
    effect = st.Effect(0.0, 0.1, 4.0, False, 3, 3, 0.1, 0.1, math.nan)
    assert st.mde(effect) == pytest.approx(math.exp((T975_4 + T80_4) * 0.1) - 1, rel=1e-6)


def test_seeds_needed_by_hand():
    # paired, sd of the log ratios 0.1, target |log 0.9| = 0.10536: (t_.975 + t_.8)(n-1 df) * 0.1 / sqrt(n)
    # n = 9: (2.3060 + 0.8889) * 0.1 / 3 = 0.1065 > 0.10536; n = 10: (2.2622 + 0.8834) * 0.1 / sqrt(10) = 0.0995
    effect = st.Effect(0.0, 0.1 / math.sqrt(3), 2.0, True, 3, 3, 0.2, 0.2, 0.1)
    assert st.seeds_needed(effect, DECREASE) == 10
    assert np.isnan(st.seeds_needed(effect, (-math.inf, 0.0)))  # no finite non-zero prediction
    assert np.isnan(st.seeds_needed(effect, INCREASE))
    # Welch with equal spreads s: SE(n) = s sqrt(2/n), df = 2(n-1): the same target needs more seeds
    welch = st.Effect(0.0, 0.1, 4.0, False, 3, 3, 0.1, 0.1, math.nan)
    n = st.seeds_needed(welch, DECREASE)
    se, df = welch.se_df([n - 1, n])
    assert df[1] == pytest.approx(2 * (n - 1))
    detect = [(stats.t.ppf(0.975, d) + stats.t.ppf(0.8, d)) * s for s, d in zip(se, df)]
    assert detect[0] > -math.log(0.9) >= detect[1]


def test_weakest_predicted_effect():
    assert st.weakest_predicted(DECREASE) == -0.10
    assert st.weakest_predicted(EQUIV) == 0.15
    assert st.weakest_predicted((-0.1, 0.15)) == -0.1  # |log 0.9| < log 1.15
    assert np.isnan(st.weakest_predicted((-math.inf, 0.0)))


def test_rescaling_rule_hand_example():
    # -30% for 16 -> 256 tokens, log-linear in size, is 0.7 ** (log 2 / log 16) - 1 for 16 -> 32
    assert st.rescale_effect(-0.30, (16, 256), (16, 32)) == pytest.approx(0.7 ** 0.25 - 1)
    assert st.rescale_effect(-0.30, (16, 256), (16, 256)) == pytest.approx(-0.30)
    assert st.rescale_effect(-0.30, (16, 256), (32, 16)) == pytest.approx(0.7 ** -0.25 - 1)
    assert st.rescale_effect(-math.inf, (16, 256), (16, 32)) == -math.inf
    assert st.rescale_effect(0.0, (16, 256), (16, 32)) == 0.0
    with pytest.raises(UptError, match="sizes"):
        st.rescale_effect(-0.3, (16, 16), (16, 32))


def test_loglog_slope_hand_fit():
    # x = log size = [0, 1, 2], y = log value = [0, 1, 1]: b = 1/2, a = 1/6, SSR = 1/6, 1 df,
    # SE(b) = sqrt(SSR / df / Sxx) = sqrt(1/12)
    fit = st.loglog_slope([1.0, math.e, math.e**2], [[1.0], [math.e], [math.e]])
    assert fit.slope == pytest.approx(0.5) and fit.intercept == pytest.approx(1 / 6)
    assert fit.df == 1 and fit.se == pytest.approx(math.sqrt(1 / 12))
    low, high = fit.interval()
    assert low == pytest.approx(0.5 - T975_1 * math.sqrt(1 / 12), rel=1e-6)
    effect, lo, hi = fit.effect(1.0, math.e)
    assert effect == pytest.approx(math.exp(0.5) - 1) and lo == pytest.approx(math.expm1(low))
    assert hi == pytest.approx(math.expm1(high))


def test_loglog_slope_recovers_a_power_law():
    # 3 seeds per size, log-noise -0.02, 0, +0.02 at every size: the fit is exactly 2 * size^-0.3, with
    # SSR = 5 * 2 * 0.02^2 over 15 - 2 df and Sxx = 3 * 2 * (1 + 4) * log(2)^2
    sizes = [16, 32, 64, 128, 256]
    values = [2.0 * s ** -0.3 * np.exp([-0.02, 0.0, 0.02]) for s in sizes]
    fit = st.loglog_slope(sizes, values)
    assert fit.slope == pytest.approx(-0.3) and fit.intercept == pytest.approx(math.log(2.0)) and fit.df == 13
    assert fit.se == pytest.approx(math.sqrt(5 * 2 * 0.02**2 / 13 / (30 * math.log(2) ** 2)))
    effect, lo, hi = fit.effect(16, 256)  # the implied 16 -> 256 change: 16 ** -0.3 - 1 = -56%
    assert effect == pytest.approx(16 ** -0.3 - 1) and lo < effect < hi
    assert fit.effect(256, 16)[0] == pytest.approx(16 ** 0.3 - 1)  # backwards: bounds stay ordered
    assert fit.effect(256, 16)[1] < fit.effect(256, 16)[2]
    with pytest.raises(UptError, match="two or more sizes"):
        st.loglog_slope([16], [[1.0, 2.0]])
    with pytest.raises(UptError, match="> 0"):
        st.loglog_slope([16, 32], [[1.0], [0.0]])


@pytest.mark.parametrize("method", ["welch", "paired"])
@pytest.mark.parametrize("seeds", [3, 5])
def test_interval_coverage_simulation(method, seeds):
    """2000 synthetic experiments, lognormal per-seed errors, a true ratio of 0.8: the 95% interval
    must hold the true effect in 93-97% of them."""
    rng = np.random.default_rng(seeds + (method == "paired"))
    n_exp, true = 2000, math.log(0.8)
    if method == "welch":  # independent arms with unequal spreads
        log_c = rng.normal(0.0, 0.30, (n_exp, seeds))
        log_a = rng.normal(true, 0.10, (n_exp, seeds))
        d, se, df = st.welch(log_a, log_c)
    else:  # a shared per-seed component (the shared trained stage) plus each arm's own noise
        shared = rng.normal(0.0, 0.5, (n_exp, seeds))
        log_c = shared + rng.normal(0.0, 0.1, (n_exp, seeds))
        log_a = shared + true + rng.normal(0.0, 0.1, (n_exp, seeds))
        d, se, df = st.paired(log_a, log_c)
    low, high = st.t_interval(d, se, df)
    coverage = np.mean((low < true) & (true < high))
    assert 0.93 <= coverage <= 0.97
    assert np.all(np.expm1(low) > -1)


def test_sweep_effect_is_the_slope_between_two_sizes_and_its_se_scales_with_seeds():
    sizes = [16, 32, 64, 128, 256]
    rng = np.random.default_rng(1)
    values = [0.2 * (s / 16) ** -0.1 * np.exp(rng.normal(0, 0.05, 4)) for s in sizes]
    fit = st.loglog_slope(sizes, values)
    effect = st.sweep_effect(sizes, values, 16, 256)
    assert effect.log_effect == pytest.approx(fit.slope * np.log(16))
    assert effect.relative == pytest.approx(fit.effect(16, 256)[0])
    assert effect.interval() == pytest.approx(fit.effect(16, 256)[1:])
    se, df = effect.se_df(4)  # the observed design: 4 seeds at each of 5 sizes
    assert se == pytest.approx(effect.se) and df == 18
    assert effect.se_df(16)[0] == pytest.approx(effect.se / 2)  # 4x the seeds, half the SE
    assert (effect.n_arm, effect.n_control) == (4, 4)


def test_sweep_effect_interval_covers_the_true_effect_at_95_percent():
    sizes, true_slope, n_sims = np.array([16, 32, 64, 128, 256]), -0.1, 1000
    rng = np.random.default_rng(7)
    truth = np.expm1(true_slope * np.log(16))
    covered = 0
    for _ in range(n_sims):
        values = [(s / 16) ** true_slope * np.exp(rng.normal(0, 0.2, 3)) for s in sizes]
        low, high = st.sweep_effect(sizes, values, 16, 256).interval()
        covered += low <= truth <= high
    assert 0.93 <= covered / n_sims <= 0.97
