"""Splitting work across DataLoader workers and ``torch.distributed`` ranks.

Every iterable dataset in torchcross calls `shard_position()` and takes its share of
a global sequence of items with `shard_indices()` instead of repeating all items in
every worker. Rank ``r`` of ``W`` takes items ``r, r + W, r + 2W, ...``, whatever its number
of workers: its ``k`` workers share them round-robin (worker ``w`` takes ``r + W*w``, then every
``W*k``-th), so the DataLoader, which reads its workers in turn, hands the rank its items in order.

A DataLoader worker started with ``spawn`` or ``forkserver`` has no process group of its
own, so ``torch.distributed`` cannot tell it its rank. Datasets therefore pickle the rank
and world size of the process that sends them (`remember_ranks()` in their
``__getstate__``), and a worker without a process group uses those.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TypeVar

import torch
import torch.utils.data

from torchcross._checks import check_int
from torchcross.data.workers.position import StreamPosition

__all__ = [
    "ResumableStream",
    "ShardPosition",
    "Shardable",
    "check_fresh_copy",
    "remember_ranks",
    "shard_indices",
    "shard_position",
    "shard_ranks",
]

_REMEMBERED = "_torchcross_rank_world"


class ShardPosition(tuple):
    """``(index, count)``: this process-and-worker's shard and the total number of shards."""

    __slots__ = ()

    def __new__(cls, index: int, count: int) -> ShardPosition:
        return super().__new__(cls, (index, count))

    # ``index`` and ``count`` name the fields, shadowing tuple's methods of the same names
    @property
    def index(self) -> int:  # type: ignore[override]
        return self[0]

    @property
    def count(self) -> int:  # type: ignore[override]
        return self[1]


def _initialised() -> bool:
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized()


