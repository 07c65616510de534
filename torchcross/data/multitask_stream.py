"""The machinery shared by the multi-task samplers: plans, sharding, epochs and state.

See [`torchcross.data.multitask`][torchcross.data.multitask] for the public classes and what they promise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from torchcross._checks import check_int
from torchcross.data.capabilities import SupportsSetEpoch
from torchcross.data.workers.position import StreamPosition
from torchcross.data.workers.sharding import ResumableStream, remember_ranks, shard_position
from torchcross.sampling.multitask_plan import StreamPlan, exhaustive_order, occurrences, task_permutation
from torchcross.sampling.weighting import resolve_weighting

__all__ = ["MAX_PLAN", "MultiSourceStream", "named"]

_MODES = ("epoch", "infinite")
MAX_PLAN = 200_000_000  # items a shuffled plan may hold in memory


def named(items: Any, what: str) -> tuple[list[str], list[Any]]:
    """``(names, values)`` of a ``{name: value}`` dict, or of a list named by task identifiers."""
    if isinstance(items, Mapping):
        names, values = [str(k) for k in items], list(items.values())
    elif isinstance(items, Sequence) and not isinstance(items, str):
        values = list(items)
        names = [_default_name(v, i) for i, v in enumerate(values)]
    else:
        raise TypeError(f"{what} must be a list or a {{name: {what[:-1]}}} dict, got {type(items).__name__}")
    if not values:
        raise ValueError(f"{what} is empty; give at least one")
    return names, values


def _default_name(obj: Any, i: int) -> str:
    for holder in (obj, getattr(obj, "task_source", None)):
        desc = getattr(holder, "task_description", None)
        ident = getattr(desc, "task_identifier", "")
        if isinstance(ident, str) and ident:
            return ident
    return str(i)


class MultiSourceStream(ResumableStream, IterableDataset):
    """Shared machinery: plans, sharding, epochs and state. Subclasses load the units."""

    _draws_per_unit = 1

    def __init__(
        self,
        names: list[str],
        sizes: list[int],
        *,
        weighting: str | None,
        temperature: float | None,
        weights: Any,
        mode: str,
        length: int | None,
        shuffle: bool,
        drop_last: bool,
        seed: int,
        rank: int | None,
        world_size: int | None,
    ) -> None:
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {list(_MODES)}, got {mode!r}")
        if length is not None:
            if mode != "infinite":
                raise ValueError(
                    "length only applies to mode='infinite' (an epoch of mode='epoch' is every item once)"
                )
            length = check_int(length, "length", 1)
        self.names, self.sizes = names, [int(s) for s in sizes]
        self.policy = resolve_weighting(
            len(sizes), weighting, temperature=temperature, weights=weights, names=names
        )
        probs = self.policy.weights(self.sizes)
        self.probabilities = probs / probs.sum()
        self.mode, self.length, self.shuffle, self.drop_last = mode, length, bool(shuffle), bool(drop_last)
        self.seed = check_int(seed, "seed", 0)
        self.rank, self.world_size = rank, world_size
        shard_position(rank, world_size)  # validate early
        if mode == "epoch" and sum(self.sizes) > MAX_PLAN:
            raise ValueError(f"an epoch of {sum(self.sizes)} items is too large to plan; use mode='infinite'")
        self.position = StreamPosition()  # the epoch and where iteration stands (main process)
        self._plans: dict[Any, Any] = {}
        self._plans_epoch = 0
        self._members_epoch = 0  # the epoch the members were last told

    # -- configuration and state -----------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        return {
            "type": type(self).__name__,
            "names": list(self.names),
            "sizes": list(self.sizes),
            "weighting": self.policy.fingerprint(),
            "mode": self.mode,
            "length": self.length,
            "shuffle": self.shuffle,
            "drop_last": self.drop_last,
            "seed": self.seed,
        }

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch to iterate; a new epoch starts from its beginning.

        Setting the current epoch again keeps a position restored by
        [`load_state_dict()`][ResumableStream.load_state_dict], so a
        loop calling ``set_epoch(epoch)`` resumes correctly.
        Sources or episode datasets with a ``set_epoch`` method are told the epoch too
        (seeded episode datasets then draw that epoch's episodes). Call it in the main process;
        DataLoader workers follow it through [`StreamLoader`][torchcross.data.stream.StreamLoader].
        """
        super().set_epoch(epoch)

    def _epoch_selected(self, epoch: int) -> None:
        self._tell_members(epoch, streams=True)

    def _tell_members(self, epoch: int, streams: bool) -> None:
        # members that are resumable streams draw any epoch's items with item(); others are told
        for member in self._members():
            if isinstance(member, SupportsSetEpoch) and (streams or not isinstance(member, ResumableStream)):
                member.set_epoch(epoch)
        self._members_epoch = epoch

    def member_item(self, member: Any, index: int) -> Any:
        """Item ``index`` of ``member`` (a source or episode dataset) in the epoch being drawn."""
        if isinstance(member, ResumableStream):
            return member.item(self.drawn_epoch(), index)
        return member[index]

    def _state_config(self) -> dict[str, Any]:
        return self._config()

    def _num_positions(self) -> int | None:
        return self._num_units()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_plans"] = {}  # recomputed cheaply where needed; keeps worker pickles small
        return remember_ranks(state)

    # -- the plan ----------------------------------------------------------------------------
    def _num_draws(self) -> int | None:
        if self.mode == "epoch":
            return sum(self.sizes)
        return None if self.length is None else self.length * self._draws_per_unit

    def _num_units(self) -> int | None:
        if self.mode == "infinite":
            return self.length
        total, per = sum(self.sizes), self._draws_per_unit
        return total // per if self.drop_last and per > 1 else -(-total // per)

    def _cache(self) -> dict[Any, Any]:
        """The plans of the current epoch (a worker notices an epoch set in the main process)."""
        epoch = self.drawn_epoch()
        if self._plans_epoch != epoch:
            self._plans.clear()
            self._plans_epoch = epoch
        return self._plans

    def draws(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """``(tasks, occurrences)`` of the global draws ``start..stop-1`` of the current epoch.

        Draw ``g`` takes the ``occurrences[g]``-th item of task ``tasks[g]`` (a pure
        function of ``(seed, epoch)``; useful to inspect or log the plan).
        """
        plans = self._cache()
        if self.mode == "infinite":
            plan = plans.get("stream")
            if plan is None:
                plan = plans["stream"] = StreamPlan(self.probabilities, (self.seed, self.drawn_epoch(), 1))
            return plan.draws(start, stop)
        plan = plans.get("epoch")
        if plan is None:
            rng = np.random.default_rng([self.seed, self.drawn_epoch(), 0])
            order = exhaustive_order(np.asarray(self.sizes), self.policy, rng)
            plan = plans["epoch"] = (order, occurrences(order, len(self.sizes)))
        return plan[0][start:stop], plan[1][start:stop]

    def _permutation(self, task: int, cycle: int, size: int) -> np.ndarray:
        """The seeded order of a task's ``size`` items in its ``cycle``-th pass (cached per task)."""
        plans = self._cache()
        cached = plans.get(("perm", task))
        if cached is None or cached[0] != cycle:
            key = (self.seed, self.drawn_epoch(), 2, task, cycle)
            cached = (cycle, task_permutation(key, size, self.shuffle))
            plans[("perm", task)] = cached
        return cached[1]

    def _members(self) -> list[Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _load_unit(self, tasks: np.ndarray, occ: np.ndarray) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- iteration ---------------------------------------------------------------------------
    def __len__(self) -> int:
        """Items this rank yields in a whole epoch (``TypeError`` for an endless stream)."""
        total = self._num_units()
        if total is None:
            raise TypeError(f"an endless {type(self).__name__} (mode='infinite', length=None) has no len()")
        pos = self.unit_shard()
        info = get_worker_info()
        ranks = pos.count // (info.num_workers if info is not None else 1)
        return len(range(pos.index % ranks, total, ranks))  # the rank's items, all its workers together

    def _item(self, index: int) -> Any:
        epoch = self.drawn_epoch()
        if epoch != self._members_epoch:  # e.g. in a DataLoader worker, asked for another epoch's item
            self._tell_members(epoch, streams=False)
        per, total_draws = self._draws_per_unit, self._num_draws()
        stop = (index + 1) * per if total_draws is None else min((index + 1) * per, total_draws)
        return self._load_unit(*self.draws(index * per, stop))
