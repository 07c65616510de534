"""Iterate a resumable stream with DataLoader workers while its position stays in the main process.

[`StreamLoader`][StreamLoader] is the ``DistributedSampler`` pattern for
torchcross's streams (the episode datasets and the multi-task samplers, whose item ``k`` of an
epoch is a pure function of ``(seed, epoch, k)``): the main process turns the stream's
[`StreamPosition`][torchcross.data.workers.position.StreamPosition] into the ``(epoch, k)`` keys
of this rank's items, DataLoader workers compute ``stream.item(epoch, k)`` for the keys they are
sent, and the main process counts the items the loop takes. Workers never own the position, so
``persistent_workers=True`` follows ``set_epoch`` and ``load_state_dict`` without shared memory,
and ``stream.state_dict()`` needs no count from the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from torch.utils.data import DataLoader, Dataset, Sampler

from torchcross._checks import check_int
from torchcross.data.workers.sharding import ResumableStream
from torchcross.data.workers.shm_pool import set_pool_limit

__all__ = ["StreamLoader"]


def _as_is(item: Any) -> Any:
    return item


class _Items(Dataset):
    """``items[(epoch, k)]`` is ``stream.item(epoch, k)``: what DataLoader workers compute."""

    def __init__(self, stream: ResumableStream) -> None:
        self.stream = stream

    def __getitem__(self, key: tuple[int, int]) -> Any:
        return self.stream.item(*key)


class _Keys(Sampler):
    """This rank's ``(epoch, k)`` keys from the stream's position, read when an iteration starts."""

    def __init__(self, stream: ResumableStream) -> None:
        self.stream = stream

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return _keys(self.stream)


class _WorkerInit:
    """A ``worker_init_fn``: cap the worker's shared-memory pool, then run the user's own."""

    def __init__(self, pool_mb: int, then: Callable[[int], None] | None) -> None:
        self.pool_mb, self.then = pool_mb, then

    def __call__(self, worker_id: int) -> None:
        set_pool_limit(self.pool_mb)
        if self.then is not None:
            self.then(worker_id)


def _keys(stream: ResumableStream) -> Iterator[tuple[int, int]]:
    epoch = stream.position.epoch
    shard = stream.unit_shard()  # the main process: its rank's items
    return ((epoch, k) for k in stream.shard_items(shard))


class StreamLoader:
    """This rank's items of ``stream`` from its position, loaded by ``num_workers`` DataLoader workers.

    Yields the same items in the same order as iterating ``stream`` in this process, with any
    number of workers (persistent ones included), and counts each item it hands to the loop in
    ``stream.position``, so ``stream.state_dict()`` (also `state_dict()` here) is where a resumed
    loop continues. ``set_epoch``, ``state_dict`` and ``load_state_dict`` pass through to the stream;
    call them in the main process between iterations.

    Args:
        stream: an episode dataset or multi-task sampler (a
            [`ResumableStream`][ResumableStream]).
        num_workers: DataLoader worker processes (0: load in this process).
        pool_mb: the most MiB each worker keeps in reused shared-memory blocks for the episodes and
            images it sends (`torchcross.data.workers.shm_pool`; ``0``: none, every item travels as
            PyTorch sends it); ``None``: the ``TORCHCROSS_WORKER_POOL_MB`` environment variable
            (default 1024).
        **loader_options: further ``DataLoader`` options (``persistent_workers``, ``pin_memory``,
            ``prefetch_factor``, ``multiprocessing_context``, ``worker_init_fn``, ``timeout``...).

    Raises:
        TypeError: ``stream`` is not a resumable stream, or an option the loader sets itself
            (``batch_size``, ``sampler``, ``collate_fn``...) is passed.

    Examples:
        >>> import torch
        >>> from torchcross.data import TensorTaskSource, TaskDescription
        >>> from torchcross.data.multitask import MultiTaskBatchSampler
        >>> d = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b"}, "toy")
        >>> sampler = MultiTaskBatchSampler([TensorTaskSource(torch.arange(6.0), [0, 1] * 3, d)], 2, seed=0)
        >>> loader = StreamLoader(sampler)
        >>> it = iter(loader)
        >>> _ = next(it)
        >>> loader.state_dict()["position"]
        1
    """

    _OWN = ("batch_size", "batch_sampler", "sampler", "shuffle", "collate_fn", "drop_last", "dataset")

    def __init__(
        self,
        stream: ResumableStream,
        num_workers: int = 0,
        *,
        pool_mb: int | None = None,
        **loader_options: Any,
    ) -> None:
        if not isinstance(stream, ResumableStream):
            raise TypeError(
                "StreamLoader needs an episode dataset or multi-task sampler (a ResumableStream), got "
                f"{type(stream).__name__}; wrap other iterables in a plain DataLoader"
            )
        own = sorted(set(self._OWN) & set(loader_options))
        if own:
            raise TypeError(f"StreamLoader sets {', '.join(own)} itself; leave them out")
        self.stream = stream
        self.num_workers = check_int(num_workers, "num_workers", 0)
        if pool_mb is not None:
            pool_mb = check_int(pool_mb, "pool_mb", 0)
            loader_options["worker_init_fn"] = _WorkerInit(pool_mb, loader_options.get("worker_init_fn"))
        self.loader_options = loader_options
        self._loader: DataLoader | None = None  # built once: persistent workers outlive an iteration

    def __iter__(self) -> Iterator[Any]:
        position = self.stream.position
        position.consumed = 0
        if self.num_workers == 0:
            items: Iterator[Any] = (self.stream.item(epoch, k) for epoch, k in _keys(self.stream))
        else:
            if self._loader is None:
                self._loader = DataLoader(
                    _Items(self.stream),
                    batch_size=None,
                    sampler=_Keys(self.stream),
                    collate_fn=_as_is,
                    num_workers=self.num_workers,
                    **self.loader_options,
                )
            items = iter(self._loader)
        for item in items:
            position.consumed += 1  # counted where it is consumed: here, in the main process
            yield item

    def set_epoch(self, epoch: int) -> None:
        """The stream's `set_epoch()`."""
        self.stream.set_epoch(epoch)

    def state_dict(self) -> dict[str, Any]:
        """The stream's `state_dict()`: where a resumed loop continues."""
        return self.stream.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """The stream's `load_state_dict()`."""
        self.stream.load_state_dict(state)
