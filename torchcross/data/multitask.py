"""Multi-task streams: batches or meta-batches of episodes drawn from many tasks.

[`MultiTaskBatchSampler`][MultiTaskBatchSampler] yields ``(batch, TaskDescription)``
pairs, each batch from one task (multi-domain multi-task pre-training: one task per update, with that task's
head). [`MultiTaskEpisodeSampler`][MultiTaskEpisodeSampler] yields meta-batches of
episodes drawn from several episode datasets (meta-training over many tasks).

Both are `torch.utils.data.IterableDataset` objects whose stream is a pure
function of ``(seed, epoch)``:

- ``mode="epoch"``: every item of every task exactly once per epoch; each step draws a
  task by the weighting policy applied to what remains.
- ``mode="infinite"``: each draw picks a task independently with the policy's fixed
  probabilities (see [`torchcross.sampling.weighting`][torchcross.sampling.weighting]); within a task, items
  are taken in seeded cycles through all its items. ``length=L`` makes epochs of ``L`` items, each epoch its
  own stream.

Work is split across DataLoader workers and ``torch.distributed`` ranks with nothing
repeated and nothing lost: global item ``p`` goes to rank ``p % world_size``, and a
rank's items go round-robin to its workers, so the DataLoader hands a rank its items
in stream order whatever the number of workers. ``MultiTaskBatchSampler(shard_by="example")``
splits each batch instead: every rank draws every batch of the global stream and takes its
part of the examples, so ``R`` ranks train on the batches of one process (see the class).
[`state_dict()`][torchcross.data.workers.sharding.ResumableStream.state_dict] records how far the
stream was consumed; [`load_state_dict()`][torchcross.data.workers.sharding.ResumableStream.load_state_dict]
resumes exactly there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from torch import Tensor
from torch.utils.data import get_worker_info

from torchcross._checks import check_int
from torchcross.data.capabilities import BatchReadable, MapStyle
from torchcross.data.collate import stack
from torchcross.data.multitask_stream import MAX_PLAN, MultiSourceStream, named
from torchcross.data.workers.sharding import ShardPosition, shard_ranks

__all__ = ["MultiTaskBatchSampler", "MultiTaskEpisodeSampler"]

_SHARD_BY = ("batch", "example")


class MultiTaskBatchSampler(MultiSourceStream):
    """Batches from many task sources, one task per batch, yielded with the task's description.

    Args:
        sources: map-style task sources (with ``task_description``), as a list or a
            ``{name: source}`` dict (names key explicit weights; a list is named by the
            sources' task identifiers).
        batch_size: examples per batch.
        weighting: ``"proportional"`` (default), ``"uniform"``, ``"temperature"`` or
            ``"explicit"``, applied to the tasks' numbers of batches.
        temperature: ``T`` for ``weighting="temperature"``.
        weights: per-task weights (list or ``{name: weight}``) for ``"explicit"``.
        mode: ``"epoch"`` (every batch once) or ``"infinite"`` (independent draws).
        length: batches per epoch in ``"infinite"`` mode; ``None`` for an endless stream.
        shuffle: shuffle each task's examples (else batches take them in order).
        drop_last: drop each task's last, smaller batch.
        collate_fn: turns a list of ``source[i]`` into a batch; default
            [`stack()`][stack] (``(inputs, labels)`` tensors), read in one
            ``source.get_batch(indices)`` call when the source has one.
        with_task_description: yield ``(batch, description)`` (default) or the batch alone.
        seed: the stream is a pure function of ``(seed, epoch)``.
        rank, world_size: this process's place among ``torch.distributed`` ranks
            (default: read from ``torch.distributed``; pass them to simulate ranks).
        shard_by: how the ranks share the stream. ``"batch"`` (default): whole batches go
            round-robin to the ranks (batch ``p`` to rank ``p % world_size``), so one update of
            ``R`` ranks trains on ``R`` batches, usually of ``R`` different tasks.
            ``"example"``: ``batch_size`` is the global batch; every rank draws every batch of
            the stream and takes its contiguous part of its examples (as ``numpy.array_split``:
            the first ``n % R`` ranks one more), so ``R`` ranks train on exactly the batches of
            one process. Each item is then ``(batch, description, weight)``, ``weight`` being
            ``R * n_rank / n``: multiply the rank's mean loss by it, and the gradient averaged over
            the ranks is the gradient of the global batch's mean loss (``1.0`` on one process and
            whenever the batch splits evenly; ``0.0`` for a rank whose part is empty, a batch of
            zero examples: skip its forward pass). See docs/scaling-out.md for BatchNorm.

    Raises:
        ValueError: no sources, a source without batches, bad sizes, weights or modes.
        TypeError: a source without a ``task_description``.

    Examples:
        >>> import torch
        >>> from torchcross.tasks.task import TaskDescription
        >>> from torchcross.data.sources import TensorTaskSource
        >>> def source(name, n):
        ...     d = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"}, name)
        ...     return TensorTaskSource(torch.randn(n, 3), torch.arange(n) % 2, d)
        >>> sampler = MultiTaskBatchSampler([source("a", 8), source("b", 4)], batch_size=4, seed=0)
        >>> [desc.task_identifier for (x, y), desc in sampler]
        ['b', 'a', 'a']
        >>> (x, y), desc = next(iter(sampler))
        >>> len(sampler), x.shape, desc.task_identifier
        (3, torch.Size([4, 3]), 'b')

        Two ranks sharing batches of 4 by example (rank 1's view):

        >>> sharded = MultiTaskBatchSampler(
        ...     [source("a", 8), source("b", 3)], 4, seed=0, shard_by="example", rank=1, world_size=2
        ... )
        >>> [(desc.task_identifier, len(y), weight) for (x, y), desc, weight in sharded]
        [('b', 1, 0.6666666666666666), ('a', 2, 1.0), ('a', 2, 1.0)]
    """

    def __init__(
        self,
        sources: Sequence[Any] | Mapping[str, Any],
        batch_size: int,
        *,
        weighting: str | None = None,
        temperature: float | None = None,
        weights: Mapping[str, float] | Sequence[float] | None = None,
        mode: str = "epoch",
        length: int | None = None,
        shuffle: bool = True,
        drop_last: bool = False,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        with_task_description: bool = True,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        shard_by: str = "batch",
    ) -> None:
        names, self.sources = named(sources, "sources")
        if shard_by not in _SHARD_BY:
            raise ValueError(
                f"shard_by must be one of {list(_SHARD_BY)}, got {shard_by!r}: 'batch' deals whole batches "
                "to the ranks, 'example' splits every batch over them"
            )
        self.shard_by = shard_by
        self.batch_size = check_int(batch_size, "batch_size", 1)
        self.descriptions = []
        for name, src in zip(names, self.sources):
            desc = getattr(src, "task_description", None)
            if desc is None:
                raise TypeError(f"source {name!r} ({type(src).__name__}) has no task_description")
            self.descriptions.append(desc)
        self.num_examples = [len(s) for s in self.sources]
        sizes = [n // batch_size if drop_last else -(-n // batch_size) for n in self.num_examples]
        empty = [(nm, n) for nm, n, s in zip(names, self.num_examples, sizes) if s == 0]
        if empty:
            raise ValueError(
                f"sources without a single batch (name, examples): {empty} with batch_size={batch_size}, "
                f"drop_last={drop_last}; drop them or lower batch_size"
            )
        if collate_fn is not None and not callable(collate_fn):
            raise TypeError(f"collate_fn must be callable or None, got {type(collate_fn).__name__}")
        self.collate_fn = stack if collate_fn is None else collate_fn
        self.with_task_description = bool(with_task_description)
        super().__init__(
            names,
            sizes,
            weighting=weighting,
            temperature=temperature,
            weights=weights,
            mode=mode,
            length=length,
            shuffle=shuffle,
            drop_last=drop_last,
            seed=seed,
            rank=rank,
            world_size=world_size,
        )

    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "batch_size": self.batch_size, "num_examples": list(self.num_examples)}

    def _members(self) -> list[Any]:
        return self.sources

    def unit_shard(self) -> ShardPosition:
        """This process's shard of the batches: with ``shard_by="example"`` every rank takes every batch
        (split over its DataLoader workers only); else the rank's batches (`shard_position()`)."""
        if self.shard_by == "batch":
            return super().unit_shard()
        shard_ranks(self.rank, self.world_size, self)  # validate
        info = get_worker_info()
        return ShardPosition(info.id, info.num_workers) if info is not None else ShardPosition(0, 1)

    def example_share(self, n: int) -> tuple[slice, float]:
        """This rank's part of a global batch of ``n`` examples and its loss weight (``shard_by="example"``).

        The part is contiguous; the first ``n % R`` of ``R`` ranks take one example more. The weight
        ``R * len(part) / n`` makes the mean over ranks of ``weight * (mean loss of the part)`` the
        mean loss of the whole batch.

        Examples:
            >>> from types import SimpleNamespace
            >>> share = MultiTaskBatchSampler.example_share
            >>> [share(SimpleNamespace(rank=r, world_size=2), 3) for r in (0, 1)]
            [(slice(0, 2, None), 1.3333333333333333), (slice(2, 3, None), 0.6666666666666666)]
        """
        rank, world = shard_ranks(self.rank, self.world_size, self)
        small, extra = divmod(n, world)
        start = rank * small + min(rank, extra)
        stop = start + small + (1 if rank < extra else 0)
        return slice(start, stop), (world * (stop - start) / n if n else 0.0)

    def batch_indices(self, task: int, occurrence: int) -> np.ndarray:
        """Example indices of the ``occurrence``-th batch drawn from task ``task`` this epoch."""
        n, b = self.num_examples[task], self.batch_size
        cycle, j = divmod(int(occurrence), self.sizes[task])
        return self._permutation(task, cycle, n)[j * b : min((j + 1) * b, n)]

    def _load_unit(self, tasks: np.ndarray, occ: np.ndarray) -> Any:
        task = int(tasks[0])
        idx = self.batch_indices(task, int(occ[0]))
        weight = None
        if self.shard_by == "example":
            part, weight = self.example_share(len(idx))
            empty = part.start == part.stop
            idx = idx[:1] if empty else idx[part]  # an empty part: one example read, then none kept
        src = self.sources[task]
        if self.collate_fn is stack and isinstance(src, BatchReadable):
            batch = src.get_batch(idx)
        else:
            batch = self.collate_fn([src[int(i)] for i in idx])
        if weight is None:
            return (batch, self.descriptions[task]) if self.with_task_description else batch
        if empty:
            batch = _no_rows(batch)
        return (batch, self.descriptions[task], weight) if self.with_task_description else (batch, weight)


def _no_rows(batch: Any) -> Any:
    """``batch`` with zero rows: every tensor in it (nested in tuples, lists and dicts) sliced to ``[:0]``."""
    if isinstance(batch, Tensor):
        return batch[:0]
    if isinstance(batch, Mapping):
        return {k: _no_rows(v) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a named tuple
        return type(batch)(*(_no_rows(v) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(_no_rows(v) for v in batch)
    return batch


class MultiTaskEpisodeSampler(MultiSourceStream):
    """Meta-batches of episodes drawn from several episode datasets.

    Each element of a meta-batch is drawn independently: a dataset by the weighting
    policy, then an episode of it (``dataset[i]``, a [`Task`][torchcross.tasks.task.Task]).

    Args:
        datasets: map-style datasets of tasks (``len`` and ``__getitem__``), as a list or
            a ``{name: dataset}`` dict.
        meta_batch_size: episodes per meta-batch.
        weighting, temperature, weights, mode, length, seed, rank, world_size: as for
            [`MultiTaskBatchSampler`][MultiTaskBatchSampler]; ``length`` counts
            meta-batches.
        shuffle: visit each dataset's episode indices in a seeded random order (else in
            index order, which is fine when episodes are already random by index).
        drop_last: drop a last, smaller meta-batch (``mode="epoch"``).
        collate_fn: turns the list of episodes into the yielded meta-batch (default: the list).

    Examples:
        >>> class Episodes:
        ...     def __init__(self, name, n):
        ...         self.name, self.n = name, n
        ...
        ...     def __len__(self):
        ...         return self.n
        ...
        ...     def __getitem__(self, i):
        ...         return f"{self.name}{i}"
        >>> sampler = MultiTaskEpisodeSampler({"a": Episodes("a", 3), "b": Episodes("b", 3)}, 2, seed=1)
        >>> sorted(e for meta_batch in sampler for e in meta_batch)
        ['a0', 'a1', 'a2', 'b0', 'b1', 'b2']
    """

    def __init__(
        self,
        datasets: Sequence[Any] | Mapping[str, Any],
        meta_batch_size: int,
        *,
        weighting: str | None = None,
        temperature: float | None = None,
        weights: Mapping[str, float] | Sequence[float] | None = None,
        mode: str = "epoch",
        length: int | None = None,
        shuffle: bool = True,
        drop_last: bool = False,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        names, self.datasets = named(datasets, "datasets")
        self.meta_batch_size = self._draws_per_unit = check_int(meta_batch_size, "meta_batch_size", 1)
        sizes = []
        for name, ds in zip(names, self.datasets):
            if not isinstance(ds, MapStyle):
                raise TypeError(f"episode dataset {name!r} must be map-style (__len__ and __getitem__)")
            n = len(ds)
            if n < 1:
                raise ValueError(f"episode dataset {name!r} is empty")
            if shuffle and n > MAX_PLAN:
                raise ValueError(
                    f"episode dataset {name!r} has {n} episodes, too many to shuffle; pass shuffle=False"
                )
            sizes.append(n)
        self.collate_fn = collate_fn
        super().__init__(
            names,
            sizes,
            weighting=weighting,
            temperature=temperature,
            weights=weights,
            mode=mode,
            length=length,
            shuffle=shuffle,
            drop_last=drop_last,
            seed=seed,
            rank=rank,
            world_size=world_size,
        )

    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "meta_batch_size": self.meta_batch_size}

    def _members(self) -> list[Any]:
        return self.datasets

    def episode_index(self, dataset: int, occurrence: int) -> int:
        """The episode index of the ``occurrence``-th draw from ``dataset`` this epoch."""
        cycle, j = divmod(int(occurrence), self.sizes[dataset])
        return int(self._permutation(dataset, cycle, self.sizes[dataset])[j]) if self.shuffle else j

    def _load_unit(self, tasks: np.ndarray, occ: np.ndarray) -> Any:
        episodes = [
            self.member_item(self.datasets[int(d)], self.episode_index(int(d), int(k)))
            for d, k in zip(tasks, occ)
        ]
        return self.collate_fn(episodes) if self.collate_fn is not None else episodes
