"""Batches of one task source as an iterable dataset, split across workers and ranks.

[`BatchedTaskSource`][BatchedTaskSource] keeps the torchcross 0.0.6 parameters
and import path ([`torchcross.data.sources`][torchcross.data.sources]) and fixes its bugs: the batch order is
a pure function of ``(seed, epoch)``, and DataLoader workers and distributed ranks each produce their own
share of the batches instead of all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from torch.utils.data import IterableDataset

from torchcross._checks import check_int
from torchcross.data.capabilities import BatchReadable
from torchcross.data.collate import identity, stack
from torchcross.data.sources import TaskSource, canonical_labels, check_task_source
from torchcross.data.workers.sharding import (
    Shardable,
    ShardPosition,
    check_fresh_copy,
    remember_ranks,
    shard_indices,
    shard_position,
)
from torchcross.distributed.seeds import shared_seed
from torchcross.tasks.labels import count_samples_per_class, samples_per_class_array

__all__ = ["BatchedTaskSource"]

_MEMO = "_tc_batch_memo"


def _check_flag(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__}: {value!r}")
    return bool(value)


class BatchedTaskSource(Shardable, TaskSource, IterableDataset):
    """An iterable dataset of batches drawn from one task source.

    Each epoch splits the examples of ``task_source`` into batches of ``batch_size``
    (shuffled or in order) and yields ``collate_fn([task_source[i] for i in batch])``,
    as a ``(batch, task_description)`` pair when ``with_task_description`` is set.
    The default ``collate_fn`` is [`identity()`][identity] (a list
    of pairs, as in torchcross 0.0.6). With ``collate_fn=stack`` and a source that
    has ``get_batch``, a batch is read in one ``get_batch`` call (same result).

    Determinism and sharding: the batches of an epoch are a pure function of ``(seed, epoch)``. Call
    [`set_epoch()`][BatchedTaskSource.set_epoch] before each epoch for a new
    order (like ``DistributedSampler``; DataLoader workers started after the call follow it, and persistent
    workers, which keep the copy they started with, refuse to repeat a shuffled epoch). Iterating yields only
    this process-and-worker's share (batches ``k, k + S, k + 2S, ...`` of ``S`` shards), so a DataLoader with
    any number of workers, on any number of ranks, produces every batch exactly once; with one rank its order
    equals that of ``num_workers=0``. ``len()`` is the total number of batches, and ``num_batches_in_shard()``
    (below) gives one shard's.

    For datasets that schedule batches themselves (e.g. ``RandomInterleaveDataset``),
    [`batch_indices()`][BatchedTaskSource.batch_indices] returns all batches of
    an epoch as index arrays (unsharded),
    [`load_batch()`][BatchedTaskSource.load_batch] turns one into the element
    iteration would yield, and
    [`iter_batches()`][BatchedTaskSource.iter_batches] yields all elements of
    an epoch without sharding.

    Args:
        task_source: a map-style task source (also a 0.0.6-style one).
        batch_size: examples per batch.
        shuffle: shuffle the examples each epoch (else batches follow source order).
        drop_last: drop the last batch if it is smaller than ``batch_size``.
        collate_fn: turns a list of examples into a batch; ``None`` means ``identity``.
        with_task_description: yield ``(batch, task_description)`` pairs.
        seed: the shuffling seed. ``None`` draws one from numpy's OS entropy at
            construction; it is stored in ``seed`` and travels with the object to workers,
            so they all agree. Under ``torch.distributed`` rank 0 draws it and broadcasts it
            ([`torchcross.distributed.shared_seed()`][shared_seed]), so all ranks
            agree too.

    Raises:
        TypeError: for an argument of the wrong type (e.g. a non-task-source, a float batch size).
        ValueError: for ``batch_size < 1``, a negative seed, or a source that gives no batch
            (empty, or smaller than ``batch_size`` with ``drop_last``).

    Examples:
        >>> import torch
        >>> from torchcross.tasks.task import TaskDescription
        >>> from torchcross.data.sources import TensorTaskSource
        >>> d = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b"}, "toy")
        >>> src = TensorTaskSource(torch.arange(5.0), [0, 1, 0, 1, 1], d)
        >>> batched = BatchedTaskSource(src, batch_size=2, collate_fn=stack, seed=0)
        >>> len(batched), [x.tolist() for x, y in batched]
        (3, [[0.0, 3.0], [2.0, 1.0], [4.0]])
        >>> batched.set_epoch(1)
        >>> [x.tolist() for x, y in batched]
        [[4.0, 3.0], [2.0, 0.0], [1.0]]
    """

    def __init__(
        self,
        task_source: Any,
        batch_size: int,
        shuffle: bool = True,
        drop_last: bool = False,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        with_task_description: bool = False,
        *,
        seed: int | None = None,
    ) -> None:
        check_task_source(task_source, "BatchedTaskSource")
        if collate_fn is not None and not callable(collate_fn):
            raise TypeError(f"collate_fn must be callable or None, got {type(collate_fn).__name__}")
        self.task_source = task_source
        self.task_description = task_source.task_description
        self.batch_size = check_int(batch_size, "batch_size", 1)
        self.shuffle = _check_flag(shuffle, "shuffle")
        self.drop_last = _check_flag(drop_last, "drop_last")
        self.collate_fn = identity if collate_fn is None else collate_fn
        self.with_task_description = _check_flag(with_task_description, "with_task_description")
        self.seed = shared_seed(seed)
        self.epoch = 0
        self.num_examples = len(task_source)
        if len(self) == 0:
            raise ValueError(
                f"task source {self.task_description.task_identifier!r} gives no batch: it has "
                f"{self.num_examples} examples, batch_size={batch_size}, drop_last={drop_last}; "
                "use a smaller batch_size or drop_last=False"
            )

    def __len__(self) -> int:
        """The total number of batches per epoch (over all workers and ranks)."""
        n, b = self.num_examples, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop(_MEMO, None)
        return remember_ranks(state)

    def _shard(self, n: int, position: ShardPosition) -> range:
        return shard_indices(n - n % position.count if self.even_shards else n, position)

    def set_epoch(self, epoch: int) -> None:
        """Use the batch order of ``epoch`` from now on (no effect without ``shuffle``)."""
        self.epoch = check_int(epoch, "epoch", 0)

    def class_counts(self, neg: bool = False) -> dict[int, int]:
        """Examples per class key in the underlying source (see
        [`TaskSource.class_counts()`][TaskSource.class_counts])."""
        return count_samples_per_class(canonical_labels(self.task_source), self.task_description, neg=neg)

    def get_num_samples_per_class(self, neg: bool = False) -> np.ndarray:
        """[`class_counts()`][BatchedTaskSource.class_counts] as an array (see
        [`TaskSource.get_num_samples_per_class()`][TaskSource.get_num_samples_per_class])."""
        return samples_per_class_array(canonical_labels(self.task_source), self.task_description, neg=neg)

    def batch_indices(self, epoch: int | None = None) -> list[np.ndarray]:
        """All batches of ``epoch`` (default: the current one) as arrays of source indices.

        Unsharded and deterministic: the same ``(seed, epoch)`` always gives the same
        list. The last epoch's list is memoised; treat the arrays as read-only.
        """
        epoch = self.epoch if epoch is None else check_int(epoch, "epoch", 0)
        key = (epoch if self.shuffle else None, self.seed, self.batch_size, self.drop_last, self.num_examples)
        memo = self.__dict__.get(_MEMO)
        if memo is not None and memo[0] == key:
            return memo[1]
        n = self.num_examples
        if self.shuffle:
            rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(epoch,)))
            order = rng.permutation(n)
        else:
            order = np.arange(n)
        batches = [
            order[i : i + self.batch_size] for i in range(0, len(self) * self.batch_size, self.batch_size)
        ]
        self.__dict__[_MEMO] = (key, batches)
        return batches

    def load_batch(self, indices: Any) -> Any:
        """Read and collate the examples at ``indices``: one element as iteration yields it."""
        batch: Any
        if self.collate_fn is stack and isinstance(self.task_source, BatchReadable):
            batch = self.task_source.get_batch(np.asarray(indices, dtype=np.int64))
        else:
            batch = self.collate_fn([self.task_source[int(i)] for i in indices])
        return (batch, self.task_description) if self.with_task_description else batch

    def iter_batches(self, epoch: int | None = None) -> Iterator[Any]:
        """Yield every batch of ``epoch`` (default: the current one), without sharding."""
        for indices in self.batch_indices(epoch):
            yield self.load_batch(indices)

    def iter_shard(self, position: ShardPosition, epoch: int | None = None) -> Iterator[Any]:
        """Yield the batches of shard ``position`` (see `torchcross.data.workers.sharding`)."""
        batches = self.batch_indices(epoch)
        for k in self._shard(len(batches), position):
            yield self.load_batch(batches[k])

    def num_batches_in_shard(self, position: ShardPosition | None = None) -> int:
        """How many batches shard ``position`` (default: this process and worker) yields."""
        position = shard_position(self.rank, self.world_size, self) if position is None else position
        return len(self._shard(len(self), position))

    def __iter__(self) -> Iterator[Any]:
        check_fresh_copy(self, depends_on_epoch=self.shuffle)  # at the first item: a worker reports it
        yield from self.iter_shard(shard_position(self.rank, self.world_size, self))
