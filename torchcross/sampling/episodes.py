"""Few-shot episode sampling rules: pure functions of labels, parameters and a generator.

Every rule takes canonical labels (or a :class:`LabelIndex` built from them once),
its parameters and an explicit :class:`numpy.random.Generator`, and returns an
:class:`EpisodeIndices`: the support and query indices into the source and the class
keys (multi-label: label columns) the episode uses, in episode order. Episode label
``i`` means ``classes[i]``.

==================  ===========================================================
kind                rule
==================  ===========================================================
multi-class         ``k`` support and ``q`` query examples per selected class
ordinal             as multi-class; selected classes always in key order
binary              ``k`` negatives and ``k`` positives (support), ``q`` of each (query)
multi-label         at least ``k`` positives and ``k`` negatives per selected label
                    (support), ``q`` of each (query); see
                    :mod:`torchcross.sampling.multilabel`
variable            Meta-Dataset's variable-way variable-shot rule
                    (:func:`torchcross.sampling.variable.sample_variable_episode`)
==================  ===========================================================

Support and query never share an example. Within a class, examples come in random
order (independent of file order); support and query are class-major (all examples
of ``classes[0]`` first).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from torchcross._checks import check_int
from torchcross.sampling.episode_index import (
    _SINGLE_LABEL,
    EpisodeIndices,
    LabelIndex,
    _as_index,
    episode_labels,
    index_labels,
    relabel_description,
)
from torchcross.tasks.task import TaskTarget

__all__ = [
    "EpisodeIndices",
    "LabelIndex",
    "episode_labels",
    "index_labels",
    "relabel_description",
    "sample_binary_episode",
    "sample_episode",
    "sample_multiclass_episode",
    "sample_multilabel_episode",
    "sample_ordinal_episode",
    "sample_per_class",
]


def _check_generator(rng: Any) -> None:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng must be a numpy.random.Generator, got {type(rng).__name__}; "
            "use numpy.random.default_rng(seed)"
        )


def _check_classes(index: LabelIndex, classes: Sequence[int] | None) -> tuple[int, ...]:
    if classes is None:
        return index.keys
    out = tuple(int(c) for c in classes)
    if len(set(out)) != len(out):
        raise ValueError(f"classes must not repeat, got {list(out)}")
    for c in out:
        index.position(c)
    return out


def _draw_without_replacement(
    starts: np.ndarray, sizes: np.ndarray, need: np.ndarray, rng: np.random.Generator, max_rounds: int = 8
) -> np.ndarray:
    """Uniform draws without replacement from several disjoint blocks, vectorised.

    Block ``j`` is ``[starts[j], starts[j] + sizes[j])``; returns ``need[j]`` distinct
    positions from each, block-major, in random order. Draws with replacement, then
    redraws later duplicates; the procedure is invariant under permutations of each
    block, so every ordered tuple of distinct positions is equally likely.
    """
    owner = np.repeat(np.arange(len(need)), need)
    block_size = sizes[owner]
    flat = starts[owner] + np.minimum((rng.random(len(owner)) * block_size).astype(np.int64), block_size - 1)
    for _ in range(max_rounds):
        ordered = np.sort(flat)
        if (ordered[1:] != ordered[:-1]).all():
            return flat
        _, first = np.unique(flat, return_index=True)
        dup = np.ones(len(flat), dtype=bool)
        dup[first] = False
        where = np.flatnonzero(dup)
        redraw = np.minimum(
            (rng.random(len(where)) * block_size[where]).astype(np.int64), block_size[where] - 1
        )
        flat[where] = starts[owner[where]] + redraw
    _, first = np.unique(flat, return_index=True)
    if len(first) != len(flat):  # rare: small blocks; finish those exactly with a permutation
        dup = np.ones(len(flat), dtype=bool)
        dup[first] = False
        for j in np.unique(owner[dup]):
            sel = owner == j
            flat[sel] = starts[j] + rng.permutation(int(sizes[j]))[: int(need[j])]
    return flat


def _draw_uniform(starts: np.ndarray, sizes: np.ndarray, need: int, rng: np.random.Generator) -> np.ndarray:
    """``need`` distinct positions from every block, ``(blocks, need)``, in random order.

    Sequential rejection, vectorised: each row draws ``2 * need`` positions with replacement
    and keeps the first ``need`` distinct ones in draw order (usually simply the first
    ``need``), which is sampling without replacement. A row with fewer distinct draws (a
    block barely larger than ``need``) gets an exact permutation draw instead. Both branches
    are uniform over ordered tuples of distinct positions.
    """
    n_rows, n_draws = len(sizes), 2 * need
    # floor(u * size) < size for u in [0, 1) and any size below 2**52
    flat = (rng.random((n_rows, n_draws)) * sizes[:, None]).astype(np.int64)
    flat += starts[:, None]
    head = flat[:, :need]
    if need < 2:
        return head
    ordered = head.copy()
    ordered.sort(axis=1)
    repeated = ordered[:, 1:] == ordered[:, :-1]
    if not repeated.any():
        return head
    for row in repeated.any(axis=1).nonzero()[0].tolist():  # few rows: a plain loop is cheapest
        distinct = list(dict.fromkeys(flat[row].tolist()))  # first draws of each position, in order
        if len(distinct) >= need:
            head[row] = distinct[:need]
        else:
            head[row] = starts[row] + rng.permutation(int(sizes[row]))[:need]
    return head


def sample_per_class(
    labels: Any,
    shots: Sequence[int] | int,
    queries: Sequence[int] | int,
    rng: np.random.Generator,
    classes: Sequence[int] | None = None,
    task_target: TaskTarget | str = TaskTarget.MULTICLASS_CLASSIFICATION,
) -> EpisodeIndices:
    """Draw ``shots[j]`` support and ``queries[j]`` query examples of each class ``classes[j]``.

    The building block of the single-label rules (multi-class, ordinal, binary): per-class
    counts may differ (imbalanced support). ``classes`` default to all keys, in key order.

    Raises:
        ValueError: if a class has fewer examples than it needs.

    Examples:
        >>> import numpy as np
        >>> ep = sample_per_class([0, 0, 0, 1, 1, 1], [2, 1], 1, np.random.default_rng(0))
        >>> len(ep.support), len(ep.query), ep.classes
        (3, 2, (0, 1))
    """
    _check_generator(rng)
    target = TaskTarget.parse(task_target)
    index = _as_index(labels, target)
    if index.task_target not in _SINGLE_LABEL:
        raise ValueError(f"sample_per_class needs a single-label task, got {index.task_target.name}")
    classes = _check_classes(index, classes)
    k = len(classes)
    uniform = isinstance(shots, (int, np.integer)) and isinstance(queries, (int, np.integer))
    if uniform and shots >= 0 and queries >= 0:
        return _sample_fixed(index, classes, int(shots), int(queries), rng)
    positions = index._positions
    pos = np.array([positions[c] for c in classes], dtype=np.int64)
    shot = np.full(k, shots, dtype=np.int64) if isinstance(shots, (int, np.integer)) else np.asarray(shots)
    query = (
        np.full(k, queries, dtype=np.int64) if isinstance(queries, (int, np.integer)) else np.asarray(queries)
    )
    shot, query = shot.astype(np.int64, copy=False), query.astype(np.int64, copy=False)
    if shot.shape != (k,) or query.shape != (k,):
        raise ValueError(
            f"need one shot and one query count per class ({k} classes), got {shots!r} / {queries!r}"
        )
    if (shot < 0).any() or (query < 0).any():
        raise ValueError(f"shot and query counts must be >= 0, got {shot.tolist()} / {query.tolist()}")
    sizes, need = index.sizes[pos], shot + query
    if (sizes < need).any():
        _raise_short(classes, sizes, need)
    flat = _draw_without_replacement(index.starts[pos], sizes, need, rng)
    picked = index.order[flat]
    block = np.repeat(np.arange(k), need)
    rank = np.arange(len(picked)) - np.repeat(np.cumsum(need) - need, need)
    is_support = rank < shot[block]
    is_query = ~is_support
    return EpisodeIndices(picked[is_support], picked[is_query], classes, block[is_support], block[is_query])


@dataclass(frozen=True, eq=False)
class _FixedShotPlan:
    """What every fixed-shot episode over the same classes shares (computed once)."""

    classes: tuple[int, ...]
    starts: np.ndarray
    sizes: np.ndarray
    n_shot: int
    n_query: int
    support_labels: np.ndarray
    query_labels: np.ndarray


def _fixed_plan(index: LabelIndex, classes: tuple[int, ...], n_shot: int, n_query: int) -> _FixedShotPlan:
    positions = index._positions
    pos = np.fromiter((positions[c] for c in classes), dtype=np.int64, count=len(classes))
    sizes = index.sizes[pos]
    if (sizes < n_shot + n_query).any():
        _raise_short(classes, sizes, np.full(len(classes), n_shot + n_query))
    ids = np.arange(len(classes), dtype=np.int64)
    support_labels, query_labels = np.repeat(ids, n_shot), np.repeat(ids, n_query)
    support_labels.flags.writeable = query_labels.flags.writeable = False  # shared by all episodes
    return _FixedShotPlan(classes, index.starts[pos], sizes, n_shot, n_query, support_labels, query_labels)


def _sample_planned(index: LabelIndex, plan: _FixedShotPlan, rng: np.random.Generator) -> EpisodeIndices:
    picked = index.order[_draw_uniform(plan.starts, plan.sizes, plan.n_shot + plan.n_query, rng)]
    return EpisodeIndices(
        picked[:, : plan.n_shot].ravel(),
        picked[:, plan.n_shot :].ravel(),
        plan.classes,
        plan.support_labels,
        plan.query_labels,
    )


def _sample_fixed(
    index: LabelIndex, classes: tuple[int, ...], n_shot: int, n_query: int, rng: np.random.Generator
) -> EpisodeIndices:
    """``n_shot`` + ``n_query`` examples of each of ``classes`` (already validated)."""
    return _sample_planned(index, _fixed_plan(index, classes, n_shot, n_query), rng)


def _raise_short(classes: tuple[int, ...], sizes: np.ndarray, need: np.ndarray) -> None:
    detail = ", ".join(f"class {classes[j]}: {sizes[j]} < {need[j]}" for j in np.flatnonzero(sizes < need))
    raise ValueError(
        f"not enough examples for the episode ({detail} = support + query); lower the shots or "
        "drop small classes (filter_classes_min_samples)"
    )


def sample_multiclass_episode(
    labels: Any, n_support: int, n_query: int, rng: np.random.Generator, classes: Sequence[int] | None = None
) -> EpisodeIndices:
    """``n_support`` support and ``n_query`` query examples per class, in the given class order.

    Examples:
        >>> import numpy as np
        >>> labels = np.repeat([0, 1, 2], 10)
        >>> ep = sample_multiclass_episode(labels, 2, 3, np.random.default_rng(0), classes=[2, 0])
        >>> labels[ep.support].tolist(), ep.classes
        ([2, 2, 0, 0], (2, 0))
    """
    check_int(n_support, "n_support", 1)
    check_int(n_query, "n_query", 0)
    return sample_per_class(labels, n_support, n_query, rng, classes, TaskTarget.MULTICLASS_CLASSIFICATION)


def sample_ordinal_episode(
    labels: Any, n_support: int, n_query: int, rng: np.random.Generator, classes: Sequence[int] | None = None
) -> EpisodeIndices:
    """As :func:`sample_multiclass_episode`, but the classes are always in key order.

    Examples:
        >>> import numpy as np
        >>> labels = np.repeat([1, 4, 6], 5)
        >>> sample_ordinal_episode(labels, 1, 1, np.random.default_rng(0), classes=[6, 1]).classes
        (1, 6)
    """
    check_int(n_support, "n_support", 1)
    check_int(n_query, "n_query", 0)
    index = _as_index(labels, TaskTarget.ORDINAL_REGRESSION)
    ordered = None if classes is None else sorted(_check_classes(index, classes))
    return sample_per_class(index, n_support, n_query, rng, ordered, TaskTarget.ORDINAL_REGRESSION)


def sample_binary_episode(
    labels: Any, n_support: int, n_query: int, rng: np.random.Generator
) -> EpisodeIndices:
    """``n_support`` negatives then ``n_support`` positives; likewise ``n_query`` of each for the query.

    Examples:
        >>> import numpy as np
        >>> labels = np.array([0, 1] * 6)
        >>> ep = sample_binary_episode(labels, 2, 1, np.random.default_rng(0))
        >>> labels[ep.support].tolist(), labels[ep.query].tolist()
        ([0, 0, 1, 1], [0, 1])
    """
    check_int(n_support, "n_support", 1)
    check_int(n_query, "n_query", 0)
    return sample_per_class(labels, n_support, n_query, rng, (0, 1), TaskTarget.BINARY_CLASSIFICATION)


def sample_multilabel_episode(
    labels: Any,
    n_support: int,
    n_query: int,
    rng: np.random.Generator,
    classes: Sequence[int] | None = None,
    max_attempts: int = 10,
) -> EpisodeIndices:
    """At least ``n_support`` positives and negatives per label (support), ``n_query`` (query).

    See :func:`torchcross.sampling.multilabel.cover_quotas` for the algorithm.

    Examples:
        >>> import numpy as np
        >>> labels = np.random.default_rng(0).integers(0, 2, (200, 3))
        >>> ep = sample_multilabel_episode(labels, 2, 2, np.random.default_rng(1))
        >>> bool((labels[ep.support].sum(0) >= 2).all()), ep.classes
        (True, (0, 1, 2))
    """
    from torchcross.sampling.multilabel import sample_multilabel_indices

    _check_generator(rng)
    check_int(n_support, "n_support", 1)
    check_int(n_query, "n_query", 0)
    check_int(max_attempts, "max_attempts", 1)
    index = _as_index(labels, TaskTarget.MULTILABEL_CLASSIFICATION)
    classes = _check_classes(index, classes)
    support, query = sample_multilabel_indices(index, classes, n_support, n_query, rng, max_attempts)
    return EpisodeIndices(support, query, classes)


def sample_episode(
    index: LabelIndex,
    n_support: int,
    n_query: int,
    rng: np.random.Generator,
    classes: Sequence[int] | None = None,
) -> EpisodeIndices:
    """Dispatch to the rule of ``index``'s kind (binary ignores ``classes``: always ``(0, 1)``).

    Examples:
        >>> import numpy as np
        >>> index = index_labels([0, 1, 1, 0, 1, 0], "BINARY_CLASSIFICATION")
        >>> sample_episode(index, 1, 1, np.random.default_rng(0)).classes
        (0, 1)
    """
    if not isinstance(index, LabelIndex):
        raise TypeError(f"index must be a LabelIndex (see index_labels), got {type(index).__name__}")
    target = index.task_target
    if target is TaskTarget.MULTICLASS_CLASSIFICATION:
        return sample_multiclass_episode(index, n_support, n_query, rng, classes)
    if target is TaskTarget.ORDINAL_REGRESSION:
        return sample_ordinal_episode(index, n_support, n_query, rng, classes)
    if target is TaskTarget.BINARY_CLASSIFICATION:
        return sample_binary_episode(index, n_support, n_query, rng)
    return sample_multilabel_episode(index, n_support, n_query, rng, classes)
