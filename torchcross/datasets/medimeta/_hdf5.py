"""Lazy, picklable, per-process access to the ``images`` dataset of ``images.hdf5``.

MedIMeta writes ``images`` unchunked and uncompressed, so its bytes are one contiguous
block of the file. [`HDF5Images`][torchcross.datasets.medimeta.HDF5Images] then reads the rows it needs
with positioned reads (``preadv``, one call per run of adjacent rows) straight into the output
array. A memory map was up to twice as fast on page-cached data, but a file truncated while
mapped kills the process with ``SIGBUS``; a positioned read sees the short file and raises an
error naming it. Chunked or compressed
datasets fall back to one h5py read per row (faster than h5py's own fancy indexing;
docs/medimeta.md has the numbers). Only a regular file is opened (a FIFO or a device is refused,
never read), and a dataset whose bytes live elsewhere (external storage, a virtual dataset, an
external or soft link) is refused, so nothing outside the file is ever read. Nothing is opened in
``__init__`` beyond a metadata peek, and
open handles are dropped when pickling and re-opened after a ``fork``, so the object
works in ``spawn`` and ``fork`` DataLoader workers.
"""

from __future__ import annotations

import contextlib
import os
from typing import IO, Any, cast

import numpy as np

from torchcross._io import special_file_kind
from torchcross.datasets._optional import require

__all__ = ["HDF5Images", "MedIMetaFileError", "file_kind", "open_regular"]

_IOV_MAX = 1024  # buffers per preadv call (the POSIX minimum of IOV_MAX)


class MedIMetaFileError(ValueError):
    """A file of a MedIMeta dataset folder is missing or malformed (the message names it)."""


def file_kind(path: str) -> str | None:
    """What ``path`` is when it is not a regular file (links followed), else ``None``.

    ``"missing"`` (also for a link to nothing), ``"a FIFO"``, ``"a character device"``,
    ``"a directory"``, ...: readers say "missing" only when nothing is there.

    Examples:
        >>> file_kind("/dev/null"), file_kind("/no/such/file")
        ('a character device', 'missing')
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "missing"
    except OSError:
        return None  # e.g. no permission: opening the file reports it
    return special_file_kind(mode)


def _not_regular(kind: str) -> str:
    if kind == "missing":
        return "missing"
    return f"is {kind}, not a regular file; put the file itself (or a link to it) there"


def _open_fd(path: str) -> int:
    """A read-only descriptor of ``path`` if it is a regular file (checked on the descriptor)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise MedIMetaFileError(f"{path}: missing") from None
    except OSError as exc:
        raise MedIMetaFileError(f"{path}: cannot be opened ({exc.strerror or exc})") from None
    try:
        kind = special_file_kind(os.fstat(fd).st_mode)
        if kind is not None:
            raise MedIMetaFileError(f"{path}: {_not_regular(kind)}")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_regular(path: str) -> IO[bytes]:
    """Open ``path`` for reading, unbuffered, if it is a regular file; never blocks.

    The file is opened non-blocking and checked on the open descriptor, so a FIFO or a
    device put in place of a file is refused before anything is read from it.

    Raises:
        MedIMetaFileError: naming the file if it is missing or not a regular file.
    """
    return open(_open_fd(path), "rb", buffering=0)


