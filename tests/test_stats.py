"""Student-t quantiles and confidence intervals against SciPy (float64 references)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats as scipy_stats
from hypothesis import given, settings
from hypothesis import strategies as st

from torchcross.evaluation.stats import (
    Summary,
    holm_adjust,
    paired_difference,
    sign_test,
    summarize_values,
    t_quantile,
    wilcoxon_signed_rank,
)


@pytest.mark.parametrize("df", [1, 2, 3, 4.5, 9, 29, 99, 1000])
@pytest.mark.parametrize("p", [0.001, 0.025, 0.1, 0.6, 0.9, 0.975, 0.995, 0.9999])
def test_t_quantile_matches_scipy(p: float, df: float) -> None:
    expected = scipy_stats.t.ppf(p, df)
    assert t_quantile(p, df) == pytest.approx(expected, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize(("p", "df"), [(0.0, 3), (1.0, 3), (-0.5, 3), (0.5, 0), (0.9, -1)])
def test_t_quantile_rejects_bad_arguments(p: float, df: float) -> None:
    with pytest.raises(ValueError, match=r"p must be|degrees of freedom"):
        t_quantile(p, df)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=2, max_size=60),
    st.sampled_from([0.8, 0.9, 0.95, 0.99]),
)
def test_summary_matches_scipy_interval(values: list[float], confidence: float) -> None:
    s = summarize_values(values, confidence)
    arr = np.asarray(values, dtype=np.float64)
    assert s.n == len(values)
    assert s.mean == pytest.approx(arr.mean(), abs=1e-12)
    assert s.std == pytest.approx(arr.std(ddof=1), abs=1e-12)
    sem = arr.std(ddof=1) / math.sqrt(len(arr))
    if sem > 0:
        lo, hi = scipy_stats.t.interval(confidence, len(arr) - 1, loc=arr.mean(), scale=sem)
        assert s.ci_low == pytest.approx(lo, abs=1e-9)
        assert s.ci_high == pytest.approx(hi, abs=1e-9)
    else:
        assert s.ci_low == pytest.approx(s.mean)
        assert s.ci_high == pytest.approx(s.mean)
    assert s.half_width == pytest.approx((s.ci_high - s.ci_low) / 2)


def test_summary_of_100_episodes_uses_t_not_normal() -> None:
    values = np.linspace(0.5, 1.0, 100)
    s = summarize_values(values)
    sem = values.std(ddof=1) / 10
    assert s.half_width == pytest.approx(scipy_stats.t.ppf(0.975, 99) * sem, rel=1e-9)
    assert s.half_width > 1.96 * sem


def test_summary_leaves_out_nan_and_counts_it() -> None:
    s = summarize_values([0.5, float("nan"), 0.7])
    assert (s.n, s.n_missing) == (2, 1)
    assert s.mean == pytest.approx(0.6)


def test_summary_of_one_or_no_values_is_nan_where_undefined() -> None:
    one = summarize_values([0.8])
    assert one.mean == 0.8
    assert math.isnan(one.std)
    assert math.isnan(one.ci_low)
    none = summarize_values([])
    assert none.n == 0
    assert math.isnan(none.mean)
    assert "n=1" in str(one)
    assert isinstance(one, Summary)


@pytest.mark.parametrize("confidence", [0.0, 1.0, 95])
def test_summary_rejects_bad_confidence(confidence: float) -> None:
    with pytest.raises(ValueError, match="confidence must be in"):
        summarize_values([0.1, 0.2], confidence)


# -- paired comparisons ------------------------------------------------------------------------------------
_FIXED = [
    [0.1, -0.25, 0.3, 0.05, 0.4, -0.01, 0.2, 0.15],  # no ties: exact
    [-0.1, -0.25, -0.3, -0.05, -0.4, -0.01, -0.2, -0.15],  # all negative
    [0.1, -0.1, 0.3, 0.1, 0.4, 0.0, 0.2, 0.3],  # ties and a zero
    list(np.random.default_rng(0).normal(0.02, 0.05, 100)),  # n > 50
    list(np.round(np.random.default_rng(1).normal(0.0, 0.05, 60), 2)),  # many ties
]


@pytest.mark.parametrize("d", _FIXED)
@pytest.mark.parametrize("method", ["exact", "approx"])
def test_wilcoxon_matches_scipy(d: list[float], method: str) -> None:
    arr = np.asarray(d)
    if method == "exact" and (len(set(np.abs(arr[arr != 0]))) < np.count_nonzero(arr) or 0 in arr):
        method = "approx"  # scipy's exact distribution assumes no ties and no zeros
    expected = scipy_stats.wilcoxon(arr, method=method, zero_method="wilcox", correction=False)
    statistic, p = wilcoxon_signed_rank(d, method=method)
    assert statistic == pytest.approx(float(expected.statistic), abs=1e-12)
    assert p == pytest.approx(float(expected.pvalue), rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("d", _FIXED)
def test_sign_test_matches_scipy_binomtest(d: list[float]) -> None:
    arr = np.asarray(d)
    pos, neg = int((arr > 0).sum()), int((arr < 0).sum())
    assert sign_test(d) == pytest.approx(scipy_stats.binomtest(pos, pos + neg, 0.5).pvalue, rel=1e-12)


def test_paired_difference_matches_scipy_t_interval() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.uniform(0.5, 1.0, 40), rng.uniform(0.5, 1.0, 40)
    a[5] = np.nan  # a pair with a missing score is left out
    c = paired_difference(a, b, confidence=0.9)
    d = (a - b)[~np.isnan(a)]
    lo, hi = scipy_stats.t.interval(0.9, len(d) - 1, loc=d.mean(), scale=scipy_stats.sem(d))
    assert c.n == 39
    assert c.mean_difference == pytest.approx(d.mean(), rel=1e-12)
    assert (c.ci_low, c.ci_high) == pytest.approx((lo, hi), rel=1e-9)
    assert c.wilcoxon_p == pytest.approx(scipy_stats.wilcoxon(d, method="exact").pvalue, rel=1e-9)
    assert c.wins + c.losses + c.ties == 39


def test_paired_statistics_edge_cases() -> None:
    assert all(math.isnan(v) for v in wilcoxon_signed_rank([0.0, 0.0]))
    assert math.isnan(sign_test([]))
    with pytest.raises(ValueError, match="method must be 'auto', 'exact' or 'approx', got 'normal'"):
        wilcoxon_signed_rank([1.0], method="normal")
    with pytest.raises(ValueError, match="paired scores need equal lengths, got 2 and 3"):
        paired_difference([1, 2], [1, 2, 3])


def test_holm_adjust_hand_computed() -> None:
    # m = 4 finite p-values (the NaN is not counted), sorted: 0.005, 0.01, 0.03, 0.04
    #   0.005 * 4 = 0.02
    #   0.01  * 3 = 0.03 (>= 0.02)
    #   0.03  * 2 = 0.06 (>= 0.03)
    #   0.04  * 1 = 0.04 -> raised to the running maximum 0.06 (step-down: never below an earlier one)
    # back in the input order: [0.01 -> 0.03, 0.04 -> 0.06, 0.03 -> 0.06, 0.005 -> 0.02, nan -> nan]
    adjusted = holm_adjust([0.01, 0.04, 0.03, 0.005, math.nan])
    assert adjusted[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02], rel=1e-12)
    assert math.isnan(adjusted[4])
    # capped at 1: 0.6 * 2 = 1.2 -> 1, then 0.9 * 1 = 0.9 -> raised to 1
    assert holm_adjust([0.9, 0.6]) == [1.0, 1.0]
    # ties share a value: 0.02 * 3 = 0.06, 0.02 * 2 = 0.04 -> 0.06, 0.5 * 1 = 0.5
    assert holm_adjust([0.02, 0.5, 0.02]) == pytest.approx([0.06, 0.5, 0.06], rel=1e-12)
    # one p-value is its own family; nothing in, nothing out
    assert holm_adjust([0.03]) == [0.03]
    assert holm_adjust([]) == []
    assert all(math.isnan(v) for v in holm_adjust([math.nan, math.nan]))
    with pytest.raises(ValueError, match=r"p-value 1\.5 at position 1 is outside \[0, 1\]"):
        holm_adjust([0.5, 1.5])


def _holm_rejects(p: list[float], alpha: float) -> set[int]:
    """Holm's step-down procedure as stated: reject sorted p_(k) while p_(k) * (m - k + 1) <= alpha."""
    finite = sorted((i for i, v in enumerate(p) if not math.isnan(v)), key=p.__getitem__)
    rejected: set[int] = set()
    for k, i in enumerate(finite):
        if p[i] * (len(finite) - k) > alpha:
            break
        rejected.add(i)
    return rejected


_P_VALUES = st.lists(
    st.one_of(st.floats(0.0, 1.0), st.sampled_from([0.0, 0.01, 0.05, 1.0, math.nan])), max_size=12
)


@settings(max_examples=200, deadline=None)
@given(_P_VALUES)
def test_holm_adjust_properties(p: list[float]) -> None:
    adjusted = holm_adjust(p)
    assert len(adjusted) == len(p)
    for raw, adj in zip(p, adjusted):
        assert math.isnan(raw) == math.isnan(adj)
        if not math.isnan(raw):
            assert raw <= adj <= 1.0
    finite = [(raw, adj) for raw, adj in zip(p, adjusted) if not math.isnan(raw)]
    for raw_a, adj_a in finite:  # the order of the raw p-values is kept
        for raw_b, adj_b in finite:
            if raw_a <= raw_b:
                assert adj_a <= adj_b
    # an adjusted p-value at most alpha is exactly a rejection by Holm's procedure at level alpha
    for alpha in (0.001, 0.01, 0.05, 0.1, 0.5):
        assert {i for i, v in enumerate(adjusted) if v <= alpha} == _holm_rejects(p, alpha)
