"""A training stream that resumes exactly: batch ``k`` is a pure function of ``k``.

A DataLoader prefetches, so the position of its sampler or dataset says how many batches were
*loaded*, not how many were *trained on*. The Lightning modules count the batches their
``training_step`` consumed, save that count in the checkpoint, and start a new
[`EpisodeStream`][EpisodeStream] there when the ``Trainer`` resumes.

Examples:
    >>> list(EpisodeStream(lambda k: k * 10, start=2, stop=5))
    [20, 30, 40]
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

from torch.utils.data import IterableDataset, get_worker_info

from torchcross._checks import check_int
from torchcross.distributed.seeds import rank_and_world_size

__all__ = ["EpisodeStream", "RankMetaBatches"]


class EpisodeStream(IterableDataset):
    """Yields ``batch_at(start)``, ``batch_at(start + 1)``, ... (up to ``stop``, or endlessly).

    DataLoader workers take every ``num_workers``-th batch, so a loader with any number of
    workers yields the batches in order, each once. ``batch_at`` must be picklable for workers
    (a module-level function or an object such as
    [`RankMetaBatches`][RankMetaBatches]).

    Args:
        batch_at: this rank's batch for global step ``k``.
        start: the first step (the number of batches already trained on).
        stop: the step to end before (``None``: endless; let ``Trainer(max_steps=...)`` stop).

    Raises:
        TypeError: ``batch_at`` is not callable.
        ValueError: ``start`` or ``stop`` is negative.
    """

    def __init__(self, batch_at: Callable[[int], Any], start: int = 0, stop: int | None = None) -> None:
        if not callable(batch_at):
            raise TypeError(f"batch_at must be callable (step -> batch), got {type(batch_at).__name__}")
        self.batch_at = batch_at
        self.start = check_int(start, "start", 0)
        self.stop = check_int(stop, "stop", 0, allow_none=True)

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        steps = itertools.count(self.start + worker, workers)
        for k in steps:
            if self.stop is not None and k >= self.stop:
                return
            yield self.batch_at(k)


class RankMetaBatches:
    """``step -> this rank's meta-batch``: consecutive episodes of an indexable episode dataset.

    Global meta-batch ``k`` is episodes ``k * B * W .. (k + 1) * B * W - 1`` of ``dataset``
    (``B`` tasks per rank, ``W`` ranks); rank ``r`` takes the ``r``-th block of ``B``. One
    process with ``tasks_per_rank = B * W`` therefore sees the same global meta-batches, in the
    order the learners' ``slot`` numbering expects (see [`MAML`][torchcross.learners.maml.MAML]).

    Args:
        dataset: ``dataset[i]`` is episode ``i`` (e.g. a
            [`FewShotMetaDataset`][torchcross.data.metadataset.fixed_shot.FewShotMetaDataset] with
            ``length=None``).
        tasks_per_rank: ``B``.
        rank, world_size: default to ``torch.distributed``'s at call time.

    Examples:
        >>> batches = RankMetaBatches(list(range(100)), tasks_per_rank=2, rank=1, world_size=2)
        >>> batches(0), batches(3)
        ([2, 3], [14, 15])
    """

    def __init__(
        self, dataset: Any, tasks_per_rank: int, rank: int | None = None, world_size: int | None = None
    ) -> None:
        if (rank is None) != (world_size is None):
            raise ValueError(f"pass both rank and world_size, or neither; got {rank=}, {world_size=}")
        if rank is not None and world_size is not None and not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got {rank=}, {world_size=}")
        self.dataset = dataset
        self.tasks_per_rank = check_int(tasks_per_rank, "tasks_per_rank", 1)
        self.rank, self.world_size = rank, world_size

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers have no process group: they use the ranks of the process that sent them
        state = self.__dict__.copy()
        if state["rank"] is None:
            state["rank"], state["world_size"] = rank_and_world_size()
        return state

    def __call__(self, step: int) -> list[Any]:
        if self.rank is None or self.world_size is None:
            rank, world = rank_and_world_size()
        else:
            rank, world = self.rank, self.world_size
        first = (step * world + rank) * self.tasks_per_rank
        return [self.dataset[i] for i in range(first, first + self.tasks_per_rank)]
