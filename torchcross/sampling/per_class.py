"""Drawing a given number of examples of each class: the core of the single-label rules.

[`sample_per_class()`][sample_per_class] draws any per-class counts (imbalanced
support too); [`fixed_shot_plan()`][fixed_shot_plan] prepares what every episode
with the same classes and shots shares, so that each draw
([`FixedShotPlan.draw()`][FixedShotPlan.draw]) costs a few vectorised
operations. Within a class, examples come in random order (independent of file order); support and query are
class-major (all examples of ``classes[0]`` first) and never share an example.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from torchcross._checks import check_generator
from torchcross.sampling.episode_index import (
    SINGLE_LABEL_TARGETS,
    EpisodeIndices,
    LabelIndex,
    as_label_index,
    check_classes,
)
from torchcross.tasks.task import TaskTarget

__all__ = ["FixedShotPlan", "fixed_shot_plan", "sample_per_class"]


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
    check_generator(rng)
    target = TaskTarget.parse(task_target)
    index = as_label_index(labels, target)
    if index.task_target not in SINGLE_LABEL_TARGETS:
        raise ValueError(f"sample_per_class needs a single-label task, got {index.task_target.name}")
    classes = check_classes(index, classes)
    k = len(classes)
    if (
        isinstance(shots, (int, np.integer))
        and isinstance(queries, (int, np.integer))
        and shots >= 0
        and queries >= 0
    ):
        return fixed_shot_plan(index, classes, int(shots), int(queries)).draw(index, rng)
    positions = index.key_positions
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
    starts, sizes_all = cast(np.ndarray, index.starts), cast(np.ndarray, index.sizes)  # single-label: set
    sizes, need = sizes_all[pos], shot + query
    if (sizes < need).any():
        _raise_short(classes, sizes, need)
    flat = _draw_without_replacement(starts[pos], sizes, need, rng)
    picked = cast(np.ndarray, index.order)[flat]
    block = np.repeat(np.arange(k), need)
    rank = np.arange(len(picked)) - np.repeat(np.cumsum(need) - need, need)
    is_support = rank < shot[block]
    is_query = ~is_support
    return EpisodeIndices(picked[is_support], picked[is_query], classes, block[is_support], block[is_query])


@dataclass(frozen=True, eq=False)
class FixedShotPlan:
    """What every fixed-shot episode over the same classes shares, prepared once by
    [`fixed_shot_plan()`][fixed_shot_plan].

    Attributes:
        classes: the episode's class keys, in episode order.
        starts, sizes: where each class's block starts in ``index.order``, and its size.
        n_shot, n_query: examples per class in the support and the query set.
        support_labels, query_labels: the episode labels ``0..k-1`` (read-only, shared by
            every episode drawn from the plan).
    """

    classes: tuple[int, ...]
    starts: np.ndarray
    sizes: np.ndarray
    n_shot: int
    n_query: int
    support_labels: np.ndarray
    query_labels: np.ndarray

    def draw(self, index: LabelIndex, rng: np.random.Generator) -> EpisodeIndices:
        """One episode: ``n_shot`` support and ``n_query`` query examples of each class, uniformly.

        ``index`` must be the one the plan was prepared for.
        """
        picked = cast(np.ndarray, index.order)[
            _draw_uniform(self.starts, self.sizes, self.n_shot + self.n_query, rng)
        ]
        return EpisodeIndices(
            picked[:, : self.n_shot].ravel(),
            picked[:, self.n_shot :].ravel(),
            self.classes,
            self.support_labels,
            self.query_labels,
        )


def fixed_shot_plan(index: LabelIndex, classes: tuple[int, ...], n_shot: int, n_query: int) -> FixedShotPlan:
    """Prepare fixed-shot draws of ``n_shot`` + ``n_query`` examples of each of ``classes``.

    ``classes`` must already be checked ([`check_classes()`][check_classes])
    and the shots be ``>= 0``; a single-label ``index``.

    Raises:
        ValueError: a class with fewer than ``n_shot + n_query`` examples.

    Examples:
        >>> import numpy as np
        >>> from torchcross.sampling.episode_index import index_labels
        >>> index = index_labels(np.repeat([0, 1, 2], 4), "MULTICLASS_CLASSIFICATION")
        >>> plan = fixed_shot_plan(index, (2, 0), 1, 2)
        >>> episode = plan.draw(index, np.random.default_rng(0))
        >>> episode.classes, episode.support_labels.tolist(), episode.query_labels.tolist()
        ((2, 0), [0, 1], [0, 0, 1, 1])
    """
    positions = index.key_positions
    pos = np.fromiter((positions[c] for c in classes), dtype=np.int64, count=len(classes))
    sizes = cast(np.ndarray, index.sizes)[pos]  # every kind has sizes
    if (sizes < n_shot + n_query).any():
        _raise_short(classes, sizes, np.full(len(classes), n_shot + n_query))
    ids = np.arange(len(classes), dtype=np.int64)
    support_labels, query_labels = np.repeat(ids, n_shot), np.repeat(ids, n_query)
    support_labels.flags.writeable = query_labels.flags.writeable = False  # shared by all episodes
    starts = cast(np.ndarray, index.starts)[pos]  # a single-label index
    return FixedShotPlan(classes, starts, sizes, n_shot, n_query, support_labels, query_labels)


def _raise_short(classes: tuple[int, ...], sizes: np.ndarray, need: np.ndarray) -> None:
    detail = ", ".join(f"class {classes[j]}: {sizes[j]} < {need[j]}" for j in np.flatnonzero(sizes < need))
    raise ValueError(
        f"not enough examples for the episode ({detail} = support + query); lower the shots or "
        "drop small classes (filter_classes_min_samples)"
    )
