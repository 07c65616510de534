"""A fixed few-shot task for smoke tests (the former positional signature
``(dataset, collate_fn, n_shot_per_class)`` lives in ``torchcross.compat.data.metadataset``).

Examples:
    >>> import torch
    >>> from torchcross.data.sources import TensorTaskSource
    >>> from torchcross.tasks.task import TaskDescription
    >>> d = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b"})
    >>> src = TensorTaskSource(torch.arange(8.0)[:, None], [0, 1, 0, 1, 0, 1, 0, 1], d)
    >>> task = TakeFirstFewShotMetaDataset(src, n_shot=2)[0]
    >>> [float(x) for x, _ in task.support], [int(y) for _, y in task.query]
    ([0.0, 2.0, 1.0, 3.0], [0, 0, 1, 1])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch

from torchcross._checks import check_int
from torchcross.data.metadataset.meta import MetaDataset
from torchcross.data.sources import canonical_labels, check_task_source
from torchcross.tasks.task import Task, TaskDescription, TaskTarget

__all__ = ["TakeFirstFewShotMetaDataset"]


class TakeFirstFewShotMetaDataset(MetaDataset):
    """Always the same multi-class task: the first ``n_shot`` examples of every class
    as support, the next ``n_shot`` as query (labels ``0..k-1`` in class order).

    Args:
        task_source: a multi-class task source with ``2 * n_shot`` examples of every class.
        n_shot: examples per class in the support set (and in the query set).
        collate_fn: applied to the support and the query lists of ``(input, label)`` pairs.

    Raises:
        ValueError: a task that is not multi-class, or a class with too few examples.
    """

    # the parameter name that error messages use (the compat subclass names 0.0.6's)
    shot_name: ClassVar[str] = "n_shot"

    def __init__(self, task_source: Any, *, n_shot: int = 5, collate_fn: Callable | None = None) -> None:
        super().__init__()
        dataset = task_source
        check_task_source(dataset, type(self).__name__)
        n = check_int(n_shot, self.shot_name, 1)
        self.task_source, self.task_description = dataset, dataset.task_description
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
                    f"2 * {self.shot_name} = {2 * n}"
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
