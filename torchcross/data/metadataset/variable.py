"""Variable-way variable-shot episodes following Meta-Dataset's published sampling rules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torchcross._checks import check_int
from torchcross.data.metadataset.base import EpisodeMetaDataset, usable_classes
from torchcross.sampling.defaults import DEFAULT_FILTER_CLASSES_MIN_SAMPLES, DEFAULT_QUERY_PER_CLASS
from torchcross.sampling.episodes import EpisodeIndices
from torchcross.sampling.variable import sample_variable_episode
from torchcross.tasks.task import TaskTarget

__all__ = ["VariableWayShotMetaDataset"]


class VariableWayShotMetaDataset(EpisodeMetaDataset):
    """Episodes with a random number of classes and an imbalanced support set.

    The rule of Triantafillou et al., "Meta-Dataset" (ICLR 2020), section 3.2, as
    implemented by [`sample_variable_episode()`][sample_variable_episode]: ways
    uniform in ``[min_ways, max_ways]`` (capped by the usable classes), a balanced query
    of at most ``max_query_per_class`` per class, and a support set of at most
    ``max_support_size`` examples spread over the classes roughly in proportion to their
    sizes (at most ``max_support_per_class`` before the split, at least one per class).
    Multi-class, ordinal (classes in key order) and binary tasks (always both classes).

    Args:
        task_source: a [`TaskSource`][torchcross.data.sources.TaskSource].
        collate_fn, length, output_indices, seed: as for
            [`FewShotMetaDataset`][torchcross.data.metadataset.fixed_shot.FewShotMetaDataset].
        filter_classes_min_samples: drop classes with fewer examples (classes with fewer
            than 2 examples are always dropped: a class needs a support and a query example).

    Raises:
        ValueError: for multi-label tasks, or fewer than two usable classes.

    Examples:
        >>> import torch
        >>> from torchcross.tasks.task import TaskDescription
        >>> from torchcross.data.sources import TensorTaskSource
        >>> d = TaskDescription("MULTICLASS_CLASSIFICATION", {i: str(i) for i in range(10)}, "digits")
        >>> src = TensorTaskSource(torch.randn(500, 3), torch.arange(500) % 10, d)
        >>> ds = VariableWayShotMetaDataset(src, min_ways=3, max_ways=8, length=5, seed=0)
        >>> task = ds[0]
        >>> 3 <= task.description.num_classes <= 8, torch.bincount(task.query[1]).unique().numel()
        (True, 1)
    """

    def __init__(
        self,
        task_source: Any,
        *,
        collate_fn: Callable | None = None,
        min_ways: int = 5,
        max_ways: int = 50,
        max_query_per_class: int = DEFAULT_QUERY_PER_CLASS,
        max_support_size: int = 500,
        max_support_per_class: int = 100,
        filter_classes_min_samples: int = DEFAULT_FILTER_CLASSES_MIN_SAMPLES,
        length: int | None = None,
        output_indices: bool = False,
        seed: int | None = None,
    ) -> None:
        super().__init__(task_source, collate_fn, length, output_indices, seed)
        if self.task_target is TaskTarget.MULTILABEL_CLASSIFICATION:
            raise ValueError(
                f"VariableWayShotMetaDataset: task {self.task_description.task_identifier!r} is multi-label; "
                "the variable-way variable-shot rule is defined for single-label tasks "
                "(use SubTaskRandomFewShotMetaDataset for random multi-label sub-tasks)"
            )
        self.min_ways = check_int(min_ways, "min_ways", 2)
        self.max_ways = check_int(max_ways, "max_ways", self.min_ways)
        self.max_query_per_class = check_int(max_query_per_class, "max_query_per_class", 1)
        self.max_support_size = check_int(max_support_size, "max_support_size", self.max_ways)
        self.max_support_per_class = check_int(max_support_per_class, "max_support_per_class", 1)
        self.filter_classes_min_samples = check_int(
            filter_classes_min_samples, "filter_classes_min_samples", 0
        )
        self.classes = usable_classes(
            type(self).__name__,
            self.label_index,
            self.task_description,
            self.filter_classes_min_samples,
            2,
            "a class needs one support and one query example",
        )

    def sample_indices(self, index: int) -> EpisodeIndices:
        """The indices of episode ``index`` under the Meta-Dataset rule."""
        return sample_variable_episode(
            self.label_index,
            self._episode_rng(index),
            classes=self.classes,
            min_ways=self.min_ways,
            max_ways=self.max_ways,
            max_query_per_class=self.max_query_per_class,
            max_support_size=self.max_support_size,
            max_support_per_class=self.max_support_per_class,
        )

    def sampling_parameters(self) -> dict[str, Any]:
        return {
            **super().sampling_parameters(),
            "min_ways": self.min_ways,
            "max_ways": self.max_ways,
            "max_query_per_class": self.max_query_per_class,
            "max_support_size": self.max_support_size,
            "max_support_per_class": self.max_support_per_class,
            "filter_classes_min_samples": self.filter_classes_min_samples,
            "classes": list(self.classes),
        }
