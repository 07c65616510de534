"""Reusable shared-memory blocks for the tensors a DataLoader worker hands to the main process.

PyTorch moves every tensor a worker returns into a fresh shared-memory segment. The
worker then pays for creating the segment and faulting in each of its pages, the main
process for mapping it: for a 30-image ``3x224x224`` float episode (18 MB) that costs
more than reading and converting the images. Here each worker process keeps a few
blocks of shared memory and reuses a block once the receiving process has dropped
every tensor built on it, so a steady stream of episodes touches no new pages.

How reuse stays safe:

* :func:`empty` (in a worker) hands out a *lease* of a free block: tensors viewing one
  NumPy array of that block. While any of them is alive in the worker, the block is
  busy.
* The worker's ``ForkingPickler`` (what DataLoader queues use) reduces such a tensor to
  the block's storage (sent as PyTorch sends any shared storage) plus the lease number.
  The receiving process rebuilds it on one NumPy array per lease (views of the same
  lease share it); a finalizer on that array writes the lease number into the block's
  header when the receiver drops the last tensor of the lease.
* The worker reuses a block only when no tensor of it is alive in the worker and its
  last lease was either never sent or released by the receiver. When no block is
  free, :func:`empty` returns ``None`` and the caller allocates as before: holding on
  to episodes (``list(loader)``) is always correct, only slower.

A lease is meant for one hand-off: a tensor of a lease sent to two processes would be
released by whichever drops it first. DataLoader workers send each result once.
Outside a DataLoader worker :func:`empty` returns ``None`` (nothing is pooled).
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import threading
import weakref
from collections.abc import Iterator
from multiprocessing.reduction import ForkingPickler
from typing import Any

import numpy as np
import torch
import torch.utils.data
from torch.multiprocessing.reductions import reduce_tensor

__all__ = ["empty", "shared_lease", "worker_empty"]

_HEADER = 64  # bytes before the data: the released lease (int64), padded to keep data aligned
_ALIGN = 4096
_MAX_BLOCKS = 16  # per worker process
ENV_VAR = "TORCHCROSS_WORKER_POOL_MB"
"""Environment variable: the most MiB of pooled blocks per worker (default 1024; 0 turns pooling off)."""


def _max_bytes() -> int:
    value = os.environ.get(ENV_VAR, "1024")
    try:
        mib = int(value)
    except ValueError:
        raise ValueError(
            f"{ENV_VAR} must be a whole number of MiB (0 turns pooling off), got {value!r}"
        ) from None
    if mib < 0:
        raise ValueError(f"{ENV_VAR} must be >= 0 MiB (0 turns pooling off), got {mib}")
    return mib << 20


class _Block:
    """One shared-memory block: a header word written by the receiver, then the data."""

    __slots__ = ("base", "held", "id", "lease", "nbytes", "released", "sent", "storage", "whole")

    def __init__(self, block_id: int, nbytes: int) -> None:
        self.id = block_id
        self.nbytes = nbytes
        self.storage = torch.UntypedStorage._new_shared(_HEADER + nbytes)
        self.whole = torch.empty(0, dtype=torch.uint8).set_(self.storage).numpy()
        self.released = self.whole[:8].view(np.int64)
        self.released[0] = 0
        self.base = self.whole.ctypes.data + _HEADER
        self.lease = 0
        self.sent = False
        self.held: weakref.ref[np.ndarray] | None = None

    def is_free(self) -> bool:
        if self.held is not None and self.held() is not None:
            return False  # tensors of the current lease are alive in this process
        return not self.sent or int(self.released[0]) == self.lease


class _Pool:
    """The blocks of one worker process."""

    def __init__(self) -> None:
        self.max_bytes = _max_bytes()
        self.pid = os.getpid()
        self.token = secrets.randbits(62)
        self.blocks: list[_Block] = []
        self.by_ptr: dict[int, _Block] = {}
        self.next_id = 0
        self.lock = threading.Lock()

    def lease(self, nbytes: int) -> np.ndarray | None:
        """The data of a free block of at least ``nbytes`` as a new uint8 array (a lease), or ``None``."""
        with self.lock:
            block = self._find(nbytes)
            if block is None:
                return None
            block.lease += 1
            block.sent = False
            lease = block.whole[_HEADER : _HEADER + block.nbytes]
            block.held = weakref.ref(lease)
            return lease

    def _find(self, nbytes: int) -> _Block | None:
        if nbytes > self.max_bytes:
            return None
        fits = [b for b in self.blocks if nbytes <= b.nbytes <= 2 * nbytes + _ALIGN and b.is_free()]
        if fits:
            return min(fits, key=lambda b: b.nbytes)
        # headroom for slightly larger episodes (variable-way ones, say)
        size = min(-(-(nbytes + nbytes // 8) // _ALIGN) * _ALIGN, max(nbytes, self.max_bytes))
        while len(self.blocks) >= _MAX_BLOCKS or sum(b.nbytes for b in self.blocks) + size > self.max_bytes:
            victim = next((b for b in self.blocks if b.is_free()), None)
            if victim is None:
                return None
            self.blocks.remove(victim)
            del self.by_ptr[victim.base]
        block = _Block(self.next_id, size)
        self.next_id += 1
        self.blocks.append(block)
        self.by_ptr[block.base] = block
        return block


_POOL: _Pool | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> _Pool:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL.pid != os.getpid():
            _POOL = _Pool()
            ForkingPickler.register(torch.Tensor, _reduce_tensor)
        return _POOL


def empty(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor | None:
    """An uninitialised tensor in a pooled shared-memory block, or ``None``.

    ``None`` outside a DataLoader worker, for empty shapes, and when every block of this
    worker is still in use (the caller then allocates as usual).
    """
    if torch.utils.data.get_worker_info() is None:
        return None
    nbytes = math.prod(int(s) for s in shape) * dtype.itemsize
    if nbytes == 0:
        return None
    size = -(-nbytes // 64) * 64  # the next tensor of a shared lease starts 64-byte aligned
    shared = getattr(_SHARED, "lease", None)
    if shared is not None and shared[0] is not None and shared[1] + size <= shared[0].numel():
        base, used = shared
        shared[1] = used + size
        return base[used : used + nbytes].view(dtype).view(shape)
    lease = _pool().lease(size)
    if lease is None:
        return None
    base = torch.from_numpy(lease)
    if shared is not None:
        shared[0], shared[1] = base, size
    return base[:nbytes].view(dtype).view(shape)


_SHARED = threading.local()


@contextlib.contextmanager
def shared_lease() -> Iterator[None]:
    """Within the block, this thread's pooled tensors share one lease while they fit in it.

    An episode's images and labels then leave the worker in one shared-memory hand-off
    instead of two (a block has room to spare: it is made 1/8 larger than asked for).
    """
    previous = getattr(_SHARED, "lease", None)
    _SHARED.lease = [None, 0]  # [uint8 tensor over the current lease, bytes handed out]
    try:
        yield
    finally:
        _SHARED.lease = previous


def worker_empty(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised tensor; in a DataLoader worker, in (pooled) shared memory.

    A worker's result travels to the main process through shared memory; allocating it
    there directly saves a copy of the whole batch (as ``default_collate`` does), and
    reusing a pooled block saves creating and faulting in a fresh segment.

    Examples:
        >>> worker_empty((2, 3), torch.float32).shape  # in the main process: plain memory
        torch.Size([2, 3])
    """
    if torch.utils.data.get_worker_info() is None:
        return torch.empty(shape, dtype=dtype)
    out = empty(shape, dtype)
    if out is not None:
        return out
    storage = torch.UntypedStorage._new_shared(math.prod(int(s) for s in shape) * dtype.itemsize)
    return torch.empty(0, dtype=dtype).set_(storage, 0, shape)


