"""What a dataset or source can do, as `typing.Protocol` classes checked with ``isinstance``.

Every protocol is `runtime_checkable()`: ``isinstance(source, BatchReadable)``
tells whether ``source`` has the method, whatever its class. A class says what it can
do by defining the methods; wrappers whose capabilities depend on what they wrap (e.g.
[`SubsetTaskSource`][torchcross.data.sources.SubsetTaskSource]) pick a class that has the method only
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

from collections.abc import Callable
from typing import Any, Protocol, TypeVar, runtime_checkable

__all__ = ["BatchReadable", "MapStyle", "PlannedBatches", "ShardIterable", "ShardSized", "SupportsSetEpoch"]

_P = TypeVar("_P", bound=type)
_MEMBERS: dict[type, tuple[str, ...]] = {}


class _CapabilityMeta(type(Protocol)):  # type: ignore[misc]
    """``isinstance`` for method-only protocols as `typing` defines it, at the cost of a ``getattr``.

    An object has the capability when each of the protocol's methods is an attribute that
    is not ``None``. `typing`'s own check computes the members again on every call
    (tens of microseconds per ``isinstance`` on Python 3.11), too slow for a per-episode check.
    """

    def __instancecheck__(cls, instance: Any) -> bool:
        members = _MEMBERS.get(cls)
        if members is None:
            return super().__instancecheck__(instance)
        for name in members:  # noqa: SIM110 (a loop: no generator object per call)
            if getattr(instance, name, None) is None:
                return False
        return True


def _capability(*members: str) -> Callable[[_P], _P]:
    def register(cls: _P) -> _P:
        _MEMBERS[cls] = members
        return cls

    return register


@_capability("get_batch")
@runtime_checkable
class BatchReadable(Protocol, metaclass=_CapabilityMeta):
    """A source that reads many examples in one operation: ``get_batch(indices) -> (inputs, labels)``.

    ``get_batch(indices)`` returns what stacking ``source[i]`` for ``i`` in ``indices`` would
    (the inputs and the labels, each batched along a new first dimension), faster.
    """

    def get_batch(self, indices: Any) -> tuple[Any, Any]:
        """The inputs and labels of the examples at ``indices``, batched."""
        ...


@_capability("set_epoch")
@runtime_checkable
class SupportsSetEpoch(Protocol, metaclass=_CapabilityMeta):
    """Something whose order or episodes depend on an epoch it is told with ``set_epoch(epoch)``."""

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch``'s order (or episodes) from now on."""
        ...


@_capability("__getitem__", "__len__")
@runtime_checkable
class MapStyle(Protocol, metaclass=_CapabilityMeta):
    """A map-style dataset: ``len(ds)`` items, read with ``ds[i]``."""

    def __getitem__(self, index: Any) -> Any: ...

    def __len__(self) -> int: ...


@_capability("batch_indices", "load_batch")
@runtime_checkable
class PlannedBatches(Protocol, metaclass=_CapabilityMeta):
    """An iterable whose batches are planned up front: ``batch_indices()`` then ``load_batch(indices)``.

    [`InterleaveDataset`][torchcross.data.interleave.InterleaveDataset] interleaves such sources by
    plan, so the stream is the same with any number of DataLoader workers.
    """

    def batch_indices(self) -> list[Any]:
        """The example indices of every batch of the current epoch, in order."""
        ...

    def load_batch(self, indices: Any) -> Any:
        """Read and collate the examples at ``indices``."""
        ...


@_capability("num_batches_in_shard")
@runtime_checkable
class ShardSized(Protocol, metaclass=_CapabilityMeta):
    """An iterable that knows how many batches one shard (worker and rank) of it yields."""

    def num_batches_in_shard(self, position: Any) -> int:
        """How many batches shard ``position`` yields.

        ``position`` is a `ShardPosition`.
        """
        ...


@_capability("iter_shard")
@runtime_checkable
class ShardIterable(Protocol, metaclass=_CapabilityMeta):
    """An iterable that splits itself into shards and yields any one of them: ``iter_shard(position)``.

    Iterating it yields the shard of this process and worker; ``iter_shard(position)``
    yields shard ``position`` (a `ShardPosition`)
    whatever the process, so a wrapper told its rank explicitly (e.g.
    [`InterleaveDataset`][torchcross.data.interleave.InterleaveDataset] with ``rank=``) can pass it on.
    """

    def iter_shard(self, position: Any) -> Any:
        """An iterator over the items of shard ``position``."""
        ...
