"""The MedIMeta v1.0 catalogue (19 datasets, 54 tasks), shipped as data, and what is on disk.

The catalogue is read from ``catalogue.json`` next to this module (no PyYAML needed) and built as a
[`torchcross.tasks.catalogue.Catalogue`][Catalogue], so the generic leave-one-out
helper applies: [`leave_one_out_tasks()`][torchcross.datasets.medimeta.leave_one_out_tasks] picks the source
tasks for a target dataset, excluding every dataset with a domain or subject overlap.

Examples:
    >>> cat = medimeta_catalogue()
    >>> len(cat), len(cat.tasks())
    (19, 54)
    >>> cat.dataset("oct").domain, [t.task_name for t in cat.tasks("oct")]
    ('OCT', ['disease class', 'urgent referral'])
    >>> sorted({ds for ds, _ in leave_one_out_tasks("glaucoma")} & {"fundus", "dr_uwf", "oct"})
    ['oct']
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterable
from importlib import resources
from typing import Any, Literal

from torchcross.datasets.medimeta.folder import DatasetInfo, available_tasks, scan_datasets
from torchcross.tasks.catalogue import Catalogue, DatasetEntry, TaskEntry, leave_one_out_sources
from torchcross.tasks.task import TaskTarget

__all__ = [
    "catalogue_from_infos",
    "leave_one_out_tasks",
    "list_datasets",
    "list_tasks",
    "medimeta_catalogue",
]


def _entry(raw: dict[str, Any]) -> DatasetEntry:
    tasks = tuple(
        TaskEntry(raw["id"], t["task_name"], t["task_target"], {int(k): v for k, v in t["labels"].items()})
        for t in raw["tasks"]
    )
    info = {k: v for k, v in raw.items() if k not in ("id", "name", "domain", "tasks")}
    info["input_size"] = tuple(raw["input_size"])
    return DatasetEntry(
        raw["id"],
        raw["name"],
        raw["domain"],
        tasks,
        frozenset(raw.get("domain_overlaps") or ()),
        frozenset(raw.get("subject_overlaps") or ()),
        info,
    )


@functools.lru_cache(maxsize=1)
def medimeta_catalogue() -> Catalogue:
    """The MedIMeta v1.0 catalogue.

    Each [`DatasetEntry`][DatasetEntry] keeps the rest of its
    ``info.yaml`` in ``info`` (``input_size``, ``splits_num_samples``,
    ``original_splits_num_samples``, ``total_num_samples``, ``summary``, ``license``,
    ``download_url``, ``DOI``).
    """
    text = resources.files(__package__).joinpath("catalogue.json").read_text(encoding="utf-8")
    return Catalogue(_entry(d) for d in json.loads(text)["datasets"])


def catalogue_from_infos(infos: Iterable[DatasetInfo]) -> Catalogue:
    """A [`Catalogue`][Catalogue] of parsed ``info.yaml`` files (overlaps with
    absent datasets dropped).

    Examples:
        >>> import tempfile
        >>> from torchcross.datasets.medimeta.writer import write_synthetic_medimeta
        >>> from torchcross.datasets.medimeta.folder import scan_datasets
        >>> root = tempfile.mkdtemp()
        >>> _ = write_synthetic_medimeta(root, "toy", num_images=8, image_size=4)
        >>> catalogue_from_infos(scan_datasets(root)[0].values()).ids
        ('toy',)
    """
    infos = list(infos)
    ids = {i.id for i in infos}
    entries = []
    for i in infos:
        raw: dict[str, Any] = {
            **dict(i.raw),
            "domain_overlaps": [d for d in i.domain_overlaps if d in ids],
            "subject_overlaps": [d for d in i.subject_overlaps if d in ids],
            "tasks": [
                {"task_name": t.name, "task_target": t.task_target.name, "labels": dict(t.labels)}
                for t in i.tasks
            ],
        }
        entries.append(_entry(raw))
    return Catalogue(entries)


def list_datasets(
    data_path: str | os.PathLike[str] | None = None, errors: Literal["warn", "raise", "ignore"] = "warn"
) -> list[str]:
    """Dataset ids: of the catalogue (``data_path=None``) or readable under ``data_path``.

    Examples:
        >>> list_datasets()[:3]
        ['aml', 'bus', 'crc']
    """
    if data_path is None:
        return list(medimeta_catalogue().ids)
    from torchcross.datasets.medimeta.folder import available_datasets

    return available_datasets(data_path, errors=errors)


def list_tasks(
    data_path: str | os.PathLike[str] | None = None,
    dataset_id: str | None = None,
    task_target: TaskTarget | str | None = None,
    errors: Literal["warn", "raise", "ignore"] = "warn",
) -> list[tuple[str, str]]:
    """``(dataset id, task name)`` pairs: of the catalogue or present under ``data_path``.

    Args:
        data_path: a MedIMeta folder; ``None`` lists the catalogue.
        dataset_id: only this dataset's tasks.
        task_target: only tasks of this kind.
        errors: what to do about broken folders (see ``available_datasets``).

    Raises:
        ValueError: for an unknown dataset id (listing the known ones).

    Examples:
        >>> len(list_tasks(task_target="ORDINAL_REGRESSION"))
        5
        >>> list_tasks(dataset_id="bus")
        [('bus', 'case category'), ('bus', 'malignancy')]
    """
    kind = None if task_target is None else TaskTarget.parse(task_target)
    if data_path is None:
        cat = medimeta_catalogue()
        if dataset_id is not None and dataset_id not in cat:
            raise ValueError(f"unknown MedIMeta dataset id {dataset_id!r}; known ids: {list(cat.ids)}")
        pairs = [(t.dataset_id, t.task_name, t.task_target) for t in cat.tasks(dataset_id)]
    else:
        present = available_tasks(data_path, errors=errors)
        if dataset_id is not None and dataset_id not in present:
            raise ValueError(
                f"no dataset {dataset_id!r} under {os.fspath(data_path)!r}; present: {sorted(present)}"
            )
        infos, _ = scan_datasets(data_path)
        pairs = [
            (ds, name, infos[ds].task(name).task_target)
            for ds, names in present.items()
            if dataset_id is None or ds == dataset_id
            for name in names
        ]
    return [(ds, name) for ds, name, target in pairs if kind is None or target is kind]


def leave_one_out_tasks(
    target: str,
    data_path: str | os.PathLike[str] | None = None,
    task_targets: Iterable[TaskTarget | str] | None = None,
) -> list[tuple[str, str]]:
    """Source tasks ``(dataset id, task name)`` for leave-one-out transfer to ``target``.

    Every task of every dataset that has no domain or subject overlap with the target
    dataset (by the catalogue, or by the ``info.yaml`` files under ``data_path``); with
    ``data_path`` only tasks present there are returned.

    Args:
        target: a dataset id (``"glaucoma"``) or task id (``"glaucoma/Glaucoma suspect"``).
        data_path: restrict to (and, for non-catalogue datasets, read overlaps from) this folder.
        task_targets: keep only these task kinds.

    Examples:
        >>> sources = leave_one_out_tasks("cxr")
        >>> any(ds in ("cxr", "pneumonia") for ds, _ in sources), len(sources)
        (False, 50)
    """
    cat = medimeta_catalogue()
    if data_path is not None:
        infos, _ = scan_datasets(data_path)
        ids = target.split("/", 1)[0]
        if ids not in cat or any(i not in cat for i in infos):
            cat = catalogue_from_infos(infos.values())
        present = set(list_tasks(data_path, errors="ignore"))
    try:
        sources = leave_one_out_sources(cat, target, task_targets=task_targets)
    except KeyError as exc:
        raise ValueError(str(exc.args[0])) from None
    pairs = [(t.dataset_id, t.task_name) for t in sources]
    if data_path is not None:
        pairs = [p for p in pairs if p in present]
    return pairs
