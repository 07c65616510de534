"""Image files on disk as a task source, and stable splits for datasets that ship none.

[`ImageFilesTaskSource`][ImageFilesTaskSource] is the common reader of the meta-datasets that keep
one image file per example (Meta-Album, BSCD-FSL, image folders): a list of paths, their labels and a
task description. Images are decoded with Pillow (a thread pool for larger batches: decoding releases
the GIL), converted to 1 or 3 channels, resized to ``image_size`` when given, and stacked.

[`hash_splits()`][hash_splits] gives datasets without official splits a train/val/test split that is
a pure function of each file's name (ours: a SHA-256 of ``salt/name``), so it does not depend on file
order, machine or the other files present.

Examples:
    >>> import os, tempfile
    >>> from PIL import Image
    >>> from torchcross.tasks.task import TaskDescription
    >>> root = tempfile.mkdtemp()
    >>> paths = [os.path.join(root, f"{i}.png") for i in range(4)]
    >>> for p in paths:
    ...     Image.new("RGB", (6, 4)).save(p)
    >>> src = ImageFilesTaskSource(
    ...     paths, [0, 1, 0, 1], TaskDescription("BINARY_CLASSIFICATION", {0: "a", 1: "b"}), image_size=8
    ... )
    >>> src.get_batch([0, 1])[0].shape
    torch.Size([2, 3, 8, 8])
    >>> sorted(hash_splits(["x.png", "y.png", "z.png"], salt="toy"))
    ['test', 'train', 'val']
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import numpy as np
import torch

from torchcross.data.sources import TaskSource
from torchcross.datasets._images import Stats, images_to_tensor
from torchcross.datasets._optional import require
from torchcross.datasets.image_cache import CachedImageTaskSource, cache_images
from torchcross.tasks.labels import normalize_labels
from torchcross.tasks.task import TaskDescription

__all__ = ["MAX_IMAGE_PIXELS", "ImageFilesTaskSource", "decode_image", "decode_image_bytes", "hash_splits"]

MAX_IMAGE_PIXELS = 16384 * 16384
"""Images with more pixels are refused (a decompression bomb guard; Pillow's own warns at 89 MP)."""

_THREADS = min(8, os.cpu_count() or 1)


def decode_image(path: str, channels: int, image_size: tuple[int, int] | None) -> np.ndarray:
    """Decode one image file to uint8 ``(H, W)`` (``channels=1``) or ``(H, W, 3)``, resized if asked.

    Raises:
        ValueError: the file is not a readable image, or has more than
            [`MAX_IMAGE_PIXELS`][MAX_IMAGE_PIXELS] pixels (naming the file).
        FileNotFoundError: the file does not exist (naming it).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image file {path!r} does not exist (or is not a regular file)")
    return _decode(path, channels, image_size, f"image file {path!r}")


def decode_image_bytes(
    data: bytes, channels: int, image_size: tuple[int, int] | None, what: str = "image bytes"
) -> np.ndarray:
    """Decode an encoded image (PNG, JPEG, ...) held in memory, as [`decode_image()`][decode_image] does.

    Raises:
        ValueError: the bytes are not a readable image, or have more than
            [`MAX_IMAGE_PIXELS`][MAX_IMAGE_PIXELS] pixels (naming ``what``, e.g. a file and byte offset).
    """
    return _decode(io.BytesIO(data), channels, image_size, what)


def _decode(source: Any, channels: int, image_size: tuple[int, int] | None, what: str) -> np.ndarray:
    image_mod = require("PIL.Image", "reading image files")
    try:
        with image_mod.open(source) as im:
            w, h = im.size
            if w * h > MAX_IMAGE_PIXELS:
                raise ValueError(
                    f"{what} has {w}x{h} pixels, more than MAX_IMAGE_PIXELS = {MAX_IMAGE_PIXELS}; "
                    "it is refused as a possible decompression bomb (resize it first)"
                )
            im.draft("L" if channels == 1 else "RGB", None if image_size is None else image_size[::-1])
            im = im.convert("L" if channels == 1 else "RGB")
            if image_size is not None and (im.size[1], im.size[0]) != tuple(image_size):
                im = im.resize((image_size[1], image_size[0]), image_mod.BILINEAR)
            return np.asarray(im).copy()
    except (OSError, SyntaxError, image_mod.DecompressionBombError) as exc:
        raise ValueError(f"cannot decode {what}: {exc}") from exc


class ImageFilesTaskSource(TaskSource):
    """A task over image files: ``paths[i]`` has label ``labels[i]``.

    Args:
        paths: one image file per example.
        labels: the labels, in any form [`TaskDescription`][TaskDescription] accepts for the task's kind
            (class indices, or ``(N, C)`` 0/1 rows for multi-label tasks).
        task_description: the task.
        channels: 1 (grey) or 3 (RGB); images are converted as they are decoded.
        image_size: resize every image to this (one int or ``(H, W)``); needed when sizes differ.
        output: ``"float"`` (float32 in ``[0, 1]``, then ``(x - mean) / std``) or ``"uint8"``.
        mean: per-channel mean (or one float) for ``output="float"``.
        std: per-channel std (or one float).

    Raises:
        ValueError: ``paths`` and ``labels`` differ in length, or ``channels`` is not 1 or 3.
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str]],
        labels: Any,
        task_description: TaskDescription,
        *,
        channels: Literal[1, 3] = 3,
        image_size: int | tuple[int, int] | None = None,
        output: Literal["float", "uint8"] = "float",
        mean: Stats = None,
        std: Stats = None,
    ) -> None:
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels!r}")
        self.paths = [os.fspath(p) for p in paths]
        canonical = normalize_labels(np.asarray(labels), task_description)
        if len(canonical) != len(self.paths):
            raise ValueError(
                f"{len(self.paths)} image paths but {len(canonical)} labels; give one label per path"
            )
        self.labels = canonical
        self._label_tensor = torch.from_numpy(np.ascontiguousarray(canonical))
        self.task_description = task_description
        if isinstance(image_size, int):
            image_size = (image_size, image_size)
        self.image_size = image_size
        self.channels = channels
        self.output, self.mean, self.std = output, mean, std

    def __len__(self) -> int:
        return len(self.paths)

    def image(self, index: int) -> np.ndarray:
        """The uint8 image ``index`` (``(H, W)`` or ``(H, W, 3)``)."""
        return decode_image(self.paths[index], self.channels, self.image_size)

    def images(self, indices: Sequence[int]) -> list[np.ndarray]:
        """The uint8 images ``indices``, decoded in threads (eight or more) as [`image()`][image] does."""
        idx = [int(i) for i in indices]
        if len(idx) >= 8 and _THREADS > 1:
            with ThreadPoolExecutor(_THREADS) as pool:
                return list(pool.map(self.image, idx))
        return [self.image(i) for i in idx]

    def image_fingerprints(self) -> list[str]:
        """One string per image naming what determines its pixels: its path relative to the folder of
        all the files, its size and its modification time (what keys a decoded-image cache).

        Raises:
            FileNotFoundError: an image file does not exist (naming it).
        """
        if not self.paths:
            return []
        absolute = [os.path.abspath(p) for p in self.paths]
        root = os.path.commonpath([os.path.dirname(p) for p in absolute])
        out = []
        for p, a in zip(self.paths, absolute):
            try:
                st = os.stat(a)
            except FileNotFoundError as exc:
                raise FileNotFoundError(f"image file {p!r} does not exist") from exc
            out.append(f"{os.path.relpath(a, root)}\0{st.st_size}\0{st.st_mtime_ns}")
        return out

    def cached(
        self, path: str | os.PathLike[str], *, rebuild: bool = False, progress: bool | None = False
    ) -> CachedImageTaskSource:
        """This source read from a decoded-image cache file at ``path``, built first if there is none.

        See [`cache_images()`][cache_images] (the arguments, the file, when
        a cache is refused or rebuilt) and the docs' "Decoded-image cache" section.
        """
        return cache_images(self, path, rebuild=rebuild, progress=progress)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.get_batch([index])
        return x[0], y[0]

    def get_batch(self, indices: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images (N, C, H, W), labels)``: decode the files (in threads), convert the stack at once.

        Raises:
            ValueError: the images differ in size and no ``image_size`` was given, or a file cannot be
                decoded (naming it).
        """
        return stacked_batch(self, indices)


def stacked_batch(source: Any, indices: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images (N, C, H, W), labels)`` of a source that decodes images one by one: its
    ``images(indices)`` stacked and converted at once with its ``channels``, ``output``, ``mean`` and
    ``std``, and the rows of its label tensor.

    Raises:
        ValueError: the images differ in size (the source was made without ``image_size``).
    """
    idx = [int(i) for i in np.asarray(indices, dtype=np.int64).reshape(-1)]
    images = source.images(idx)
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise ValueError(
            f"images of different sizes {sorted(shapes)} in task "
            f"{source.task_description.task_identifier!r}; pass image_size= (in torchcross run: "
            "[data] image_size)"
        )
    x = images_to_tensor(np.stack(images), source.channels, source.output, source.mean, source.std)
    return x, source._label_tensor[torch.as_tensor(idx, dtype=torch.int64)]


def hash_splits(
    names: Sequence[str],
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    salt: str = "",
) -> dict[str, np.ndarray]:
    """``{"train", "val", "test": sorted indices}``: each name's split from a hash of ``salt/name``.

    A pure function of each name (ours): adding or removing files never moves another file to
    another split. The fractions hold in expectation.

    Raises:
        ValueError: fractions that are negative or do not sum to 1.
    """
    f = np.asarray(fractions, dtype=np.float64)
    if f.shape != (3,) or (f < 0).any() or abs(float(f.sum()) - 1.0) > 1e-9:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions!r}")
    u = np.array(
        [int.from_bytes(hashlib.sha256(f"{salt}/{n}".encode()).digest()[:8], "big") / 2.0**64 for n in names],
        dtype=np.float64,
    )
    cut1, cut2 = f[0], f[0] + f[1]
    return {
        "train": np.flatnonzero(u < cut1),
        "val": np.flatnonzero((u >= cut1) & (u < cut2)),
        "test": np.flatnonzero(u >= cut2),
    }
