"""A fixed few-shot task for smoke tests (torchcross 0.0.6's
[`TakeFirstFewShotMetaDataset`][torchcross.data.metadataset.TakeFirstFewShotMetaDataset]).

Examples:
    >>> import torch
    >>> from torchcross.data.sources import TensorTaskSource
    >>> from torchcross.tasks.task import TaskDescription
    >>> d = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b"})
    >>> src = TensorTaskSource(torch.arange(8.0)[:, None], [0, 1, 0, 1, 0, 1, 0, 1], d)
    >>> task = TakeFirstFewShotMetaDataset(src, n_shot_per_class=2)[0]
    >>> [float(x) for x, _ in task.support], [int(y) for _, y in task.query]
    ([0.0, 2.0, 1.0, 3.0], [0, 0, 1, 1])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from torchcross._checks import check_int
from torchcross.data.metadataset.meta import MetaDataset
from torchcross.data.sources import canonical_labels, check_task_source
from torchcross.tasks.task import Task, TaskDescription, TaskTarget

__all__ = ["TakeFirstFewShotMetaDataset"]


class TakeFirstFewShotMetaDataset(MetaDataset):
    """Always the same multi-class task: the first ``n_shot_per_class`` examples of every class
    as support, the next ``n_shot_per_class`` as query (labels ``0..k-1`` in class order).

    Args:
        dataset: a multi-class task source with ``2 * n_shot_per_class`` examples of every class.
        collate_fn: applied to the support and the query lists of ``(input, label)`` pairs.
        n_shot_per_class: examples per class in the support set (and in the query set).

    Raises:
        ValueError: a task that is not multi-class, or a class with too few examples.
    """

    def __init__(self, dataset: Any, collate_fn: Callable | None = None, n_shot_per_class: int = 5) -> None:
        super().__init__()
        check_task_source(dataset, "TakeFirstFewShotMetaDataset")
        n = check_int(n_shot_per_class, "n_shot_per_class", 1)
        self.dataset, self.task_description = dataset, dataset.task_description
        self.task_target = self.task_description.task_target
        if self.task_target is not TaskTarget.MULTICLASS_CLASSIFICATION:
            raise ValueError(
                f"TakeFirstFewShotMetaDataset supports MULTICLASS_CLASSIFICATION tasks only, got "
                f"{self.task_target.name}"
            )
        labels = canonical_labels(dataset)
        picks = []
        for key in self.task_description.class_keys:
            found = np.flatnonzero(labels == key)
            if len(found) < 2 * n:
                raise ValueError(
                    f"class {key} has {len(found)} examples; TakeFirstFewShotMetaDataset needs "
                    f"2 * n_shot_per_class = {2 * n}"
                )
            picks.append(found[: 2 * n])
        self.collate_fn = collate_fn

        def pairs(start: int) -> list[tuple[Any, torch.Tensor]]:
            return [
                (dataset[int(i)][0], torch.tensor(j))
                for j, found in enumerate(picks)
                for i in found[start : start + n]
            ]

        support, query = pairs(0), pairs(n)
        if collate_fn is not None:
            support, query = collate_fn(support), collate_fn(query)
        self.support, self.query = support, query

    def __getitem__(self, index: Any) -> Task:
        """The task (every index gives the same one)."""
        return Task(
            self.support, self.query, TaskDescription(self.task_target, self.task_description.classes)
        )

    def __len__(self) -> int:
        return 1
