"""Few-shot episode sampling rules: pure functions of labels, parameters and a generator.

Every rule takes canonical labels (or a [`LabelIndex`][LabelIndex] built
from them once), its parameters and an explicit `numpy.random.Generator`, and returns an
[`EpisodeIndices`][EpisodeIndices]: the support and query indices into the
source and the class keys (multi-label: label columns) the episode uses, in episode order. Episode label ``i``
means ``classes[i]``.

==================  ===========================================================
kind                rule
==================  ===========================================================
multi-class         ``k`` support and ``q`` query examples per selected class
ordinal             as multi-class; selected classes always in key order
binary              ``k`` negatives and ``k`` positives (support), ``q`` of each (query)
multi-label         at least ``k`` positives and ``k`` negatives per selected label
                    (support), ``q`` of each (query), by one of the
                    `MULTILABEL_SAMPLERS`: the greedy cover
                    (`torchcross.sampling.multilabel`) or the MedIMeta authors' rule
                    (`torchcross.sampling.medimeta_multilabel`)
variable            Meta-Dataset's variable-way variable-shot rule
                    ([`torchcross.sampling.variable.sample_variable_episode()`][torchcross.sampling.variable.sample_variable_episode])
==================  ===========================================================

Support and query never share an example. Within a class, examples come in random
order (independent of file order); support and query are class-major (all examples
of ``classes[0]`` first).

`EPISODE_KINDS` is the dispatch table of the rules: one [`EpisodeKind`][EpisodeKind] per kind, read by
[`sample_episode()`][sample_episode] and the episode datasets. A new task kind gets episodes by adding a row.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

import numpy as np

from torchcross._checks import check_generator, check_int, renamed_keywords
from torchcross.sampling.episode_index import (
    EpisodeIndices,
    LabelIndex,
    as_label_index,
    check_classes,
    episode_labels,
    index_labels,
    relabel_description,
)
from torchcross.sampling.medimeta_multilabel import sample_medimeta_multilabel_indices
from torchcross.sampling.multilabel import sample_multilabel_indices
from torchcross.sampling.per_class import fixed_shot_plan, sample_per_class
from torchcross.tasks.task import TaskTarget

__all__ = [
    "EPISODE_KINDS",
    "EpisodeIndices",
    "EpisodeKind",
    "EpisodePlan",
    "LabelIndex",
    "MULTILABEL_SAMPLERS",
    "MultilabelPlan",
    "check_multilabel_sampler",
    "episode_labels",
    "index_labels",
    "get_episode_kind",
    "relabel_description",
    "sample_binary_episode",
    "sample_episode",
    "sample_multiclass_episode",
    "sample_multilabel_episode",
    "sample_ordinal_episode",
    "sample_per_class",
]


@renamed_keywords(n_support="n_shot")
def sample_multiclass_episode(
    labels: Any, n_shot: int, n_query: int, rng: np.random.Generator, classes: Sequence[int] | None = None
) -> EpisodeIndices:
    """``n_shot`` support and ``n_query`` query examples per class, in the given class order.

    Examples:
        >>> import numpy as np
        >>> labels = np.repeat([0, 1, 2], 10)
        >>> ep = sample_multiclass_episode(labels, 2, 3, np.random.default_rng(0), classes=[2, 0])
        >>> labels[ep.support].tolist(), ep.classes
        ([2, 2, 0, 0], (2, 0))
    """
    check_int(n_shot, "n_shot", 1)
    check_int(n_query, "n_query", 0)
    return sample_per_class(labels, n_shot, n_query, rng, classes, TaskTarget.MULTICLASS_CLASSIFICATION)


@renamed_keywords(n_support="n_shot")
def sample_ordinal_episode(
    labels: Any, n_shot: int, n_query: int, rng: np.random.Generator, classes: Sequence[int] | None = None
) -> EpisodeIndices:
    """As [`sample_multiclass_episode()`][sample_multiclass_episode], but the
    classes are always in key order.

    Examples:
        >>> import numpy as np
        >>> labels = np.repeat([1, 4, 6], 5)
        >>> sample_ordinal_episode(labels, 1, 1, np.random.default_rng(0), classes=[6, 1]).classes
        (1, 6)
    """
    check_int(n_shot, "n_shot", 1)
    check_int(n_query, "n_query", 0)
    index = as_label_index(labels, TaskTarget.ORDINAL_REGRESSION)
    ordered = None if classes is None else sorted(check_classes(index, classes))
    return sample_per_class(index, n_shot, n_query, rng, ordered, TaskTarget.ORDINAL_REGRESSION)


@renamed_keywords(n_support="n_shot")
def sample_binary_episode(labels: Any, n_shot: int, n_query: int, rng: np.random.Generator) -> EpisodeIndices:
    """``n_shot`` negatives then ``n_shot`` positives; likewise ``n_query`` of each for the query.

    Examples:
        >>> import numpy as np
        >>> labels = np.array([0, 1] * 6)
        >>> ep = sample_binary_episode(labels, 2, 1, np.random.default_rng(0))
        >>> labels[ep.support].tolist(), labels[ep.query].tolist()
        ([0, 0, 1, 1], [0, 1])
    """
    check_int(n_shot, "n_shot", 1)
    check_int(n_query, "n_query", 0)
    return sample_per_class(labels, n_shot, n_query, rng, (0, 1), TaskTarget.BINARY_CLASSIFICATION)


MULTILABEL_SAMPLERS: Mapping[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = MappingProxyType(
    {"cover": sample_multilabel_indices, "medimeta": sample_medimeta_multilabel_indices}
)
"""The multi-label episode rules by name, ``(index, columns, n_shot, n_query, rng, max_attempts) ->
(support, query)``: ``"cover"`` the greedy near-minimal cover (`torchcross.sampling.multilabel`),
``"medimeta"`` the MedIMeta authors' draw-and-trim (`torchcross.sampling.medimeta_multilabel`)."""


