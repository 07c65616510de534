"""Meta-dataset formats: how a folder of one kind becomes catalogue entries and task sources.

A *format* reads one kind of meta-dataset on disk (MedIMeta folders, Meta-Album, BSCD-FSL, Meta-Dataset
records, Hugging Face datasets, ...). It has two functions:

- ``scan(root, **options) -> (entries, problems)``: the [`DatasetEntry`][DatasetEntry] values of the
  datasets found under ``root`` (with their tasks, domain and overlaps), and ``{folder or file:
  message}`` for what could not be read. Each entry's ``info`` holds ``"input_size"``: ``(channels,
  height, width)`` when every image has that size, else ``None``, and ``"splits"``: the names of the
  splits the dataset has (a subset of ``"train"``, ``"val"``, ``"test"``), and may hold ``"upstream"``:
  a tuple of lower-case names of the public datasets its images come from (e.g. ``("chestx-ray14",)``),
  by which datasets of different collections that share images are found to overlap.
- ``open(root, dataset_id, task_name, split, *, channels, mean, std, image_size) -> task source``: one
  task as a batch-readable task source (``get_batch(indices) -> (images (N, C, H, W) float32, labels)``;
  images scaled to ``[0, 1]``, then normalised with ``mean`` and ``std`` when given); ``split`` is
  ``None`` for the whole dataset. A reader of images of varying sizes resizes them to ``image_size`` x
  ``image_size`` as it decodes them (``None`` with varying sizes: a ``ValueError`` that says to set
  ``image_size``); a reader of fixed-size images may ignore ``image_size`` (the protocol resizes float
  batches to it). Its ``task_description.task_identifier`` is ``"<dataset id>/<task name>"``.

Formats are registered by name; the protocol (`torchcross run`) reads ``[data] format`` (and
``format`` in each ``[[data.collections]]`` entry) from here.

Examples:
    >>> "medimeta" in FORMATS
    True
    >>> get_format("medimeta").name
    'medimeta'
"""

from __future__ import annotations

import difflib
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torchcross.tasks.catalogue import DatasetEntry

__all__ = ["FORMATS", "DataFormat", "get_format", "lazy", "register_format"]

ScanFn = Callable[..., tuple[list[DatasetEntry], dict[str, str]]]
OpenFn = Callable[..., Any]


@dataclass(frozen=True)
class DataFormat:
    """One meta-dataset format (see the module docstring for the contract of ``scan`` and ``open``).

    Attributes:
        name: the name ``[data] format`` uses (lower case, e.g. ``"meta-album"``).
        scan: ``(root, **options) -> (entries, problems)``.
        open: ``(root, dataset_id, task_name, split, *, channels, mean, std, image_size) -> source``.
        description: one line for the docs and error messages.
        options: the keyword options ``scan`` and ``open`` accept (checked by the protocol's config).
        synthetic: ``(root, *, seed=0, **sizes) -> root to scan``: writes a small dataset of this format in
            its native layout (for examples, tests and benchmarks), or ``None``.
    """

    name: str
    scan: ScanFn
    open: OpenFn
    description: str = ""
    options: tuple[str, ...] = ()
    synthetic: Callable[..., Any] | None = None


FORMATS: dict[str, DataFormat] = {}
"""The registered formats by name."""


def register_format(fmt: DataFormat, *, replace: bool = False) -> DataFormat:
    """Register ``fmt`` under ``fmt.name`` and return it.

    Raises:
        TypeError: ``fmt`` is not a [`DataFormat`][DataFormat].
        ValueError: the name is taken (pass ``replace=True`` to replace it).
    """
    if not isinstance(fmt, DataFormat):
        raise TypeError(f"register_format() takes a DataFormat, got {type(fmt).__name__}")
    if fmt.name in FORMATS and not replace:
        raise ValueError(
            f"a format named {fmt.name!r} is already registered; pass replace=True to replace it"
        )
    FORMATS[fmt.name] = fmt
    return fmt


