"""Hugging Face ``datasets`` with an image column and class labels, as task sources.

A ``datasets.Dataset`` (or a ``DatasetDict``, or a folder written by ``save_to_disk``) with an ``Image``
column and a ``ClassLabel`` column becomes a multi-class task (binary with two classes); a
``Sequence(ClassLabel)`` (``List(ClassLabel)``) column becomes a multi-label task. Class names come from
the features. The image and label columns are found from the features when there is one of each kind;
otherwise name them (``image_column=``, ``label_column=``). Batches are decoded at once
(``dataset[indices]``) and converted to a tensor in one step.

Splits: a ``DatasetDict``'s splits are used as they are (``train``; ``validation``, ``valid``, ``val`` or
``dev`` as ``val``; ``test``). A single ``Dataset`` (or a ``DatasetDict`` with one split) gets a stable
train/val/test split from ``hash_splits()`` of ``torchcross.datasets.image_files`` (70/15/15, ours) over a
per-row key: the image's stored file path when every row has a distinct one, else the SHA-256 of the
image's encoded bytes (so the split of an image depends on neither row order nor the other rows; identical
images share a split).

Everything runs offline: only local datasets and folders are read (``HF_DATASETS_OFFLINE=1`` is fine).
Needs ``pip install "torchcross[hf-datasets]"``.

Examples:
    >>> import tempfile
    >>> root = write_synthetic_hf(tempfile.mkdtemp())
    >>> entries, problems = scan_hf(root)
    >>> [(e.id, [t.task_name for t in e.tasks], e.info["splits"]) for e in entries]
    [('leaves', ['label'], ('train', 'val', 'test')), ('scenes', ['label', 'tags'], ('train', 'val', 'test'))]
    >>> src = open_hf(root, "scenes", "tags", "train", channels=3)
    >>> src.task_description.task_target.name, src.get_batch([0, 1])[0].shape
    ('MULTILABEL_CLASSIFICATION', torch.Size([2, 3, 16, 16]))
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch

from torchcross.data.sources import TaskSource
from torchcross.datasets._images import Stats
from torchcross.datasets.image_cache import CachedImageTaskSource, cache_images
from torchcross.datasets.image_files import MAX_IMAGE_PIXELS, hash_splits
from torchcross.tasks.catalogue import DatasetEntry, TaskEntry
from torchcross.tasks.labels import normalize_labels
from torchcross.tasks.task import TaskDescription, TaskTarget

__all__ = ["HFDatasetTaskSource", "open_hf", "scan_hf", "write_synthetic_hf"]

SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "validation": "val",
    "valid": "val",
    "val": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
}
"""``DatasetDict`` split names and the split each stands for."""

_INSTALL = 'pip install "torchcross[hf-datasets]"'


def _datasets() -> Any:
    try:
        import datasets
    except ImportError as exc:
        raise ImportError(
            f"reading Hugging Face datasets needs the optional package 'datasets'; install it with {_INSTALL}"
        ) from exc
    return datasets


def _load(obj: Any) -> Any:
    """A ``Dataset`` or ``DatasetDict`` from itself or from a ``save_to_disk`` folder."""
    hf = _datasets()
    if isinstance(obj, (hf.Dataset, hf.DatasetDict)):
        return obj
    if isinstance(obj, (str, os.PathLike)):
        path = os.fspath(obj)
        if not _is_saved(path):
            raise ValueError(
                f"{path!r} is not a folder written by Dataset.save_to_disk or DatasetDict.save_to_disk "
                "(no state.json or dataset_dict.json)"
            )
        return hf.load_from_disk(path)
    raise TypeError(
        f"expected a datasets.Dataset, a DatasetDict or a save_to_disk folder, got {type(obj).__name__}"
    )


def _is_saved(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "state.json")) or os.path.isfile(
        os.path.join(path, "dataset_dict.json")
    )


def _label_kind(feature: Any) -> tuple[str, list[str]] | None:
    """``(task kind, class names)`` of a ClassLabel or Sequence(ClassLabel) feature, else ``None``."""
    hf = _datasets()
    if isinstance(feature, hf.ClassLabel):
        kind = "BINARY_CLASSIFICATION" if feature.num_classes == 2 else "MULTICLASS_CLASSIFICATION"
        return kind, list(feature.names)
    inner = getattr(feature, "feature", None)
    if isinstance(feature, (getattr(hf, "List", ()), hf.Sequence)) and isinstance(inner, hf.ClassLabel):
        return "MULTILABEL_CLASSIFICATION", list(inner.names)
    return None


def _columns(features: Any, label_column: str | None, image_column: str | None) -> tuple[list[str], str]:
    """The label columns (one if named) and the image column, checked."""
    hf = _datasets()
    described = ", ".join(f"{k}: {v!r}" for k, v in features.items())
    images = [k for k, v in features.items() if isinstance(v, hf.Image)]
    if image_column is None:
        if len(images) != 1:
            raise ValueError(
                f"the dataset has {len(images) or 'no'} Image columns {images if images else ''} "
                f"(columns: {described}); "
                + (
                    "name one with image_column="
                    if images
                    else "cast the column of images or file paths with ds.cast_column(name, datasets.Image())"
                )
            )
        image_column = images[0]
    elif image_column not in features or not isinstance(features[image_column], hf.Image):
        raise ValueError(
            f"image_column={image_column!r} is not an Image column of the dataset (columns: {described}); "
            f"Image columns: {images}"
        )
    labels = [k for k, v in features.items() if _label_kind(v) is not None]
    if label_column is not None:
        if label_column not in features:
            raise ValueError(f"no column {label_column!r} (columns: {described})")
        if _label_kind(features[label_column]) is None:
            raise ValueError(
                f"column {label_column!r} is {features[label_column]!r}, not ClassLabel or "
                "Sequence(ClassLabel); cast it, e.g. ds = ds.class_encode_column(name) for class names, or "
                "ds = ds.cast_column(name, datasets.ClassLabel(names=[...])) for class ids"
            )
        return [label_column], image_column
    if not labels:
        others = [k for k in features if k != image_column]
        raise ValueError(
            f"the dataset has no ClassLabel or Sequence(ClassLabel) column (columns: {described}); "
            + (
                f"cast the label column, e.g. ds = ds.class_encode_column({others[0]!r}) for class names, or "
                f"ds = ds.cast_column({others[0]!r}, datasets.ClassLabel(names=[...])) for class ids"
                if others
                else "add a ClassLabel column of labels"
            )
        )
    return labels, image_column


def _split_map(dd: Any) -> dict[str, str]:
    """``{our split: DatasetDict key}`` of a DatasetDict's official splits (empty: none or only one)."""
    found: dict[str, str] = {}
    for key in dd:
        ours = SPLIT_NAMES.get(str(key).lower())
        if ours is None:
            continue
        if ours in found:
            raise ValueError(
                f"the DatasetDict's splits {found[ours]!r} and {key!r} both stand for {ours!r}; "
                "drop or rename one"
            )
        found[ours] = key
    return found if len(dd) > 1 else {}


