"""Lazy, picklable, per-process access to the ``images`` dataset of ``images.hdf5``.

MedIMeta writes ``images`` unchunked and uncompressed, so its bytes are one contiguous
block of the file. [`HDF5Images`][torchcross.datasets.medimeta.HDF5Images] then maps that block read-only with
``mmap`` and
gathers rows with numpy fancy indexing (a page-cache copy). Chunked or compressed
datasets fall back to one h5py read per row (faster than h5py's own fancy indexing;
docs/medimeta.md has the numbers). Nothing is opened in ``__init__`` beyond a metadata peek, and
open handles are dropped when pickling and re-opened after a ``fork``, so the object
works in ``spawn`` and ``fork`` DataLoader workers.
"""

from __future__ import annotations

import mmap
import os
from typing import Any

import numpy as np

from torchcross.datasets._optional import require

__all__ = ["HDF5Images", "MedIMetaFileError"]


class MedIMetaFileError(ValueError):
    """A file of a MedIMeta dataset folder is missing or malformed (the message names it)."""


class HDF5Images:
    """Read rows of the uint8 ``images`` dataset of an HDF5 file.

    Args:
        path: the ``images.hdf5`` file.
        dataset: the name of the dataset inside the file.

    Raises:
        MedIMetaFileError: if the file cannot be opened, lacks the dataset, or it is not
            uint8 ``(N, H, W)`` / ``(N, H, W, C)``.

    Examples:
        >>> import h5py, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "images.hdf5")
        >>> with h5py.File(path, "w") as f:
        ...     _ = f.create_dataset("images", data=np.arange(4 * 2 * 2, dtype=np.uint8).reshape(4, 2, 2))
        >>> store = HDF5Images(path)
        >>> store.shape, store.contiguous, store.read([3, 0]).reshape(2, -1)[:, 0].tolist()
        ((4, 2, 2), True, [12, 0])
    """

    def __init__(self, path: str | os.PathLike[str], dataset: str = "images") -> None:
        self.path = os.fspath(path)
        self.dataset = dataset
        h5py = require("h5py")
        try:
            f = h5py.File(self.path, "r")
        except (OSError, ValueError) as exc:
            raise MedIMetaFileError(f"{self.path}: cannot open as HDF5 ({exc})") from exc
        with f:
            if dataset not in f or not isinstance(f[dataset], h5py.Dataset):
                raise MedIMetaFileError(
                    f"{self.path}: has no HDF5 dataset {dataset!r} (found: {sorted(f.keys())}); "
                    "a MedIMeta images.hdf5 stores the images in a dataset named 'images'"
                )
            ds = f[dataset]
            self.shape: tuple[int, ...] = tuple(int(s) for s in ds.shape)
            self.dtype = np.dtype(ds.dtype)
            offset = ds.id.get_offset()
            contiguous = ds.chunks is None and ds.compression is None and offset is not None
            self._offset = int(offset) if contiguous else None
        if self.dtype != np.uint8 or len(self.shape) not in (3, 4):
            raise MedIMetaFileError(
                f"{self.path}: dataset {dataset!r} must be uint8 (N, H, W) or (N, H, W, C), "
                f"got {self.dtype} {self.shape}"
            )
        self._reset()

    @property
    def contiguous(self) -> bool:
        """Whether rows are read from a memory map (else one h5py read per row)."""
        return self._offset is not None

    def __len__(self) -> int:
        return self.shape[0]

    def _reset(self) -> None:
        self._pid: int | None = None
        self._array: np.ndarray | None = None
        self._mmap: mmap.mmap | None = None
        self._h5: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for key in ("_pid", "_array", "_mmap", "_h5"):
            state[key] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def close(self) -> None:
        """Close this process's handles (they re-open on the next read)."""
        if self._h5 is not None and self._pid == os.getpid():
            self._h5.close()
        self._reset()

    def _open(self) -> None:
        if self._pid == os.getpid():
            return
        self._reset()  # a forked child must not use the parent's h5py handle
        if self._offset is not None:
            row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
            with open(self.path, "rb") as fh:
                self._mmap = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            needed = self._offset + row_bytes * self.shape[0]
            if len(self._mmap) < needed:
                raise MedIMetaFileError(
                    f"{self.path}: file is truncated ({len(self._mmap)} bytes, the images need {needed})"
                )
            self._array = np.ndarray(self.shape, self.dtype, buffer=self._mmap, offset=self._offset)
        else:
            self._h5 = require("h5py").File(self.path, "r")
        self._pid = os.getpid()

    def read(self, indices: Any, out: np.ndarray | None = None) -> np.ndarray:
        """Return the rows ``indices`` (in the order given), in a new array or in ``out``.

        A contiguous dataset is gathered from the memory map in one numpy operation; a
        chunked or compressed one is read row by row in ascending file order. ``out``
        (C-contiguous, ``(len(indices), *shape[1:])``, this dtype) receives the rows
        without an intermediate copy.
        """
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = self.shape[0]
        if idx.size and (idx.min() < -n or idx.max() >= n):
            bad = idx[(idx < -n) | (idx >= n)][:5].tolist()
            raise IndexError(f"{self.path}: row indices {bad} out of range for {n} images")
        idx = np.where(idx < 0, idx + n, idx)
        if out is not None:
            want = (idx.size, *self.shape[1:])
            if out.shape != want or out.dtype != self.dtype or not out.flags.c_contiguous:
                raise ValueError(
                    f"out must be a C-contiguous {self.dtype} array of shape {want}, "
                    f"got {out.dtype} {out.shape}"
                )
        self._open()
        if self._array is not None:
            # one gather from the page cache, in the order asked for
            if out is None:
                return self._array[idx]
            # mode='clip' (indices are checked above): 'raise' would gather into a temporary first
            return np.take(self._array, idx, axis=0, out=out, mode="clip")
        # chunked/compressed: one h5py read per row, in file order, then back in order asked for
        ds = self._h5[self.dataset]
        rows = np.empty((idx.size, *self.shape[1:]), self.dtype) if out is None else out
        for k in np.argsort(idx, kind="stable").tolist():
            rows[k] = ds[int(idx[k])]
        return rows