def check_multilabel_sampler(name: object) -> str:
    """``name`` if it is a key of `MULTILABEL_SAMPLERS`.

    Raises:
        ValueError: naming the value and the accepted ones.

    Examples:
        >>> check_multilabel_sampler("medimeta")
        'medimeta'
    """
    if not isinstance(name, str) or name not in MULTILABEL_SAMPLERS:
        raise ValueError(
            f"multilabel_sampler must be one of {', '.join(map(repr, MULTILABEL_SAMPLERS))}, got {name!r}"
        )
    return name


def _multilabel_sampler(name: str) -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    return MULTILABEL_SAMPLERS[check_multilabel_sampler(name)]


@renamed_keywords(n_support="n_shot")
def sample_multilabel_episode(
    labels: Any,
    n_shot: int,
    n_query: int,
    rng: np.random.Generator,
    classes: Sequence[int] | None = None,
    max_attempts: int = 10,
    sampler: str = "cover",
) -> EpisodeIndices:
    """At least ``n_shot`` positives and negatives per label (support), ``n_query`` (query).

    ``sampler`` names the rule of `MULTILABEL_SAMPLERS`: ``"cover"`` (see
    `torchcross.sampling.multilabel.cover_quotas()`) or ``"medimeta"`` (the MedIMeta authors'
    rule, see `torchcross.sampling.medimeta_multilabel`).

    Examples:
        >>> import numpy as np
        >>> labels = np.random.default_rng(0).integers(0, 2, (200, 3))
        >>> ep = sample_multilabel_episode(labels, 2, 2, np.random.default_rng(1))
        >>> bool((labels[ep.support].sum(0) >= 2).all()), ep.classes
        (True, (0, 1, 2))
        >>> theirs = sample_multilabel_episode(labels, 2, 2, np.random.default_rng(1), sampler="medimeta")
        >>> bool((labels[theirs.support].sum(0) >= 2).all())
        True
    """
    draw = _multilabel_sampler(sampler)
    check_generator(rng)
    check_int(n_shot, "n_shot", 1)
    check_int(n_query, "n_query", 0)
    check_int(max_attempts, "max_attempts", 1)
    index = as_label_index(labels, TaskTarget.MULTILABEL_CLASSIFICATION)
    classes = check_classes(index, classes)
    support, query = draw(index, classes, n_shot, n_query, rng, max_attempts)
    return EpisodeIndices(support, query, classes)


class EpisodePlan(Protocol):
    """Fixed-shot draws over given classes, prepared once (see
    [`EpisodeKind.plan`][torchcross.protocol.plan])."""

    @property
    def classes(self) -> tuple[int, ...]:
        """The episode's class keys (multi-label: label columns), in episode order."""
        ...

    def draw(self, index: LabelIndex, rng: np.random.Generator) -> EpisodeIndices:
        """One episode from ``index`` (the index the plan was prepared for)."""
        ...


@dataclass(frozen=True)
class MultilabelPlan:
    """Multi-label draws over given label columns:
    [`sample_multilabel_episode()`][sample_multilabel_episode] per episode, by the rule ``sampler``
    (a key of `MULTILABEL_SAMPLERS`).

    Examples:
        >>> import numpy as np
        >>> index = index_labels(
        ...     np.random.default_rng(0).integers(0, 2, (60, 3)), "MULTILABEL_CLASSIFICATION"
        ... )
        >>> MultilabelPlan((0, 2), 1, 1).draw(index, np.random.default_rng(0)).classes
        (0, 2)
    """

    classes: tuple[int, ...]
    n_shot: int
    n_query: int
    max_attempts: int = 10
    sampler: str = "cover"

    def draw(self, index: LabelIndex, rng: np.random.Generator) -> EpisodeIndices:
        """One episode with at least ``n_shot`` / ``n_query`` positives and negatives per label."""
        return sample_multilabel_episode(
            index, self.n_shot, self.n_query, rng, self.classes, self.max_attempts, self.sampler
        )


