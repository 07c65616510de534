"""Interleave several iterables into one stream: round-robin or at random.

[`InterleaveDataset`][InterleaveDataset] takes one item from each source in turn;
[`RandomInterleaveDataset`][RandomInterleaveDataset] picks the source of each item
at random, weighted by
how many items each source has left, so an epoch yields every item exactly once and
ends cleanly.

The sources are iterables. A source with ``__len__`` reports its number of items;
one with ``set_epoch`` is told the epoch. How the stream is split across DataLoader
workers and ``torch.distributed`` ranks depends on the sources:

- *planned* sources (such as [`BatchedTaskSource`][torchcross.data.batched_source.BatchedTaskSource]),
  which have ``batch_indices()`` and ``load_batch(indices)``: the combined order is
  planned up front as a pure function of ``(seed, epoch)`` and split between shards,
  each loading only its own items. The stream is then the same with any number of
  workers.
- other `torch.utils.data.IterableDataset` sources are expected to split
  themselves (torchcross's do), and each shard interleaves what its sources give it.
  Explicit ``rank=``/``world_size=`` reach the sources that can be told a shard
  ([`ShardIterable`][ShardIterable]: the episode datasets,
  `BatchedTaskSource`, interleaves); others
  split themselves by ``torch.distributed``.
- any other iterable (e.g. a list) is split by position: every shard walks all of it
  and keeps every ``count``-th item.

For exact resumption mid-epoch, and other weighting policies, use
[`MultiTaskBatchSampler`][torchcross.data.multitask.MultiTaskBatchSampler].
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sized
from typing import Any, cast

import numpy as np
from torch.utils.data import IterableDataset

from torchcross._checks import check_int
from torchcross.data.capabilities import PlannedBatches, ShardIterable, ShardSized, SupportsSetEpoch
from torchcross.data.workers.sharding import (
    ShardPosition,
    check_fresh_copy,
    remember_ranks,
    shard_indices,
    shard_position,
)
from torchcross.sampling.multitask_plan import exhaustive_order, occurrences
from torchcross.sampling.weighting import TaskWeighting

__all__ = ["InterleaveDataset", "RandomInterleaveDataset"]


def _is_planned(source: Any) -> bool:
    return isinstance(source, PlannedBatches)


def _shard_length(source: Any, n: int, position: ShardPosition) -> int:
    """How many of a source's ``n`` items shard ``position`` gets (best knowledge)."""
    if not isinstance(source, IterableDataset):
        return len(range(position.index, n, position.count))
    return int(source.num_batches_in_shard(position)) if isinstance(source, ShardSized) else n


