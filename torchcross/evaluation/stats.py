"""Summary statistics over episodes: means with Student-t intervals, and paired comparisons.

[`summarize_values()`][summarize_values] gives a mean with a Student-t confidence
interval; [`paired_difference()`][paired_difference] compares two methods scored
on the same episodes (mean difference with a t interval, Wilcoxon signed-rank test, sign test);
[`holm_adjust()`][holm_adjust] adjusts a family of p-values for multiple comparisons. The t
quantile, the signed-rank distribution and the binomial tail are computed here, so the core library needs no
SciPy; tests check them against ``scipy.stats``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "PairedComparison",
    "Summary",
    "holm_adjust",
    "paired_difference",
    "sign_test",
    "summarize_values",
    "t_quantile",
    "wilcoxon_signed_rank",
]


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta function ``I_x(a, b)``."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def _t_cdf(t: float, df: float) -> float:
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t distribution with ``df`` degrees of freedom.

    Raises:
        ValueError: if ``p`` is not in (0, 1) or ``df`` is not positive.

    Examples:
        >>> round(t_quantile(0.975, 99), 4)
        1.9842
        >>> round(t_quantile(0.5, 3), 12)
        0.0
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p=}")
    if not df > 0:
        raise ValueError(f"degrees of freedom must be positive, got {df=}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while _t_cdf(hi, df) < p:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation and a two-sided Student-t confidence interval.

    ``n`` counts the finite values summarised; ``n_missing`` the NaN values left out
    (e.g. an AUROC undefined because a query set lacked a class). With fewer than two
    values ``std`` and the interval are NaN.
    """

    mean: float
    std: float
    ci_low: float
    ci_high: float
    n: int
    n_missing: int = 0
    confidence: float = 0.95

    @property
    def half_width(self) -> float:
        """Half the width of the confidence interval."""
        return (self.ci_high - self.ci_low) / 2.0

    def __str__(self) -> str:
        return f"{self.mean:.4f} ± {self.half_width:.4f} (n={self.n})"


def summarize_values(values: Iterable[float], confidence: float = 0.95) -> Summary:
    """Summarise values by their mean and a Student-t confidence interval.

    The interval is ``mean ± t_{(1+confidence)/2, n-1} * std / sqrt(n)`` with the
    sample standard deviation (``ddof=1``). NaN values are left out and counted in
    ``n_missing``.

    Raises:
        ValueError: if ``confidence`` is not in (0, 1).

    Examples:
        >>> s = summarize_values([0.7, 0.8, 0.9])
        >>> round(s.mean, 4), round(s.std, 4), round(s.ci_low, 4), round(s.ci_high, 4)
        (0.8, 0.1, 0.5516, 1.0484)
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), e.g. 0.95, got {confidence=}")
    all_values = [float(v) for v in values]
    finite = [v for v in all_values if not math.isnan(v)]
    n = len(finite)
    missing = len(all_values) - n
    nan = float("nan")
    if n == 0:
        return Summary(nan, nan, nan, nan, 0, missing, confidence)
    mean = math.fsum(finite) / n
    if n < 2:
        return Summary(mean, nan, nan, nan, n, missing, confidence)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in finite) / (n - 1))
    half = t_quantile(0.5 + confidence / 2.0, n - 1) * std / math.sqrt(n)
    return Summary(mean, std, mean - half, mean + half, n, missing, confidence)


def _ranks(values: list[float]) -> tuple[list[float], list[int]]:
    """Average ranks (1-based) of ``values`` and the sizes of the groups of ties."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    ties: list[int] = []
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2.0 + 1.0
        ties.append(j - i + 1)
        i = j + 1
    return ranks, ties


