"""Summary statistics over episodes: mean, standard deviation and Student-t confidence intervals.

The t quantile is computed here (regularised incomplete beta function, inverted by
bisection), so the core library needs no SciPy; tests check it against
``scipy.stats.t.ppf``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Summary", "summarize_values", "t_quantile"]


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
