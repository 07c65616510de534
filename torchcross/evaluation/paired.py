"""Tables over per-episode results: paired method comparisons and the spread between training seeds.

Methods of one protocol run are scored on the same fixed episodes, so their scores pair
up by episode: [`paired_comparisons()`][paired_comparisons] reports, per target
and pair of methods, the
mean difference with a Student-t interval, the Wilcoxon signed-rank and the sign test
(see [`paired_difference()`][paired_difference]), each p-value also Holm-adjusted over all the rows
of the table ([`holm_adjust()`][holm_adjust]).
[`seed_spread()`][seed_spread] summarises runs repeated with several training
seeds: the mean and
standard deviation of the per-seed means, beside the episode interval of each seed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from itertools import combinations
from typing import Any

from torchcross.evaluation.results import ResultsTable
from torchcross.evaluation.stats import holm_adjust, paired_difference, summarize_values

__all__ = ["paired_comparisons", "seed_spread"]


def _table(rows: ResultsTable | Iterable[Mapping[str, Any]]) -> ResultsTable:
    return rows if isinstance(rows, ResultsTable) else ResultsTable(rows)


def _require(table: ResultsTable, names: Sequence[str]) -> None:
    missing = [n for n in names if n not in table.columns]
    if missing:
        raise KeyError(f"no column(s) {missing} in the episode table; columns are {table.columns}")


def paired_comparisons(
    episodes: ResultsTable | Iterable[Mapping[str, Any]],
    metric: str = "auroc",
    by: Sequence[str] = ("target",),
    pair_on: Sequence[str] = ("episode",),
    confidence: float = 0.95,
) -> ResultsTable:
    """Every pair of methods compared on the episodes they share, per ``by`` group.

    Rows: the ``by`` columns, ``method_a``, ``method_b`` (in order of first appearance),
    ``n`` (shared episodes with finite scores), ``mean_difference`` (``a - b``: positive when
    ``a`` scores higher), ``ci_low``, ``ci_high`` (its Student-t interval), ``wilcoxon_p``,
    ``wilcoxon_p_holm``, ``sign_p``, ``sign_p_holm``, ``wins``, ``losses``, ``ties`` (episodes
    where ``a`` scores higher, lower, equal). The raw p-values are two-sided and per row; the
    ``*_holm`` columns adjust each test's p-values with Holm's step-down method over the whole
    table (every ``by`` group and pair of methods is one family; NaN p-values stay NaN and do not
    count), so reading a ``*_holm`` value against ``alpha`` controls the chance of any false
    positive among all the rows.

    Raises:
        KeyError: a missing column (naming the columns that exist).
        ValueError: an episode of one method listed twice in a group.

    Examples:
        >>> rows = [
        ...     {"method": m, "target": "t", "episode": i, "auroc": v}
        ...     for m, vs in (("a", [0.9, 0.8, 0.7]), ("b", [0.6, 0.7, 0.8]))
        ...     for i, v in enumerate(vs)
        ... ]
        >>> r = paired_comparisons(rows)[0]
        >>> r["method_a"], r["method_b"], r["n"], round(r["mean_difference"], 3), r["wins"]
        ('a', 'b', 3, 0.1, 2)
    """
    table = _table(episodes)
    _require(table, ["method", metric, *by, *pair_on])
    groups: dict[tuple[Any, ...], dict[str, dict[tuple[Any, ...], float]]] = {}
    for row in table:
        per_method = groups.setdefault(tuple(row[b] for b in by), {}).setdefault(row["method"], {})
        key = tuple(row[p] for p in pair_on)
        if key in per_method:
            raise ValueError(
                f"method {row['method']!r} has episode {key} twice in group {dict(zip(by, key))}; "
                "add the distinguishing column (e.g. 'task_target' or 'seed') to by"
            )
        value = row[metric]
        per_method[key] = math.nan if value is None else float(value)
    out = []
    for group, methods in groups.items():
        for a, b in combinations(methods, 2):
            shared = [k for k in methods[a] if k in methods[b]]
            c = paired_difference(
                [methods[a][k] for k in shared], [methods[b][k] for k in shared], confidence
            )
            out.append(
                {
                    **dict(zip(by, group)),
                    "method_a": a,
                    "method_b": b,
                    "n": c.n,
                    "mean_difference": c.mean_difference,
                    "ci_low": c.ci_low,
                    "ci_high": c.ci_high,
                    "wilcoxon_p": c.wilcoxon_p,
                    "wilcoxon_p_holm": math.nan,
                    "sign_p": c.sign_p,
                    "sign_p_holm": math.nan,
                    "wins": c.wins,
                    "losses": c.losses,
                    "ties": c.ties,
                }
            )
    for test in ("wilcoxon_p", "sign_p"):
        for row, adjusted in zip(out, holm_adjust(row[test] for row in out)):
            row[f"{test}_holm"] = adjusted
    columns = [*by, "method_a", "method_b", "n", "mean_difference", "ci_low", "ci_high"]
    columns += ["wilcoxon_p", "wilcoxon_p_holm", "sign_p", "sign_p_holm", "wins", "losses", "ties"]
    return ResultsTable(out, columns=columns)


def seed_spread(
    episodes: ResultsTable | Iterable[Mapping[str, Any]],
    metric: str = "auroc",
    by: Sequence[str] = ("method", "target"),
    confidence: float = 0.95,
) -> ResultsTable:
    """Per ``by`` group: the mean over seeds, the between-seed spread and the mean episode interval.

    Rows: the ``by`` columns, ``n_seeds``, ``<metric>_mean`` (mean of the per-seed means),
    ``<metric>_seed_std`` (their standard deviation, NaN with one seed),
    ``<metric>_seed_min`` and ``<metric>_seed_max``, and ``<metric>_episode_half_width``
    (the mean half-width of the per-seed episode intervals).

    Raises:
        KeyError: a missing column, ``seed`` included.

    Examples:
        >>> rows = [
        ...     {"method": "a", "target": "t", "seed": s, "auroc": v}
        ...     for s, vs in ((0, [0.8, 0.9]), (1, [0.6, 0.7]))
        ...     for v in vs
        ... ]
        >>> r = seed_spread(rows)[0]
        >>> r["n_seeds"], round(r["auroc_mean"], 3), round(r["auroc_seed_std"], 4)
        (2, 0.75, 0.1414)
    """
    table = _table(episodes)
    _require(table, ["seed", metric, *by])
    groups: dict[tuple[Any, ...], dict[Any, list[float]]] = {}
    for row in table:
        value = row[metric]
        groups.setdefault(tuple(row[b] for b in by), {}).setdefault(row["seed"], []).append(
            math.nan if value is None else float(value)
        )
    out = []
    for group, seeds in groups.items():
        per_seed = [summarize_values(v, confidence) for v in seeds.values()]
        means = summarize_values([s.mean for s in per_seed], confidence)
        halves = [s.half_width for s in per_seed if not math.isnan(s.half_width)]
        finite = [s.mean for s in per_seed if not math.isnan(s.mean)]
        out.append(
            {
                **dict(zip(by, group)),
                "n_seeds": len(seeds),
                f"{metric}_mean": means.mean,
                f"{metric}_seed_std": means.std,
                f"{metric}_seed_min": min(finite, default=math.nan),
                f"{metric}_seed_max": max(finite, default=math.nan),
                f"{metric}_episode_half_width": math.fsum(halves) / len(halves) if halves else math.nan,
            }
        )
    return ResultsTable(out)
