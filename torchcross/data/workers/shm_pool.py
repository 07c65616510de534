"""Reusable shared-memory blocks for the tensors torchcross's readers and episodes hand out of a worker.

PyTorch moves every tensor a DataLoader worker returns into a fresh shared-memory
segment: the worker pays for creating it and faulting in each page, the main process
for mapping it. Here each worker process keeps a few blocks of shared memory and reuses
a block once the receiving process has dropped every tensor built on it, so a steady
stream of episodes touches no new pages.

What is pooled: only tensors that `worker_empty()` (or `empty()`) allocates in a
DataLoader worker, that is the images of torchcross's readers and the inputs and labels
of its episodes. They are `PooledTensor` objects, a tensor subclass that exists
only in workers; their own ``ForkingPickler`` reducer sends them by reference to their
block, and the receiving process gets plain ``torch.Tensor`` objects. Every other tensor,
e.g. what your own dataset returns, pickles exactly as PyTorch pickles it.

How reuse stays safe:

* `empty()` hands out a *lease* of a free block: tensors viewing one NumPy array of
  that block. While any of them is alive in the worker, the block is busy.
* The reducer sends the block's storage (as PyTorch sends any shared storage) plus the
  lease number. The receiver rebuilds the tensors on one NumPy array per lease; a
  finalizer on it writes the lease number into the block's header when the receiver
  drops the last tensor of the lease.
* The worker reuses a block only when no tensor of it is alive in the worker and its
  last lease was either never sent or released by the receiver. When no block is free,
  `empty()` returns ``None`` and the caller allocates plain memory, which PyTorch
  moves to shared memory when it sends it: holding on to episodes (``list(loader)``) is
  always correct, only slower.

When ``/dev/shm`` has no room for a new block, the worker drops its free blocks, stops
growing its pool and warns once; tensors then travel as PyTorch sends them. The
environment variable ``TORCHCROSS_WORKER_POOL_MB`` caps the pool of each worker
(default 1024 MiB; ``0`` turns pooling off); `set_pool_limit()`, called in a worker (e.g. by
[`StreamLoader`][torchcross.data.stream.StreamLoader]'s ``pool_mb=`` option), overrides it for
that worker. Only public PyTorch API is used.

A lease is meant for one hand-off: a tensor of a lease sent to two processes would be
released by whichever drops it first. DataLoader workers send each result once.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import secrets
import threading
import warnings
import weakref
from collections.abc import Iterator
from multiprocessing.reduction import ForkingPickler
from typing import Any

import numpy as np
import torch
import torch.utils.data

__all__ = ["ENV_VAR", "PooledTensor", "empty", "set_pool_limit", "shared_lease", "worker_empty"]

_HEADER = 64  # bytes before the data: the released lease (int64), padded to keep data aligned
_ALIGN = 4096
_MAX_BLOCKS = 16  # per worker process
ENV_VAR = "TORCHCROSS_WORKER_POOL_MB"
"""Environment variable: the most MiB of pooled blocks per worker (default 1024; 0 turns pooling off)."""


class PooledTensor(torch.Tensor):
    """A tensor in a pooled shared-memory block of a DataLoader worker.

    Only `empty()` makes them, and only in a worker; operations on them return
    ``PooledTensor`` too (PyTorch's default for subclasses). Sent through a DataLoader
    queue, one whose memory is a live lease of this worker's pool travels by reference
    to its block, any other as a plain tensor; the receiver always gets a plain
    ``torch.Tensor``. Ordinary pickling and ``torch.save`` see a plain tensor as well.

    Examples:
        >>> import pickle
        >>> x = torch.arange(3).as_subclass(PooledTensor)
        >>> type(pickle.loads(pickle.dumps(x))).__name__
        'Tensor'
    """

    def __reduce_ex__(self, protocol: Any) -> Any:
        return self.as_subclass(torch.Tensor).__reduce_ex__(protocol)


_LIMIT_MIB: int | None = None  # set_pool_limit() in this process, over the environment variable


def set_pool_limit(mib: int | None) -> None:
    """Cap this process's pool at ``mib`` MiB (``0``: no pooling; ``None``: ``TORCHCROSS_WORKER_POOL_MB``).

    Meant for a DataLoader ``worker_init_fn``: each worker has its own pool.

    Raises:
        ValueError: ``mib`` is negative.

    Examples:
        >>> set_pool_limit(0)  # this process pools nothing
        >>> set_pool_limit(None)  # back to the environment variable (default 1024 MiB)
    """
    global _LIMIT_MIB, _POOL
    if mib is not None and (isinstance(mib, bool) or not isinstance(mib, int) or mib < 0):
        raise ValueError(
            f"the pool limit must be a whole number of MiB >= 0 (0: no pooling) or None, got {mib!r}"
        )
    with _POOL_LOCK:
        _LIMIT_MIB = mib
        _POOL = None  # the next lease starts a pool with the new limit


def _max_bytes() -> int:
    if _LIMIT_MIB is not None:
        return _LIMIT_MIB << 20
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


def _shared_storage(nbytes: int) -> torch.UntypedStorage:
    """A new storage of ``nbytes`` in shared memory (``/dev/shm``); raises when there is no room."""
    return torch.UntypedStorage(nbytes).share_memory_()


_SHM_DIR = "/dev/shm"


def _check_room(nbytes: int) -> None:
    """Raise ``OSError(ENOSPC)`` if a new block of ``nbytes`` would fill ``/dev/shm`` past half.

    Pooled blocks outlive the tensors sent in them; the other half stays for tensors
    that travel without a block (and for other workers). Without a ``/dev/shm`` to ask
    (not Linux), only a failing allocation tells that shared memory is short.
    """
    try:
        fs = os.statvfs(_SHM_DIR)
    except OSError:
        return
    free, total = fs.f_bavail * fs.f_frsize, fs.f_blocks * fs.f_frsize
    if free - nbytes < total // 2:
        raise OSError(
            errno.ENOSPC,
            f"{free / 2**20:.0f} of {total / 2**20:.0f} MiB free; a block would leave less than half",
        )


def _block_storage(nbytes: int) -> torch.UntypedStorage:
    """The shared storage of a new block; ``OSError``/``RuntimeError`` when ``/dev/shm`` is short."""
    _check_room(nbytes)
    return _shared_storage(nbytes)


class _Block:
    """One shared-memory block: a header word written by the receiver, then the data."""

    __slots__ = ("base", "held", "id", "lease", "nbytes", "released", "sent", "storage", "whole")

    def __init__(self, block_id: int, nbytes: int) -> None:
        self.id = block_id
        self.nbytes = nbytes
        self.storage = _block_storage(_HEADER + nbytes)
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


_WARNED = False


def _warn_short(nbytes: int, error: BaseException) -> None:
    global _WARNED
    if _WARNED:
        return
    _WARNED = True
    warnings.warn(
        f"torchcross: no room in shared memory (/dev/shm) for a {nbytes / 2**20:.1f} MiB pooled block "
        f"({error}); this DataLoader worker makes no more blocks and sends what finds no free one "
        f"as PyTorch sends any tensor. Give /dev/shm more room (docker run --shm-size=2g) or set "
        f"{ENV_VAR}=0 to turn pooling off.",
        RuntimeWarning,
        stacklevel=4,
    )


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

    def _drop(self, block: _Block) -> None:
        self.blocks.remove(block)
        del self.by_ptr[block.base]

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
            self._drop(victim)
        try:
            block = _Block(self.next_id, size)
        except (RuntimeError, OSError) as error:  # /dev/shm is short: PyTorch raises RuntimeError
            for free in [b for b in self.blocks if b.is_free()]:
                self._drop(free)  # leave their room to plain transfers
            self.max_bytes = sum(b.nbytes for b in self.blocks)  # reuse the blocks in use, grow no more
            _warn_short(_HEADER + size, error)
            return None
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
        return _POOL


def empty(shape: tuple[int, ...], dtype: torch.dtype) -> PooledTensor | None:
    """An uninitialised `PooledTensor` in a pooled shared-memory block, or ``None``.

    ``None`` outside a DataLoader worker, for empty shapes, when pooling is off, and when
    no block is free or can be made (the caller then allocates as usual).

    Examples:
        >>> empty((2, 3), torch.float32) is None  # in the main process nothing is pooled
        True
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
        return base[used : used + nbytes].view(dtype).view(shape).as_subclass(PooledTensor)
    lease = _pool().lease(size)
    if lease is None:
        return None
    base = torch.from_numpy(lease)
    if shared is not None:
        shared[0], shared[1] = base, size
    return base[:nbytes].view(dtype).view(shape).as_subclass(PooledTensor)


_SHARED = threading.local()


@contextlib.contextmanager
def shared_lease() -> Iterator[None]:
    """Within the block, this thread's pooled tensors share one lease while they fit in it.

    An episode's images and labels then leave the worker in one shared-memory hand-off
    instead of two (a block has room to spare: it is made 1/8 larger than asked for).

    Examples:
        >>> with shared_lease():
        ...     x = worker_empty((2,), torch.int64)
        >>> x.shape
        torch.Size([2])
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
    reusing a pooled block saves creating and faulting in a fresh segment. When no block
    is free or can be made, this is a fresh shared tensor, sent as PyTorch sends any.

    Raises:
        RuntimeError: in a worker, when ``/dev/shm`` has no room even for this tensor.

    Examples:
        >>> worker_empty((2, 3), torch.float32).shape  # in the main process: plain memory
        torch.Size([2, 3])
    """
    if torch.utils.data.get_worker_info() is None:
        return torch.empty(shape, dtype=dtype)
    out = empty(shape, dtype)
    if out is not None:
        return out
    nbytes = math.prod(int(s) for s in shape) * dtype.itemsize
    try:
        storage = _shared_storage(nbytes)
    except (RuntimeError, OSError) as error:
        raise RuntimeError(
            f"no room in shared memory (/dev/shm) for a {nbytes / 2**20:.1f} MiB tensor that a DataLoader "
            f"worker sends ({error}); give /dev/shm more room (docker run --shm-size=2g), use fewer "
            f"workers or a smaller prefetch_factor"
        ) from error
    # torch's stubs lack set_(storage, offset, size) without a stride
    return torch.empty(0, dtype=dtype).set_(storage, 0, shape)  # type: ignore[call-overload]


def _plain(t: torch.Tensor) -> torch.Tensor:
    return t


def _reduce_pooled(t: PooledTensor) -> tuple[Any, tuple[Any, ...]]:
    """``ForkingPickler`` reduction of a `PooledTensor`: a live lease by reference, else plain."""
    pool = _POOL
    if (
        pool is not None
        and pool.pid == os.getpid()
        and t.layout == torch.strided
        and t.device.type == "cpu"
        and not t.requires_grad
    ):
        storage = t.untyped_storage()
        block = pool.by_ptr.get(storage.data_ptr())
        if block is not None and block.held is not None and block.held() is not None:
            block.sent = True
            meta = (pool.token, block.id, block.lease, storage.nbytes())
            return _rebuild, (block.storage, meta, t.dtype, t.storage_offset(), tuple(t.shape), t.stride())
    return _plain, (t.as_subclass(torch.Tensor),)  # pickled by PyTorch's own reducer


ForkingPickler.register(PooledTensor, _reduce_pooled)

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
    """In the receiving process: a plain tensor on the lease's one array (released when it dies)."""
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
