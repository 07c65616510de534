"""Write any images plus task labels as a MedIMeta dataset folder.

[`write_medimeta()`][torchcross.datasets.medimeta.write_medimeta] produces exactly the layout the reader, the
validator and medimeta 0.0.6 read: ``images.hdf5`` (contiguous uint8 ``images``), optional
``images/NNNNNN.tiff``, ``task_labels/<task>.npy``, ``splits/`` and ``original_splits/``, ``annotations.csv``
and ``info.yaml``. The folder is assembled under a hidden temporary name, flushed to disk and renamed into
place at the end, so a failed write leaves nothing behind and a kill leaves only a hidden folder, which the
next write of that dataset (and discovery) reports and cleans. ``overwrite=True`` replaces only MedIMeta
dataset folders, by renames (never a half-deleted dataset).
[`write_synthetic_medimeta()`][torchcross.datasets.medimeta.write_synthetic_medimeta] writes small random
datasets (tests, docs, benchmarks), optionally shaped like a catalogue dataset.
"""

from __future__ import annotations

import csv
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

import numpy as np

from torchcross.data.capabilities import MapStyle
from torchcross.datasets._optional import require
from torchcross.datasets.medimeta.folder import SPLITS
from torchcross.datasets.medimeta.paths import (
    check_name,
    check_replaceable,
    clean_writer_leftovers,
    install_folder,
    writer_folder,
)
from torchcross.tasks.labels import normalize_labels
from torchcross.tasks.task import TaskDescription, TaskTarget

__all__ = ["write_medimeta", "write_synthetic_medimeta"]

_BATCH = 256