def _multilabel_plan(
    index: LabelIndex,
    classes: tuple[int, ...],
    n_shot: int,
    n_query: int,
    max_attempts: int,
    multilabel_sampler: str = "cover",
) -> MultilabelPlan:
    _multilabel_sampler(multilabel_sampler)
    return MultilabelPlan(classes, n_shot, n_query, max_attempts, multilabel_sampler)


def _fixed_shot_plan(
    index: LabelIndex,
    classes: tuple[int, ...],
    n_shot: int,
    n_query: int,
    max_attempts: int,
    multilabel_sampler: str = "cover",
) -> EpisodePlan:
    return fixed_shot_plan(index, classes, n_shot, n_query)


def _binary_rule(
    index: LabelIndex, n_shot: int, n_query: int, rng: np.random.Generator, classes: Sequence[int] | None
) -> EpisodeIndices:
    return sample_binary_episode(index, n_shot, n_query, rng)


@dataclass(frozen=True)
class EpisodeKind:
    """How episodes of one task kind are drawn: one row of `EPISODE_KINDS`.

    The task kind itself has one name, [`TaskTarget`][TaskTarget]; an
    `EpisodeKind` is the row of sampling rules for one `TaskTarget` (``target``).

    Attributes:
        target: the task kind.
        sample: the kind's rule, ``(index, n_shot, n_query, rng, classes) -> EpisodeIndices``
            (``classes=None``: all classes).
        plan: ``(index, classes, n_shot, n_query, max_attempts, multilabel_sampler="cover") ->
            EpisodePlan``: prepares draws over ``classes`` that are already checked (and, with
            `key_order`, in key order); ``multilabel_sampler`` (a key of `MULTILABEL_SAMPLERS`)
            matters to multi-label tasks only.
        fixed_classes: the classes every episode uses (binary: ``(0, 1)``); ``None`` when
            an episode may use any subset of the classes.
        key_order: a subset of classes is listed in key order (ordinal, multi-label);
            ``False``: in the order drawn (multi-class: a random label permutation).
        two_sided: each class needs positives and negatives (binary, multi-label), not
            just examples.
        n_way: episodes may be N-way, over ``n_way`` of the task's classes with each example
            in one of them (multi-class, ordinal).
        n_way_alternative: for kinds without `n_way`: why a way has no meaning for
            them, and what to use instead (named in error messages).
    """

    target: TaskTarget
    sample: Callable[..., EpisodeIndices]
    plan: Callable[..., EpisodePlan]
    fixed_classes: tuple[int, ...] | None = None
    key_order: bool = True
    two_sided: bool = False
    n_way: bool = False
    n_way_alternative: str = ""


EPISODE_KINDS: Mapping[TaskTarget, EpisodeKind] = MappingProxyType(
    {
        TaskTarget.MULTICLASS_CLASSIFICATION: EpisodeKind(
            TaskTarget.MULTICLASS_CLASSIFICATION,
            sample_multiclass_episode,
            _fixed_shot_plan,
            key_order=False,
            n_way=True,
        ),
        TaskTarget.ORDINAL_REGRESSION: EpisodeKind(
            TaskTarget.ORDINAL_REGRESSION, sample_ordinal_episode, _fixed_shot_plan, n_way=True
        ),
        TaskTarget.BINARY_CLASSIFICATION: EpisodeKind(
            TaskTarget.BINARY_CLASSIFICATION,
            _binary_rule,
            _fixed_shot_plan,
            fixed_classes=(0, 1),
            two_sided=True,
            n_way_alternative="a binary episode always holds its negatives and positives "
            "(2-way by definition); leave n_way=None",
        ),
        TaskTarget.MULTILABEL_CLASSIFICATION: EpisodeKind(
            TaskTarget.MULTILABEL_CLASSIFICATION,
            sample_multilabel_episode,
            _multilabel_plan,
            two_sided=True,
            n_way_alternative="an example may carry any number of labels, so an episode has labels, "
            "not ways; for episodes over a random subset of the labels use "
            "SubTaskRandomFewShotMetaDataset(n_way_min=..., n_way_max=...)",
        ),
    }
)
"""The dispatch table of the episode rules: one [`EpisodeKind`][torchcross.sampling.episodes.EpisodeKind] per
kind with classes."""


def get_episode_kind(target: TaskTarget | str) -> EpisodeKind:
    """Return the `EPISODE_KINDS` row of ``target`` (a member or its name).

    Raises:
        ValueError: an unknown name, or ``REGRESSION`` (episodes need classes); the
            message lists the supported kinds.

    Examples:
        >>> get_episode_kind("BINARY_CLASSIFICATION").fixed_classes
        (0, 1)
    """
    member = TaskTarget.parse(target)
    try:
        return EPISODE_KINDS[member]
    except KeyError:
        supported = ", ".join(t.name for t in EPISODE_KINDS)
        raise ValueError(
            f"task kind {member.name} has no episode rule (episodes need classes); supported: {supported}"
        ) from None


@renamed_keywords(n_support="n_shot")
def sample_episode(
    index: LabelIndex,
    n_shot: int,
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
    return get_episode_kind(index.task_target).sample(index, n_shot, n_query, rng, classes)