def _reduce_tensor(t: torch.Tensor) -> tuple[Any, tuple[Any, ...]]:
    """ForkingPickler reduction of ``torch.Tensor`` in a worker: pooled leases by reference."""
    pool = _POOL
    if (
        pool is not None
        and type(t) is torch.Tensor
        and t.layout == torch.strided
        and t.device.type == "cpu"
        and not (t.requires_grad or t.is_nested or t.is_quantized)
    ):
        storage = t.untyped_storage()
        block = pool.by_ptr.get(storage.data_ptr())
        if block is not None and block.held is not None and block.held() is not None:
            block.sent = True
            meta = (pool.token, block.id, block.lease, storage.nbytes())
            return _rebuild, (block.storage, meta, t.dtype, t.storage_offset(), tuple(t.shape), t.stride())
    return reduce_tensor(t)


_LIVE: weakref.WeakValueDictionary[tuple[int, int, int], np.ndarray] = weakref.WeakValueDictionary()
_LIVE_LOCK = threading.Lock()


def _release(header: np.ndarray, lease: int) -> None:
    header[0] = lease


def _rebuild(
    storage: torch.UntypedStorage,
    meta: tuple[int, int, int, int],
    dtype: torch.dtype,
    offset: int,
    shape: tuple[int, ...],
    stride: tuple[int, ...],
) -> torch.Tensor:
    """In the receiving process: a tensor on the lease's one array (released when it dies)."""
    token, block_id, lease, nbytes = meta
    key = (token, block_id, lease)
    with _LIVE_LOCK:
        arr = _LIVE.get(key)
        if arr is None:
            whole = torch.empty(0, dtype=torch.uint8).set_(storage).numpy()
            arr = whole[_HEADER : _HEADER + nbytes]
            weakref.finalize(arr, _release, whole[:8].view(np.int64), lease).atexit = False
            _LIVE[key] = arr
    return torch.from_numpy(arr).view(dtype).as_strided(shape, stride, offset)
