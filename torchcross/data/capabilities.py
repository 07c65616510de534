"""What a dataset or source can do, as :class:`typing.Protocol` classes checked with ``isinstance``.

Every protocol is :func:`~typing.runtime_checkable`: ``isinstance(source, BatchReadable)``
tells whether ``source`` has the method, whatever its class. A class says what it can
do by defining the methods; wrappers whose capabilities depend on what they wrap (e.g.
:class:`~torchcross.data.sources.SubsetTaskSource`) pick a class that has the method only
when the wrapped object has it.

Examples:
    >>> import torch
    >>> from torchcross.data.sources import TensorTaskSource
    >>> from torchcross.tasks.task import TaskDescription
    >>> d = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"})
    >>> src = TensorTaskSource(torch.zeros(2, 1), [0, 1], d)
    >>> isinstance(src, BatchReadable), isinstance(src, SupportsSetEpoch), isinstance(src, MapStyle)
    (True, False, True)
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["BatchReadable", "MapStyle", "PlannedBatches", "ShardSized", "SupportsSetEpoch"]


@runtime_checkable
class BatchReadable(Protocol):
    """A source that reads many examples in one operation: ``get_batch(indices) -> (inputs, labels)``.

    ``get_batch(indices)`` returns what stacking ``source[i]`` for ``i`` in ``indices`` would
    (the inputs and the labels, each batched along a new first dimension), faster.
    """

    def get_batch(self, indices: Any) -> tuple[Any, Any]:
        """The inputs and labels of the examples at ``indices``, batched."""
        ...


@runtime_checkable
class SupportsSetEpoch(Protocol):
    """Something whose order or episodes depend on an epoch it is told with ``set_epoch(epoch)``."""

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch``'s order (or episodes) from now on."""
        ...


@runtime_checkable
class MapStyle(Protocol):
    """A map-style dataset: ``len(ds)`` items, read with ``ds[i]``."""

    def __getitem__(self, index: Any) -> Any: ...

    def __len__(self) -> int: ...


@runtime_checkable
class PlannedBatches(Protocol):
    """An iterable whose batches are planned up front: ``batch_indices()`` then ``load_batch(indices)``.

    :class:`~torchcross.data.interleave.InterleaveDataset` interleaves such sources by
    plan, so the stream is the same with any number of DataLoader workers.
    """

    def batch_indices(self) -> list[Any]:
        """The example indices of every batch of the current epoch, in order."""
        ...

    def load_batch(self, indices: Any) -> Any:
        """Read and collate the examples at ``indices``."""
        ...


@runtime_checkable
class ShardSized(Protocol):
    """An iterable that knows how many batches one shard (worker and rank) of it yields."""

    def num_batches_in_shard(self, position: Any) -> int:
        """How many batches shard ``position`` yields.

        ``position`` is a :class:`~torchcross.data.workers.sharding.ShardPosition`.
        """
        ...
