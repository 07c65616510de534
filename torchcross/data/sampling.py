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
                    :mod:`torchcross.data.sampling_multilabel`
variable            Meta-Dataset's variable-way variable-shot rule
                    (:func:`torchcross.data.sampling_variable.sample_variable_episode`)
==================  ===========================================================

Support and query never share an example. Within a class, examples come in random
order (independent of file order); support and query are class-major (all examples
of ``classes[0]`` first).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._checks import check_int
from .labels import keys_to_indices, normalize_labels
from .task import TaskDescription, TaskTarget

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

_SINGLE_LABEL = (
    TaskTarget.MULTICLASS_CLASSIFICATION,
    TaskTarget.ORDINAL_REGRESSION,
    TaskTarget.BINARY_CLASSIFICATION,
)


@dataclass(frozen=True, eq=False)
class EpisodeIndices:
    """The indices of one episode.

    Attributes:
        support: ``(n_support,)`` int64 indices into the source.
        query: ``(n_query,)`` int64 indices into the source, disjoint from ``support``.
        classes: the original class keys (multi-label: label columns) the episode uses,
            in episode order: episode label ``i`` means ``classes[i]``.
        support_labels, query_labels: single-label rules fill in the episode labels
            ``0..k-1`` they already know (``(n,)`` int64, read-only: episodes of one
            dataset may share them); ``None`` otherwise (see :func:`episode_labels`).
    """

    support: np.ndarray
    query: np.ndarray
    classes: tuple[int, ...]
    support_labels: np.ndarray | None = None
    query_labels: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class LabelIndex:
    """Labels of one task, indexed once for fast episode sampling (see :func:`index_labels`).

    Attributes:
        task_target: the kind of task.
        keys: class keys in ascending order (multi-label: label columns ``0..L-1``).
        labels: the canonical labels.
        order: single-label kinds: example indices grouped by class (key order), file order
            within a class; ``members(key)`` slices it.
        starts: ``(C,)`` where each class's block starts in ``order``.
        sizes: ``(C,)`` examples per class (multi-label: positives per label).
        codes: single-label kinds: ``(N,)`` position of each example's key in ``keys``.
        matrix: multi-label: ``(N, L)`` int8 copy of the labels.
        positives, negatives: multi-label: per label, the indices of its positive and
            negative examples (file order).
    """

    task_target: TaskTarget
    keys: tuple[int, ...]
    labels: np.ndarray
    order: np.ndarray | None = None
    starts: np.ndarray | None = None
    sizes: np.ndarray | None = None
    codes: np.ndarray | None = None
    matrix: np.ndarray | None = None
    positives: tuple[np.ndarray, ...] = ()
    negatives: tuple[np.ndarray, ...] = ()

    def __len__(self) -> int:
        return len(self.labels)

    def position(self, key: int) -> int:
        """Position of class ``key`` in :attr:`keys` (ValueError if unknown)."""
        try:
            return self._positions[key]
        except (KeyError, TypeError):
            raise ValueError(f"class {key!r} is not one of the task's class keys {list(self.keys)}") from None

    def members(self, key: int) -> np.ndarray:
        """Indices of the examples of class ``key`` (multi-label: positives of label ``key``)."""
        pos = self.position(key)
        if self.task_target is TaskTarget.MULTILABEL_CLASSIFICATION:
            return self.positives[pos]
        start = int(self.starts[pos])
        return self.order[start : start + int(self.sizes[pos])]

    def counts(self, negatives: bool = False) -> dict[int, int]:
        """Examples per class key (multi-label: positives, or negatives with ``negatives=True``)."""
        n = len(self.labels)
        if negatives:
            return {k: n - int(s) for k, s in zip(self.keys, self.sizes)}
        return {k: int(s) for k, s in zip(self.keys, self.sizes)}

    @functools.cached_property
    def row_bits(self) -> list[int]:
        """Multi-label: each example's labels as a bit mask (bit ``j``: positive for label ``j``)."""
        from .sampling_multilabel import row_bits

        if self.matrix is None:
            raise ValueError(f"row_bits is defined for multi-label indexes, not {self.task_target.name}")
        return row_bits(self.matrix)

    @functools.cached_property
    def _positions(self) -> dict[int, int]:
        return {k: i for i, k in enumerate(self.keys)}