_KEY_CACHE: dict[tuple[str, str], list[str]] = {}


def _row_keys(ds: Any, image_column: str) -> list[str]:
    """Each row's key for hash_splits: the stored file path when distinct, else the image bytes' SHA-256."""
    hf = _datasets()
    fingerprint = getattr(ds, "_fingerprint", None)
    cache_key = (str(fingerprint), image_column)
    if fingerprint is not None and cache_key in _KEY_CACHE:
        return _KEY_CACHE[cache_key]
    table = ds.select_columns([image_column]).cast_column(image_column, hf.Image(decode=False))
    column = table.with_format("arrow")[:].column(image_column).combine_chunks()
    paths = column.field("path").to_pylist()
    if all(paths) and len(set(paths)) == len(paths):
        keys = [f"path:{p}" for p in paths]
    else:
        keys = []
        for i, (b, p) in enumerate(zip(column.field("bytes"), paths)):
            if b.is_valid:
                keys.append("sha256:" + hashlib.sha256(memoryview(b.as_buffer())).hexdigest())
            elif p:
                keys.append(f"path:{p}")
            else:
                raise ValueError(
                    f"row {i} of column {image_column!r} holds no image (neither bytes nor a path)"
                )
    if fingerprint is not None:
        if len(_KEY_CACHE) >= 32:  # a few datasets' keys; the oldest goes first
            del _KEY_CACHE[next(iter(_KEY_CACHE))]
        _KEY_CACHE[cache_key] = keys
    return keys


