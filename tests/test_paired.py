"""Paired method comparisons and the between-seed spread, over per-episode tables."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats as scipy_stats

from torchcross.evaluation.paired import paired_comparisons, seed_spread
from torchcross.evaluation.stats import holm_adjust


def _rows(method: str, values, target: str = "t", seed: int = 0) -> list[dict]:
    return [
        {"method": method, "target": target, "episode": i, "seed": seed, "auroc": v}
        for i, v in enumerate(values)
    ]


def test_pairs_follow_episodes_not_row_order() -> None:
    rng = np.random.default_rng(0)
    a, b, c = rng.uniform(0.5, 1, 30), rng.uniform(0.5, 1, 30), rng.uniform(0.5, 1, 30)
    rows = _rows("a", a) + list(reversed(_rows("b", b))) + _rows("c", c) + _rows("a", a[:5], target="u")
    table = paired_comparisons(rows)
    assert [(r["target"], r["method_a"], r["method_b"]) for r in table] == [
        ("t", "a", "b"),
        ("t", "a", "c"),
        ("t", "b", "c"),
    ]
    ab = table[0]
    assert ab["mean_difference"] == pytest.approx(float(np.mean(a - b)), rel=1e-12)
    assert ab["wilcoxon_p"] == pytest.approx(scipy_stats.wilcoxon(a - b, method="exact").pvalue, rel=1e-9)
    assert ab["n"] == 30


def test_holm_columns_adjust_over_every_target_and_pair() -> None:
    rng = np.random.default_rng(1)
    rows = []
    for target in ("t", "u"):
        base = rng.uniform(0.5, 0.9, 12)
        rows += _rows("a", base + 0.05, target) + _rows("b", base + rng.normal(0, 0.02, 12), target)
        rows += _rows("c", base, target)
    table = paired_comparisons(rows)
    assert table.columns[table.columns.index("wilcoxon_p") :][:4] == [
        "wilcoxon_p",
        "wilcoxon_p_holm",
        "sign_p",
        "sign_p_holm",
    ]
    assert len(table) == 6  # one family: 2 targets x 3 pairs, not one family per target
    for test in ("wilcoxon_p", "sign_p"):
        raw = table.column(test)
        assert table.column(f"{test}_holm") == holm_adjust(raw)
        assert all(r <= h <= 1.0 for r, h in zip(raw, table.column(f"{test}_holm")))
    # a always beats c by 0.05: the sign convention is a - b, wins of a
    ac = next(r for r in table if (r["target"], r["method_a"], r["method_b"]) == ("t", "a", "c"))
    assert ac["mean_difference"] == pytest.approx(0.05)
    assert (ac["wins"], ac["losses"]) == (12, 0)
    # the smallest sign-test p-value (12 wins of 12: 2 / 2**12) is multiplied by the 6 comparisons
    assert min(table.column("sign_p_holm")) == pytest.approx(6 * 2 / 2**12)


def test_duplicate_episodes_and_missing_columns_are_refused() -> None:
    with pytest.raises(ValueError, match="has episode \\(0,\\) twice"):
        paired_comparisons(_rows("a", [0.5]) * 2)
    with pytest.raises(KeyError, match=r"no column\(s\) \['episode'\]"):
        paired_comparisons([{"method": "a", "target": "t", "auroc": 0.5}])


def test_seed_spread() -> None:
    rows = (
        _rows("a", [0.8, 0.9, 0.7], seed=0) + _rows("a", [0.6, 0.7, 0.8], seed=1) + _rows("b", [0.5], seed=0)
    )
    a, b = seed_spread(rows)
    assert a["n_seeds"] == 2
    assert a["auroc_mean"] == pytest.approx(0.75)
    assert a["auroc_seed_std"] == pytest.approx(math.sqrt(0.005))
    assert (a["auroc_seed_min"], a["auroc_seed_max"]) == pytest.approx((0.7, 0.8))
    half = scipy_stats.t.ppf(0.975, 2) * 0.1 / math.sqrt(3)
    assert a["auroc_episode_half_width"] == pytest.approx(half, rel=1e-9)
    assert b["n_seeds"] == 1
    assert math.isnan(b["auroc_seed_std"])