def index_labels(labels: Any, kind: TaskDescription | TaskTarget | str) -> LabelIndex:
    """Index canonical labels once (``O(N log N)``), so every episode costs ``O(shots)``.

    Args:
        labels: labels in a form :func:`~torchcross.data.labels.normalize_labels` accepts.
        kind: the task's description (its class keys are used), or just its kind (class
            keys are then the values present; multi-label: the columns).

    Examples:
        >>> index = index_labels([2, 0, 2, 1], "MULTICLASS_CLASSIFICATION")
        >>> index.keys, index.members(2).tolist()
        ((0, 1, 2), [0, 2])
    """
    if isinstance(kind, TaskDescription):
        description = kind
        target = kind.task_target
    else:
        target = TaskTarget.parse(kind)
        description = None
    if target is TaskTarget.REGRESSION:
        raise ValueError("few-shot episodes need classes; REGRESSION tasks have none")
    if description is None:
        arr = np.asarray(labels)
        if target is TaskTarget.MULTILABEL_CLASSIFICATION:
            width = arr.shape[1] if arr.ndim == 2 else 0
            classes = {i: str(i) for i in range(max(width, 2))}
        elif target is TaskTarget.BINARY_CLASSIFICATION:
            classes = {0: "0", 1: "1"}
        else:
            present = np.unique(arr) if arr.size else np.zeros(0, dtype=np.int64)
            classes = {int(k): str(int(k)) for k in present}
            if len(classes) < 2:
                raise ValueError(f"labels hold fewer than two classes ({sorted(classes)}); nothing to sample")
            if target is TaskTarget.MULTICLASS_CLASSIFICATION and sorted(classes) != list(
                range(len(classes))
            ):
                classes = {i: str(i) for i in range(int(present.max()) + 1)}
        description = TaskDescription(target, classes)
    canon = normalize_labels(labels, description)
    keys = description.class_keys
    if target is TaskTarget.MULTILABEL_CLASSIFICATION:
        matrix = np.ascontiguousarray(canon, dtype=np.int8)
        positives = tuple(np.flatnonzero(matrix[:, j]) for j in range(matrix.shape[1]))
        negatives = tuple(np.flatnonzero(matrix[:, j] == 0) for j in range(matrix.shape[1]))
        sizes = np.array([len(p) for p in positives], dtype=np.int64)
        return LabelIndex(
            target, keys, canon, sizes=sizes, matrix=matrix, positives=positives, negatives=negatives
        )
    flat = canon.reshape(len(canon))
    # class codes 0..C-1 (binary labels already are their codes)
    codes = np.asarray(keys_to_indices(flat, description), dtype=np.int64)
    order = np.argsort(codes, kind="stable")
    sizes = np.bincount(codes, minlength=len(keys)).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    return LabelIndex(target, keys, canon, order=order, starts=starts, sizes=sizes, codes=codes)


def _as_index(labels: Any, target: TaskTarget) -> LabelIndex:
    if isinstance(labels, LabelIndex):
        if labels.task_target is not target and not (
            {labels.task_target, target}
            <= {TaskTarget.MULTICLASS_CLASSIFICATION, TaskTarget.ORDINAL_REGRESSION}
        ):
            raise ValueError(
                f"this rule samples {target.name} episodes, got a {labels.task_target.name} index"
            )
        return labels
    return index_labels(labels, target)


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

    See :func:`torchcross.data.sampling_multilabel.cover_quotas` for the algorithm.

    Examples:
        >>> import numpy as np
        >>> labels = np.random.default_rng(0).integers(0, 2, (200, 3))
        >>> ep = sample_multilabel_episode(labels, 2, 2, np.random.default_rng(1))
        >>> bool((labels[ep.support].sum(0) >= 2).all()), ep.classes
        (True, (0, 1, 2))
    """
    from .sampling_multilabel import sample_multilabel_indices

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


def episode_labels(index: LabelIndex, episode: EpisodeIndices) -> tuple[np.ndarray, np.ndarray]:
    """The episode's support and query labels, relabelled to ``0..k-1`` (``classes[i]`` -> ``i``).

    Shapes: multi-class and ordinal ``(n,)``; binary ``(n, 1)``; multi-label ``(n, k)``
    (the selected label columns, in episode order). int64.

    Examples:
        >>> import numpy as np
        >>> index = index_labels(np.repeat([1, 4, 6], 3), "ORDINAL_REGRESSION")
        >>> ep = sample_ordinal_episode(index, 1, 1, np.random.default_rng(0), classes=[4, 6])
        >>> [x.tolist() for x in episode_labels(index, ep)]
        [[0, 1], [0, 1]]
    """
    if index.task_target is TaskTarget.MULTILABEL_CLASSIFICATION:
        cols = list(episode.classes)
        return (
            index.matrix[episode.support][:, cols].astype(np.int64),
            index.matrix[episode.query][:, cols].astype(np.int64),
        )
    if episode.support_labels is not None and episode.query_labels is not None:
        support, query = episode.support_labels, episode.query_labels
        if index.task_target is TaskTarget.BINARY_CLASSIFICATION:
            return support[:, None], query[:, None]
        return support, query
    lut = np.full(len(index.keys), -1, dtype=np.int64)
    lut[[index.position(c) for c in episode.classes]] = np.arange(len(episode.classes))
    support, query = lut[index.codes[episode.support]], lut[index.codes[episode.query]]
    if (support < 0).any() or (query < 0).any():
        raise ValueError(f"the episode holds examples of classes outside its classes {list(episode.classes)}")
    if index.task_target is TaskTarget.BINARY_CLASSIFICATION:
        return support[:, None], query[:, None]
    return support, query


def relabel_description(description: TaskDescription, classes: Sequence[int]) -> TaskDescription:
    """The description of an episode over ``classes``: ``{i: name of classes[i]}``, identifiers kept.

    Binary descriptions are returned unchanged (their keys already are ``0, 1``).

    Examples:
        >>> d = TaskDescription("ORDINAL_REGRESSION", {1: "none", 4: "mild", 6: "severe"}, "dr")
        >>> relabel_description(d, [4, 6]).classes
        {0: 'mild', 1: 'severe'}
    """
    if description.task_target is TaskTarget.BINARY_CLASSIFICATION:
        return description
    missing = [c for c in classes if c not in description.classes]
    if missing:
        raise ValueError(f"classes {missing} are not in task {description.task_identifier!r}'s classes")
    return description.with_classes({i: description.classes[c] for i, c in enumerate(classes)})
