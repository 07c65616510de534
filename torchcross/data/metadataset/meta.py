"""Datasets of tasks, as torchcross 0.0.6 named them, and their sums.

* [`MetaDataset`][torchcross.data.metadataset.MetaDataset]: a map-style dataset of
  [`Task`][Task];
  ``a + b`` is a [`MetaConcatDataset`][torchcross.data.metadataset.MetaConcatDataset];
* [`IterableMetaDataset`][torchcross.data.metadataset.IterableMetaDataset]: an iterable dataset of tasks; ``a
  + b`` is a
  [`MetaChainDataset`][torchcross.data.metadataset.MetaChainDataset] (``a``'s tasks, then ``b``'s).

Examples:
    >>> class Numbers(MetaDataset):
    ...     def __init__(self, n):
    ...         self.n = n
    ...
    ...     def __getitem__(self, index):
    ...         return index
    ...
    ...     def __len__(self):
    ...         return self.n
    >>> both = Numbers(2) + Numbers(3)
    >>> both[1, 2], len(both)
    (2, 5)
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator, Sized
from typing import Any, cast

from torch.utils.data import ChainDataset, Dataset, IterableDataset

import torchcross.data.collate  # noqa: F401  (registers Task with default_collate: DataLoader batches)
from torchcross.tasks.task import Task

__all__ = ["IterableMetaDataset", "MetaChainDataset", "MetaConcatDataset", "MetaDataset"]


class MetaDataset(Dataset[Task], abc.ABC):
    """A map-style dataset of tasks: subclasses implement ``__getitem__`` (and usually ``__len__``).

    ``__len__`` is not required, as in torchcross 0.0.6: ``len()`` of a subclass without it
    raises ``TypeError``.

    Examples:
        >>> class Two(MetaDataset):
        ...     def __getitem__(self, index):
        ...         return index
        ...
        ...     def __len__(self):
        ...         return 2
        >>> len(Two())
        2
    """

    @abc.abstractmethod
    def __getitem__(self, index: Any) -> Task: ...

    # a MetaConcatDataset, not the ConcatDataset of torch's Dataset.__add__
    def __add__(self, other: Dataset[Task]) -> MetaConcatDataset:  # type: ignore[override]
        return MetaConcatDataset([self, other])


class MetaConcatDataset(MetaDataset):
    """Several map-style datasets of tasks, indexed by ``(dataset index, index in that dataset)``.

    Args:
        datasets: the datasets (at least one).

    Raises:
        ValueError: no datasets.
    """

    def __init__(self, datasets: Iterable[Dataset[Task]]) -> None:
        super().__init__()
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("MetaConcatDataset needs at least one dataset, got none")

    def __getitem__(self, index: tuple[int, Any]) -> Task:
        if not isinstance(index, tuple) or len(index) != 2:
            raise TypeError(
                f"index a MetaConcatDataset with (dataset index, index in that dataset), got {index!r}"
            )
        outer, inner = index
        return self.datasets[outer][inner]

    def __len__(self) -> int:
        """The total number of tasks (every dataset must have a length)."""
        return sum(len(d) for d in cast("list[Sized]", self.datasets))


class IterableMetaDataset(IterableDataset[Task], abc.ABC):
    """An iterable dataset of tasks: subclasses implement ``__iter__``; ``a + b`` chains them.

    Examples:
        >>> class Count(IterableMetaDataset):
        ...     def __init__(self, n):
        ...         self.n = n
        ...
        ...     def __iter__(self):
        ...         return iter(range(self.n))
        >>> list(Count(2) + Count(3))
        [0, 1, 0, 1, 2]
    """

    @abc.abstractmethod
    def __iter__(self) -> Iterator[Task]: ...

    def __add__(self, other: IterableDataset[Task]) -> MetaChainDataset:  # type: ignore[override]
        return MetaChainDataset([self, other])


class MetaChainDataset(ChainDataset, IterableMetaDataset):
    """Iterable datasets of tasks, one after the other (a `torch.utils.data.ChainDataset`)."""

    def __iter__(self) -> Iterator[Task]:
        return ChainDataset.__iter__(self)
