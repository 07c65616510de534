"""Task sources over your own images: uint8 arrays and ImageFolder-style trees.

Any map-style dataset with labels becomes a task source with
[`torchcross.data.wrap_source.WrapTaskSource`][torchcross.data.wrap_source.WrapTaskSource]; the two classes
here add what images need: [`ImageArrayTaskSource`][ImageArrayTaskSource] holds
uint8 images (channels last, as MedIMeta and MedMNIST store them) and converts whole batches at once with the
same channel policy and output options as [`MedIMeta`][torchcross.datasets.medimeta.MedIMeta];
[`ImageFolderTaskSource`][ImageFolderTaskSource] reads a ``root/<class
name>/<image>`` tree with Pillow (no torchvision needed). Both mix with MedIMeta tasks in the same episode and
multi-task samplers, and [`write_medimeta()`][torchcross.datasets.medimeta.write_medimeta] converts them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch

from torchcross.data.sources import TaskSource
from torchcross.datasets._images import ChannelPolicy, Stats, images_to_tensor, resolve_channels
from torchcross.tasks.labels import normalize_labels
from torchcross.tasks.task import TaskDescription

__all__ = ["IMAGE_EXTENSIONS", "ImageArrayTaskSource", "ImageFolderTaskSource", "read_image_folder"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp")


class ImageArrayTaskSource(TaskSource):
    """A task source over uint8 images ``(N, H, W)`` or ``(N, H, W, C)`` held in memory.

    Items are ``((C, H, W) tensor, canonical label)``;
    [`get_batch()`][ImageArrayTaskSource.get_batch] converts a whole
    batch in one operation. ``output``, ``channels``, ``mean`` and ``std`` work as in
    [`MedIMeta`][torchcross.datasets.medimeta.MedIMeta]; ``transform`` is applied to each image tensor.

    Examples:
        >>> from torchcross.data import TaskDescription
        >>> d = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b", 2: "c"}, "toy")
        >>> src = ImageArrayTaskSource(np.zeros((6, 5, 5), np.uint8), [0, 1, 2, 0, 1, 2], d, channels=3)
        >>> x, y = src.get_batch([0, 4])
        >>> x.shape, y.tolist()
        (torch.Size([2, 3, 5, 5]), [0, 1])
    """

    def __init__(
        self,
        images: Any,
        labels: Any,
        task_description: TaskDescription,
        channels: ChannelPolicy = "keep",
        output: Literal["float", "uint8"] = "float",
        mean: Stats = None,
        std: Stats = None,
        transform: Callable[[torch.Tensor], Any] | None = None,
    ) -> None:
        if not isinstance(task_description, TaskDescription):
            raise TypeError(
                f"task_description must be a TaskDescription, got {type(task_description).__name__}"
            )
        if output not in ("float", "uint8"):
            raise ValueError(f"output must be 'float' or 'uint8', got {output!r}")
        if output == "uint8" and (mean is not None or std is not None):
            raise ValueError(
                "mean/std apply to output='float'; with output='uint8' pass them to normalize_batch"
            )
        self.task_description = task_description
        self.labels = normalize_labels(labels, task_description)
        self._label_tensor = torch.from_numpy(self.labels)
        self.output, self.mean, self.std, self.transform = output, mean, std, transform
        self.channels = channels
        if images is not None:
            self._set_images(images)

    def _set_images(self, images: Any) -> None:
        arr = np.asarray(images)
        if arr.dtype != np.uint8 or arr.ndim not in (3, 4) or (arr.ndim == 4 and arr.shape[-1] not in (1, 3)):
            raise ValueError(
                f"images must be uint8 (N, H, W) or (N, H, W, C) with C in (1, 3), "
                f"got {arr.dtype} {arr.shape}"
            )
        if len(arr) != len(self.labels):
            raise ValueError(
                f"task {self.task_description.task_identifier!r}: "
                f"{len(arr)} images but {len(self.labels)} labels"
            )
        self._images = arr
        self.num_channels = resolve_channels(self.channels, 1 if arr.ndim == 3 else arr.shape[-1])

    @property
    def images(self) -> np.ndarray:
        """The uint8 images, channels last."""
        return self._images

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Any, torch.Tensor]:
        x, y = self.get_batch([index])
        return x[0], y[0]

    def get_batch(
        self, indices: Any, output: Literal["float", "uint8"] | None = None
    ) -> tuple[Any, torch.Tensor]:
        """``(images (N, C, H, W), labels)`` for ``indices``, converted in one operation."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(self.labels)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(
                f"indices {idx[(idx < -n) | (idx >= n)][:5].tolist()} out of range for {n} items"
            )
        out = output or self.output
        stats = (self.mean, self.std) if out == "float" else (None, None)
        x = images_to_tensor(self.images[idx], self.num_channels, out, *stats)
        y = self._label_tensor[torch.from_numpy(idx)]
        if self.transform is not None:
            x = torch.stack([self.transform(xi) for xi in x])
        return x, y


