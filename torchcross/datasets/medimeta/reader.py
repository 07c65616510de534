"""The MedIMeta reader: one task of one dataset folder as a
[`TaskSource`][TaskSource]."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, cast

import numpy as np
import torch

from torchcross.data.sources import TaskSource
from torchcross.data.workers.shm_pool import worker_empty
from torchcross.datasets._images import ChannelPolicy, Stats, images_to_tensor, resolve_channels, rgb_to_gray
from torchcross.datasets._optional import require
from torchcross.datasets.medimeta._hdf5 import HDF5Images, MedIMetaFileError, file_kind, open_regular
from torchcross.datasets.medimeta.catalogue import medimeta_catalogue
from torchcross.datasets.medimeta.folder import (
    DatasetInfo,
    available_datasets,
    available_tasks,
    read_info,
    read_split,
    scan_datasets,
)
from torchcross.datasets.medimeta.paths import check_name
from torchcross.tasks.labels import normalize_labels
from torchcross.tasks.task import TaskTarget

__all__ = ["MedIMeta"]

Output = Literal["float", "uint8"]


def _unknown_dataset(data_path: str, dataset_id: str) -> ValueError:
    infos, problems = scan_datasets(data_path)
    msg = f"no MedIMeta dataset {dataset_id!r} under {data_path!r}; available: {sorted(infos)}"
    if problems:
        msg += f" (broken folders skipped: {sorted(problems)})"
    if dataset_id in medimeta_catalogue():
        msg += (
            f". {dataset_id!r} is a MedIMeta dataset: download it (see docs/medimeta.md) into {data_path!r}"
        )
    return ValueError(msg)


def _split_rows(dataset_dir: str, folder: str, names: Sequence[str], n_images: int) -> np.ndarray:
    present = (
        sorted(f[:-4] for f in os.listdir(os.path.join(dataset_dir, folder)) if f.endswith(".txt"))
        if os.path.isdir(os.path.join(dataset_dir, folder))
        else []
    )
    if not names:
        raise ValueError(f"give at least one {folder[:-1]} name (or None for all images), got {list(names)}")
    if len(set(names)) != len(names):
        raise ValueError(f"{folder[:-1]} names repeat in {list(names)}")
    parts = []
    for name in names:
        if not isinstance(name, str) or name not in present:
            raise ValueError(
                f"{folder[:-1]} {name!r} does not exist for {dataset_dir} (its {folder} are {present}; "
                f"empty splits have no file)"
            )
        parts.append(read_split(os.path.join(dataset_dir, folder, f"{name}.txt"), n_images))
    rows = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    rows.sort()
    return rows


class MedIMeta(TaskSource):
    """One task of a MedIMeta dataset folder, as a map-style
    [`TaskSource`][TaskSource].

    Items are ``(image, label)`` with ``image`` a ``(C, H, W)`` tensor and ``label`` in the
    canonical form of the task's kind. By default images are float32 in ``[0, 1]``
    (``x / 255``, as torchvision's ``ToTensor``); give ``mean`` and ``std`` to normalise
    as ``Normalize(mean, std)`` (``0.5, 0.5`` reproduces medimeta 0.0.6's ``[-1, 1]``).
    ``output="uint8"`` returns raw uint8 tensors for
    [`normalize_batch()`][torchcross.datasets.medimeta.normalize_batch] to convert later, on the training
    device.

    [`get_batch()`][torchcross.datasets.medimeta.MedIMeta.get_batch] reads many items (a whole episode) in one
    pass over ``images.hdf5`` (positioned reads straight into one array). The HDF5 file is
    opened lazily in each process, so the object pickles and works with ``spawn`` and
    ``fork`` DataLoader workers.

    Args:
        data_path: the folder holding one sub-folder per dataset id.
        dataset_id: e.g. ``"oct"``.
        task_name: e.g. ``"disease class"`` (names may contain spaces).
        split: ``"train"``, ``"val"``, ``"test"`` or a list of them (concatenated); ``None``
            for every image.
        original_split: the same, for the source dataset's own splits (exclusive with ``split``).
        transform: applied to each image: it receives the ``(C, H, W)`` tensor in the output form, or a PIL
            image with ``transform_input="pil"`` (so ``torchvision`` v1 pipelines with ``ToTensor`` work).
            With a transform, `get_batch()` transforms image by image and stacks the results.
        use_hdf5: read ``images.hdf5`` (default) or the ``images/*.tiff`` files.
        channels: ``"keep"`` (as stored), ``1`` (RGB to grey, as Pillow's ``convert("L")``)
            or ``3`` (grey repeated), e.g. for ImageNet-pretrained backbones.
        output: ``"float"`` or ``"uint8"``.
        mean, std: per-channel (or scalar) normalisation after scaling to ``[0, 1]``.
        transform_input: ``"tensor"`` or ``"pil"``.

    Raises:
        ValueError: an unknown dataset id or task name (listing what exists), an unknown
            split, or ``split`` and ``original_split`` together.
        MedIMetaFileError: a missing or malformed file (the message names it).

    Examples:
        >>> import tempfile
        >>> from torchcross.datasets.medimeta.writer import write_synthetic_medimeta
        >>> root = tempfile.mkdtemp()
        >>> _ = write_synthetic_medimeta(root, "toy", num_images=12, image_size=8, channels=3)
        >>> src = MedIMeta(root, "toy", "class", split="train")
        >>> x, y = src[0]
        >>> x.shape, x.dtype, src.task_description.task_target.name
        (torch.Size([3, 8, 8]), torch.float32, 'MULTICLASS_CLASSIFICATION')
        >>> xb, yb = src.get_batch([0, 2, 1])
        >>> xb.shape, yb.shape
        (torch.Size([3, 3, 8, 8]), torch.Size([3]))
    """

    def __init__(
        self,
        data_path: str | os.PathLike[str],
        dataset_id: str,
        task_name: str,
        split: str | Sequence[str] | None = None,
        original_split: str | Sequence[str] | None = None,
        transform: Callable[[Any], Any] | None = None,
        use_hdf5: bool = True,
        channels: ChannelPolicy = "keep",
        output: Output = "float",
        mean: Stats = None,
        std: Stats = None,
        transform_input: Literal["tensor", "pil"] = "tensor",
    ) -> None:
        self.data_path = os.fspath(data_path)
        if not os.path.isdir(self.data_path):
            raise FileNotFoundError(f"MedIMeta data_path {self.data_path!r} is not a directory")
        check_name(dataset_id, "dataset_id")
        self.dataset_dir = os.path.join(self.data_path, dataset_id)
        if not os.path.lexists(os.path.join(self.dataset_dir, "info.yaml")):
            raise _unknown_dataset(self.data_path, dataset_id)
        if split is not None and original_split is not None:
            raise ValueError(f"give split or original_split, not both (got {split=}, {original_split=})")
        if output not in ("float", "uint8"):
            raise ValueError(f"output must be 'float' or 'uint8', got {output!r}")
        if transform_input not in ("tensor", "pil"):
            raise ValueError(f"transform_input must be 'tensor' or 'pil', got {transform_input!r}")
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable, got {type(transform).__name__}")
        if output == "uint8" and (mean is not None or std is not None):
            raise ValueError(
                "mean/std apply to output='float'; with output='uint8' pass them to normalize_batch"
            )
        self.dataset_id, self.task_name = dataset_id, task_name
        self.split, self.original_split = split, original_split
        self.transform, self.transform_input = transform, transform_input
        self.use_hdf5, self.output, self.mean, self.std = use_hdf5, output, mean, std

        self.info: DatasetInfo = read_info(self.dataset_dir)
        self.dataset_name = self.info.name
        self.input_size = self.info.input_size
        task = self.info.task(task_name)
        self.task_description = task.description(dataset_id, self.info.domain)

        self.label_file = os.path.join(self.dataset_dir, "task_labels", f"{task_name}.npy")
        all_labels = self._load_labels()
        n_images = self._open_images(len(all_labels))
        self.num_channels = resolve_channels(channels, self._stored_channels)
        self.channels = channels
        if n_images != len(all_labels):
            raise MedIMetaFileError(
                f"{self.label_file}: has {len(all_labels)} labels "
                f"but {self._images_name} has {n_images} images"
            )
        names = split if split is not None else original_split
        if names is None:
            self.split_indices = np.arange(n_images, dtype=np.int64)
        else:
            folder = "splits" if split is not None else "original_splits"
            names = [names] if isinstance(names, str) else list(names)
            self.split_indices = _split_rows(self.dataset_dir, folder, names, n_images)
        self.labels = all_labels[self.split_indices]
        self._label_tensor = torch.from_numpy(self.labels)

    # ------------------------------------------------------------------ loading
    def _load_labels(self) -> np.ndarray:
        if file_kind(self.label_file) == "missing":
            raise MedIMetaFileError(f"{self.label_file}: missing (the labels of task {self.task_name!r})")
        try:
            with open_regular(self.label_file) as fh:
                raw = np.load(fh, allow_pickle=False)
            return normalize_labels(raw, self.task_description)
        except MedIMetaFileError:
            raise
        except (ValueError, TypeError, OSError) as exc:
            raise MedIMetaFileError(f"{self.label_file}: {exc}") from None

    def _open_images(self, n_labels: int) -> int:
        if self.use_hdf5:
            path = os.path.join(self.dataset_dir, "images.hdf5")
            if file_kind(path) == "missing":
                hint = " (use_hdf5=False reads the TIFF folder)" if os.path.isdir(self._tiff_dir) else ""
                raise MedIMetaFileError(f"{path}: missing{hint}")
            self._store: HDF5Images | None = HDF5Images(path)
            shape = self._store.shape
            self._images_name = path
        else:
            self._store = None
            self._images_name = self._tiff_dir
            first = self._tiff_path(0)
            if file_kind(first) == "missing":
                raise MedIMetaFileError(f"{first}: missing (use_hdf5=False reads images/NNNNNN.tiff)")
            sample = self._read_tiffs([0])
            shape = (n_labels, *sample.shape[1:])
        self._stored_channels = 1 if len(shape) == 3 else shape[3]
        c, h, w = self.input_size
        if (self._stored_channels, *shape[1:3]) != (c, h, w):
            raise MedIMetaFileError(
                f"{self._images_name}: images are {shape[1:]} "
                f"but info.yaml input_size is {list(self.input_size)}"
            )
        return shape[0]

    @property
    def _tiff_dir(self) -> str:
        return os.path.join(self.dataset_dir, "images")

    def _tiff_path(self, row: int) -> str:
        return os.path.join(self._tiff_dir, f"{row:06d}.tiff")

    def _read_tiffs(self, rows: Sequence[int]) -> np.ndarray:
        image_mod = require("PIL.Image")
        c, h, w = self.input_size
        want = (h, w) if c == 1 else (h, w, c)
        arrays = []
        for row in rows:
            path = self._tiff_path(int(row))
            try:
                with open_regular(path) as fh, image_mod.open(fh) as im:
                    if (im.size[1], im.size[0]) != (h, w):  # checked before decoding anything
                        raise MedIMetaFileError(
                            f"{path}: image is {(im.size[1], im.size[0])}, but info.yaml input_size "
                            f"{list(self.input_size)} means {want}; re-convert the dataset or read "
                            "images.hdf5 (use_hdf5=True)"
                        )
                    arrays.append(np.asarray(im.convert("RGB") if im.mode not in ("L", "RGB") else im))
            except (image_mod.DecompressionBombError, image_mod.DecompressionBombWarning) as exc:
                raise MedIMetaFileError(
                    f"{path}: refused to decode a possible decompression bomb ({exc}); info.yaml "
                    f"input_size {list(self.input_size)} means {want}: re-convert the dataset or "
                    "read images.hdf5 (use_hdf5=True), or raise PIL.Image.MAX_IMAGE_PIXELS if you trust "
                    "the file"
                ) from None
            except OSError as exc:
                raise MedIMetaFileError(f"{path}: cannot read image ({exc})") from None
            if arrays[-1].shape != want:
                raise MedIMetaFileError(
                    f"{path}: image is {arrays[-1].shape}, but info.yaml input_size {list(self.input_size)} "
                    f"means {want}; re-convert the dataset or read images.hdf5 (use_hdf5=True)"
                )
        return np.stack(arrays)

    def _read_rows(self, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        if self._store is not None:
            return self._store.read(rows, out)
        images = self._read_tiffs(rows.tolist())
        if out is None:
            return images
        out[...] = images.reshape(out.shape)
        return out

    def _read_uint8(self, rows: np.ndarray) -> torch.Tensor:
        """Stored channels, uint8: the rows gathered straight into the output, no transpose.

        RGB comes back as an ``(N, 3, H, W)`` view of channels-last memory (the layout on
        disk); [`normalize_batch()`][torchcross.datasets.medimeta.normalize_batch] returns contiguous float on
        the training device.
        """
        h, w = self.input_size[1:]
        row = (h, w) if self._stored_channels == 1 else (h, w, self._stored_channels)
        buf = worker_empty((len(rows), *row), torch.uint8)
        self._read_rows(rows, buf.numpy())
        return buf.unsqueeze(1) if buf.dim() == 3 else buf.permute(0, 3, 1, 2)

    def _positions(self, indices: Any) -> np.ndarray:
        pos = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(self.labels)
        if pos.size and (pos.min() < -n or pos.max() >= n):
            raise IndexError(
                f"indices {pos[(pos < -n) | (pos >= n)][:5].tolist()} out of range for {n} items"
            )
        return np.where(pos < 0, pos + n, pos)

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Any, torch.Tensor]:
        pos = self._positions([index])
        images, labels = self.get_batch(pos) if self.transform is None else self._transformed(pos)
        return images[0], labels[0]

    def get_batch(self, indices: Any, output: Output | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(images (N, C, H, W), labels)`` for positions ``indices``, in one read.

        Args:
            indices: positions within this source (not file rows).
            output: override the source's ``output`` (``"float"`` or ``"uint8"``).

        With a ``transform``, images are read in one gather, then transformed one by one
        and stacked.
        """
        pos = self._positions(indices)
        if self.transform is not None:
            transformed, labels = self._transformed(pos)
            return torch.stack(list(transformed)), labels
        out = output or self.output
        mean, std = (self.mean, self.std) if out == "float" else (None, None)
        rows = self.split_indices[pos]
        if out == "uint8" and self.num_channels == self._stored_channels:
            images = self._read_uint8(rows)
        else:
            images = images_to_tensor(self._read_rows(rows), self.num_channels, out, mean, std)
        return images, self._label_tensor[torch.from_numpy(pos)]

    def _transformed(self, pos: np.ndarray) -> tuple[list[Any], torch.Tensor]:
        transform = cast("Callable[[Any], Any]", self.transform)  # called only with a transform
        raw = self._read_rows(self.split_indices[pos])
        labels = self._label_tensor[torch.from_numpy(pos)]
        if self.transform_input == "tensor":
            images = images_to_tensor(raw, self.num_channels, self.output, self.mean, self.std)
            return [transform(x) for x in images], labels
        image_mod = require("PIL.Image")
        if raw.ndim == 4 and self.num_channels == 1:
            raw = rgb_to_gray(raw)
        elif raw.ndim == 3 and self.num_channels == 3:
            raw = np.repeat(raw[..., None], 3, axis=-1)
        return [transform(image_mod.fromarray(x)) for x in raw], labels

    def close(self) -> None:
        """Release this process's file handles (reads re-open them)."""
        if self._store is not None:
            self._store.close()

    def __repr__(self) -> str:
        which = (
            f"split={self.split!r}"
            if self.original_split is None
            else f"original_split={self.original_split!r}"
        )
        return (
            f"MedIMeta({self.data_path!r}, {self.dataset_id!r}, {self.task_name!r}, {which}, "
            f"n={len(self)}, {self.task_description.task_target.name})"
        )

    # 0.0.6-style helpers
    get_available_datasets = staticmethod(available_datasets)
    get_available_tasks = staticmethod(available_tasks)

    # medimeta 0.0.6's attribute names: parts of the description
    @property
    def task_target(self) -> TaskTarget:
        """``task_description.task_target``."""
        return self.task_description.task_target

    @property
    def classes(self) -> Mapping[int, str]:
        """``task_description.classes``."""
        return self.task_description.classes

    @property
    def task_identifier(self) -> str | None:
        """``task_description.task_identifier``."""
        return self.task_description.task_identifier

    @property
    def domain_identifier(self) -> str | None:
        """``task_description.domain_identifier``."""
        return self.task_description.domain_identifier