def _exact_signed_rank_cdf(statistic: float, n: int) -> float:
    """``P(T <= statistic)`` for the signed-rank sum ``T`` of ``n`` untied ranks under the null."""
    counts = [1] + [0] * (n * (n + 1) // 2)
    for r in range(1, n + 1):
        for total in range(len(counts) - 1, r - 1, -1):
            counts[total] += counts[total - r]
    return sum(counts[: math.floor(statistic) + 1]) / 2**n


def wilcoxon_signed_rank(differences: Iterable[float], method: str = "auto") -> tuple[float, float]:
    """Two-sided Wilcoxon signed-rank test that the differences are centred on zero.

    Zero differences are dropped (``scipy.stats.wilcoxon``'s ``zero_method="wilcox"``);
    ties share their average rank. The statistic is ``min(R+, R-)``. ``method="exact"``
    uses the exact null distribution (valid without ties), ``"approx"`` the normal
    approximation with the tie correction and no continuity correction; ``"auto"`` is
    exact for at most 50 untied non-zero differences, else approximate. NaNs are left out.

    Returns:
        ``(statistic, p_value)``; ``(nan, nan)`` without any non-zero difference.

    Raises:
        ValueError: an unknown ``method``.

    Examples:
        >>> wilcoxon_signed_rank([-0.1, -0.25, -0.3, -0.05, -0.4, -0.01, -0.2, -0.15])
        (0.0, 0.0078125)
    """
    if method not in ("auto", "exact", "approx"):
        raise ValueError(f"method must be 'auto', 'exact' or 'approx', got {method!r}")
    d = [float(v) for v in differences if not math.isnan(float(v)) and float(v) != 0.0]
    n = len(d)
    if n == 0:
        return float("nan"), float("nan")
    ranks, ties = _ranks([abs(v) for v in d])
    r_plus = math.fsum(r for r, v in zip(ranks, d) if v > 0)
    r_minus = math.fsum(r for r, v in zip(ranks, d) if v < 0)
    statistic = min(r_plus, r_minus)
    if method == "auto":
        method = "exact" if n <= 50 and all(t == 1 for t in ties) else "approx"
    if method == "exact":
        return statistic, min(1.0, 2.0 * _exact_signed_rank_cdf(statistic, n))
    mean = n * (n + 1) / 4.0
    var = n * (n + 1) * (2 * n + 1) / 24.0 - math.fsum(t**3 - t for t in ties) / 48.0
    if var <= 0:
        return statistic, 1.0
    z = (statistic - mean) / math.sqrt(var)
    return statistic, min(1.0, math.erfc(abs(z) / math.sqrt(2.0)))


def sign_test(differences: Iterable[float]) -> float:
    """Two-sided exact sign test (binomial, p = 1/2) of positive against negative differences.

    Zeros and NaNs are left out; ``nan`` if nothing is left.

    Examples:
        >>> round(sign_test([1, 1, 1, 1, 1, 1, -1, -1]), 7)
        0.2890625
    """
    d = [float(v) for v in differences if not math.isnan(float(v)) and float(v) != 0.0]
    n = len(d)
    if n == 0:
        return float("nan")
    k = min(sum(v > 0 for v in d), sum(v < 0 for v in d))
    tail = math.fsum(math.comb(n, i) for i in range(k + 1)) / 2.0**n
    return min(1.0, 2.0 * tail)


@dataclass(frozen=True)
class PairedComparison:
    """Method ``a`` minus method ``b`` on the same episodes.

    Attributes:
        n: episodes where both scores are finite.
        mean_difference, ci_low, ci_high: mean of ``a - b`` and its Student-t interval.
        wilcoxon_p: two-sided Wilcoxon signed-rank p-value (see
            [`wilcoxon_signed_rank()`][wilcoxon_signed_rank]).
        sign_p: two-sided sign-test p-value.
        wins, losses, ties: episodes where ``a`` scored higher, lower, equal.
        confidence: level of the interval.
    """

    n: int
    mean_difference: float
    ci_low: float
    ci_high: float
    wilcoxon_p: float
    sign_p: float
    wins: int
    losses: int
    ties: int
    confidence: float = 0.95


def paired_difference(a: Iterable[float], b: Iterable[float], confidence: float = 0.95) -> PairedComparison:
    """Compare two methods' scores on the same episodes (``a[i]`` and ``b[i]`` from episode ``i``).

    Pairs with a NaN on either side are left out.

    Raises:
        ValueError: if ``a`` and ``b`` differ in length, or ``confidence`` is not in (0, 1).

    Examples:
        >>> c = paired_difference([0.9, 0.8, 0.85, 0.7], [0.8, 0.8, 0.75, 0.6])
        >>> round(c.mean_difference, 3), c.wins, c.losses, c.ties, c.sign_p
        (0.075, 3, 0, 1, 0.25)
    """
    a, b = [float(v) for v in a], [float(v) for v in b]
    if len(a) != len(b):
        raise ValueError(f"paired scores need equal lengths, got {len(a)} and {len(b)}")
    diffs = [x - y for x, y in zip(a, b) if not (math.isnan(x) or math.isnan(y))]
    s = summarize_values(diffs, confidence)
    return PairedComparison(
        n=s.n,
        mean_difference=s.mean,
        ci_low=s.ci_low,
        ci_high=s.ci_high,
        wilcoxon_p=wilcoxon_signed_rank(diffs)[1],
        sign_p=sign_test(diffs),
        wins=sum(d > 0 for d in diffs),
        losses=sum(d < 0 for d in diffs),
        ties=sum(d == 0 for d in diffs),
        confidence=confidence,
    )


def holm_adjust(p_values: Iterable[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (controls the family-wise error rate).

    With the ``m`` finite p-values sorted ascending, ``p_(1) <= ... <= p_(m)``, the adjusted value of
    the ``i``-th is ``max over j <= i of min(1, (m - j + 1) * p_(j))``: the smallest is multiplied by
    ``m``, the next by ``m - 1``, and so on, each at least the one before it and at most 1. Rejecting
    where the adjusted value is at most ``alpha`` is Holm's test at level ``alpha``. The result is in
    the input order; it is never below the raw value and keeps the order of the raw values (equal raw
    values get equal adjusted values). NaN p-values (a comparison without any non-zero difference)
    stay NaN and do not count in ``m``.

    Raises:
        ValueError: a p-value outside [0, 1] (naming it and its position).

    Examples:
        >>> holm_adjust([0.01, 0.04, 0.03, float("nan")])
        [0.03, 0.06, 0.06, nan]
    """
    values = [float(v) for v in p_values]
    for i, v in enumerate(values):
        if not math.isnan(v) and not 0.0 <= v <= 1.0:
            raise ValueError(
                f"p-value {v!r} at position {i} is outside [0, 1]; pass p-values, not test statistics"
            )
    order = sorted((i for i, v in enumerate(values) if not math.isnan(v)), key=values.__getitem__)
    m = len(order)
    adjusted = [math.nan] * len(values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * values[i]))
        adjusted[i] = running
    return adjusted
