"""The index of a task's labels that episode sampling works on, and episode labels.

[`index_labels()`][index_labels] groups the examples of each class once
(multi-label: each label's positives and negatives), so that each episode costs a few slices instead of a pass
over all labels; [`episode_labels()`][episode_labels] turns an episode's
indices into its labels ``0..k-1``. [`torchcross.sampling.episodes`][torchcross.sampling.episodes] re-exports
the index, the episode and its labels; [`as_label_index()`][as_label_index]
and [`check_classes()`][check_classes] are the argument checks the rules
share.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from torchcross.sampling.bits import row_bits
from torchcross.tasks.labels import keys_to_indices, normalize_labels
from torchcross.tasks.task import TaskDescription, TaskTarget

__all__ = [
    "SINGLE_LABEL_TARGETS",
    "EpisodeIndices",
    "LabelIndex",
    "as_label_index",
    "check_classes",
    "check_label_supply",
    "episode_labels",
    "index_labels",
    "relabel_description",
]

SINGLE_LABEL_TARGETS: tuple[TaskTarget, ...] = (
    TaskTarget.MULTICLASS_CLASSIFICATION,
    TaskTarget.ORDINAL_REGRESSION,
    TaskTarget.BINARY_CLASSIFICATION,
)
"""The kinds whose examples have one class each (episodes draw examples per class)."""


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
            dataset may share them); ``None`` otherwise (see
            [`episode_labels()`][episode_labels]).
    """

    support: np.ndarray
    query: np.ndarray
    classes: tuple[int, ...]
    support_labels: np.ndarray | None = None
    query_labels: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class LabelIndex:
    """Labels of one task, indexed once for fast episode sampling (see
    [`index_labels()`][index_labels]).

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
        """Position of class ``key`` in `keys` (ValueError if unknown)."""
        try:
            return self.key_positions[key]
        except (KeyError, TypeError):
            raise ValueError(f"class {key!r} is not one of the task's class keys {list(self.keys)}") from None

    def members(self, key: int) -> np.ndarray:
        """Indices of the examples of class ``key`` (multi-label: positives of label ``key``)."""
        pos = self.position(key)
        if self.task_target is TaskTarget.MULTILABEL_CLASSIFICATION:
            return self.positives[pos]
        starts, sizes = cast(np.ndarray, self.starts), cast(np.ndarray, self.sizes)  # single-label: set
        start = int(starts[pos])
        return cast(np.ndarray, self.order)[start : start + int(sizes[pos])]

    def counts(self, negatives: bool = False) -> dict[int, int]:
        """Examples per class key (multi-label: positives, or negatives with ``negatives=True``)."""
        n, sizes = len(self.labels), cast(np.ndarray, self.sizes)  # every kind has sizes
        if negatives:
            return {k: n - int(s) for k, s in zip(self.keys, sizes)}
        return {k: int(s) for k, s in zip(self.keys, sizes)}

    @functools.cached_property
    def row_bits(self) -> list[int]:
        """Multi-label: each example's labels as a bit mask (bit ``j``: positive for label ``j``)."""
        if self.matrix is None:
            raise ValueError(f"row_bits is defined for multi-label indexes, not {self.task_target.name}")
        return row_bits(self.matrix)

    @functools.cached_property
    def key_positions(self) -> dict[int, int]:
        """``{class key: its position in keys}`` (computed once; do not modify)."""
        return {k: i for i, k in enumerate(self.keys)}