class InterleaveDataset(IterableDataset):
    """Round-robin over several iterables until all are exhausted.

    Args:
        datasets: the sources (iterables; see the module notes on sharding).
        rank, world_size: this process's place among ``torch.distributed`` ranks
            (default: read from ``torch.distributed``; pass them to simulate ranks). They are
            passed on to sources that shard themselves (see the module notes).

    Raises:
        ValueError: if ``datasets`` is empty.
        TypeError: if a source is not iterable.

    Examples:
        >>> list(InterleaveDataset([[1, 2, 3], ["a"], [10, 20]]))
        [1, 'a', 10, 2, 20, 3]
    """

    def __init__(
        self, datasets: Iterable[Iterable[Any]], *, rank: int | None = None, world_size: int | None = None
    ) -> None:
        if isinstance(datasets, (str, bytes)) or not isinstance(datasets, Iterable):
            raise TypeError(f"datasets must be a list of iterables, got {type(datasets).__name__}")
        self.datasets: list[Any] = list(datasets)  # duck-typed: see the capabilities checked below
        if not self.datasets:
            raise ValueError(f"{type(self).__name__} needs at least one source, got an empty list")
        for i, d in enumerate(self.datasets):
            if not isinstance(d, Iterable):
                raise TypeError(f"source {i} of {type(self).__name__} is not iterable: {type(d).__name__}")
        shard_position(rank, world_size)  # validate early
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def __getstate__(self) -> dict[str, Any]:
        return remember_ranks(self.__dict__.copy())

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch``'s order from now on, and pass it on to sources with ``set_epoch``.

        Call it in the main process before the epoch's loop: DataLoader workers started after the call
        follow it (persistent workers keep the copy they started with and refuse to iterate it again).
        """
        self.epoch = check_int(epoch, "epoch", 0)
        for d in self.datasets:
            if isinstance(d, SupportsSetEpoch):
                d.set_epoch(self.epoch)

    def __len__(self) -> int:
        """Items in a whole epoch, over all shards (``TypeError`` if a source has no length)."""
        missing = [i for i, d in enumerate(self.datasets) if not isinstance(d, Sized)]
        if missing:
            raise TypeError(f"sources {missing} of {type(self).__name__} have no len()")
        return sum(len(d) for d in self.datasets)

    # -- planned sources -------------------------------------------------------------------
    def _plan_order(self, counts: np.ndarray) -> np.ndarray:
        rounds = np.arange(int(counts.max()))
        grid = np.where(rounds[:, None] < counts[None, :], np.arange(len(counts))[None, :], -1)
        order = grid.ravel()
        return order[order >= 0]

    def _iter_planned(self, position: ShardPosition) -> Iterator[Any]:
        plans = [d.batch_indices() for d in self.datasets]
        order = self._plan_order(np.array([len(p) for p in plans], dtype=np.int64))
        occ = occurrences(order, len(plans))
        for p in shard_indices(len(order), position):
            source = int(order[p])
            yield self.datasets[source].load_batch(plans[source][occ[p]])

    # -- other sources ---------------------------------------------------------------------
    def _shard_iterators(self, position: ShardPosition, tell: bool) -> list[Iterator[Any]]:
        # tell: the position is not what sources that shard themselves would find on their own
        out = []
        for d in self.datasets:
            if tell and isinstance(d, ShardIterable):
                it = iter(d.iter_shard(position))
            else:
                it = iter(d)
                if not isinstance(d, IterableDataset) and position.count > 1:
                    it = itertools.islice(it, position.index, None, position.count)
            out.append(it)
        return out

    def _iter_generic(self, position: ShardPosition, tell: bool) -> Iterator[Any]:
        iterators = self._shard_iterators(position, tell)
        while iterators:
            alive = []
            for it in iterators:
                try:
                    item = next(it)
                except StopIteration:
                    continue
                alive.append(it)
                yield item
            iterators = alive

    def __iter__(self) -> Iterator[Any]:
        depends = isinstance(self, RandomInterleaveDataset) or any(
            isinstance(d, SupportsSetEpoch) for d in self.datasets
        )
        check_fresh_copy(self, depends_on_epoch=depends)  # at the first item: a worker reports it
        position = shard_position(self.rank, self.world_size, self)
        yield from self._iter(position, tell=self.rank is not None)

    def iter_shard(self, position: ShardPosition) -> Iterator[Any]:
        """Yield the items of shard ``position`` (iterating yields this process and worker's shard).

        Sources that shard themselves ([`ShardIterable`][ShardIterable])
        are told ``position`` too.
        """
        return self._iter(position, tell=True)

    def _iter(self, position: ShardPosition, tell: bool) -> Iterator[Any]:
        if all(_is_planned(d) for d in self.datasets):
            return self._iter_planned(position)
        return self._iter_generic(position, tell)


class RandomInterleaveDataset(InterleaveDataset):
    """Interleave several iterables, picking each item's source at random.

    Each step picks a source with probability proportional to the items it has left
    (from ``len()``; sources without a length count as equally likely), so an epoch
    is a uniformly random interleaving that yields every item once, and ends cleanly.

    Args:
        datasets: the sources, e.g. ``BatchedTaskSource(..., with_task_description=True)``
            objects yielding ``(batch, description)`` pairs.
        seed: the order is a pure function of ``(seed, epoch)``; ``None`` draws a seed
            from the OS at construction (kept in ``self.seed``, so workers agree).
        rank, world_size: as for [`InterleaveDataset`][InterleaveDataset].

    Examples:
        >>> stream = RandomInterleaveDataset([[1, 2, 3], ["a", "b"]], seed=0)
        >>> items = list(stream)
        >>> sorted(map(str, items)), items == list(stream)
        (['1', '2', '3', 'a', 'b'], True)
    """

    def __init__(
        self,
        datasets: Iterable[Iterable[Any]],
        seed: int | None = None,
        *,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        super().__init__(datasets, rank=rank, world_size=world_size)
        if seed is None:
            seed = int(cast(int, np.random.SeedSequence().entropy))
        self.seed = check_int(seed, "seed", 0)

    def _plan_order(self, counts: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.epoch])
        return exhaustive_order(counts, TaskWeighting("proportional"), rng)

    def _iter_generic(self, position: ShardPosition, tell: bool) -> Iterator[Any]:
        iterators = self._shard_iterators(position, tell)
        lengths = [len(d) if isinstance(d, Sized) else None for d in self.datasets]
        known = all(n is not None for n in lengths)
        remaining = np.array([n if n is not None else 1 for n in lengths], dtype=np.float64)
        if known and position.count > 1:  # position-split sources hold about 1/count of their items
            remaining = np.array(
                [_shard_length(d, cast(int, n), position) for d, n in zip(self.datasets, lengths)],
                dtype=np.float64,
            )
        alive = list(range(len(iterators)))
        rng = np.random.default_rng([self.seed, self.epoch, position.index, position.count])
        while alive:
            w = np.maximum(remaining[alive], 0.0) if known else np.ones(len(alive))
            if w.sum() <= 0:  # a source gave more than its len(): carry on evenly
                w = np.ones(len(alive))
            k = int(rng.choice(len(alive), p=w / w.sum()))
            source = alive[k]
            try:
                item = next(iterators[source])
            except StopIteration:
                del alive[k]
                continue
            remaining[source] -= 1
            yield item
