"""One catalogue from several meta-datasets: ``[data] root`` + ``format``, or ``[[data.collections]]``.

Each collection is a folder of one registered format (see
`torchcross.datasets.formats.FORMATS`). [`load_data()`][load_data] scans every one with its
format's ``scan``, puts the ``prefix`` of its collection before each dataset id, and merges them into one
[`Catalogue`][Catalogue] that leave-one-out reads. Datasets of different
collections that share images are found two ways: a name they share in ``info["upstream"]``, and the
groups of ``[data] overlaps``; both are subject overlaps (neither is ever a source of the other), and the
plan names which rule left a dataset out. [`open_data_task()`][open_data_task] opens a task with the
format and folder its dataset came from.

Examples:
    >>> import tempfile
    >>> from torchcross.datasets.formats import get_format
    >>> from torchcross.protocol.collection import DataCollection
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     root = get_format("medimeta").synthetic(tmp, num_images=20, image_size=8)
    ...     data = load_collections([DataCollection(Path(root), "medimeta", prefix="mm-")])
    ...     data.catalogue.ids, data.locations["mm-synthetic"].dataset_id
    (('mm-synthetic',), 'synthetic')
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchcross.protocol.collection import DataCollection
from torchcross.protocol.data import ResizedTaskSource, load_catalogue, open_task
from torchcross.tasks.catalogue import Catalogue, DatasetEntry, TaskEntry

__all__ = [
    "CollectedData",
    "DatasetLocation",
    "data_collections",
    "load_collections",
    "load_data",
    "open_data_task",
]


@dataclass(frozen=True)
class DatasetLocation:
    """Where one dataset of a merged catalogue is read from.

    Attributes:
        format: the registered format that reads it.
        root: the folder of its collection.
        dataset_id: its id within that collection (without the collection's prefix).
        options: the collection's format options.
        collection: the collection's position in ``[[data.collections]]`` (0 for ``[data] root``).
    """

    format: str
    root: Path
    dataset_id: str
    options: tuple[tuple[str, Any], ...] = ()
    collection: int = 0


@dataclass(frozen=True)
class CollectedData:
    """The merged catalogue of every collection, where each dataset is read from, and what was found.

    Attributes:
        catalogue: every dataset of every collection (ids with their collection's prefix), with the
            overlaps their formats declare, shared upstream datasets and ``[data] overlaps``.
        locations: ``{dataset id: DatasetLocation}``.
        problems: ``{folder or file: message}`` of what the formats could not read.
        notes: one line per overlap added across datasets (upstream or declared), for the plan.
    """

    catalogue: Catalogue
    locations: Mapping[str, DatasetLocation]
    problems: Mapping[str, str]
    notes: tuple[str, ...] = ()


def data_collections(data: Any) -> tuple[DataCollection, ...]:
    """The collections of a ``[data]`` section (a ``DataConfig``): its ``[[data.collections]]``, or
    ``root`` in ``format``.

    Examples:
        >>> from torchcross.protocol.config import config_from_dict
        >>> cfg = config_from_dict({"data": {"root": "/d", "targets": "t"}, "run": {"out_dir": "o"}})
        >>> data_collections(cfg.data)
        (DataCollection(root=PosixPath('/d'), format='medimeta', prefix='', options=()),)
    """
    if data.collections:
        return tuple(data.collections)
    if data.root is None:
        raise ValueError("[data] needs root or [[data.collections]]")
    return (DataCollection(Path(data.root), data.format),)


def _where(i: int, c: DataCollection, many: bool) -> str:
    return f"[[data.collections]] #{i + 1} ({c.format}, {c.root})" if many else f"[data] root {c.root}"


def _prefixed(entry: DatasetEntry, prefix: str) -> DatasetEntry:
    if not prefix:
        return entry
    new_id = prefix + entry.id
    tasks = tuple(TaskEntry(new_id, t.task_name, t.task_target, t.classes) for t in entry.tasks)
    return DatasetEntry(
        new_id,
        entry.name,
        entry.domain,
        tasks,
        frozenset(prefix + d for d in entry.domain_overlaps),
        frozenset(prefix + d for d in entry.subject_overlaps),
        entry.info,
    )


def _pairs(group: Sequence[str]) -> Iterable[tuple[str, str]]:
    return ((a, b) for i, a in enumerate(group) for b in group[i + 1 :] if a != b)


def load_collections(
    collections: Sequence[DataCollection], overlaps: Sequence[Sequence[str]] = ()
) -> CollectedData:
    """Scan every collection with its format and merge the datasets into one catalogue.

    Args:
        collections: the folders, each with its format, id prefix and format options.
        overlaps: groups of dataset ids (prefixed) declared to overlap: subject overlaps between every
            two of a group.

    Raises:
        FileNotFoundError: a collection's root is not a folder (naming the collection).
        ValueError: an unknown format, a collection without a readable dataset, a dataset id found in
            two collections (naming both and suggesting ``prefix``), or an unknown id in ``overlaps``.
    """
    many = len(collections) > 1
    entries: dict[str, DatasetEntry] = {}
    locations: dict[str, DatasetLocation] = {}
    problems: dict[str, str] = {}
    for i, c in enumerate(collections):
        try:
            catalogue, found = load_catalogue(c.root, c.format, **dict(c.options))
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"{_where(i, c, many)}: {exc}") from None
        except ValueError as exc:
            raise ValueError(f"{_where(i, c, many)}: {exc}") from None
        problems.update(found)
        for entry in catalogue:
            entry = _prefixed(entry, c.prefix)
            if entry.id in locations:
                j = locations[entry.id].collection
                raise ValueError(
                    f"dataset id {entry.id!r} is in {_where(j, collections[j], True)} and in "
                    f"{_where(i, c, True)}; set prefix in one of these [[data.collections]] entries "
                    f'(e.g. prefix = "{c.format.replace("-", "")}-") so that every id is unique'
                )
            entries[entry.id] = entry
            locations[entry.id] = DatasetLocation(
                c.format, Path(c.root), entry.id[len(c.prefix) :], c.options, i
            )
    added: dict[str, dict[str, str]] = {d: {} for d in entries}
    notes = []
    by_upstream: dict[str, list[str]] = {}
    for d, entry in entries.items():
        for name in entry.info.get("upstream") or ():
            by_upstream.setdefault(str(name).strip().casefold(), []).append(d)
    for name, shared in sorted(by_upstream.items()):
        group = shared
        for a, b in _pairs(group):
            added[a].setdefault(b, f"upstream {name!r}")
            added[b].setdefault(a, f"upstream {name!r}")
        if len(group) > 1:
            notes.append(f"subject overlap (shared upstream {name!r}): {', '.join(group)}")
    for declared in overlaps:
        group = list(declared)
        unknown = [d for d in group if d not in entries]
        if unknown:
            close = difflib.get_close_matches(unknown[0], list(entries), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"[data] overlaps names the unknown dataset {unknown[0]!r}{hint} (ids carry their "
                f"collection's prefix); datasets: {sorted(entries)}"
            )
        for a, b in _pairs(group):
            added[a].setdefault(b, "declared in [data] overlaps")
            added[b].setdefault(a, "declared in [data] overlaps")
        notes.append(f"subject overlap (declared in [data] overlaps): {', '.join(group)}")
    merged = []
    for d, entry in entries.items():
        if added[d]:
            info = {**entry.info, "overlap_reasons": dict(added[d])}
            entry = DatasetEntry(
                entry.id,
                entry.name,
                entry.domain,
                entry.tasks,
                entry.domain_overlaps,
                entry.subject_overlaps | frozenset(added[d]),
                info,
            )
        merged.append(entry)
    _LOCATIONS[tuple(collections)] = dict(locations)
    return CollectedData(Catalogue(merged), locations, problems, tuple(notes))


def load_data(data: Any) -> CollectedData:
    """[`load_collections()`][load_collections] of a ``[data]`` section (its collections and overlaps)."""
    return load_collections(data_collections(data), data.overlaps)


# {collections: {dataset id: location}}: what load_collections() found, so that opening a task of a
# merged catalogue does not scan every collection again
_LOCATIONS: dict[tuple[DataCollection, ...], dict[str, DatasetLocation]] = {}


def _locate(collections: tuple[DataCollection, ...], dataset_id: str) -> DatasetLocation:
    if len(collections) == 1 and not collections[0].prefix:  # one folder: nothing to look up
        c = collections[0]
        return DatasetLocation(c.format, Path(c.root), dataset_id, c.options)
    known = _LOCATIONS.get(collections)
    if known is None or dataset_id not in known:
        known = dict(load_collections(collections).locations)
    if dataset_id not in known:
        raise ValueError(f"unknown dataset {dataset_id!r}; datasets of [[data.collections]]: {sorted(known)}")
    return known[dataset_id]


def open_data_task(
    data: Any,
    dataset_id: str,
    task_name: str,
    split: str,
    *,
    channels: int,
    image_size: int | None,
    normalize: str = "none",
    preprocessing: Any = None,
) -> ResizedTaskSource:
    """Open a task of the catalogue of ``data`` with the format and folder its dataset comes from.

    As `torchcross.protocol.data.open_task()` (``split``, resizing, normalisation and
    ``preprocessing`` alike); ``dataset_id`` carries its collection's prefix.

    Raises:
        ValueError: an unknown dataset, task or split (the reader names it).
    """
    where = _locate(data_collections(data), dataset_id)
    source = open_task(
        where.root,
        where.dataset_id,
        task_name,
        split,
        channels=channels,
        image_size=image_size,
        normalize=normalize,
        preprocessing=preprocessing,
        format=where.format,
        options=dict(where.options),
    )
    if where.dataset_id != dataset_id:  # the reader names the task by its id within its collection
        ident = f"{dataset_id}/{task_name}"
        source.task_description = dataclasses.replace(source.task_description, task_identifier=ident)
    return source
