"""Plans for multi-task streams: which task each draw takes, as pure functions of a seed.

A *draw* is one item taken from one task (a batch, or an episode). A plan maps the
global draw number ``g`` to ``(task, occurrence)``: the task drawn and how many times
that task was drawn before. Samplers turn the occurrence into concrete indices, so
any process can compute any part of the stream without loading the parts it skips.

- `exhaustive_order()`: every task ``i`` drawn exactly ``counts[i]`` times, each
  step choosing by the weighting policy applied to what remains.
- `StreamPlan`: an endless stream of independent draws with fixed
  probabilities, generated in seeded blocks so that any position is reachable cheaply.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import cast

import numpy as np

from torchcross.sampling.weighting import TaskWeighting

__all__ = ["StreamPlan", "exhaustive_order", "occurrences", "task_permutation"]


def task_permutation(key: tuple[int, ...], n: int, shuffle: bool) -> np.ndarray:
    """``0..n-1``, shuffled by a generator seeded with ``key`` when ``shuffle``."""
    if not shuffle:
        return np.arange(n, dtype=np.int64)
    return np.random.default_rng(list(key)).permutation(n).astype(np.int64, copy=False)


def occurrences(tasks: np.ndarray, num_tasks: int) -> np.ndarray:
    """For each draw, how many earlier draws took the same task.

    Examples:
        >>> occurrences(np.array([1, 0, 1, 1, 0]), 2).tolist()
        [0, 0, 1, 2, 1]
    """
    order = np.argsort(tasks, kind="stable")
    starts = np.searchsorted(tasks[order], np.arange(num_tasks))
    occ = np.empty(len(tasks), dtype=np.int64)
    occ[order] = np.arange(len(tasks)) - starts[tasks[order]]
    return occ


def exhaustive_order(counts: np.ndarray, policy: TaskWeighting, rng: np.random.Generator) -> np.ndarray:
    """A random order in which task ``i`` appears exactly ``counts[i]`` times.

    Each step draws a task with probability given by ``policy`` applied to the
    remaining counts (tasks with nothing left are never drawn): ``"proportional"``
    gives a uniformly random permutation of the multiset, ``"uniform"`` and
    ``"explicit"`` draw by fixed weights among the tasks that still have items,
    ``"temperature"`` by ``remaining ** (1 / T)``.

    Examples:
        >>> from torchcross.sampling.weighting import TaskWeighting
        >>> order = exhaustive_order(np.array([2, 3]), TaskWeighting("uniform"), np.random.default_rng(0))
        >>> np.bincount(order).tolist()
        [2, 3]
    """
    counts = np.asarray(counts, dtype=np.int64)
    k = len(counts)
    if policy.kind == "proportional":
        return rng.permutation(np.repeat(np.arange(k), counts))
    if policy.kind == "temperature":
        return _dynamic_order(counts, policy, rng)
    return _static_order(counts, policy.weights(np.ones(k)), rng)


def _static_order(counts: np.ndarray, w: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # Draw i.i.d. by the fixed weights restricted to tasks with items left, and drop
    # the draws of tasks that run out within a chunk: exact rejection sampling.
    taken = np.zeros(len(counts), dtype=np.int64)
    parts: list[np.ndarray] = []
    left = int(counts.sum())
    while left > 0:
        alive = taken < counts
        p = np.where(alive, w, 0.0)
        draws = rng.choice(len(counts), size=max(64, 2 * left), p=p / p.sum())
        keep = occurrences(draws, len(counts)) < (counts - taken)[draws]
        draws = draws[keep]
        parts.append(draws)
        taken += np.bincount(draws, minlength=len(counts))
        left -= len(draws)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _dynamic_order(counts: np.ndarray, policy: TaskWeighting, rng: np.random.Generator) -> np.ndarray:
    # Weights remaining ** (1 / T), one task's updated per step, in a pure-Python loop
    # (K is small). They are scaled by the largest remaining count, and rescaled when
    # they shrink, so that a small T neither overflows nor underflows to nothing.
    inv_t = 1.0 / float(cast(float, policy.temperature))  # the "temperature" policy has one
    remaining = [int(c) for c in counts]
    ref = 0.0

    def weight(r: int) -> float:
        return math.exp((math.log(r) - ref) * inv_t) if r > 0 else 0.0

    def rescale() -> list[float]:
        nonlocal ref
        ref = math.log(max(max(remaining), 1))
        return [weight(r) for r in remaining]

    w = rescale()
    total = int(counts.sum())
    out = np.empty(total, dtype=np.int64)
    for step, u in enumerate(rng.random(total).tolist()):
        wsum = sum(w)
        if wsum < 1e-100:
            w = rescale()
            wsum = sum(w)
        target, task, acc = u * wsum, -1, 0.0
        for k, wk in enumerate(w):
            if wk > 0.0:
                task = k  # the last task with weight, in case rounding passes the end
                acc += wk
                if target < acc:
                    break
        out[step] = task
        remaining[task] -= 1
        w[task] = weight(remaining[task])
    return out


class StreamPlan:
    """An endless stream of independent task draws with probabilities ``probs``.

    Draws come in blocks of ``block`` generated from ``key + (block number,)``, so the
    stream is a pure function of ``key``. Reaching draw ``g`` costs ``g / block`` cheap
    vectorised blocks (their task counts are kept to give occurrences).

    Examples:
        >>> plan = StreamPlan(np.array([0.5, 0.5]), key=(0, 0), block=4)
        >>> tasks, occ = plan.draws(0, 6)
        >>> occ.tolist() == occurrences(tasks, 2).tolist()
        True
    """

    def __init__(self, probs: np.ndarray, key: tuple[int, ...], block: int = 4096) -> None:
        self.probs = np.asarray(probs, dtype=np.float64)
        self.key = tuple(int(k) for k in key)
        self.block = int(block)
        self._before: list[np.ndarray] = [np.zeros(len(self.probs), dtype=np.int64)]
        self._cache: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()

    def _block_tasks(self, j: int) -> np.ndarray:
        rng = np.random.default_rng([*self.key, j])
        return rng.choice(len(self.probs), size=self.block, p=self.probs)

    def _get_block(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        hit = self._cache.get(j)
        if hit is not None:
            self._cache.move_to_end(j)
            return hit
        while len(self._before) <= j:  # extend the running task counts up to block j
            n = len(self._before) - 1
            counts = np.bincount(self._block_tasks(n), minlength=len(self.probs))
            self._before.append(self._before[n] + counts)
        tasks = self._block_tasks(j)
        occ = occurrences(tasks, len(self.probs)) + self._before[j][tasks]
        self._cache[j] = (tasks, occ)
        if len(self._cache) > 4:
            self._cache.popitem(last=False)
        return tasks, occ

    def draws(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """``(tasks, occurrences)`` of draws ``start..stop-1``."""
        parts_t, parts_o = [], []
        g = start
        while g < stop:
            j, off = divmod(g, self.block)
            tasks, occ = self._get_block(j)
            end = min(self.block, off + (stop - g))
            parts_t.append(tasks[off:end])
            parts_o.append(occ[off:end])
            g += end - off
        if not parts_t:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return np.concatenate(parts_t), np.concatenate(parts_o)
