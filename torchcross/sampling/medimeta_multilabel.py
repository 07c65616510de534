"""Multi-label episodes as the MedIMeta authors drew them: ``k`` positives and negatives per label, trimmed.

The rule of ``multilabel_few_shot_sample`` in torchcross 0.0.6
(``torchcross/data/metadataset/few_shot.py``), with which MedIMeta 0.0.6 presampled the paper's test
episodes. For a quota ``k`` and the labels (columns) ``c_1..c_L`` of the episode, a set ``S`` meets the
quota when every label has at least ``k`` positives and at least ``k`` negatives in ``S``. A set is drawn
as:

1. per label, in column order: ``k`` random positives and ``k`` random negatives of that label among the
   examples still available (without replacement within the draw; a label's draw may repeat an
   example another label drew);
2. the union of these ``2 * k * L`` draws (each example once), in a random order;
3. the shortest prefix of that order of length ``>= 2k`` that meets the quota (if none is shorter,
   all of it);
4. one pass over what is left, in that order: an example is removed when the set without it still
   meets the quota.

The support set is drawn with quota ``n_shot`` from all examples, the query set with ``n_query`` from the
examples not in the support set. Every example kept is needed at the end: removing any one of them
leaves some label with ``k - 1`` positives or negatives (step 4 never adds an example back, so a quota
that was tight when an example was kept stays tight). The set has between ``2k`` and ``2kL`` examples.

How it differs from the greedy cover (``torchcross.sampling.multilabel``,
``multilabel_sampler = "cover"``): the cover picks examples one at a time, each the candidate that
meets the most unmet quotas, starting with the label with the fewest examples, so its sets are
smaller (near-minimal) and a rare label's examples are taken only as needed; the authors' rule first
draws ``k`` positives and ``k`` negatives of *every* label independently and then trims, so its sets are
larger and follow the labels' frequencies (a common label contributes positives through the other
labels' draws). Both meet the same quotas with support and query disjoint.

Differences from 0.0.6, all of them ours: the random draws come from the episode's generator (the
authors used NumPy's global random state), so an episode is a pure function of ``(seed, index)``; a
label with fewer than ``k`` positives or negatives left for the query set (its examples went to the
support set) is drawn again, up to ``max_attempts`` times, then raises a ``ValueError`` naming the
label (0.0.6 ended the episode stream there, silently).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import numpy as np

from torchcross.sampling.episode_index import LabelIndex, check_label_supply

__all__ = ["sample_medimeta_multilabel_indices", "trim_to_quota"]


class _LabelExhausted(Exception):
    def __init__(self, column: int, positive: bool, left: int) -> None:
        super().__init__(column, positive, left)
        self.column = column
        self.positive = positive
        self.left = left


def trim_to_quota(rows: np.ndarray, quota: int) -> np.ndarray:
    """The positions of ``rows`` that steps 3 and 4 of the authors' rule keep, in their order.

    Args:
        rows: ``(n, L)`` 0/1 label rows of the drawn examples, in the drawn (shuffled) order; every
            column must have at least ``quota`` ones and ``quota`` zeros.
        quota: ``k``.

    Returns:
        increasing positions into ``rows``: the shortest prefix of length ``>= 2 * quota`` meeting the
        quota, less every example that one pass in order can remove keeping the quota met.

    Examples:
        >>> import numpy as np
        >>> rows = np.array([[1, 1], [1, 0], [0, 0], [0, 1]])  # the first 3 meet the quota 1
        >>> trim_to_quota(rows, 1).tolist()  # and example 1 is not needed
        [0, 2]
    """
    rows = np.asarray(rows, dtype=np.int64)
    n = len(rows)
    cumulative = np.cumsum(rows, axis=0)
    lengths = np.arange(1, n + 1)[:, None]
    meets = ((cumulative >= quota) & (lengths - cumulative >= quota)).all(axis=1)
    meets[: 2 * quota - 1] = False  # 0.0.6 tries prefixes of 2k examples and more
    meets[n - 1 :] = False  # ... and shorter than the whole draw
    hits = np.flatnonzero(meets)
    size = int(hits[0]) + 1 if hits.size else n
    positives = rows[:size].sum(axis=0)
    kept = []
    count = size
    for i in range(size):
        row = rows[i]
        left = positives - row
        if (left >= quota).all() and (count - 1 - left >= quota).all():
            positives, count = left, count - 1
        else:
            kept.append(i)
    return np.asarray(kept, dtype=np.int64)


def _draw(
    index: LabelIndex, columns: Sequence[int], quota: int, taken: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """One set of the authors' rule (steps 1 to 4) from the examples not in ``taken``."""
    matrix = cast(np.ndarray, index.matrix)
    parts = []
    for c in columns:
        for positive, pool in ((True, index.positives[c]), (False, index.negatives[c])):
            pool = np.asarray(pool, dtype=np.int64)
            if taken.size:
                pool = pool[~np.isin(pool, taken)]
            if pool.size < quota:
                raise _LabelExhausted(int(c), positive, int(pool.size))
            parts.append(rng.choice(pool, size=quota, replace=False))
    drawn = np.unique(np.concatenate(parts))
    rng.shuffle(drawn)
    rows = matrix[drawn][:, list(columns)]
    return drawn[trim_to_quota(rows, quota)]


def sample_medimeta_multilabel_indices(
    index: LabelIndex,
    columns: Sequence[int],
    n_shot: int,
    n_query: int,
    rng: np.random.Generator,
    max_attempts: int = 10,
) -> tuple[np.ndarray, np.ndarray]:
    """Support and query sets of the authors' rule (see the module) for the label ``columns``.

    Raises:
        ValueError: if a label has fewer than ``n_shot + n_query`` positives or negatives, or its
            query examples ran out (the support set took them) in each of ``max_attempts`` attempts.

    Examples:
        >>> import numpy as np
        >>> from torchcross.sampling.episode_index import index_labels
        >>> labels = np.random.default_rng(0).integers(0, 2, (80, 3))
        >>> index = index_labels(labels, "MULTILABEL_CLASSIFICATION")
        >>> s, q = sample_medimeta_multilabel_indices(index, [0, 2], 2, 3, np.random.default_rng(0))
        >>> len(set(s) & set(q)), bool((labels[s][:, [0, 2]].sum(0) >= 2).all())
        (0, True)
    """
    check_label_supply(index, columns, n_shot, n_query)
    last: _LabelExhausted | None = None
    for _ in range(max_attempts):
        support = _draw(index, columns, n_shot, np.zeros(0, dtype=np.int64), rng)
        try:
            query = _draw(index, columns, n_query, support, rng) if n_query else np.zeros(0, np.int64)
        except _LabelExhausted as exc:
            last = exc
            continue
        return support, query
    if last is None:
        raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
    polarity = "positives" if last.positive else "negatives"
    raise ValueError(
        f"could not draw the multi-label query set ({n_query} positives and negatives per label) in "
        f"{max_attempts} attempts: only {last.left} {polarity} of label {last.column} were left after the "
        "support set took its examples; lower n_shot/n_query or drop that label"
    )
