"""A few integers (an epoch, a resume position) that DataLoader workers see change.

A DataLoader worker holds a copy of the dataset, made when the worker started. With
``persistent_workers=True`` the workers outlive an epoch, so ``dataset.set_epoch(e)`` in the
main process would never reach them and every epoch would repeat the first one's episodes.
Datasets keep such state in `SharedInts` instead: the values live in shared memory,
which forked workers inherit and spawned workers attach to (through the ``ForkingPickler``
that starts them), so a value written in the main process is what the workers read next.

Ordinary pickling and ``copy.deepcopy`` give an independent copy holding the same values;
a shallow ``copy.copy`` of an object holding a `SharedInts` shares it.

Values of many objects share one small shared-memory tensor (a slab) per process, so a
program with thousands of datasets opens a handful of shared-memory segments, not thousands.
"""

from __future__ import annotations

import os
import threading
import weakref
from multiprocessing.reduction import ForkingPickler
from typing import Any

import torch

__all__ = ["SharedInt", "SharedInts"]

_SLAB = 512  # int64 slots per shared-memory tensor


class _Allocator:
    """The slabs of this process and which of their slots are taken."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.slabs: list[torch.Tensor] = []
        self.used: list[bytearray] = []
        self.lock = threading.Lock()

    def allocate(self, n: int) -> tuple[int, int]:
        with self.lock:
            for k, used in enumerate(self.used):
                start = used.find(bytes(n))
                if start >= 0:
                    used[start : start + n] = b"\x01" * n
                    return k, start
            self.slabs.append(torch.zeros(_SLAB, dtype=torch.int64).share_memory_())
            self.used.append(bytearray(_SLAB))
            self.used[-1][:n] = b"\x01" * n
            return len(self.slabs) - 1, 0

    def release(self, k: int, start: int, n: int) -> None:
        with self.lock:
            self.used[k][start : start + n] = bytes(n)


_ALLOCATOR: _Allocator | None = None
_ALLOCATOR_LOCK = threading.Lock()


def _allocator() -> _Allocator:
    global _ALLOCATOR
    with _ALLOCATOR_LOCK:
        if _ALLOCATOR is None or _ALLOCATOR.pid != os.getpid():
            _ALLOCATOR = _Allocator()  # a forked child never hands out its parent's slots
        return _ALLOCATOR


def _release(owner: _Allocator, k: int, start: int, n: int) -> None:
    if owner.pid == os.getpid():
        owner.release(k, start, n)


class SharedInts:
    """``n`` integers in shared memory, read and written by index.

    Examples:
        >>> state = SharedInts(3, 0)
        >>> state[0] = 5
        >>> state[0], state[1], len(state)
        (5, 0, 2)
        >>> import copy
        >>> other = copy.deepcopy(state)
        >>> other[0] = 7
        >>> state[0], other[0]
        (5, 7)
    """

    __slots__ = ("__weakref__", "_values")

    def __init__(self, *values: int) -> None:
        if not values:
            raise ValueError("SharedInts needs at least one value")
        owner = _allocator()
        k, start = owner.allocate(len(values))
        self._values = owner.slabs[k][start : start + len(values)]
        self._values.copy_(torch.tensor([int(v) for v in values], dtype=torch.int64))
        weakref.finalize(self, _release, owner, k, start, len(values)).atexit = False

    def __len__(self) -> int:
        return self._values.numel()

    def __getitem__(self, i: int) -> int:
        return int(self._values[i])

    def __setitem__(self, i: int, value: int) -> None:
        self._values[i] = int(value)

    def __reduce__(self) -> tuple[Any, tuple[int, ...]]:
        """Plain pickling and deep copies: an independent object with the same values."""
        return SharedInts, tuple(self._values.tolist())

    def __repr__(self) -> str:
        return f"SharedInts{tuple(self._values.tolist())}"


def _attach(values: torch.Tensor) -> SharedInts:
    """In a process started with ``ForkingPickler`` (a spawned worker): the same memory."""
    obj = SharedInts.__new__(SharedInts)
    obj._values = values
    return obj


def _reduce_shared(obj: SharedInts) -> tuple[Any, tuple[torch.Tensor]]:
    return _attach, (obj._values,)


ForkingPickler.register(SharedInts, _reduce_shared)


class SharedInt:
    """A data descriptor: an ``int`` attribute whose value lives in shared memory.

    Assign it in ``__init__`` (before any DataLoader worker starts) so that workers share
    it; reading an attribute never assigned gives ``default``.

    Examples:
        >>> class Source:
        ...     epoch = SharedInt()
        ...
        ...     def __init__(self):
        ...         self.epoch = 0
        >>> s = Source()
        >>> s.epoch = 3
        >>> s.epoch, type(s.__dict__["_shared_epoch"]).__name__
        (3, 'SharedInts')
    """

    def __init__(self, default: int = 0) -> None:
        self.default = default
        self.key = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.key = f"_shared_{name.lstrip('_')}"

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        box = obj.__dict__.get(self.key)
        return self.default if box is None else box[0]

    def __set__(self, obj: Any, value: int) -> None:
        box = obj.__dict__.get(self.key)
        if box is None:
            obj.__dict__[self.key] = SharedInts(value)
        else:
            box[0] = value
