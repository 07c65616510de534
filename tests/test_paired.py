"""Paired method comparisons and the between-seed spread, over per-episode tables."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats as scipy_stats

from torchcross.evaluation.paired import paired_comparisons, seed_spread


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
