"""A decoded-image cache: images decoded once at a fixed size, then read as raw uint8 from a mapped file.

Readers of encoded images (Meta-Album and BSCD-FSL files, Meta-Dataset records, Hugging Face datasets)
decode every image on every read; MedIMeta's HDF5 file holds decoded pixels, so its reads are a copy.
[`cache_images()`][cache_images] (or ``source.cached(path)``) decodes a source's images once into one
file and returns a [`CachedImageTaskSource`][CachedImageTaskSource]: the same labels, description and
items, whose reads gather rows of the memory-mapped file (a copy from the page cache).

**The file.** An 8-byte magic, the length of a JSON header, the header, then (each at a multiple of 4096
bytes) one 64-bit fingerprint per image and the pixels, ``count * H * W * C`` bytes (``(H, W)`` rows for
grey images, ``(H, W, 3)`` for RGB). The header names the format, the reader, the decoder (including
Pillow's version), ``channels``, ``image_size``, the image count and shape, and a key: a SHA-256 of all
of these and of the fingerprints. A fingerprint is a hash of what determines an image's pixels: its
file's path relative to the dataset folder, size and modification time (for Meta-Dataset: the record's
file, offsets and length, and the file's size and time; for Hugging Face: the dataset's fingerprint and
the row).

**Staleness.** Opening computes the source's key and compares: a file built for other images (another
key) is refused with the reason (which setting differs, or which image changed), or rebuilt with
``rebuild=True``; it is never used silently. A file that is not an image cache is never overwritten.

**Building** decodes the images in chunks (in threads) into a temporary file beside ``path``, then
renames it over ``path`` (``os.replace``): a process killed while building leaves at most a stray
``.tmp`` file that is never read. Several processes building the same cache at once each write their own
temporary file; the last rename wins and the files are identical. Reads are safe from any number of
DataLoader workers (each maps the file itself).

Examples:
    >>> import os, tempfile
    >>> from PIL import Image
    >>> from torchcross.datasets.image_files import ImageFilesTaskSource
    >>> from torchcross.tasks.task import TaskDescription
    >>> root = tempfile.mkdtemp()
    >>> paths = [os.path.join(root, f"{i}.png") for i in range(4)]
    >>> for i, p in enumerate(paths):
    ...     Image.new("RGB", (6, 4), (i, 0, 0)).save(p)
    >>> desc = TaskDescription("BINARY_CLASSIFICATION", {0: "a", 1: "b"}, "toy")
    >>> src = ImageFilesTaskSource(paths, [0, 1, 0, 1], desc, image_size=8, output="uint8")
    >>> cached = src.cached(os.path.join(root, "toy.tcimg"))
    >>> bool((cached.get_batch([3, 1])[0] == src.get_batch([3, 1])[0]).all())
    True
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import struct
import tempfile
from collections.abc import Sequence
from typing import Any, Literal, Protocol

import numpy as np
import torch

from torchcross.data.sources import TaskSource
from torchcross.data.workers.shm_pool import worker_empty
from torchcross.datasets._images import Stats, images_to_tensor
from torchcross.tasks.task import TaskDescription

__all__ = ["IMAGE_CACHE_FORMAT", "CachedImageTaskSource", "cache_images"]

IMAGE_CACHE_FORMAT = "torchcross.image_cache/1"
"""The format name and version written into every cache header; another version is never read."""

_MAGIC = b"TCIMGC01"
_ALIGN = 4096
_CHUNK_BYTES = 64 << 20  # decode and write at most this many pixel bytes at a time


class _ImageSource(Protocol):
    """What a source needs to be cached (``ImageFilesTaskSource`` and its subclasses, the HF source)."""

    @property
    def task_description(self) -> TaskDescription: ...
    @property
    def labels(self) -> Any: ...
    @property
    def channels(self) -> int: ...
    @property
    def image_size(self) -> tuple[int, int] | None: ...
    @property
    def output(self) -> Literal["float", "uint8"]: ...
    @property
    def mean(self) -> Stats: ...
    @property
    def std(self) -> Stats: ...

    def __len__(self) -> int: ...

    def images(self, indices: Sequence[int]) -> list[np.ndarray]: ...

    def image_fingerprints(self) -> list[str]: ...


def _decoder() -> str:
    try:
        import PIL

        return f"Pillow {PIL.__version__}"
    except ImportError:  # pragma: no cover - every reader that decodes needs Pillow
        return "no Pillow"


def _align(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


def _hash64(items: Sequence[str]) -> np.ndarray:
    return np.array(
        [
            int.from_bytes(hashlib.sha256(s.encode("utf-8", "surrogatepass")).digest()[:8], "little")
            for s in items
        ],
        dtype="<u8",
    )


def _expected(source: _ImageSource, fingerprints: np.ndarray) -> dict[str, Any]:
    """The header fields that determine the pixels (all but the shape, known once decoded)."""
    size = source.image_size
    return {
        "format": IMAGE_CACHE_FORMAT,
        "reader": f"{type(source).__module__}.{type(source).__qualname__}",
        "decoder": _decoder(),
        "channels": int(source.channels),
        "image_size": None if size is None else [int(size[0]), int(size[1])],
        "count": len(fingerprints),
        "fingerprints_sha256": hashlib.sha256(fingerprints.tobytes()).hexdigest(),
    }


def _key(fields: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def _read_header(path: str) -> tuple[dict[str, Any], int]:
    """``(header, offset of the fingerprints)``; ``ValueError`` if ``path`` is not an image cache."""
    with open(path, "rb") as f:
        head = f.read(16)
        if len(head) != 16 or head[:8] != _MAGIC:
            raise ValueError(
                f"{path!r} is not a torchcross image cache (no {_MAGIC!r} magic); it is left untouched: "
                "give cached() another path"
            )
        (length,) = struct.unpack("<Q", head[8:])
        raw = f.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path!r}: unreadable image cache header ({exc}); delete the file") from exc
    if not isinstance(header, dict):
        raise ValueError(f"{path!r}: the image cache header is not a JSON object; delete the file")
    return header, _align(16 + length)


def _shape_bytes(shape: Sequence[int]) -> int:
    return int(np.prod(shape, dtype=np.int64))


def _difference(
    path: str, header: dict[str, Any], fp_offset: int, want: dict[str, Any], fps: list[str], now: np.ndarray
) -> str:
    """Why the cache at ``path`` (its ``header``) does not hold the images ``want`` describes."""
    for name in ("format", "reader", "decoder", "channels", "image_size", "count"):
        if header.get(name) != want[name]:
            return f"was built with {name} = {header.get(name)!r}, but the source has {name} = {want[name]!r}"
    stored = np.fromfile(path, dtype="<u8", count=want["count"], offset=fp_offset)
    changed = np.flatnonzero(stored != now) if len(stored) == len(now) else np.arange(len(now))
    if changed.size:
        first = int(changed[0])
        name = fps[first].split("\0")[0]
        return (
            f"holds other images: {changed.size} of {len(now)} differ, the first is image {first} "
            f"({name!r}: a changed, replaced or other file)"
        )
    if header.get("key") != _key({k: header.get(k) for k in want}):
        return "has a header whose key does not match its fields (edited or damaged)"
    return "is damaged: its size does not match its header"  # the fields and fingerprints agree


def cache_images(
    source: _ImageSource,
    path: str | os.PathLike[str],
    *,
    rebuild: bool = False,
    progress: bool | None = False,
) -> CachedImageTaskSource:
    """Open the decoded-image cache of ``source`` at ``path``, building it first if there is none.

    Args:
        source: an [`ImageFilesTaskSource`][torchcross.datasets.image_files.ImageFilesTaskSource] (Meta-Album,
            BSCD-FSL, Meta-Dataset, image files) or an
            [`HFDatasetTaskSource`][torchcross.datasets.hf_datasets.HFDatasetTaskSource]; its
            ``image_size`` fixes the stored size (without it, all images must have one size).
        path: the cache file (e.g. ``"cache/aircraft_84.tcimg"``); its folder is created.
        rebuild: build again over a cache at ``path`` that holds other images (another source, setting,
            decoder or changed files); else such a cache is an error.
        progress: show a tqdm bar while building; ``None`` shows it only on a terminal.

    Returns:
        A [`CachedImageTaskSource`][CachedImageTaskSource] reading the stored pixels.

    Raises:
        ValueError: a cache at ``path`` built for other images (the reason named) and ``rebuild=False``;
            a file at ``path`` that is not an image cache; images of different sizes without
            ``image_size``; a source without images.
        TypeError: a source that cannot be cached.
    """
    for attr in ("images", "image_fingerprints", "channels", "image_size", "task_description", "labels"):
        if not hasattr(source, attr):
            raise TypeError(
                f"cannot cache a {type(source).__name__}: it has no {attr!r}; cache an ImageFilesTaskSource "
                "(Meta-Album, BSCD-FSL, Meta-Dataset, image files) or an HFDatasetTaskSource"
            )
    path = os.fspath(path)
    fps = source.image_fingerprints()
    if not fps:
        raise ValueError(f"{source.task_description.task_identifier!r} has no images to cache")
    hashes = _hash64(fps)
    want = _expected(source, hashes)
    key = _key(want)
    if os.path.exists(path):
        header, fp_offset = _read_header(path)
        ok = header.get("key") == key and os.path.getsize(path) == _total_size(header, fp_offset)
        if ok:
            return CachedImageTaskSource(source, path)
        reason = _difference(path, header, fp_offset, want, fps, hashes)
        if not rebuild:
            raise ValueError(
                f"image cache {path!r} {reason}; it is not used: delete it, give another path, or pass "
                "rebuild=True to build it again"
            )
    _build(source, path, want, key, hashes, progress)
    return CachedImageTaskSource(source, path)


def _total_size(header: dict[str, Any], fp_offset: int) -> int:
    try:
        count = int(header["count"])
        return _align(fp_offset + 8 * count) + count * _shape_bytes(header["shape"])
    except (KeyError, TypeError, ValueError):
        return -1


def _build(
    source: _ImageSource, path: str, want: dict[str, Any], key: str, fps: np.ndarray, progress: bool | None
) -> None:
    from tqdm.auto import tqdm

    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    n = int(want["count"])
    first = source.images([0])[0]
    shape = [int(s) for s in first.shape]
    header = {**want, "key": key, "shape": shape, "task": source.task_description.task_identifier}
    raw = json.dumps(header, sort_keys=True).encode()
    fp_offset = _align(16 + len(raw))
    px_offset = _align(fp_offset + 8 * n)
    per_image = _shape_bytes(shape)
    chunk = max(1, _CHUNK_BYTES // max(per_image, 1))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    bar = tqdm(
        total=n,
        desc=f"cache {header['task']}",
        unit="image",
        disable=None if progress is None else not progress,
    )
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_MAGIC + struct.pack("<Q", len(raw)) + raw)
            f.seek(fp_offset)
            f.write(fps.tobytes())
            f.seek(px_offset)
            for start in range(0, n, chunk):
                idx = list(range(start, min(n, start + chunk)))
                images = source.images(idx)
                for i, im in zip(idx, images):
                    if list(im.shape) != shape:
                        raise ValueError(
                            f"image {i} of {header['task']!r} is {tuple(im.shape)} but image 0 is "
                            f"{tuple(shape)}: a cache needs one size; pass image_size= to the source"
                        )
                f.write(np.ascontiguousarray(np.stack(images), dtype=np.uint8).tobytes())
                bar.update(len(idx))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    finally:
        bar.close()


class CachedImageTaskSource(TaskSource):
    """A task source reading decoded images from a cache file; made by [`cache_images()`][cache_images].

    It has the labels, task description, length, ``channels``, ``image_size``, ``output``, ``mean`` and
    ``std`` of the ``source`` it caches, gives the same items, and passes other attributes (e.g. a
    Meta-Album source's ``paths``) through to it. Reads gather rows of the mapped file and convert them in
    one step; each process (DataLoader worker) maps the file itself.

    Args:
        source: the source whose images the file holds.
        path: the cache file (already checked against ``source``: use [`cache_images()`][cache_images]).
    """

    def __init__(self, source: _ImageSource, path: str | os.PathLike[str]) -> None:
        self.source = source
        self.path = os.fspath(path)
        header, fp_offset = _read_header(self.path)
        self.header = header
        self._shape = tuple(int(s) for s in header["shape"])
        self._offset = _align(fp_offset + 8 * int(header["count"]))
        self.task_description = source.task_description
        self.labels = source.labels
        self._label_tensor = torch.from_numpy(np.ascontiguousarray(np.asarray(source.labels)))
        self.channels, self.image_size = source.channels, source.image_size
        self.output, self.mean, self.std = source.output, source.mean, source.std
        self._pixels: np.ndarray | None = None
        self._pid = -1

    def __len__(self) -> int:
        return int(self.header["count"])

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_pixels"], state["_pid"] = None, -1  # each process maps the file itself
        return state

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name == "source":
            raise AttributeError(name)
        return getattr(self.source, name)

    def pixels(self) -> np.ndarray:
        """The read-only uint8 array of all images (``(N, H, W)`` or ``(N, H, W, 3)``), mapped."""
        if self._pixels is None or self._pid != os.getpid():
            with open(self.path, "rb") as f:
                mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            count = len(self)
            self._pixels = np.frombuffer(
                mapped, dtype=np.uint8, count=count * _shape_bytes(self._shape), offset=self._offset
            ).reshape(count, *self._shape)
            self._pid = os.getpid()
        return self._pixels

    def image(self, index: int) -> np.ndarray:
        """The uint8 image ``index`` (``(H, W)`` or ``(H, W, 3)``), a copy of its stored row."""
        return self.pixels()[int(index)].copy()

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.get_batch([index])
        return x[0], y[0]

    def get_batch(self, indices: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images (N, C, H, W), labels)``: one gather from the mapped file, converted in one step.

        Raises:
            IndexError: an index outside ``0..len(self) - 1``.
        """
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(self)
        if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= n):
            raise IndexError(f"indices must be in 0..{n - 1}, got {idx[(idx < 0) | (idx >= n)][:5].tolist()}")
        pixels = self.pixels()
        if self.output == "uint8" and self.mean is None and self.std is None:
            # stored as wanted: gather straight into the result (shared memory in a DataLoader worker),
            # laid out as images_to_tensor lays out uint8 (RGB channels-last, grey (N, 1, H, W))
            out = worker_empty((len(idx), *pixels.shape[1:]), torch.uint8)
            np.take(pixels, idx, axis=0, out=out.numpy(), mode="clip")  # in range: checked above
            x = out.unsqueeze(1) if pixels.ndim == 3 else out.permute(0, 3, 1, 2)
        else:
            rows = pixels[idx]  # a fancy-index gather: a new, writable array
            x = images_to_tensor(rows, self.channels, self.output, self.mean, self.std)
        return x, self._label_tensor[torch.from_numpy(idx)]
