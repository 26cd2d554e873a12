"""How many seeds a paired comparison needs: the power of the two-sided paired t-test.

With n seeds, the paired differences d_s of two methods have mean delta and standard deviation
sigma; the paired t statistic then follows a noncentral t distribution with n - 1 degrees of
freedom and noncentrality ``delta * sqrt(n) / sigma`` (Student 1908; e.g. Cohen, *Statistical
Power Analysis for the Behavioral Sciences*, 1988, ch. 2). The test at level alpha rejects when
``|t| > t_{1 - alpha/2, n-1}``, so its power is

    P(T' > t_crit) + P(T' < -t_crit),  T' ~ nct(n - 1, delta sqrt(n) / sigma).

:func:`seeds_for_effect` is the smallest n whose power reaches the target: the kit's rule for the
default seed count of a study (the paper's claimed gain, 1.8 points, against the spread of paired
differences a sweep measured). scipy has the noncentral t; the search over n is the only code
here.
"""
from __future__ import annotations

import math

from scipy import stats as sps
from scipy.integrate import quad

PAPER_EFFECT = 1.8  # points of top-1: Table 1, Beta against no mixup, +1.77 (model 1; model 2: +1.55)


def paired_power(n: int, effect: float, sd: float, alpha: float = 0.05) -> float:
    """Power of the two-sided paired t-test at level ``alpha`` with ``n`` pairs whose differences
    have mean ``effect`` and standard deviation ``sd``."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n: {n!r}; allowed: an integer >= 2 (a paired t-test needs two pairs)")
    for name, value in (("effect", effect), ("sd", sd)):
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name}: {value!r}; allowed: a positive finite number")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha: {alpha!r}; allowed: a number in (0, 1)")
    df, nc = n - 1, effect * math.sqrt(n) / sd
    crit = sps.t.ppf(1 - alpha / 2, df)
    power = float(sps.nct.sf(crit, df, nc) + sps.nct.cdf(-crit, df, nc))
    if math.isfinite(power):
        return power
    # scipy's noncentral t gives NaN far in its tail (large noncentrality); there T' = (Z + nc)
    # / sqrt(V / df) with V ~ chi2(df), so P(|T'| > c) = E_V[Phi(nc - c s) + Phi(-nc - c s)],
    # s = sqrt(V / df), integrated over V's density
    def tails(v: float) -> float:
        s = math.sqrt(v / df)
        return (sps.norm.cdf(nc - crit * s) + sps.norm.cdf(-nc - crit * s)) * sps.chi2.pdf(v, df)

    return float(min(1.0, quad(tails, 0, math.inf)[0]))


def seeds_for_effect(sd: float, effect: float = PAPER_EFFECT, alpha: float = 0.05,
                     power: float = 0.8, minimum: int = 3, maximum: int = 100) -> int:
    """The smallest seed count n >= ``minimum`` whose paired t-test detects ``effect`` points at
    level ``alpha`` with probability >= ``power``, given the paired differences' sd ``sd``.

    Raises ValueError when even ``maximum`` seeds are not enough (the effect is far inside the
    spread: say so rather than return a number no one would run).
    """
    if not 0 < power < 1:
        raise ValueError(f"power: {power!r}; allowed: a number in (0, 1)")
    if isinstance(minimum, bool) or not isinstance(minimum, int) or minimum < 2:
        raise ValueError(f"minimum: {minimum!r}; allowed: an integer >= 2")
    for n in range(minimum, maximum + 1):
        if paired_power(n, effect, sd, alpha) >= power:
            return n
    raise ValueError(f"sd: {sd!r}; a difference of {effect} points needs more than {maximum} "
                     f"seeds at this spread, so no seed count is proposed")
