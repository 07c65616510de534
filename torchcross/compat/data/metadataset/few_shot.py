"""torchcross 0.0.6's ``FewShotMetaDataset`` and ``SubTaskRandomFewShotMetaDataset``: the 0.0.6 parameter
names and positional order, and the attributes 0.0.6 derived, over the core classes of
[`torchcross.data.metadataset.fixed_shot`][fixed_shot].

Episodes are the core classes' episodes, bit for bit.

Examples:
    >>> import torch
    >>> from torchcross.data.metadataset.fixed_shot import FewShotMetaDataset as Core
    >>> from torchcross.data.sources import TensorTaskSource
    >>> from torchcross.tasks.task import TaskDescription
    >>> d = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b", 2: "c"}, "toy")
    >>> src = TensorTaskSource(torch.randn(60, 4), torch.arange(60) % 3, d)
    >>> old = FewShotMetaDataset(src, None, 2, 3, length=4, seed=0)
    >>> new = Core(src, n_shot=2, n_query=3, length=4, seed=0)
    >>> all(torch.equal(a.support[0], b.support[0]) for a, b in zip(old, new))
    True
    >>> old.n_support_samples_per_class, old.n_query_samples_per_class, old.used_classes
    (2, 3, [0, 1, 2])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from torchcross.data.metadataset import fixed_shot
from torchcross.sampling.defaults import (
    DEFAULT_FILTER_CLASSES_MIN_SAMPLES,
    DEFAULT_QUERY_PER_CLASS,
    DEFAULT_SHOTS,
)

__all__ = ["FewShotMetaDataset", "SubTaskRandomFewShotMetaDataset"]


class FewShotMetaDataset(fixed_shot.FewShotMetaDataset):
    """torchcross 0.0.6's signature of
    [`FewShotMetaDataset`][fixed_shot.FewShotMetaDataset]:
    ``(task_source, collate_fn, n_support_samples_per_class, n_query_samples_per_class,
    filter_classes_min_samples, length, output_indices)`` positionally, then the keywords of the core
    class. ``n_support_samples_per_class``, ``n_query_samples_per_class`` and ``used_classes`` read the
    core attributes ``n_shot``, ``n_query`` and ``classes``."""

    parameter_names: ClassVar[dict[str, str]] = {
        "n_shot": "n_support_samples_per_class",
        "n_query": "n_query_samples_per_class",
        "n_way": "n_way",
    }

    def __init__(
        self,
        task_source: Any,
        collate_fn: Callable | None = None,
        n_support_samples_per_class: int = DEFAULT_SHOTS,
        n_query_samples_per_class: int = DEFAULT_QUERY_PER_CLASS,
        filter_classes_min_samples: int = DEFAULT_FILTER_CLASSES_MIN_SAMPLES,
        length: int | None = None,
        output_indices: bool = False,
        *,
        seed: int | None = None,
        max_attempts: int = 10,
        n_way: int | None = None,
        permute_labels: bool = True,
    ) -> None:
        super().__init__(
            task_source,
            n_shot=n_support_samples_per_class,
            n_query=n_query_samples_per_class,
            n_way=n_way,
            collate_fn=collate_fn,
            filter_classes_min_samples=filter_classes_min_samples,
            length=length,
            output_indices=output_indices,
            seed=seed,
            max_attempts=max_attempts,
            permute_labels=permute_labels,
        )

    @property
    def n_support_samples_per_class(self) -> int:
        """``n_shot``, under its 0.0.6 name."""
        return self.n_shot

    @property
    def n_query_samples_per_class(self) -> int:
        """``n_query``, under its 0.0.6 name."""
        return self.n_query

    @property
    def used_classes(self) -> list[int]:
        """The usable class keys (multi-label: columns), as torchcross 0.0.6 named them."""
        return list(self.classes)


class SubTaskRandomFewShotMetaDataset(fixed_shot.SubTaskRandomFewShotMetaDataset, FewShotMetaDataset):
    """torchcross 0.0.6's signature of
    [`SubTaskRandomFewShotMetaDataset`][fixed_shot.SubTaskRandomFewShotMetaDataset]:
    ``n_support_samples_per_class_min``/``_max`` for ``n_shot_min``/``n_shot_max``,
    ``n_query_samples_per_class`` for ``n_query`` and ``n_classes_min``/``_max`` for
    ``n_way_min``/``n_way_max`` (all keyword-only, as in 0.0.6), read back under the same names."""

    parameter_names: ClassVar[dict[str, str]] = {
        **FewShotMetaDataset.parameter_names,
        "n_shot_min": "n_support_samples_per_class_min",
        "n_shot_max": "n_support_samples_per_class_max",
        "n_way_min": "n_classes_min",
        "n_way_max": "n_classes_max",
    }

    def __init__(
        self,
        task_source: Any,
        collate_fn: Callable | None = None,
        *,
        n_support_samples_per_class_min: int = 1,
        n_support_samples_per_class_max: int = 10,
        n_query_samples_per_class: int = DEFAULT_QUERY_PER_CLASS,
        filter_classes_min_samples: int = DEFAULT_FILTER_CLASSES_MIN_SAMPLES,
        length: int | None = None,
        output_indices: bool = False,
        seed: int | None = None,
        n_classes_min: int = 2,
        n_classes_max: int | None = None,
        max_attempts: int = 10,
    ) -> None:
        fixed_shot.SubTaskRandomFewShotMetaDataset.__init__(
            self,
            task_source,
            n_shot_min=n_support_samples_per_class_min,
            n_shot_max=n_support_samples_per_class_max,
            n_query=n_query_samples_per_class,
            n_way_min=n_classes_min,
            n_way_max=n_classes_max,
            collate_fn=collate_fn,
            filter_classes_min_samples=filter_classes_min_samples,
            length=length,
            output_indices=output_indices,
            seed=seed,
            max_attempts=max_attempts,
        )

    @property
    def n_support_samples_per_class_min(self) -> int:
        """``n_shot_min``, under its 0.0.6 name."""
        return self.n_shot_min

    @property
    def n_support_samples_per_class_max(self) -> int:
        """``n_shot_max``, under its 0.0.6 name."""
        return self.n_shot_max

    @property
    def n_classes_min(self) -> int:
        """``n_way_min``, under its former name."""
        return self.n_way_min

    @property
    def n_classes_max(self) -> int:
        """``n_way_max``, under its former name."""
        return self.n_way_max
