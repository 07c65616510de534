"""Multi-label episodes: a near-minimal set with at least ``m`` positives and negatives per label.

Every example is a positive or a negative of every label, so one example counts towards
many quotas at once. `cover_quotas()` builds a set greedily:

1. take the unmet quota (label and polarity) with the fewest candidate examples;
2. draw a few candidates from that quota's examples (not yet taken) and keep the one
   meeting the most unmet quotas (ties: the first drawn, so the choice is random);
3. repeat until every quota is met (at most ``2 * L * m`` picks), then drop examples in
   random order while every quota stays met, so no single example is redundant.

Each pick costs ``O(candidates)`` operations on bit masks (one Python int per example, bit
``j`` set when label ``j`` is positive), never ``O(N)``: the masks and the per-label
positive and negative index lists are built once per task
([`index_labels()`][torchcross.sampling.episode_index.index_labels], with
[`row_bits()`][torchcross.sampling.episodes.LabelIndex.row_bits]). Random choices come from a
`random.Random` seeded by the episode's generator, so results stay a pure
function of that generator.
`sample_multilabel_indices()` draws the support set, then the query set from the
remaining examples, and retries a bounded number of times when overlapping labels use up
a rare label's examples.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import cast

import numpy as np

from torchcross.sampling.bits import column_mask
from torchcross.sampling.episode_index import LabelIndex, check_label_supply

__all__ = ["cover_quotas", "sample_multilabel_indices"]

_CANDIDATES = 16


class _QuotaExhausted(Exception):
    def __init__(self, column: int, positive: bool) -> None:
        super().__init__(column, positive)
        self.column = column
        self.positive = positive


def cover_quotas(
    index: LabelIndex,
    columns: Sequence[int],
    quota: int,
    taken: set[int],
    rng: np.random.Generator,
    n_candidates: int = _CANDIDATES,
) -> np.ndarray:
    """A near-minimal set of untaken examples with ``>= quota`` positives and negatives per column.

    Adds the chosen examples to ``taken`` and returns them (``int64``) in random order.
    Label rows are handled as bit masks (Python ints), so a pick costs ``O(candidates)``
    bit operations.

    Raises:
        _QuotaExhausted: (private) when a quota's examples are all taken.

    Examples:
        >>> import numpy as np
        >>> from torchcross.sampling.episode_index import index_labels
        >>> labels = np.random.default_rng(0).integers(0, 2, (50, 4))
        >>> index = index_labels(labels, "MULTILABEL_CLASSIFICATION")
        >>> taken = set()
        >>> chosen = cover_quotas(index, [0, 1, 2, 3], 2, taken, np.random.default_rng(0))
        >>> rows = labels[chosen]
        >>> bool((rows.sum(0) >= 2).all() and ((1 - rows).sum(0) >= 2).all()), taken == set(chosen.tolist())
        (True, True)
    """
    if quota <= 0:
        return np.zeros(0, dtype=np.int64)
    bits = index.row_bits
    cols = [int(c) for c in columns]
    all_cols = column_mask(cols)
    rand = random.Random(int(rng.integers(2**63)))
    need_pos = dict.fromkeys(cols, quota)
    need_neg = dict.fromkeys(cols, quota)
    unmet_pos = unmet_neg = all_cols
    # the quotas with the fewest candidate examples are met first
    order = sorted(
        [(len(index.positives[c]), 0, c) for c in cols] + [(len(index.negatives[c]), 1, c) for c in cols]
    )
    chosen: list[int] = []
    while unmet_pos or unmet_neg:
        for _, negative, c in order:
            if ((unmet_neg if negative else unmet_pos) >> c) & 1:
                break
        pool = index.negatives[c] if negative else index.positives[c]
        n_pool = len(pool)
        best, best_gain = -1, -1
        for _ in range(n_candidates):
            x = int(pool[int(rand.random() * n_pool)])
            if x in taken:
                continue
            b = bits[x]
            gain = (b & unmet_pos).bit_count() + (~b & unmet_neg).bit_count()
            if gain > best_gain:
                best, best_gain = x, gain
        if best < 0:  # the drawn candidates were all taken: look at what is left
            avail = pool[~np.isin(pool, np.fromiter(taken, dtype=np.int64, count=len(taken)))]
            if avail.size == 0:
                raise _QuotaExhausted(c, not negative)
            for _ in range(min(n_candidates, avail.size)):
                x = int(avail[int(rand.random() * avail.size)])
                b = bits[x]
                gain = (b & unmet_pos).bit_count() + (~b & unmet_neg).bit_count()
                if gain > best_gain:
                    best, best_gain = x, gain
        taken.add(best)
        chosen.append(best)
        b = bits[best]
        hit = b & unmet_pos
        while hit:
            low = hit & -hit
            j = low.bit_length() - 1
            need_pos[j] -= 1
            if need_pos[j] == 0:
                unmet_pos ^= low
            hit ^= low
        hit = ~b & unmet_neg
        while hit:
            low = hit & -hit
            j = low.bit_length() - 1
            need_neg[j] -= 1
            if need_neg[j] == 0:
                unmet_neg ^= low
            hit ^= low
    return np.asarray(_prune(chosen, bits, cols, all_cols, quota, taken, rand), dtype=np.int64)


def _prune(
    chosen: list[int],
    bits: list[int],
    cols: list[int],
    all_cols: int,
    quota: int,
    taken: set[int],
    rand: random.Random,
) -> list[int]:
    """Drop examples in random order while every quota stays met; return the rest shuffled."""
    n = len(chosen)
    pos = dict.fromkeys(cols, 0)
    for x in chosen:
        hit = bits[x] & all_cols
        while hit:
            low = hit & -hit
            pos[low.bit_length() - 1] += 1
            hit ^= low
    neg = {c: n - pos[c] for c in cols}
    tight_pos = column_mask([c for c in cols if pos[c] <= quota])
    tight_neg = column_mask([c for c in cols if neg[c] <= quota])
    order = list(chosen)
    rand.shuffle(order)
    kept = []
    for x in order:
        b = bits[x]
        if b & tight_pos or ~b & tight_neg:
            kept.append(x)
            continue
        taken.discard(x)
        hit = b & all_cols
        while hit:
            low = hit & -hit
            j = low.bit_length() - 1
            pos[j] -= 1
            if pos[j] <= quota:
                tight_pos |= low
            hit ^= low
        hit = ~b & all_cols
        while hit:
            low = hit & -hit
            j = low.bit_length() - 1
            neg[j] -= 1
            if neg[j] <= quota:
                tight_neg |= low
            hit ^= low
    rand.shuffle(kept)
    return kept


def sample_multilabel_indices(
    index: LabelIndex,
    columns: Sequence[int],
    n_shot: int,
    n_query: int,
    rng: np.random.Generator,
    max_attempts: int = 10,
) -> tuple[np.ndarray, np.ndarray]:
    """Support and query sets meeting the quotas ``n_shot`` and ``n_query`` for ``columns``.

    Raises:
        ValueError: if a label has fewer than ``n_shot + n_query`` positives or negatives,
            or the quotas could not be met within ``max_attempts`` attempts.

    Examples:
        >>> import numpy as np
        >>> from torchcross.sampling.episode_index import index_labels
        >>> index = index_labels(
        ...     np.random.default_rng(0).integers(0, 2, (80, 3)), "MULTILABEL_CLASSIFICATION"
        ... )
        >>> s, q = sample_multilabel_indices(index, [0, 2], 2, 3, np.random.default_rng(0))
        >>> len(set(s) & set(q))
        0
    """
    check_label_supply(index, columns, n_shot, n_query)
    last: _QuotaExhausted | None = None
    for _ in range(max_attempts):
        taken: set[int] = set()
        try:
            support = cover_quotas(index, columns, n_shot, taken, rng)
            query = cover_quotas(index, columns, n_query, taken, rng)
        except _QuotaExhausted as exc:
            last = exc
            continue
        return support, query
    if last is None:  # pragma: no cover - max_attempts >= 1 is checked by the callers
        raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
    polarity = "positives" if last.positive else "negatives"
    n_pos = len(index.positives[last.column])
    count = n_pos if last.positive else cast(np.ndarray, index.matrix).shape[0] - n_pos
    raise ValueError(
        f"could not meet the multi-label quotas ({n_shot} support, {n_query} query positives and "
        f"negatives per label) in {max_attempts} attempts: the {count} {polarity} of label {last.column} "
        "ran out because covering the other labels used them up; lower n_shot/n_query or drop that label"
    )
