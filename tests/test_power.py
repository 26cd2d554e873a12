"""The seed-count rule: power of the paired t-test (against published values and a simulation)."""
import numpy as np
import pytest
from scipy import stats as sps

from sdml.results.power import PAPER_EFFECT, paired_power, seeds_for_effect


@pytest.mark.parametrize("dz, n", [(1.0, 10), (0.5, 34), (0.8, 15)])
def test_sample_sizes_match_the_published_tables(dz, n):
    """G*Power / Cohen (1988): two-sided paired t, alpha 0.05, power 0.8 needs n = 10 pairs at
    effect size dz = 1, 34 at 0.5 and 15 at 0.8."""
    assert seeds_for_effect(sd=1.0, effect=dz, minimum=2) == n
    assert paired_power(n - 1, dz, 1.0) < 0.8 <= paired_power(n, dz, 1.0)


def test_power_agrees_with_a_seeded_simulation_of_the_test():
    rng = np.random.default_rng(0)
    n, effect, sd, trials = 4, 1.8, 0.9, 20000
    d = rng.normal(effect, sd, size=(trials, n))
    p = sps.ttest_1samp(d, 0.0, axis=1).pvalue
    simulated = float((p < 0.05).mean())  # binomial se ~ 0.0035 at this power
    assert paired_power(n, effect, sd) == pytest.approx(simulated, abs=0.015)


def test_the_rule_never_goes_below_three_seeds_and_grows_with_the_spread():
    assert seeds_for_effect(sd=0.01) == 3
    counts = [seeds_for_effect(sd=s) for s in (0.5, 1.0, 1.5, 2.0)]
    assert counts == sorted(counts) and counts[-1] > counts[0]
    assert PAPER_EFFECT == pytest.approx(73.28 - 71.51, abs=0.05)  # Table 1, model 1, rounded


@pytest.mark.parametrize("kw, field", [(dict(n=1, effect=1.0, sd=1.0), "n"),
                                       (dict(n=3, effect=1.0, sd=0.0), "sd"),
                                       (dict(n=3, effect=float("nan"), sd=1.0), "effect"),
                                       (dict(n=3, effect=1.0, sd=1.0, alpha=1.5), "alpha")])
def test_bad_arguments_name_the_field(kw, field):
    with pytest.raises(ValueError, match=f"^{field}:"):
        paired_power(**kw)


def test_a_hopeless_spread_is_refused_not_answered():
    with pytest.raises(ValueError, match="more than 100 seeds"):
        seeds_for_effect(sd=50.0)


def test_far_in_the_tail_the_power_is_the_integral_not_nan():
    """scipy's noncentral t returns NaN at a large noncentrality; the chi-square integral takes
    over there and agrees with it where both are defined."""
    assert paired_power(3, 1.8, 0.12) == pytest.approx(1.0, abs=1e-6)
    assert seeds_for_effect(sd=0.12) == 3
    import math

    from scipy import stats as sps
    from scipy.integrate import quad

    df, nc = 3, 1.8 * 2 / 0.9  # n = 4, sd 0.9: scipy's nct is finite here
    crit = sps.t.ppf(0.975, df)
    integral = quad(lambda v: (sps.norm.cdf(nc - crit * math.sqrt(v / df))
                               + sps.norm.cdf(-nc - crit * math.sqrt(v / df)))
                    * sps.chi2.pdf(v, df), 0, math.inf)[0]
    assert paired_power(4, 1.8, 0.9) == pytest.approx(integral, abs=1e-6)