class _LazyImages(Sequence):
    def __init__(self, source: ImageFolderTaskSource) -> None:
        self._source = source

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self._source.image(i) for i in range(*index.indices(len(self)))]
        return self._source.image(index)


def read_image_folder(
    root: str | os.PathLike[str], extensions: Sequence[str] = IMAGE_EXTENSIONS
) -> tuple[list[str], np.ndarray, dict[int, str]]:
    """List a ``root/<class name>/<file>`` tree: ``(paths, class indices, {index: class name})``.

    Classes are the sorted sub-folder names; files are sorted within each class.

    Raises:
        ValueError: if ``root`` has fewer than two class folders or no image files.
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise ValueError(f"image folder {root!r} is not a directory")
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if len(classes) < 2:
        raise ValueError(f"{root!r} must hold one sub-folder per class (at least two), found {classes}")
    exts = tuple(e.lower() for e in extensions)
    paths, labels = [], []
    for k, cls in enumerate(classes):
        for dirpath, _, files in sorted(os.walk(os.path.join(root, cls))):
            for name in sorted(files):
                if name.lower().endswith(exts):
                    paths.append(os.path.join(dirpath, name))
                    labels.append(k)
    if not paths:
        raise ValueError(f"no image files with extensions {list(exts)} under {root!r}")
    return paths, np.asarray(labels, dtype=np.int64), dict(enumerate(classes))


class ImageFolderTaskSource(TaskSource):
    """A multi-class task from a ``root/<class name>/<image>`` tree, decoded with Pillow.

    Images are resized to ``image_size`` (``(H, W)`` or one int) when given, so they stack; ``channels`` is 1
    (``"L"``) or 3 (``"RGB"``). Items are ``((C, H, W) tensor, label)``.
    [`images`][ImageFolderTaskSource.images] is a lazy sequence of the uint8
    images that [`write_medimeta()`][torchcross.datasets.medimeta.write_medimeta] can convert.

    Examples:
        >>> import tempfile
        >>> from PIL import Image
        >>> root = tempfile.mkdtemp()
        >>> for cls in ("cat", "dog"):
        ...     os.makedirs(os.path.join(root, cls))
        ...     Image.new("RGB", (6, 4)).save(os.path.join(root, cls, "a.png"))
        >>> src = ImageFolderTaskSource(root, image_size=8)
        >>> src[1][0].shape, src.task_description.classes
        (torch.Size([3, 8, 8]), {0: 'cat', 1: 'dog'})
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        image_size: int | tuple[int, int] | None = None,
        channels: Literal[1, 3] = 3,
        output: Literal["float", "uint8"] = "float",
        mean: Stats = None,
        std: Stats = None,
        task_identifier: str | None = None,
        domain_identifier: str = "",
    ) -> None:
        self.root = os.fspath(root)
        self.paths, labels, classes = read_image_folder(self.root)
        tid = (
            task_identifier if task_identifier is not None else os.path.basename(os.path.normpath(self.root))
        )
        self.task_description = TaskDescription("MULTICLASS_CLASSIFICATION", classes, tid, domain_identifier)
        self.labels = labels
        self._label_tensor = torch.from_numpy(labels)
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels!r}")
        if isinstance(image_size, int):
            image_size = (image_size, image_size)
        self.image_size, self.channels = image_size, channels
        self.output, self.mean, self.std = output, mean, std

    @property
    def images(self) -> Sequence[np.ndarray]:
        """A lazy sequence of the uint8 images (for
        [`write_medimeta()`][torchcross.datasets.medimeta.write_medimeta])."""
        return _LazyImages(self)

    def image(self, index: int) -> np.ndarray:
        """The uint8 image ``index``: ``(H, W)`` or ``(H, W, 3)``."""
        from torchcross.datasets.image_files import decode_image

        return decode_image(self.paths[index], self.channels, self.image_size)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.get_batch([index])
        return x[0], y[0]

    def get_batch(self, indices: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images (N, C, H, W), labels)``: decode each image, convert the stack at once."""
        idx = [int(i) for i in np.asarray(indices, dtype=np.int64).reshape(-1)]
        images = [self.image(i) for i in idx]
        shapes = {im.shape for im in images}
        if len(shapes) > 1:
            raise ValueError(f"images of different sizes {sorted(shapes)} in {self.root!r}; pass image_size=")
        x = images_to_tensor(np.stack(images), self.channels, self.output, self.mean, self.std)
        return x, self._label_tensor[torch.as_tensor(idx, dtype=torch.int64)]
