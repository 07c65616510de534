"""Fixed-shot and random sub-task few-shot episodes over one task source.

The core classes: one name per concept (``n_shot``, ``n_query``, ``n_way``) and keyword-only parameters
after the task source. The former signatures (positional ``collate_fn``, ``n_support_samples_per_class``,
...) and derived attributes live in the subclasses of ``torchcross.compat.data.metadataset`` (served as
``torchcross.data.metadataset.FewShotMetaDataset``). Episodes are pure functions of
``(seed, epoch, index)`` (see [`EpisodeMetaDataset`][torchcross.data.metadataset.EpisodeMetaDataset]).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from torchcross._checks import check_int
from torchcross.data.metadataset.base import EpisodeMetaDataset, usable_classes
from torchcross.sampling.defaults import (
    DEFAULT_FILTER_CLASSES_MIN_SAMPLES,
    DEFAULT_QUERY_PER_CLASS,
    DEFAULT_SHOTS,
)
from torchcross.sampling.episodes import (
    EpisodeIndices,
    EpisodePlan,
    check_multilabel_sampler,
    get_episode_kind,
)
from torchcross.tasks.task import TaskTarget

__all__ = ["FewShotMetaDataset", "SubTaskRandomFewShotMetaDataset"]


class FewShotMetaDataset(EpisodeMetaDataset):
    """Episodes with a fixed number of examples per class, over all usable classes or ``n_way`` of them.

    Multi-class and ordinal: ``n_shot`` support and ``n_query`` query examples per class;
    binary: that many negatives and positives; multi-label: at least that many positives
    and negatives per label. Classes with fewer than ``max(filter_classes_min_samples, n_shot + n_query)``
    examples (binary and multi-label: positives or negatives) are dropped with a warning.

    With ``n_way`` (multi-class and ordinal tasks), each episode is N-way: a uniformly random
    subset of ``n_way`` usable classes, drawn from the episode's own generator (so episodes
    stay a pure function of ``(seed, epoch, index)``). Multi-class episodes list their classes
    in a uniformly random order, drawn from the same generator (``permute_labels=True``, the
    default): which class is label ``0`` changes from episode to episode, as in Finn et al.'s
    N-way episodes, so a meta-learned head (``head="learned"``) cannot learn class positions.
    Ordinal episodes keep the task's class order (the label order is the grade order).
    ``permute_labels=False`` lists multi-class classes in the task's class order too (the
    N-way episodes of torchcross before label permutation, bit for bit).

    Each episode's description is the source's with ``classes`` relabelled to the
    episode's ``0..k-1`` (identifiers kept): ``description.classes[i]`` names the class
    that episode label ``i`` stands for. Labels are relabelled the same way.

    Args:
        task_source: a [`TaskSource`][torchcross.data.sources.TaskSource].
        n_shot: support examples per class ``k`` (default 5).
        n_query: query examples per class ``q`` (default 10).
        n_way: classes per episode (``>= 2``), for multi-class and ordinal tasks; ``None``:
            all usable classes (in the task's class order: ``permute_labels`` applies to
            ``n_way`` episodes only).
        collate_fn: applied to the list of ``(input, label)`` pairs of the support and of
            the query set; ``None`` gives ``(inputs, labels)`` tensors (with
            ``output_indices=True``: a list of ``(index, label)`` pairs, as in 0.0.6).
        filter_classes_min_samples: drop classes with fewer examples than this (default 0:
            only classes too small for one episode are dropped). The defaults are the
            ones every episode dataset shares
            ([`torchcross.sampling.defaults`][torchcross.sampling.defaults]).
        length: number of episodes; ``None``: endless (iteration never stops, ``len()``
            raises).
        output_indices: episodes hold ``(source index, label)`` pairs instead of inputs.
        seed: episodes are a pure function of ``(seed, epoch, index)``; ``None`` draws a
            random seed once (kept in ``self.seed``).
        max_attempts: multi-label only: attempts before giving up (see
            [`sample_multilabel_episode()`][torchcross.sampling.episodes.sample_multilabel_episode]).
        permute_labels: multi-class ``n_way`` episodes assign labels ``0..n_way-1`` to their
            classes in a random order per episode (``True``, the default) or in the task's
            class order (``False``). No effect without ``n_way`` and on ordinal tasks.
        multilabel_sampler: multi-label only: the rule of
            [`MULTILABEL_SAMPLERS`][torchcross.sampling.episodes.MULTILABEL_SAMPLERS], ``"cover"`` (the
            greedy near-minimal cover, the default) or ``"medimeta"`` (the MedIMeta authors' ``k``
            positives and negatives per label, trimmed; see `torchcross.sampling.medimeta_multilabel`).

    Raises:
        ValueError: fewer than two (or ``n_way``) usable classes, naming the filter or the
            episode size that removed the others (binary: too few positives or negatives);
            ``n_way`` for a binary or multi-label task.

    Examples:
        >>> import torch
        >>> from torchcross.tasks.task import TaskDescription
        >>> from torchcross.data.sources import TensorTaskSource
        >>> d = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b", 2: "c"}, "toy")
        >>> src = TensorTaskSource(torch.randn(60, 4), torch.arange(60) % 3, d)
        >>> episodes = FewShotMetaDataset(src, n_shot=2, n_query=3, length=10, seed=0)
        >>> task = episodes[0]
        >>> task.support[0].shape, task.support[1].tolist(), task.query[0].shape
        (torch.Size([6, 4]), [0, 0, 1, 1, 2, 2], torch.Size([9, 4]))
        >>> [t.support[1].tolist() for t in episodes][0] == task.support[1].tolist()
        True
        >>> two_way = FewShotMetaDataset(src, n_shot=2, n_query=3, n_way=2, length=10, seed=0)
        >>> ["".join(t.description.classes.values()) for t in two_way]  # names of labels 0 and 1
        ['ac', 'ac', 'ba', 'ca', 'ca', 'ab', 'bc', 'bc', 'ac', 'ba']
        >>> in_order = FewShotMetaDataset(
        ...     src, n_shot=2, n_query=3, n_way=2, length=10, seed=0, permute_labels=False
        ... )
        >>> ["".join(t.description.classes.values()) for t in in_order]
        ['ac', 'ac', 'ab', 'ac', 'ac', 'ab', 'bc', 'bc', 'ac', 'ab']
    """

    # the parameter names that error messages use (the compat subclasses name 0.0.6's)
    parameter_names: ClassVar[dict[str, str]] = {"n_shot": "n_shot", "n_query": "n_query", "n_way": "n_way"}
    multilabel_sampler: str = "cover"

    def __init__(
        self,
        task_source: Any,
        *,
        n_shot: int = DEFAULT_SHOTS,
        n_query: int = DEFAULT_QUERY_PER_CLASS,
        n_way: int | None = None,
        collate_fn: Callable | None = None,
        filter_classes_min_samples: int = DEFAULT_FILTER_CLASSES_MIN_SAMPLES,
        length: int | None = None,
        output_indices: bool = False,
        seed: int | None = None,
        max_attempts: int = 10,
        permute_labels: bool = True,
        multilabel_sampler: str = "cover",
    ) -> None:
        super().__init__(task_source, collate_fn, length, output_indices, seed)
        self.multilabel_sampler = check_multilabel_sampler(multilabel_sampler)
        self.n_way = self._check_n_way(n_way)
        if not isinstance(permute_labels, bool):
            raise TypeError(
                f"permute_labels must be True or False, got {permute_labels!r}; True draws a random "
                "label order per n_way episode, False keeps the task's class order"
            )
        self.permute_labels = permute_labels
        names = self.parameter_names
        self.n_shot = check_int(n_shot, names["n_shot"], 1)
        self.n_query = check_int(n_query, names["n_query"], 0)
        self.filter_classes_min_samples = check_int(
            filter_classes_min_samples, "filter_classes_min_samples", 0
        )
        self.max_attempts = check_int(max_attempts, "max_attempts", 1)
        self.classes = self._select_classes(self.n_shot, names["n_shot"])

    def _check_n_way(self, n_way: int | None) -> int | None:
        n_way = check_int(n_way, self.parameter_names["n_way"], 2, allow_none=True)
        kind = get_episode_kind(self.task_target)
        if n_way is not None and not kind.n_way:
            raise ValueError(
                f"{type(self).__name__}: {self.parameter_names['n_way']}={n_way} has no meaning for "
                f"{kind.target.name} task "
                f"{self.task_description.task_identifier!r}: {kind.n_way_alternative}"
            )
        return n_way

    def _select_classes(self, max_shots: int, shots_name: str) -> tuple[int, ...]:
        need = max_shots + self.n_query
        n_way = self.n_way
        return usable_classes(
            type(self).__name__,
            self.label_index,
            self.task_description,
            self.filter_classes_min_samples,
            need,
            f"an episode needs {shots_name} + {self.parameter_names['n_query']} = {need}",
            2 if n_way is None else n_way,
            "" if n_way is None else self.parameter_names["n_way"],
        )

    def _episode_plan(self, n_shot: int, classes: tuple[int, ...]) -> EpisodePlan:
        # classes were validated at construction (ordinal ones are in key order)
        return get_episode_kind(self.task_target).plan(
            self.label_index, classes, n_shot, self.n_query, self.max_attempts, self.multilabel_sampler
        )

    def _permutes_labels(self) -> bool:
        # multi-class n_way episodes with permute_labels=True list their classes in a random order
        return (
            self.n_way is not None
            and self.permute_labels
            and not get_episode_kind(self.task_target).key_order
        )

    def sample_indices(self, index: int) -> EpisodeIndices:
        """The indices of episode ``index``: all usable classes in key order, or ``n_way`` of them
        (multi-class, by default: in a random order drawn from the episode's generator)."""
        rng = self._episode_rng(index)
        permute = self._permutes_labels()
        if self.n_way is not None and (self.n_way < len(self.classes) or permute):
            # an ordered subset, uniform: choice without replacement shuffles what it draws
            chosen = rng.choice(len(self.classes), size=self.n_way, replace=False)
            if not permute:
                chosen = np.sort(chosen)
            classes = tuple(self.classes[j] for j in chosen.tolist())
            return self._episode_plan(self.n_shot, classes).draw(self.label_index, rng)
        plan = self.__dict__.get("_plan")
        if plan is None:  # the same classes and shots in every episode: prepare once
            plan = self.__dict__["_plan"] = self._episode_plan(self.n_shot, self.classes)
        return plan.draw(self.label_index, rng)

    def sampling_parameters(self) -> dict[str, Any]:
        """The parameters episodes depend on, under the keys episode sets and fingerprints have always
        recorded (``n_support_samples_per_class`` for ``n_shot``, ``n_query_samples_per_class`` for
        ``n_query``): files written before the rename stay valid."""
        params = {
            **super().sampling_parameters(),
            "n_support_samples_per_class": self.n_shot,
            "n_query_samples_per_class": self.n_query,
            "filter_classes_min_samples": self.filter_classes_min_samples,
            "classes": list(self.classes),
        }
        if self.n_way is not None:  # recorded only when set: all-class episode sets are unchanged
            params["n_way"] = self.n_way
            params["permute_labels"] = self.permute_labels
        if self.task_target is TaskTarget.MULTILABEL_CLASSIFICATION and self.multilabel_sampler != "cover":
            params["multilabel_sampler"] = self.multilabel_sampler  # likewise: cover sets are unchanged
        return params


class SubTaskRandomFewShotMetaDataset(FewShotMetaDataset):
    """Episodes over a random subset of the classes with a random number of shots.

    Per episode: the number of classes is uniform in ``[n_way_min, n_way_max]``
    (default: 2 to all usable classes; binary tasks always use both classes), the classes
    are a uniform random subset, and the shots are uniform in ``[n_shot_min, n_shot_max]``.
    Multi-class sub-tasks list their classes in random order (a random label permutation,
    as in 0.0.6); ordinal and multi-label sub-tasks keep key order.

    Args:
        task_source: a [`TaskSource`][torchcross.data.sources.TaskSource].
        n_shot_min, n_shot_max: the range of support examples per class (default 1 to 10).
        n_query: query examples per class (default 10).
        n_way_min, n_way_max: the range of classes per episode (default 2 to all usable classes).
        collate_fn, filter_classes_min_samples, length, output_indices, seed, max_attempts: as for
            [`FewShotMetaDataset`][FewShotMetaDataset].
        multilabel_sampler: as for [`FewShotMetaDataset`][FewShotMetaDataset] (``"medimeta"``: the
            rule of 0.0.6 ``SubTaskRandomFewShotMetaDataset``, with which MedIMeta 0.0.6
            ``task_presampling.py`` presampled the authors' source episodes).

    Examples:
        >>> import torch
        >>> from torchcross.tasks.task import TaskDescription
        >>> from torchcross.data.sources import TensorTaskSource
        >>> names = {i: f"c{i}" for i in range(5)}
        >>> d = TaskDescription("ORDINAL_REGRESSION", names, "grades")
        >>> src = TensorTaskSource(torch.randn(100, 2), torch.arange(100) % 5, d)
        >>> ds = SubTaskRandomFewShotMetaDataset(src, n_shot_min=1, n_shot_max=3, n_query=2, length=4, seed=0)
        >>> all(2 <= t.description.num_classes <= 5 for t in ds)
        True
    """

    parameter_names: ClassVar[dict[str, str]] = {
        **FewShotMetaDataset.parameter_names,
        "n_shot_min": "n_shot_min",
        "n_shot_max": "n_shot_max",
        "n_way_min": "n_way_min",
        "n_way_max": "n_way_max",
    }

    def __init__(
        self,
        task_source: Any,
        *,
        n_shot_min: int = 1,
        n_shot_max: int = 10,
        n_query: int = DEFAULT_QUERY_PER_CLASS,
        n_way_min: int = 2,
        n_way_max: int | None = None,
        collate_fn: Callable | None = None,
        filter_classes_min_samples: int = DEFAULT_FILTER_CLASSES_MIN_SAMPLES,
        length: int | None = None,
        output_indices: bool = False,
        seed: int | None = None,
        max_attempts: int = 10,
        multilabel_sampler: str = "cover",
    ) -> None:
        EpisodeMetaDataset.__init__(self, task_source, collate_fn, length, output_indices, seed)
        self.multilabel_sampler = check_multilabel_sampler(multilabel_sampler)
        names = self.parameter_names
        self.n_way = None  # random ways: n_way_min to n_way_max
        self.n_shot_min = check_int(n_shot_min, names["n_shot_min"], 1)
        self.n_shot_max = check_int(n_shot_max, names["n_shot_max"], self.n_shot_min)
        self.n_shot = self.n_shot_min
        self.n_query = check_int(n_query, names["n_query"], 0)
        self.filter_classes_min_samples = check_int(
            filter_classes_min_samples, "filter_classes_min_samples", 0
        )
        self.max_attempts = check_int(max_attempts, "max_attempts", 1)
        self.classes = self._select_classes(self.n_shot_max, names["n_shot_max"])
        n_usable = len(self.classes)
        self.n_way_min = check_int(n_way_min, names["n_way_min"], 2)
        self.n_way_max = check_int(n_usable if n_way_max is None else n_way_max, names["n_way_max"], 2)
        if self.n_way_min > min(self.n_way_max, n_usable):
            raise ValueError(
                f"{names['n_way_min']}={self.n_way_min} exceeds the classes available "
                f"({names['n_way_max']}={self.n_way_max}, {n_usable} usable classes {list(self.classes)})"
            )

    def sample_indices(self, index: int) -> EpisodeIndices:
        """The indices of episode ``index``: random classes and shots, then the fixed-shot rule."""
        rng = self._episode_rng(index)
        classes = self.classes
        kind = get_episode_kind(self.task_target)
        if kind.fixed_classes is None:
            hi = min(self.n_way_max, len(classes))
            n_way = int(rng.integers(self.n_way_min, hi + 1))
            chosen = rng.choice(len(classes), size=n_way, replace=False)
            if kind.key_order:
                chosen = np.sort(chosen)
            classes = tuple(classes[j] for j in chosen)
        shots = int(rng.integers(self.n_shot_min, self.n_shot_max + 1))
        return self._episode_plan(shots, classes).draw(self.label_index, rng)

    def sampling_parameters(self) -> dict[str, Any]:
        """As for [`FewShotMetaDataset`][FewShotMetaDataset], under the
        keys always recorded (``n_support_samples_per_class_min`` for ``n_shot_min``, ``n_classes_min`` for
        ``n_way_min``, and so on)."""
        params = super().sampling_parameters()
        del params["n_support_samples_per_class"]
        return {
            **params,
            "n_support_samples_per_class_min": self.n_shot_min,
            "n_support_samples_per_class_max": self.n_shot_max,
            "n_classes_min": self.n_way_min,
            "n_classes_max": self.n_way_max,
        }
