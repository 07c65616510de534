"""A dataset of given tasks (torchcross 0.0.6's
[`CollectionMetaDataset`][torchcross.data.metadataset.CollectionMetaDataset]).

Examples:
    >>> import torch
    >>> from torchcross.tasks.task import Task, TaskDescription
    >>> d = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"})
    >>> pair = (torch.zeros(2, 3), torch.tensor([[0], [1]]))
    >>> ds = CollectionMetaDataset([pair, pair], [pair, pair], [d, d])
    >>> len(ds), ds[1].description is d
    (2, True)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from torchcross.data.metadataset.meta import MetaDataset
from torchcross.tasks.task import Task, TaskDescription

__all__ = ["CollectionMetaDataset"]


class CollectionMetaDataset(MetaDataset):
    """A map-style dataset of a fixed list of tasks.

    Call it with the tasks, ``CollectionMetaDataset(tasks)``, or with their parts,
    ``CollectionMetaDataset(supports, queries, descriptions)`` (three sequences of equal length).

    Raises:
        TypeError: another number of arguments, or keyword arguments.
        ValueError: no tasks, or parts of different lengths.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        if kwargs or len(args) not in (1, 3):
            raise TypeError(
                "CollectionMetaDataset takes (tasks) or (support_datasets, query_datasets, "
                f"task_descriptions) as positional arguments, got {len(args)} positional and "
                f"keywords {sorted(kwargs)}"
            )
        if len(args) == 1:
            tasks = list(args[0])
        else:
            supports, queries, descriptions = (list(a) for a in args)
            if not len(supports) == len(queries) == len(descriptions):
                raise ValueError(
                    f"support_datasets, query_datasets and task_descriptions differ in length: "
                    f"{len(supports)}, {len(queries)}, {len(descriptions)}"
                )
            tasks = [Task(s, q, d) for s, q, d in zip(supports, queries, descriptions)]
        if not tasks:
            raise ValueError("CollectionMetaDataset needs at least one task, got none")
        bad = [i for i, t in enumerate(tasks) if not isinstance(t, Task)]
        if bad:
            raise TypeError(
                f"CollectionMetaDataset: item {bad[0]} is a {type(tasks[bad[0]]).__name__}, not a Task"
            )
        self.tasks: list[Task] = tasks

    def __getitem__(self, index: int) -> Task:
        return self.tasks[index]

    def __len__(self) -> int:
        return len(self.tasks)

    @classmethod
    def from_parts(
        cls, supports: Sequence[Any], queries: Sequence[Any], descriptions: Iterable[TaskDescription]
    ) -> CollectionMetaDataset:
        """The same as ``CollectionMetaDataset(supports, queries, descriptions)``."""
        return cls(supports, queries, descriptions)