def index_labels(labels: Any, kind: TaskDescription | TaskTarget | str) -> LabelIndex:
    """Index canonical labels once (``O(N log N)``), so every episode costs ``O(shots)``.

    Args:
        labels: labels in a form [`normalize_labels()`][normalize_labels] accepts.
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


def as_label_index(labels: Any, target: TaskTarget) -> LabelIndex:
    """``labels`` as a [`LabelIndex`][LabelIndex] for a rule of kind
    ``target`` (indexed if need be).

    Multi-class and ordinal indexes serve each other's rules; other kinds must match.

    Raises:
        ValueError: an index of another kind.

    Examples:
        >>> as_label_index([0, 1, 1], TaskTarget.BINARY_CLASSIFICATION).keys
        (0, 1)
    """
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


def check_classes(index: LabelIndex, classes: Sequence[int] | None) -> tuple[int, ...]:
    """``classes`` as a tuple of ints, all class keys of ``index`` (``None``: all keys, in key order).

    Raises:
        ValueError: a repeated class or one that is not a key of ``index``.

    Examples:
        >>> index = index_labels([0, 1, 2, 2], "MULTICLASS_CLASSIFICATION")
        >>> check_classes(index, [2, 0]), check_classes(index, None)
        ((2, 0), (0, 1, 2))
    """
    if classes is None:
        return index.keys
    out = tuple(int(c) for c in classes)
    if len(set(out)) != len(out):
        raise ValueError(f"classes must not repeat, got {list(out)}")
    for c in out:
        index.position(c)
    return out


def check_label_supply(index: LabelIndex, columns: Sequence[int], n_shot: int, n_query: int) -> None:
    """Refuse a multi-label episode that some label of ``columns`` cannot fill.

    Every label needs ``n_shot + n_query`` positives and as many negatives (support and query are disjoint).

    Raises:
        ValueError: naming each label that is short, with its counts, and the fix.

    Examples:
        >>> index = index_labels([[1, 0], [0, 1], [1, 1], [0, 0]], "MULTILABEL_CLASSIFICATION")
        >>> check_label_supply(index, [0, 1], 1, 1)
        >>> try:
        ...     check_label_supply(index, [0], 2, 1)
        ... except ValueError as e:
        ...     print(str(e)[:60])
        not enough examples for a multi-label episode with 2 support
    """
    n = cast(np.ndarray, index.matrix).shape[0]  # a multi-label index
    need = n_shot + n_query
    short = []
    for c in columns:
        n_pos = len(index.positives[c])
        if n_pos < need or n - n_pos < need:
            short.append(f"label {c} ({n_pos} positives, {n - n_pos} negatives)")
    if short:
        raise ValueError(
            f"not enough examples for a multi-label episode with {n_shot} support + {n_query} query "
            f"positives and negatives per label: {', '.join(short)}; lower the shots or drop these labels"
        )


def episode_labels(index: LabelIndex, episode: EpisodeIndices) -> tuple[np.ndarray, np.ndarray]:
    """The episode's support and query labels, relabelled to ``0..k-1`` (``classes[i]`` -> ``i``).

    Shapes: multi-class and ordinal ``(n,)``; binary ``(n, 1)``; multi-label ``(n, k)``
    (the selected label columns, in episode order). int64.

    Examples:
        >>> import numpy as np
        >>> from torchcross.sampling.episodes import sample_ordinal_episode
        >>> index = index_labels(np.repeat([1, 4, 6], 3), "ORDINAL_REGRESSION")
        >>> ep = sample_ordinal_episode(index, 1, 1, np.random.default_rng(0), classes=[4, 6])
        >>> [x.tolist() for x in episode_labels(index, ep)]
        [[0, 1], [0, 1]]
    """
    if index.task_target is TaskTarget.MULTILABEL_CLASSIFICATION:
        cols, matrix = list(episode.classes), cast(np.ndarray, index.matrix)
        return (
            matrix[episode.support][:, cols].astype(np.int64),
            matrix[episode.query][:, cols].astype(np.int64),
        )
    if episode.support_labels is not None and episode.query_labels is not None:
        support, query = episode.support_labels, episode.query_labels
        if index.task_target is TaskTarget.BINARY_CLASSIFICATION:
            return support[:, None], query[:, None]
        return support, query
    lut = np.full(len(index.keys), -1, dtype=np.int64)
    lut[[index.position(c) for c in episode.classes]] = np.arange(len(episode.classes))
    codes = cast(np.ndarray, index.codes)  # single-label: set
    support, query = lut[codes[episode.support]], lut[codes[episode.query]]
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