class _Descriptor:
    """An open file descriptor, closed with this object (no ResourceWarning: it lives as long
    as its reader, and readers are not closed explicitly)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def __del__(self) -> None:
        with contextlib.suppress(OSError):
            self.close()


def _check_in_file(f: Any, path: str, dataset: str) -> None:
    """Refuse a dataset whose bytes are not in ``path`` itself (nothing else may be read)."""
    h5py = require("h5py")
    parts = [p for p in dataset.split("/") if p]
    for i in range(len(parts)):
        name = "/".join(parts[: i + 1])
        link = f.get(name, getlink=True)
        if link is None:
            return  # the caller reports the missing dataset
        if not isinstance(link, h5py.HardLink):
            if isinstance(link, h5py.ExternalLink):
                kind = f"an external link ({link.path!r} in {link.filename!r})"
            elif isinstance(link, h5py.SoftLink):
                kind = f"a soft link ({link.path!r})"
            else:
                kind = "a user-defined link"
            raise MedIMetaFileError(
                f"{path}: {name!r} is {kind}, not data stored in this file; torchcross reads only a "
                "dataset stored in images.hdf5 itself: re-create the file with the images written into it"
            )
    ds = f[dataset]
    if isinstance(ds, h5py.Dataset) and (ds.is_virtual or ds.external):
        where = (
            "a virtual dataset (its bytes live in other datasets or files)"
            if ds.is_virtual
            else f"stored in external files {[os.fsdecode(e[0]) for e in ds.external][:3]}"
        )
        raise MedIMetaFileError(
            f"{path}: dataset {dataset!r} is {where}, not in this file; torchcross reads only "
            "images stored in images.hdf5 itself: re-create the file with the images written into it"
        )


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
        kind = file_kind(self.path)
        if kind is not None:
            raise MedIMetaFileError(f"{self.path}: {_not_regular(kind)}")
        try:
            f = h5py.File(self.path, "r")
        except (OSError, ValueError) as exc:
            raise MedIMetaFileError(f"{self.path}: cannot open as HDF5 ({exc})") from exc
        with f:
            _check_in_file(f, self.path, dataset)
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
        self._row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self._reset()

    @property
    def contiguous(self) -> bool:
        """Whether rows are read straight from the file (else one h5py read per row)."""
        return self._offset is not None

    def __len__(self) -> int:
        return self.shape[0]

    def _reset(self) -> None:
        self._pid: int | None = None
        self._file: _Descriptor | None = None
        self._h5: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for key in ("_pid", "_file", "_h5"):
            state[key] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def close(self) -> None:
        """Close this process's handles (they re-open on the next read)."""
        if self._pid == os.getpid():
            if self._h5 is not None:
                self._h5.close()
            if self._file is not None:
                self._file.close()
        self._reset()

    def _open(self) -> None:
        if self._pid == os.getpid():
            return
        self._reset()  # a forked child must not use the parent's handles
        if self._offset is not None:
            fh = _Descriptor(_open_fd(self.path))
            self._check_size(fh)
            self._file = fh
        else:
            kind = file_kind(self.path)
            if kind is not None:
                raise MedIMetaFileError(f"{self.path}: {_not_regular(kind)}")
            self._h5 = require("h5py").File(self.path, "r")
        self._pid = os.getpid()

    def _check_size(self, fh: _Descriptor) -> None:
        size = os.fstat(fh.fd).st_size
        needed = self._offset + self._row_bytes * self.shape[0]
        if size < needed:
            fh.close()
            raise MedIMetaFileError(
                f"{self.path}: file is truncated ({size} bytes, the images need {needed}); "
                "download or write the dataset again"
            )

    def _read_contiguous(self, idx: np.ndarray, rows: np.ndarray) -> None:
        """Read file rows ``idx`` into ``rows`` (same order): one ``preadv`` per run of adjacent rows."""
        size = self._row_bytes
        # C-contiguous uint8: a flat byte view, no copy (numpy types the buffer protocol from Python 3.12)
        view = memoryview(rows.reshape(-1))  # type: ignore[arg-type]
        wanted = idx.tolist()
        run: list[memoryview] = []
        first = prev = -2
        for k in sorted(range(len(wanted)), key=wanted.__getitem__):  # file order
            row = wanted[k]
            if run and (row != prev + 1 or len(run) == _IOV_MAX):
                self._read_at(run, self._offset + first * size)
                run = []
            if not run:
                first = row
            run.append(view[k * size : (k + 1) * size])
            prev = row
        if run:
            self._read_at(run, self._offset + first * size)

    def _read_at(self, buffers: list[memoryview], offset: int) -> None:
        fh = cast(_Descriptor, self._file)  # opened by _open()
        want = len(buffers) * self._row_bytes
        got = _preadv(fh, buffers, offset)
        while got < want:  # a short read: only at the end of the file
            k, r = divmod(got, self._row_bytes)
            more = _preadv(fh, [buffers[k][r:], *buffers[k + 1 :]], offset + got)
            if more == 0:
                size = os.fstat(fh.fd).st_size
                raise MedIMetaFileError(
                    f"{self.path}: file was truncated while open ({size} bytes now, the images need "
                    f"{self._offset + self._row_bytes * self.shape[0]}); download or write the dataset again"
                )
            got += more

    def read(self, indices: Any, out: np.ndarray | None = None) -> np.ndarray:
        """Return the rows ``indices`` (in the order given), in a new array or in ``out``.

        A contiguous dataset is read straight from the file in ascending file order, one
        ``preadv`` call per run of adjacent rows; a chunked or compressed one row by row
        with h5py, also in file order. ``out`` (C-contiguous,
        ``(len(indices), *shape[1:])``, this dtype) receives the rows without an
        intermediate copy.

        Raises:
            IndexError: for indices out of range.
            MedIMetaFileError: if the file was truncated or replaced by something that is
                not a regular file since it was opened.
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
        rows = np.empty((idx.size, *self.shape[1:]), self.dtype) if out is None else out
        if self._file is not None:
            if idx.size and self._row_bytes:
                self._read_contiguous(idx, rows)
            return rows
        # chunked/compressed: one h5py read per row, in file order, into the order asked for
        ds = self._h5[self.dataset]
        try:
            for k in np.argsort(idx, kind="stable").tolist():
                rows[k] = ds[int(idx[k])]
        except OSError as exc:
            raise MedIMetaFileError(f"{self.path}: cannot read dataset {self.dataset!r} ({exc})") from exc
        return rows


def _preadv(fh: _Descriptor, buffers: list[memoryview], offset: int) -> int:
    """Read into ``buffers`` from ``offset`` of ``fh``; the bytes read (fewer only at the end)."""
    if hasattr(os, "preadv"):
        return os.preadv(fh.fd, buffers, offset)
    got = 0  # pragma: no cover - platforms without preadv (Windows)
    for buf in buffers:  # pragma: no cover
        os.lseek(fh.fd, offset + got, os.SEEK_SET)
        data = os.read(fh.fd, len(buf))
        buf[: len(data)] = data
        got += len(data)
        if len(data) < len(buf):
            break
    return got  # pragma: no cover