def _select(obj: Any, split: str | None, image_column: str, salt: str) -> Any:
    hf = _datasets()
    if isinstance(obj, hf.DatasetDict):
        official = _split_map(obj)
        if official:
            if split is None:
                return hf.concatenate_datasets([obj[k] for k in official.values()])
            if split not in official:
                raise ValueError(
                    f"the DatasetDict has no split for {split!r}: its splits {list(obj)} give "
                    f"{sorted(official)}"
                )
            return obj[official[split]]
        if len(obj) == 0:
            raise ValueError("the DatasetDict is empty")
        obj = obj[next(iter(obj))]
    if split is None:
        return obj
    splits = hash_splits(_row_keys(obj, image_column), salt=salt)
    if split not in splits:
        raise ValueError(f"unknown split {split!r}; use 'train', 'val', 'test' or None")
    return obj.select(splits[split])


def _features(obj: Any) -> Any:
    hf = _datasets()
    if isinstance(obj, hf.DatasetDict):
        if len(obj) == 0:
            raise ValueError("the DatasetDict is empty")
        return next(iter(obj.values())).features
    return obj.features


class HFDatasetTaskSource(TaskSource):
    """One label column of a Hugging Face dataset with images, as a task source.

    Args:
        dataset: a ``datasets.Dataset``, a ``DatasetDict`` or the path of a ``save_to_disk`` folder.
        split: ``"train"``, ``"val"``, ``"test"`` or ``None`` (every row; see the module docstring).
        label_column: the ``ClassLabel`` or ``Sequence(ClassLabel)`` column (found when there is one).
        image_column: the ``Image`` column (found when there is one).
        channels: 1 (grey) or 3 (RGB).
        image_size: resize every image to this (one int or ``(H, W)``); needed when sizes differ.
        output: ``"float"`` (``[0, 1]``, then ``(x - mean) / std``) or ``"uint8"``.
        mean: per-channel mean (or one float).
        std: per-channel std (or one float).
        dataset_id: the task identifier's first part (default: the folder's name, else the dataset's
            ``info.dataset_name``, else ``"hf"``).
        domain: the task's domain identifier (default: the dataset id).

    Raises:
        ValueError: no image column, no label column, a label column that is not ``ClassLabel`` (saying how
            to cast it), an ambiguous column (listing the candidates), rows without a label, an unknown split.

    Examples:
        >>> import datasets, numpy as np
        >>> from PIL import Image
        >>> features = datasets.Features(
        ...     {"image": datasets.Image(), "label": datasets.ClassLabel(names=["cat", "dog"])}
        ... )
        >>> ds = datasets.Dataset.from_dict(
        ...     {"image": [Image.new("RGB", (4, 4), (i, 0, 0)) for i in range(6)], "label": [0, 1] * 3},
        ...     features=features,
        ... )
        >>> src = HFDatasetTaskSource(ds, output="uint8")
        >>> src.task_description.classes, src.get_batch([2, 3])[0][:, 0, 0, 0].tolist()
        ({0: 'cat', 1: 'dog'}, [2, 3])
    """

    def __init__(
        self,
        dataset: Any,
        split: str | None = None,
        *,
        label_column: str | None = None,
        image_column: str | None = None,
        channels: Literal[1, 3] = 3,
        image_size: int | tuple[int, int] | None = None,
        output: Literal["float", "uint8"] = "float",
        mean: Stats = None,
        std: Stats = None,
        dataset_id: str | None = None,
        domain: str | None = None,
    ) -> None:
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels!r}")
        if dataset_id is None and isinstance(dataset, (str, os.PathLike)):
            dataset_id = os.path.basename(os.path.abspath(os.fspath(dataset)))
        obj = _load(dataset)
        labels, image_column = _columns(_features(obj), label_column, image_column)
        if len(labels) > 1:
            raise ValueError(f"the dataset has several label columns {labels}; name one with label_column=")
        label_column = labels[0]
        if dataset_id is None:
            first = obj if not isinstance(obj, _datasets().DatasetDict) else next(iter(obj.values()))
            dataset_id = getattr(first.info, "dataset_name", None) or "hf"
        ds = _select(obj, split, image_column, salt=dataset_id)
        kind, names = _label_kind(ds.features[label_column]) or ("", [])
        self.task_description = TaskDescription(
            kind, dict(enumerate(names)), f"{dataset_id}/{label_column}", domain or dataset_id
        )
        self.labels = normalize_labels(
            _read_labels(ds, label_column, kind, len(names)), self.task_description
        )
        self._label_tensor = torch.from_numpy(np.ascontiguousarray(self.labels))
        self.dataset = ds
        self._images = ds.select_columns([image_column])
        self.image_column, self.label_column = image_column, label_column
        if isinstance(image_size, int):
            image_size = (image_size, image_size)
        self.image_size = image_size
        self.channels = channels
        self.output, self.mean, self.std = output, mean, std

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.get_batch([index])
        return x[0], y[0]

    def get_batch(self, indices: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images (N, C, H, W), labels)``: the rows decoded at once, converted in one step.

        Raises:
            ValueError: images of different sizes without ``image_size``, or an image too large.
        """
        from torchcross.datasets.image_files import stacked_batch

        return stacked_batch(self, indices)

    def images(self, indices: Sequence[int]) -> list[np.ndarray]:
        """The uint8 images of rows ``indices`` (``(H, W)`` or ``(H, W, 3)``), decoded in one batch.

        Raises:
            ValueError: an image too large.
        """
        idx = [int(i) for i in indices]
        decoded = self._images[idx][self.image_column]
        mode = "L" if self.channels == 1 else "RGB"
        arrays = []
        for i, im in zip(idx, decoded):
            if im.size[0] * im.size[1] > MAX_IMAGE_PIXELS:
                raise ValueError(
                    f"row {i} of {self.task_description.task_identifier!r} has a {im.size[0]}x{im.size[1]} "
                    f"image, more than MAX_IMAGE_PIXELS = {MAX_IMAGE_PIXELS}; resize it first"
                )
            im = im.convert(mode)
            if self.image_size is not None and (im.size[1], im.size[0]) != self.image_size:
                from PIL import Image

                im = im.resize((self.image_size[1], self.image_size[0]), Image.Resampling.BILINEAR)
            arrays.append(np.asarray(im))
        return arrays

    def image_fingerprints(self) -> list[str]:
        """One string per row naming what determines its pixels: the dataset's fingerprint (which
        ``datasets`` derives from its files or its data and every transform applied), the image column
        and the row (what keys a decoded-image cache).
        """
        base = f"{self._images._fingerprint}\0{self.image_column}"
        return [f"row {i}\0{base}" for i in range(len(self))]

    def cached(
        self, path: str | os.PathLike[str], *, rebuild: bool = False, progress: bool | None = False
    ) -> CachedImageTaskSource:
        """This source read from a decoded-image cache file at ``path``, built first if there is none.

        See [`cache_images()`][cache_images].
        """
        return cache_images(self, path, rebuild=rebuild, progress=progress)


def _read_labels(ds: Any, column: str, kind: str, num_classes: int) -> np.ndarray:
    values = ds.select_columns([column]).with_format("arrow")[:].column(column)
    if kind != "MULTILABEL_CLASSIFICATION":
        y = np.array(values.to_numpy(zero_copy_only=False), dtype=np.int64)
        bad = np.flatnonzero((y < 0) | (y >= num_classes))
        if bad.size:
            raise ValueError(
                f"{bad.size} rows of column {column!r} have no class (e.g. row {int(bad[0])}: "
                f"{int(y[bad[0]])}; unlabelled rows are -1); drop them, e.g. "
                "ds = ds.filter(lambda r: r[name] >= 0)"
            )
        return y
    out = np.zeros((len(values), num_classes), dtype=np.int64)
    for i, row in enumerate(values.to_pylist()):
        for c in row or ():
            if c is None or not 0 <= c < num_classes:
                raise ValueError(
                    f"row {i} of column {column!r} has the label {c!r}, not one of 0..{num_classes - 1}"
                )
            out[i, c] = 1
    return out


def _find(root: str) -> list[str]:
    if _is_saved(root):
        return [root]
    return sorted(
        os.path.join(root, n)
        for n in os.listdir(root)
        if not n.startswith(".") and os.path.isdir(os.path.join(root, n)) and _is_saved(os.path.join(root, n))
    )


def _domain(dataset_id: str, domains: Mapping[str, str] | str | None) -> str:
    if isinstance(domains, str):
        return domains
    return (domains or {}).get(dataset_id, dataset_id)


def scan_hf(
    root: str | os.PathLike[str],
    *,
    label_column: str | None = None,
    image_column: str | None = None,
    domains: Mapping[str, str] | str | None = None,
    upstream: Mapping[str, Sequence[str]] | None = None,
) -> tuple[list[DatasetEntry], dict[str, str]]:
    """The ``save_to_disk`` folders under ``root`` (its sub-folders, or ``root`` itself) as catalogue entries.

    Each folder is one dataset, identified by the folder's name, with one task per label column
    (``label_column=`` keeps one), named by the column. ``domains`` maps dataset ids to domains (or gives
    one domain for all; default: each dataset its own domain); datasets of one domain declare each other
    as domain overlaps. ``upstream`` maps dataset ids to the public datasets their images come from.
    ``info["input_size"]`` is ``None`` (image sizes are not read ahead: set ``image_size``).

    Returns:
        ``(entries, problems)``: ``problems`` maps each folder that could not be read to the reason.

    Raises:
        ValueError: ``root`` is not a folder.
    """
    root = os.path.abspath(os.fspath(root))
    if not os.path.isdir(root):
        raise ValueError(f"Hugging Face datasets root {root!r} is not a folder")
    found: list[tuple[str, tuple[TaskEntry, ...], tuple[str, ...], str]] = []
    problems: dict[str, str] = {}
    for folder in _find(root):
        ds_id = os.path.basename(folder)
        try:
            obj = _load(folder)
            features = _features(obj)
            labels, _ = _columns(features, label_column, image_column)
            entry_tasks = []
            for col in labels:
                kind, names = _label_kind(features[col]) or ("", [])
                entry_tasks.append(TaskEntry(ds_id, col, TaskTarget[kind], dict(enumerate(names))))
            official = _split_map(obj) if isinstance(obj, _datasets().DatasetDict) else {}
            splits: tuple[str, ...] = ("train", "val", "test")
            if official:
                splits = tuple(s for s in splits if s in official)
        except (ValueError, TypeError, OSError) as exc:
            problems[folder] = str(exc)
            continue
        found.append((ds_id, tuple(entry_tasks), splits, folder))
    entries = []
    for ds_id, tasks, splits, folder in found:
        domain = _domain(ds_id, domains)
        info: dict[str, Any] = {"format": "hf-datasets", "path": folder, "splits": splits, "input_size": None}
        if upstream and ds_id in upstream:
            info["upstream"] = tuple(str(u).lower() for u in upstream[ds_id])
        overlaps = frozenset(o for o, *_ in found if o != ds_id and _domain(o, domains) == domain)
        entries.append(DatasetEntry(ds_id, ds_id, domain, tasks, domain_overlaps=overlaps, info=info))
    return entries, problems


def open_hf(
    root: str | os.PathLike[str],
    dataset_id: str,
    task_name: str,
    split: str | None,
    *,
    channels: int = 3,
    mean: Stats = None,
    std: Stats = None,
    image_size: int | None = None,
    image_column: str | None = None,
    domains: Mapping[str, str] | str | None = None,
    **_: Any,
) -> HFDatasetTaskSource:
    """Task ``task_name`` (a label column) of the ``save_to_disk`` folder ``dataset_id`` under ``root``.

    Raises:
        ValueError: no such folder, column or split.
    """
    root = os.path.abspath(os.fspath(root))
    folder = (
        root if os.path.basename(root) == dataset_id and _is_saved(root) else os.path.join(root, dataset_id)
    )
    if not _is_saved(folder):
        raise ValueError(f"no save_to_disk folder named {dataset_id!r} under {root!r}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    return HFDatasetTaskSource(
        folder,
        split,
        label_column=task_name,
        image_column=image_column,
        channels=1 if channels == 1 else 3,
        image_size=image_size,
        mean=mean,
        std=std,
        dataset_id=dataset_id,
        domain=_domain(dataset_id, domains),
    )


def write_synthetic_hf(
    root: str | os.PathLike[str], *, seed: int = 0, num_images: int = 24, image_size: int = 16
) -> str:
    """Write two small random datasets with ``save_to_disk`` under ``root``; return ``root``.

    ``leaves``: a ``DatasetDict`` (``train``, ``validation``, ``test``) with ``image`` and a 3-class
    ``label``. ``scenes``: one ``Dataset`` with ``image``, a binary ``label`` and a multi-label ``tags``
    (``Sequence(ClassLabel)``, 4 tags). Images are random RGB, stored as PNG (lossless).
    """
    hf = _datasets()
    from PIL import Image

    root = os.fspath(root)
    rng = np.random.default_rng(seed)

    def images(n: int) -> list[Any]:
        return [
            Image.fromarray(rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8))
            for _ in range(n)
        ]

    leaves = hf.Features({"image": hf.Image(), "label": hf.ClassLabel(names=["healthy", "rust", "spot"])})
    parts = {}
    for split, n in (
        ("train", num_images),
        ("validation", max(3, num_images // 4)),
        ("test", max(3, num_images // 4)),
    ):
        parts[split] = hf.Dataset.from_dict(
            {"image": images(n), "label": [i % 3 for i in range(n)]}, features=leaves
        )
    tags = [[int(t) for t in np.flatnonzero(rng.random(4) < 0.4)] for _ in range(num_images)]
    scenes = hf.Dataset.from_dict(
        {"image": images(num_images), "label": [i % 2 for i in range(num_images)], "tags": tags},
        features=hf.Features(
            {
                "image": hf.Image(),
                "label": hf.ClassLabel(names=["indoor", "outdoor"]),
                "tags": hf.Sequence(hf.ClassLabel(names=["people", "water", "trees", "cars"])),
            }
        ),
    )
    enabled = getattr(hf, "is_progress_bar_enabled", lambda: False)()
    if enabled:  # quiet while writing; restored after
        hf.disable_progress_bars()
    try:
        hf.DatasetDict(parts).save_to_disk(os.path.join(root, "leaves"))
        scenes.save_to_disk(os.path.join(root, "scenes"))
    finally:
        if enabled:
            hf.enable_progress_bars()
    return root