def _as_image(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, (C, H, W) or (H, W)
        x = x.detach().cpu().numpy()
        if x.ndim == 3 and x.shape[0] in (1, 3) and x.shape[-1] not in (1, 3):
            x = np.moveaxis(x, 0, -1)
    arr = np.asarray(x)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.dtype != np.uint8:
        raise TypeError(
            f"images must be uint8, got {arr.dtype}; convert e.g. with (x * 255).round().astype('uint8')"
        )
    return arr


def _image_batches(images: Any) -> tuple[int, Iterable[np.ndarray]]:
    """``(N, iterator over uint8 (n, H, W[, 3]) batches)`` for an array or a sequence of images."""
    if isinstance(images, np.ndarray) or hasattr(images, "detach"):
        arr = images.detach().cpu().numpy() if hasattr(images, "detach") else images
        if (
            hasattr(images, "detach")
            and arr.ndim == 4
            and arr.shape[1] in (1, 3)
            and arr.shape[-1] not in (1, 3)
        ):
            arr = np.moveaxis(arr, 1, -1)  # tensors are (N, C, H, W)
        if arr.ndim == 4 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        if arr.dtype != np.uint8:
            raise TypeError(f"images must be uint8, got {arr.dtype}")
        return len(arr), (arr[i : i + _BATCH] for i in range(0, len(arr), _BATCH))
    if not isinstance(images, MapStyle):
        raise TypeError(
            f"images must be an array (N, H, W[, 3]) or a sequence of images, got {type(images).__name__}"
        )
    n = len(images)
    return n, (_stack_same(images, i, min(i + _BATCH, n)) for i in range(0, n, _BATCH))


def _stack_same(images: Any, start: int, stop: int) -> np.ndarray:
    arrays = [_as_image(images[j]) for j in range(start, stop)]
    for j, a in enumerate(arrays):
        if a.shape != arrays[0].shape:
            raise ValueError(f"image {start + j} has shape {a.shape}, image {start} has {arrays[0].shape}")
    return np.stack(arrays)


def _split_names(splits: Any, n: int, what: str) -> list[str | None]:
    """Per-image split names from ``{name: indices}`` or a length-``n`` sequence of names."""
    out: list[str | None] = [None] * n
    if splits is None:
        return out
    if isinstance(splits, Mapping):
        for name, idx in splits.items():
            if name not in SPLITS:
                raise ValueError(f"{what} names must be among {SPLITS}, got {name!r}")
            for i in np.asarray(idx, dtype=np.int64).reshape(-1).tolist():
                if not 0 <= i < n:
                    raise ValueError(f"{what}[{name!r}] has index {i}, out of range for {n} images")
                if out[i] is not None:
                    raise ValueError(
                        f"image {i} is in {what} {out[i]!r} and {name!r}; splits must be disjoint"
                    )
                out[i] = name
        return out
    names = list(splits)
    if len(names) != n:
        raise ValueError(f"{what} has {len(names)} entries for {n} images")
    bad = sorted({s for s in names if s is not None and s not in SPLITS})
    if bad:
        raise ValueError(f"{what} names must be among {SPLITS} (or None), got {bad}")
    return names


def _write_splits(folder: str, names: list[str | None]) -> dict[str, int]:
    os.makedirs(folder)
    counts = {}
    for split in SPLITS:
        rows = [i for i, s in enumerate(names) if s == split]
        counts[split] = len(rows)
        if rows:  # a file exists only for a non-empty split; no trailing newline
            with open(os.path.join(folder, f"{split}.txt"), "w", encoding="utf-8") as f:
                f.write("\n".join(f"images/{i:06d}.tiff" for i in rows))
    return counts


def _annotation_rows(
    n: int,
    tasks: dict[str, tuple[TaskDescription, np.ndarray]],
    split_names: list,
    orig: list,
    extra: Mapping,
) -> tuple[list[str], Iterable[list[Any]]]:
    header = ["filepath", "split", *(f"tasks/{t}" for t in tasks), "original_split", *tasks, *extra]

    def value(desc: TaskDescription, y: np.ndarray) -> tuple[Any, str]:
        if desc.task_target is TaskTarget.MULTILABEL_CLASSIFICATION:
            keys = desc.class_keys
            return str(y.tolist()), "|".join(desc.classes[keys[j]] for j in np.flatnonzero(y))
        k = int(np.asarray(y).reshape(-1)[0])
        return k, desc.classes[k]

    def rows() -> Iterable[list[Any]]:
        for i in range(n):
            pairs = [value(d, y[i]) for d, y in tasks.values()]
            yield [
                f"images/{i:06d}.tiff",
                split_names[i] or "",
                *(p[0] for p in pairs),
                orig[i] or "",
                *(p[1] for p in pairs),
                *(extra[c][i] for c in extra),
            ]

    return header, rows()


def write_medimeta(
    root: str | os.PathLike[str],
    dataset_id: str,
    images: Any,
    tasks: Mapping[str, tuple[TaskDescription, Any]],
    splits: Mapping[str, Any] | Sequence[str | None] | None = None,
    original_splits: Mapping[str, Any] | Sequence[str | None] | None = None,
    *,
    name: str | None = None,
    domain: str = "",
    summary: str = "",
    write_tiffs: bool = False,
    annotations: Mapping[str, Sequence[Any]] | None = None,
    domain_overlaps: Sequence[str] = (),
    subject_overlaps: Sequence[str] = (),
    info: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> str:
    """Write ``images`` and their task labels as the MedIMeta folder ``<root>/<dataset_id>``.

    Args:
        root: the MedIMeta ``data_path``.
        dataset_id: the folder name and ``id`` in ``info.yaml``.
        images: uint8 ``(N, H, W)`` / ``(N, H, W, 3)`` array, ``(N, C, H, W)`` tensor, or a
            sequence of same-sized images (arrays, tensors or PIL images).
        tasks: ``{task name: (TaskDescription, labels)}``; labels in any form
            [`normalize_labels()`][normalize_labels] accepts (class keys).
        splits: ``{"train": indices, ...}`` or one split name (or ``None``) per image.
        original_splits: the same for the source's own splits (default: ``splits``).
        name, domain, summary: ``info.yaml`` metadata (``name`` defaults to the id).
        write_tiffs: also write ``images/NNNNNN.tiff`` (needs Pillow).
        annotations: extra ``annotations.csv`` columns (e.g. ``{"patient_id": [...]}``).
        domain_overlaps, subject_overlaps: ids of overlapping datasets.
        info: further ``info.yaml`` keys (e.g. ``license``).
        overwrite: replace an existing dataset folder (only one made of the files this
            writer makes, checked through the whole tree: a folder holding anything else,
            e.g. ``images/photo1.jpg``, is refused and left untouched). The old dataset
            stays readable until the new one is complete.

    Returns:
        The dataset folder.

    Raises:
        FileExistsError: if the folder exists and ``overwrite`` is false, or it is not a
            MedIMeta dataset folder.
        ValueError: for inconsistent counts, bad labels, bad splits or images.
        TypeError: for arguments of the wrong type.

    Examples:
        >>> import tempfile
        >>> from torchcross.data import TaskDescription
        >>> d = TaskDescription("BINARY_CLASSIFICATION", {0: "benign", 1: "malignant"})
        >>> x = np.zeros((4, 8, 8), np.uint8)
        >>> path = write_medimeta(
        ...     tempfile.mkdtemp(),
        ...     "mine",
        ...     x,
        ...     {"malignancy": (d, [0, 1, 1, 0])},
        ...     {"train": [0, 1, 2], "test": [3]},
        ... )
        >>> sorted(os.listdir(path))
        ['annotations.csv', 'images.hdf5', 'info.yaml', 'original_splits', 'splits', 'task_labels']
    """
    h5py, yaml = require("h5py"), require("yaml")
    root = os.fspath(root)
    try:
        check_name(dataset_id, "dataset_id")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"dataset_id must be a plain folder name: {exc}") from None
    if not tasks:
        raise ValueError("give at least one task: {task name: (TaskDescription, labels)}")
    target = os.path.join(root, dataset_id)
    if os.path.isdir(root):
        clean_writer_leftovers(root, dataset_id)
    if os.path.lexists(target):
        if not overwrite:
            raise FileExistsError(f"{target} exists; pass overwrite=True to replace it")
        check_replaceable(target)
    n, batches = _image_batches(images)
    if n == 0:
        raise ValueError("images is empty")
    labels: dict[str, tuple[TaskDescription, np.ndarray]] = {}
    for task_name, (desc, y) in tasks.items():
        try:
            check_name(task_name, "task name")
        except (TypeError, ValueError) as exc:
            raise ValueError(f"task names must be non-empty and contain no '/': {exc}") from None
        if not isinstance(desc, TaskDescription):
            raise TypeError(
                f"tasks[{task_name!r}] must be (TaskDescription, labels), got {type(desc).__name__}"
            )
        arr = normalize_labels(y, desc)
        if len(arr) != n:
            raise ValueError(f"task {task_name!r} has {len(arr)} labels for {n} images")
        labels[task_name] = (desc, arr[:, 0] if desc.task_target is TaskTarget.BINARY_CLASSIFICATION else arr)
    split_names = _split_names(splits, n, "splits")
    orig_names = (
        split_names if original_splits is None else _split_names(original_splits, n, "original_splits")
    )
    extra = dict(annotations or {})
    for col, values in extra.items():
        if len(values) != n:
            raise ValueError(f"annotations[{col!r}] has {len(values)} values for {n} images")

    os.makedirs(root, exist_ok=True)
    tmp = writer_folder(root, dataset_id, "tmp")
    os.mkdir(tmp)
    try:
        shape = None
        with h5py.File(os.path.join(tmp, "images.hdf5"), "w") as f:
            start = 0
            for batch in batches:
                if shape is None:
                    shape = batch.shape[1:]
                    if len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] != 3):
                        raise ValueError(f"images must be (H, W) or (H, W, 3), got {shape}")
                    ds = f.create_dataset("images", shape=(n, *shape), dtype=np.uint8)  # contiguous
                elif batch.shape[1:] != shape:
                    raise ValueError(f"image {start} has shape {batch.shape[1:]}, the first has {shape}")
                ds[start : start + len(batch)] = batch
                if write_tiffs:
                    _write_tiffs(os.path.join(tmp, "images"), batch, start)
                start += len(batch)
        os.makedirs(os.path.join(tmp, "task_labels"))
        for task_name, (_, arr) in labels.items():
            np.save(os.path.join(tmp, "task_labels", f"{task_name}.npy"), arr)
        split_counts = _write_splits(os.path.join(tmp, "splits"), split_names)
        orig_counts = _write_splits(os.path.join(tmp, "original_splits"), orig_names)
        header, rows = _annotation_rows(n, labels, split_names, orig_names, extra)
        with open(os.path.join(tmp, "annotations.csv"), "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)
        shape = cast("tuple[int, ...]", shape)  # n > 0: the first batch set it
        channels = 1 if len(shape) == 2 else 3
        doc: dict[str, Any] = {
            "id": dataset_id,
            "name": name or dataset_id,
            "summary": summary,
            "domain": domain,
            "tasks": [
                {"task_name": t, "task_target": d.task_target.name, "labels": dict(d.classes)}
                for t, (d, _) in labels.items()
            ],
            "input_size": [channels, int(shape[0]), int(shape[1])],
            "total_num_samples": n,
            "splits_num_samples": split_counts,
            "original_splits_num_samples": orig_counts,
            "domain_overlaps": list(domain_overlaps),
            "subject_overlaps": list(subject_overlaps),
            **dict(info or {}),
        }
        with open(os.path.join(tmp, "info.yaml"), "w", encoding="utf-8") as f:
            yaml.safe_dump(doc, f, sort_keys=False, allow_unicode=True)
        _sync_tree(tmp)
        if not overwrite and os.path.lexists(target):
            raise FileExistsError(
                f"{target} appeared while it was written; pass overwrite=True to replace it"
            )
        install_folder(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _sync_tree(folder: str) -> None:
    """Flush every file and folder under ``folder`` to disk (before it is renamed into place)."""
    for dirpath, _, filenames in os.walk(folder, topdown=False):
        for name in [*filenames, "."]:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            except OSError:  # pragma: no cover - file systems that cannot sync a directory
                pass
            finally:
                os.close(fd)


def _write_tiffs(folder: str, batch: np.ndarray, start: int) -> None:
    image_mod = require("PIL.Image")
    os.makedirs(folder, exist_ok=True)
    for k, img in enumerate(batch):
        image_mod.fromarray(img).save(os.path.join(folder, f"{start + k:06d}.tiff"))


def _synthetic_tasks(rng: np.random.Generator, n: int) -> dict[str, tuple[TaskDescription, np.ndarray]]:
    mc = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "normal", 1: "benign", 2: "malignant"})
    binary = TaskDescription("BINARY_CLASSIFICATION", {0: "absent", 1: "present"})
    ml = TaskDescription("MULTILABEL_CLASSIFICATION", {0: "edema", 1: "effusion", 2: "nodule", 3: "mass"})
    ordinal = TaskDescription(
        "ORDINAL_REGRESSION", {1: "none", 4: "mild", 6: "moderate", 8: "severe", 10: "max"}
    )
    return {
        "class": (mc, np.arange(n) % 3),
        "abnormal": (binary, (np.arange(n) // 3) % 2),
        "Finding labels": (ml, (rng.random((n, 4)) < 0.4).astype(np.int64)),
        "severity grade": (ordinal, np.array([1, 4, 6, 8, 10])[np.arange(n) % 5]),
    }


def write_synthetic_medimeta(
    root: str | os.PathLike[str],
    dataset_id: str,
    num_images: int = 40,
    image_size: int = 16,
    channels: int | None = None,
    seed: int = 0,
    write_tiffs: bool = False,
    **kwargs: Any,
) -> str:
    """Write a small random MedIMeta folder (tests, docs, benchmarks).

    For a catalogue id (``"bus"``) the folder has that dataset's name, domain, channels,
    overlaps and tasks (with random labels); for any other id it has four tasks, one
    per kind: ``"class"`` (3 classes), ``"abnormal"`` (binary), ``"Finding labels"``
    (4 labels) and ``"severity grade"`` (ordinal, keys 1, 4, 6, 8, 10). Splits are 60/20/20.
    Image ``i`` starts with the bytes of ``i`` (little endian), so reads can be checked.

    Examples:
        >>> import tempfile
        >>> path = write_synthetic_medimeta(tempfile.mkdtemp(), "bus", num_images=10, image_size=8)
        >>> sorted(os.listdir(os.path.join(path, "task_labels")))
        ['case category.npy', 'malignancy.npy']
    """
    from torchcross.datasets.medimeta.catalogue import medimeta_catalogue

    if num_images < 5:
        raise ValueError(f"num_images must be at least 5 (one per split and class), got {num_images}")
    rng = np.random.default_rng(seed)
    cat = medimeta_catalogue()
    meta: dict[str, Any] = {}
    if dataset_id in cat:
        entry = cat.dataset(dataset_id)
        tasks = {}
        for t in entry.tasks:
            desc = TaskDescription(t.task_target, t.classes)
            keys = np.asarray(desc.class_keys)
            if t.task_target is TaskTarget.MULTILABEL_CLASSIFICATION:
                y = (rng.random((num_images, len(keys))) < 0.3).astype(np.int64)
            else:
                y = keys[(np.arange(num_images) + rng.integers(len(keys))) % len(keys)]
            tasks[t.task_name] = (desc, y)
        channels = entry.info["input_size"][0] if channels is None else channels
        meta = {
            "name": entry.name,
            "domain": entry.domain,
            "domain_overlaps": sorted(entry.domain_overlaps),
            "subject_overlaps": sorted(entry.subject_overlaps),
        }
    else:
        tasks = _synthetic_tasks(rng, num_images)
        channels = 3 if channels is None else channels
        meta = {"name": f"Synthetic {dataset_id}", "domain": "Synthetic"}
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    shape = (num_images, image_size, image_size) + ((3,) if channels == 3 else ())
    images = rng.integers(0, 256, shape, dtype=np.uint8)
    code = np.arange(num_images, dtype="<u4").view(np.uint8).reshape(num_images, 4)
    images.reshape(num_images, -1)[:, : min(4, images[0].size)] = code[:, : min(4, images[0].size)]
    order = rng.permutation(num_images)
    n_train, n_val = int(0.6 * num_images), int(0.2 * num_images)
    splits = {
        "train": order[:n_train],
        "val": order[n_train : n_train + n_val],
        "test": order[n_train + n_val :],
    }
    meta.update(kwargs)
    return write_medimeta(root, dataset_id, images, tasks, splits, write_tiffs=write_tiffs, **meta)