def remember_ranks(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` (a ``__getstate__`` dict) with this process's rank and world size, if distributed.

    Examples:
        >>> remember_ranks({"seed": 0})  # no process group here: unchanged
        {'seed': 0}
    """
    if _initialised():
        dist = torch.distributed
        return {**state, _REMEMBERED: (dist.get_rank(), dist.get_world_size())}
    return state


def _dist_rank_world(rank: int | None, world_size: int | None, owner: object) -> tuple[int, int]:
    if (rank is None) != (world_size is None):
        raise ValueError(
            f"pass both rank and world_size, or neither; got rank={rank}, world_size={world_size}"
        )
    if rank is not None and world_size is not None:
        return rank, world_size
    if _initialised():
        dist = torch.distributed
        return dist.get_rank(), dist.get_world_size()
    remembered = getattr(owner, "__dict__", {}).get(_REMEMBERED)
    if remembered is not None and torch.utils.data.get_worker_info() is not None:
        return remembered  # a spawned worker of a distributed process
    return 0, 1


def shard_ranks(
    rank: int | None = None, world_size: int | None = None, owner: object = None
) -> tuple[int, int]:
    """``(rank, world_size)`` as `shard_position()` reads them, without the DataLoader workers.

    For streams that split something other than their items over the ranks (the examples of each batch:
    ``MultiTaskBatchSampler(shard_by="example")``) and still split their items over workers.

    Examples:
        >>> shard_ranks(), shard_ranks(rank=1, world_size=2)  # no process group here
        ((0, 1), (1, 2))
    """
    rank, world_size = _dist_rank_world(rank, world_size, owner)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    return rank, world_size


def shard_position(
    rank: int | None = None, world_size: int | None = None, owner: object = None
) -> ShardPosition:
    """Return this process-and-worker's shard among ``world_size * num_workers`` shards.

    Worker ``w`` of rank ``r`` gets ``ShardPosition(r + world_size * w, world_size * num_workers)``:
    the rank's items (``r, r + world_size, ...``) dealt round-robin to its workers.

    ``rank`` and ``world_size`` default to ``torch.distributed``'s when it is
    initialised (else a single process); pass both to simulate ranks in tests. In a
    DataLoader worker without a process group, the ranks that ``owner`` (the dataset)
    remembered when it was pickled for the worker are used (`remember_ranks()`).

    Examples:
        >>> shard_position(rank=1, world_size=4)  # outside a DataLoader worker
        (1, 4)
    """
    rank, world_size = shard_ranks(rank, world_size, owner)
    info = torch.utils.data.get_worker_info()
    worker_id, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
    return ShardPosition(rank + world_size * worker_id, world_size * num_workers)


def shard_indices(n: int, position: ShardPosition) -> range:
    """The items ``0..n-1`` of shard ``position``: strided, so shards differ in size by at most one.

    Examples:
        >>> list(shard_indices(7, ShardPosition(1, 3)))
        [1, 4]
    """
    if n < 0:
        raise ValueError(f"need n >= 0 items, got n={n}")
    index, count = position
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"need 0 <= index < count in the shard position, got {tuple(position)}")
    return range(index, n, count)


_S = TypeVar("_S", bound="Shardable")


class Shardable:
    """Mixin of the datasets that split themselves over ranks: ``shard_over()`` and its settings.

    Examples:
        >>> class Items(Shardable):
        ...     pass
        >>> items = Items().shard_over(rank=1, world_size=2, even_shards=True)
        >>> items.rank, items.world_size, items.even_shards
        (1, 2, True)
    """

    rank: int | None = None
    world_size: int | None = None
    even_shards: bool = False

    def shard_over(
        self: _S, rank: int | None = None, world_size: int | None = None, *, even_shards: bool = False
    ) -> _S:
        """Iterate as rank ``rank`` of ``world_size`` (default: ``torch.distributed``'s); return ``self``.

        With ``even_shards`` every shard (rank and DataLoader worker) of an epoch yields the
        same number of items: the last ``len % shards`` items are left out, so ranks that
        synchronise once per item never wait on one another at the epoch's end.

        Raises:
            ValueError: only one of ``rank`` and ``world_size``, or ``rank`` outside ``0..world_size-1``.
            TypeError: ``even_shards`` is not a bool.
        """
        shard_position(rank, world_size)  # validate now
        if not isinstance(even_shards, bool):
            raise TypeError(f"even_shards must be a bool, got {even_shards!r}")
        self.rank, self.world_size, self.even_shards = rank, world_size, even_shards
        return self


def _plain(value: Any) -> Any:
    """Tuples as lists and mappings as dicts, as after a JSON round trip."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class ResumableStream:
    """Mixin of seeded, sharded streams: item ``k`` of an epoch is a pure function of ``(seed, epoch, k)``.

    The global item ``p`` of an epoch goes to rank ``p % world_size``, so after every rank
    took ``n`` items the first ``n * world_size`` are done: the epoch and that position are all
    a resumed loop needs. They live in one `StreamPosition` (``self.position``), in the main
    process: iterating the stream there (or through
    [`StreamLoader`][torchcross.data.stream.StreamLoader], with DataLoader workers) counts the
    items the loop consumed, so `state_dict()` needs no count from the caller. Subclasses set
    ``self.position`` in ``__init__`` and provide `_item()` (item ``k`` of the epoch being drawn,
    `drawn_epoch()`), ``_state_config()`` (what the items depend on) and ``_num_positions()``
    (items per epoch, ``None`` for an endless stream).
    """

    _STATE_MISMATCH = "state dict comes from a different configuration"
    _ITEMS = "items"
    position: StreamPosition
    rank: int | None
    world_size: int | None
    even_shards: bool = False

    @property
    def epoch(self) -> int:
        """The epoch whose items iteration yields (assigning it calls `set_epoch()`)."""
        return self.position.epoch

    @epoch.setter
    def epoch(self, epoch: int) -> None:
        self.set_epoch(epoch)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch to iterate; a new epoch starts from its first item.

        Setting the current epoch again keeps a position restored by `load_state_dict()`, so a loop
        calling ``set_epoch(epoch)`` resumes correctly. Call it in the main process, before the epoch's
        loop starts (like ``DistributedSampler.set_epoch``).
        """
        self.position.set_epoch(check_int(epoch, "epoch", 0))
        self._epoch_selected(self.position.epoch)

    def _epoch_selected(self, epoch: int) -> None:
        """Hook: pass ``epoch`` on to members (multi-task streams)."""

    def _state_config(self) -> Mapping[str, Any]:  # pragma: no cover - provided by the subclass
        raise NotImplementedError

    def _num_positions(self) -> int | None:  # pragma: no cover - provided by the subclass
        raise NotImplementedError

    def _item(self, index: int) -> Any:  # pragma: no cover - provided by the subclass
        raise NotImplementedError

    def drawn_epoch(self) -> int:
        """The epoch whose items are drawn now: ``epoch``, or the one `item()` asks for."""
        drawing = self.__dict__.get("_drawing_epoch")
        return self.position.epoch if drawing is None else drawing

    def item(self, epoch: int, index: int) -> Any:
        """Global item ``index`` of ``epoch``: a pure function of the configuration, ``epoch`` and ``index``.

        Leaves the position alone (what DataLoader workers call, whatever epoch the main process is at).
        """
        previous = self.__dict__.get("_drawing_epoch")
        self.__dict__["_drawing_epoch"] = check_int(epoch, "epoch", 0)
        try:
            return self._item(index)
        finally:
            self.__dict__["_drawing_epoch"] = previous

    def shard_items(self, shard: ShardPosition) -> Iterable[int]:
        """The global items of ``shard`` from the position's start: ``start + shard.index``, then every
        ``shard.count``-th (with ``even_shards``, the epoch's last ``total % shard.count`` items left out)."""
        first, total = self.position.start + shard.index, self._num_positions()
        if total is None:
            return itertools.count(first, shard.count)
        return range(first, total - total % shard.count if self.even_shards else total, shard.count)

    def unit_shard(self) -> ShardPosition:
        """The shard of the global items this process (or DataLoader worker) takes: by default
        `shard_position()`, the rank's items dealt to its workers.

        A stream whose every rank takes every item (and splits something inside the items, as
        ``MultiTaskBatchSampler(shard_by="example")``) returns the workers' shard alone.
        """
        return shard_position(self.rank, self.world_size, self)

    def __iter__(self) -> Iterator[Any]:
        return self.iter_shard(self.unit_shard())

    def iter_shard(self, position: ShardPosition) -> Iterator[Any]:
        """Yield the items of shard ``position`` of the current epoch, from the position's start.

        In the main process each item taken counts as consumed (`state_dict()`); a DataLoader
        worker iterates the copy made when its iterator started.
        """
        in_process = torch.utils.data.get_worker_info() is None
        if in_process:
            self.position.consumed = 0
        check_fresh_copy(self)
        epoch = self.position.epoch
        for k in self.shard_items(position):
            item = self.item(epoch, k)
            if in_process:
                self.position.consumed += 1
            yield item

    def state_dict(self) -> dict[str, Any]:
        """Where iteration stands: epoch, global position and the configuration (plain values).

        The position counts the items this rank's loop took since its iteration started: iterate the
        stream in this process, or through [`StreamLoader`][torchcross.data.stream.StreamLoader] with
        DataLoader workers (a plain DataLoader's workers count nothing here).
        """
        ranks = self.unit_shard().count  # outside a worker: the ranks that share the items
        position = self.position.resume_point(ranks)
        total = self._num_positions()
        if total is not None:
            position = min(position, total)
        return {"epoch": int(self.epoch), "position": position, "config": _plain(self._state_config())}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from `state_dict()`: the next iteration continues where the saved one stopped.

        Raises:
            ValueError: the state is malformed, or was saved with another configuration (the
                message names each differing setting).
        """
        if not isinstance(state, Mapping) or not {"epoch", "position", "config"} <= set(state):
            raise ValueError(
                f"not a {type(self).__name__} state dict (need epoch, position, config): {state!r}"
            )
        if not isinstance(state["config"], Mapping):
            raise ValueError(f"state['config'] must be a dict, got {state['config']!r}")
        mine, theirs = _plain(self._state_config()), _plain(state["config"])
        diffs = [f"{k}: saved {theirs.get(k)!r}, here {mine[k]!r}" for k in mine if theirs.get(k) != mine[k]]
        if diffs:
            raise ValueError(f"{self._STATE_MISMATCH}; " + "; ".join(diffs))
        epoch = check_int(state["epoch"], "state['epoch']", 0)
        position = check_int(state["position"], "state['position']", 0)
        total = self._num_positions()
        if total is not None and position > total:
            raise ValueError(f"state position {position} is beyond the epoch's {total} {self._ITEMS}")
        self.set_epoch(epoch)
        self.position.restore(epoch, position)


_ITERATED = "_torchcross_worker_iterated"


def check_fresh_copy(owner: Any, depends_on_epoch: bool = True) -> None:
    """In a DataLoader worker, refuse to iterate the same copy twice (``persistent_workers=True``).

    A persistent worker keeps the copy of ``owner`` made when it started, so epochs and resume
    positions set later in the main process cannot reach it; rather than repeat stale items, say so.
    """
    if not depends_on_epoch or torch.utils.data.get_worker_info() is None:
        return
    if owner.__dict__.get(_ITERATED):
        raise RuntimeError(
            f"{type(owner).__name__} iterated again in a persistent DataLoader worker, which keeps the copy "
            "made when it started: set_epoch() and load_state_dict() calls made since cannot reach it. "
            "Use persistent_workers=False, or, for an episode dataset or multi-task sampler, "
            "torchcross.data.StreamLoader(stream, num_workers=..., persistent_workers=True), which sends "
            "each worker the (epoch, index) of its items"
        )
    owner.__dict__[_ITERATED] = True