def get_format(name: str) -> DataFormat:
    """The format registered as ``name``.

    Raises:
        ValueError: an unknown name (listing the known ones and the closest).
    """
    if name not in FORMATS:
        close = difflib.get_close_matches(str(name), FORMATS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown data format {name!r}; known: {', '.join(sorted(FORMATS))}{hint}")
    return FORMATS[name]


def lazy(module: str, name: str) -> Callable[..., Any]:
    """A function that imports ``module`` and calls its ``name`` when first called.

    Formats register their readers this way, so that ``import torchcross.datasets.formats`` imports no
    reader (and none of Pillow, h5py or ``datasets``) until a format is used.

    Examples:
        >>> join = lazy("os.path", "join")
        >>> join("a", "b")
        'a/b'
    """

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"``{module}.{name}``, imported when first called."
    return call


def _scan_medimeta(root: str | os.PathLike[str]) -> tuple[list[DatasetEntry], dict[str, str]]:
    from torchcross.datasets.medimeta import catalogue_from_infos, scan_datasets

    infos, problems = scan_datasets(root)
    entries = list(catalogue_from_infos(infos.values())) if infos else []
    out = []
    for e in entries:
        info = dict(e.info)
        info.setdefault("splits", ("train", "val", "test"))
        out.append(DatasetEntry(e.id, e.name, e.domain, e.tasks, e.domain_overlaps, e.subject_overlaps, info))
    return out, problems


def _open_medimeta(
    root: str | os.PathLike[str],
    dataset_id: str,
    task_name: str,
    split: str | None,
    *,
    channels: int,
    mean: Any = None,
    std: Any = None,
    image_size: int | None = None,
) -> Any:
    from torchcross.datasets.medimeta import MedIMeta

    del image_size  # fixed-size images: the caller resizes batches
    return MedIMeta(
        os.fspath(root), dataset_id, task_name, split=split, channels=channels, mean=mean, std=std
    )


def _synthetic_medimeta(
    root: str | os.PathLike[str], *, seed: int = 0, num_images: int = 200, image_size: int = 32
) -> str:
    from torchcross.datasets.medimeta import write_synthetic_medimeta

    write_synthetic_medimeta(
        os.fspath(root), "synthetic", num_images=num_images, image_size=image_size, seed=seed
    )
    return os.fspath(root)


register_format(
    DataFormat(
        "medimeta",
        _scan_medimeta,
        _open_medimeta,
        "MedIMeta-format dataset folders (info.yaml, images.hdf5, task_labels/, splits/)",
        synthetic=_synthetic_medimeta,
    )
)


def _register_reader(
    name: str, module: str, stem: str, description: str, options: tuple[str, ...] = ()
) -> None:
    """Register the format ``name`` read by ``scan_<stem>``, ``open_<stem>`` and ``write_synthetic_<stem>``
    of ``module`` (imported when first used)."""
    register_format(
        DataFormat(
            name,
            lazy(module, f"scan_{stem}"),
            lazy(module, f"open_{stem}"),
            description,
            options=options,
            synthetic=lazy(module, f"write_synthetic_{stem}"),
        )
    )


_register_reader(
    "meta-album",
    "torchcross.datasets.meta_album",
    "meta_album",
    "Meta-Album dataset folders (labels.csv, info.json, images/); splits are ours (hash of file names)",
)
_register_reader(
    "hf-datasets",
    "torchcross.datasets.hf_datasets",
    "hf",
    "Hugging Face datasets saved with save_to_disk (an Image column; ClassLabel or Sequence(ClassLabel) "
    "labels)",
    options=("label_column", "image_column", "domains", "upstream"),
)
_register_reader(
    "bscd-fsl",
    "torchcross.datasets.bscd_fsl",
    "bscd_fsl",
    "BSCD-FSL's four targets in their downloaded layouts (CropDisease, EuroSAT, ISIC 2018, ChestX-ray14)",
)


_register_reader(
    "meta-dataset",
    "torchcross.datasets.meta_dataset",
    "meta_dataset",
    "Meta-Dataset's converted sources (dataset_spec.json, one .tfrecords file per class), no TensorFlow",
    options=("verify_crc",),
)
