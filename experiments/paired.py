"""The paired analysis of a seeded experiment: two models trained with the same K seeds,
compared seed by seed.

A seed fixes everything random in a run (the initialisation, the image subsets, the batch order,
the augmentation), so model A's and B's test accuracies a_k, b_k of seed k form a pair, and their
differences d_k = a_k − b_k carry what the models change, not what the draw changes. With the
mean d̄, the standard deviation s (ddof 1) and Student's t quantile t_{K−1}, the 95 % interval of
the mean difference is d̄ ± t_{K−1}·s/√K (the paired t-interval). An interval that holds 0 means
"no difference measurable at this size". A single accuracy p measured on n test images has the
binomial standard error √(p(1 − p)/n).

Plain Python (``math``, ``statistics``): the experiment needs nothing beyond the library's own
dependencies. The t quantile comes from the closed form of Student's distribution for an integer
number of degrees of freedom (Abramowitz & Stegun 26.7.3–4), inverted by bisection.
"""

import math
import statistics
from dataclasses import dataclass

from minibasis.checks import fail, integer, real

LEVEL = 0.95


def binomial_se(p, n):
    """Standard error of an accuracy ``p`` measured on ``n`` test images: √(p(1 − p)/n)."""
    p, n = real("p", p, 0, 1), integer("n", n, 1)
    return math.sqrt(p * (1 - p) / n)


def t_central_probability(t, df):
    """P(|T| ≤ t) for Student's T with ``df`` (an int ≥ 1) degrees of freedom, t ≥ 0.

    A & S 26.7.3 (df odd) and 26.7.4 (df even), with θ = atan(t/√df): a finite sum of powers
    of cos θ, exact up to rounding."""
    theta = math.atan(real("t", t, 0) / math.sqrt(integer("df", df, 1)))
    c2, total = math.cos(theta) ** 2, 0.0
    if df % 2:  # (2/π)(θ + sin θ (cos θ + 2/3 cos³θ + 2·4/(3·5) cos⁵θ + … + cos^{df−2}θ))
        term = math.cos(theta)
        for k in range(1, (df - 1) // 2 + 1):
            total += term
            term *= c2 * (2 * k) / (2 * k + 1)
        return 2 / math.pi * (theta + math.sin(theta) * total)
    term = 1.0  # sin θ (1 + 1/2 cos²θ + 1·3/(2·4) cos⁴θ + … + cos^{df−2}θ)
    for k in range(df // 2):
        total += term
        term *= c2 * (2 * k + 1) / (2 * k + 2)
    return math.sin(theta) * total


def t_quantile(df, level=LEVEL):
    """The t with P(|T| ≤ t) = ``level`` for ``df`` degrees of freedom: the half-width of a
    two-sided ``level`` interval in standard errors (df = 4, level 0.95: 2.776)."""
    integer("df", df, 1)
    if not 0 < real("level", level) < 1:
        fail("level", "a probability in (0, 1)", repr(level))
    low, high = 0.0, 1.0
    while t_central_probability(high, df) < level:
        low, high = high, 2 * high
    while high - low > 1e-13 * high:  # bisection: the probability grows with t
        middle = (low + high) / 2
        low, high = (middle, high) if t_central_probability(middle, df) < level else (low, middle)
    return (low + high) / 2


def normal_quantile(level=LEVEL):
    """The z with P(|Z| ≤ z) = ``level`` for a standard normal Z (0.95: 1.960)."""
    if not 0 < real("level", level) < 1:
        fail("level", "a probability in (0, 1)", repr(level))
    return statistics.NormalDist().inv_cdf((1 + level) / 2)


@dataclass(frozen=True)
class PairedDifference:
    """Model A against model B over the seeds they share: the differences a_k − b_k."""

    seeds: int
    mean: float  # d̄
    sd: float  # s, their standard deviation over the seeds (ddof 1)
    low: float  # d̄ − t_{K−1}·s/√K
    high: float  # d̄ + t_{K−1}·s/√K
    wins: int  # seeds where a > b
    losses: int  # seeds where a < b
    ties: int

    @property
    def measurable(self):
        """False when the interval holds 0: no difference measurable at this size."""
        return not self.low <= 0 <= self.high


def paired_difference(a, b, level=LEVEL):
    """The paired t-interval of mean(a − b) for equally long sequences ``a``, ``b`` (seed k of
    each at index k), at least 2 seeds."""
    a = [real(f"a[{k}]", value) for k, value in enumerate(a)]
    b = [real(f"b[{k}]", value) for k, value in enumerate(b)]
    if len(a) != len(b):
        fail("b", f"{len(a)} values, one per seed of a", f"{len(b)} values")
    if len(a) < 2:
        fail("a", "values of at least 2 seeds (one seed has no spread)", f"{len(a)} value(s)")
    d = [x - y for x, y in zip(a, b)]
    mean, sd = statistics.fmean(d), statistics.stdev(d)
    half = t_quantile(len(d) - 1, level) * sd / math.sqrt(len(d))
    return PairedDifference(
        len(d), mean, sd, mean - half, mean + half, sum(x > 0 for x in d), sum(x < 0 for x in d), sum(x == 0 for x in d)
    )


def seeds_needed(sd, resolution, level=LEVEL):
    """The fewest seeds K ≥ 2 whose interval's half-width t_{K−1}·sd/√K is at most ``resolution``,
    for differences with standard deviation ``sd``. A true difference of ``resolution`` then
    gives an interval that excludes 0 about half the time (it is centred on it). Time grows
    with K (each t quantile sums K/2 terms): milliseconds for tens of seeds, a second at 10⁵."""
    sd, resolution = real("sd", sd, 0), real("resolution", resolution)
    if resolution <= 0:
        fail("resolution", "a difference > 0", repr(resolution))
    # t_{K−1} > z, so no K below the normal approximation's (z·sd/resolution)² will do.
    k = max(2, math.ceil((normal_quantile(level) * sd / resolution) ** 2))
    while t_quantile(k - 1, level) * sd / math.sqrt(k) > resolution:
        k += 1
    return k


def test_images_needed(p_a, p_b, resolution, level=LEVEL):
    """The fewest test images n at which the binomial noise alone of two accuracies ``p_a``,
    ``p_b`` (treated as independent) gives a ``level`` interval of ± ``resolution`` for their
    difference: z·√((p_a(1 − p_a) + p_b(1 − p_b))/n) ≤ resolution. More test images shrink
    only this part of the seed-to-seed spread; the training noise stays."""
    variance = real("p_a", p_a, 0, 1) * (1 - p_a) + real("p_b", p_b, 0, 1) * (1 - p_b)
    if real("resolution", resolution) <= 0:
        fail("resolution", "a difference > 0", repr(resolution))
    return max(1, math.ceil(normal_quantile(level) ** 2 * variance / resolution**2))
