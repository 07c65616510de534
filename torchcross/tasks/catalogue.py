"""Catalogues of datasets and their tasks, with declared domain and subject overlaps.

A [`Catalogue`][Catalogue] lists
[`DatasetEntry`][DatasetEntry] values, each with its
[`TaskEntry`][TaskEntry] values. Datasets declare which other datasets share their
imaging domain or their subjects; the catalogue makes these relations symmetric. Leave-one-out cross-domain
transfer (the MedIMeta protocol) trains on every task of every dataset that overlaps the target dataset in
neither way: [`leave_one_out_sources()`][leave_one_out_sources].

Examples:
    >>> def binary(ds):
    ...     return TaskEntry(ds, "sick", "BINARY_CLASSIFICATION", {0: "no", 1: "yes"})
    >>> cat = Catalogue(
    ...     [
    ...         DatasetEntry("a", "A", "X-ray", (binary("a"),), domain_overlaps={"b"}),
    ...         DatasetEntry("b", "B", "X-ray", (binary("b"),)),
    ...         DatasetEntry("c", "C", "Fundus", (binary("c"),)),
    ...     ]
    ... )
    >>> cat.overlapping("b")  # symmetric: "a" declared the overlap
    frozenset({'a'})
    >>> [t.task_id for t in leave_one_out_sources(cat, "b")]
    ['c/sick']
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from torchcross.tasks.task import TaskDescription, TaskTarget

__all__ = ["Catalogue", "DatasetEntry", "TaskEntry", "leave_one_out_sources"]

_OVERLAP_KINDS = ("domain", "subject")


def _check_id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"{what} must be a non-empty str, got {type(value).__name__}: {value!r}")
    return value


def _id_set(values: Any, what: str) -> frozenset[str]:
    if isinstance(values, str):
        raise TypeError(f"{what} must be a collection of dataset ids, got the single string {values!r}")
    return frozenset(_check_id(v, f"an entry of {what}") for v in (values or ()))


@dataclass(frozen=True)
class TaskEntry:
    """One task of a catalogued dataset.

    Args:
        dataset_id: id of the dataset the task belongs to.
        task_name: the task's name, unique within its dataset.
        task_target: the kind of task (a [`TaskTarget`][TaskTarget] or its name).
        classes: ``{class key: class name}``, validated as
            [`TaskDescription`][TaskDescription] does.

    Examples:
        >>> t = TaskEntry("oct", "disease class", "MULTICLASS_CLASSIFICATION", {0: "a", 1: "b", 2: "c"})
        >>> t.task_id, t.num_classes
        ('oct/disease class', 3)
    """

    dataset_id: str
    task_name: str
    task_target: TaskTarget
    classes: Mapping[int, str]

    def __post_init__(self) -> None:
        _check_id(self.dataset_id, "dataset_id")
        _check_id(self.task_name, "task_name")
        # TaskDescription validates the kind and the classes and freezes them.
        desc = TaskDescription(self.task_target, self.classes)
        object.__setattr__(self, "task_target", desc.task_target)
        object.__setattr__(self, "classes", desc.classes)

    @property
    def task_id(self) -> str:
        """``"<dataset id>/<task name>"``, unique within a catalogue."""
        return f"{self.dataset_id}/{self.task_name}"

    @property
    def num_classes(self) -> int:
        """Number of classes (multi-label: number of labels)."""
        return len(self.classes)

    def task_description(self, domain_identifier: str = "") -> TaskDescription:
        """The [`TaskDescription`][TaskDescription] of this task, identified by
        [`task_id`][TaskEntry.task_id]."""
        return TaskDescription(self.task_target, self.classes, self.task_id, domain_identifier)


@dataclass(frozen=True)
class DatasetEntry:
    """One catalogued dataset.

    Args:
        id: short unique id (MedIMeta: the folder name, e.g. ``"oct"``).
        name: human-readable name.
        domain: the imaging domain (e.g. ``"Retinal fundus"``).
        tasks: the dataset's tasks; each task's ``dataset_id`` must equal ``id``.
        domain_overlaps: ids of datasets from an overlapping domain.
        subject_overlaps: ids of datasets that share subjects (patients) with this one.
        info: any further metadata (not compared, not hashed).

    Raises:
        TypeError: for a non-string id or a task that is not a
            [`TaskEntry`][TaskEntry].
        ValueError: for a task of another dataset or two tasks with one name.
    """

    id: str
    name: str
    domain: str
    tasks: tuple[TaskEntry, ...] = ()
    domain_overlaps: frozenset[str] = frozenset()
    subject_overlaps: frozenset[str] = frozenset()
    info: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        _check_id(self.id, "id")
        for attr in ("name", "domain"):
            if not isinstance(getattr(self, attr), str):
                raise TypeError(f"dataset {self.id!r}: {attr} must be a str, got {getattr(self, attr)!r}")
        tasks = tuple(self.tasks)
        for t in tasks:
            if not isinstance(t, TaskEntry):
                raise TypeError(f"dataset {self.id!r}: tasks must be TaskEntry values, got {t!r}")
            if t.dataset_id != self.id:
                raise ValueError(
                    f"dataset {self.id!r} lists task {t.task_name!r} of dataset {t.dataset_id!r}; "
                    f"build it as TaskEntry({self.id!r}, {t.task_name!r}, ...)"
                )
        names = [t.task_name for t in tasks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"dataset {self.id!r} has several tasks named {dupes}")
        object.__setattr__(self, "tasks", tasks)
        for attr in ("domain_overlaps", "subject_overlaps"):
            ids = _id_set(getattr(self, attr), f"dataset {self.id!r} {attr}") - {self.id}
            object.__setattr__(self, attr, ids)
        object.__setattr__(self, "info", dict(self.info))

    def task(self, task_name: str) -> TaskEntry:
        """The task named ``task_name``.

        Raises:
            KeyError: naming the dataset's tasks if there is no such task.
        """
        for t in self.tasks:
            if t.task_name == task_name:
                return t
        names = [t.task_name for t in self.tasks]
        raise KeyError(f"dataset {self.id!r} has no task {task_name!r}; its tasks are {names}")


class Catalogue:
    """An immutable collection of datasets, looked up by id, with symmetric overlaps.

    Args:
        datasets: the datasets; ids must be unique and every overlap must name a
            catalogued dataset (use [`subset()`][Catalogue.subset] to make a
            smaller catalogue).

    Raises:
        ValueError: for an empty catalogue, duplicate ids or overlaps naming unknown ids.
    """

    def __init__(self, datasets: Iterable[DatasetEntry]) -> None:
        entries = tuple(datasets)
        if not entries:
            raise ValueError("a catalogue needs at least one DatasetEntry, got none")
        for d in entries:
            if not isinstance(d, DatasetEntry):
                raise TypeError(f"catalogue entries must be DatasetEntry values, got {type(d).__name__}")
        ids = [d.id for d in entries]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"dataset ids must be unique; repeated: {dupes}")
        self._datasets: dict[str, DatasetEntry] = {d.id: d for d in entries}
        self._overlaps: dict[str, dict[str, set[str]]] = {k: {i: set() for i in ids} for k in _OVERLAP_KINDS}
        for d in entries:
            for kind in _OVERLAP_KINDS:
                declared = getattr(d, f"{kind}_overlaps")
                unknown = sorted(declared - set(ids))
                if unknown:
                    raise ValueError(
                        f"dataset {d.id!r} declares {kind} overlaps with unknown datasets {unknown}; "
                        f"known ids: {sorted(ids)}"
                    )
                for other in declared:
                    self._overlaps[kind][d.id].add(other)
                    self._overlaps[kind][other].add(d.id)

    # -- listing and lookup -------------------------------------------------------------
    @property
    def datasets(self) -> tuple[DatasetEntry, ...]:
        """All datasets, in catalogue order."""
        return tuple(self._datasets.values())

    @property
    def ids(self) -> tuple[str, ...]:
        """All dataset ids, in catalogue order."""
        return tuple(self._datasets)

    def __len__(self) -> int:
        return len(self._datasets)

    def __iter__(self) -> Iterator[DatasetEntry]:
        return iter(self._datasets.values())

    def __contains__(self, dataset_id: object) -> bool:
        return dataset_id in self._datasets

    def __repr__(self) -> str:
        return f"Catalogue({len(self)} datasets, {len(self.tasks())} tasks: {list(self.ids)})"

    def dataset(self, dataset_id: str) -> DatasetEntry:
        """The dataset with id ``dataset_id``.

        Raises:
            KeyError: listing the known ids if there is none.
        """
        try:
            return self._datasets[dataset_id]
        except (KeyError, TypeError):
            raise KeyError(f"unknown dataset id {dataset_id!r}; known ids: {list(self.ids)}") from None

    def task(self, dataset_id: str, task_name: str | None = None) -> TaskEntry:
        """A task, by ``(dataset_id, task_name)`` or by its ``"dataset_id/task_name"`` id.

        Raises:
            KeyError: naming what exists if the dataset or the task is unknown.
        """
        if task_name is None:
            if not isinstance(dataset_id, str) or "/" not in dataset_id:
                raise KeyError(f"expected a task id 'dataset_id/task_name', got {dataset_id!r}")
            dataset_id, task_name = dataset_id.split("/", 1)
        return self.dataset(dataset_id).task(task_name)

    def tasks(self, dataset_id: str | None = None) -> tuple[TaskEntry, ...]:
        """All tasks of one dataset, or of the whole catalogue, in catalogue order."""
        if dataset_id is not None:
            return self.dataset(dataset_id).tasks
        return tuple(t for d in self._datasets.values() for t in d.tasks)

    # -- overlaps ---------------------------------------------------------------------------
    def overlapping(self, dataset_id: str, kinds: Iterable[str] = _OVERLAP_KINDS) -> frozenset[str]:
        """Ids of datasets overlapping ``dataset_id`` in any of ``kinds`` (``"domain"``, ``"subject"``).

        Overlaps are symmetric: declaring one on either dataset is enough.
        """
        self.dataset(dataset_id)
        kinds = _check_kinds(kinds)
        return frozenset().union(*(self._overlaps[k][dataset_id] for k in kinds))

    def overlaps(self, a: str, b: str, kinds: Iterable[str] = _OVERLAP_KINDS) -> bool:
        """Whether datasets ``a`` and ``b`` overlap in any of ``kinds``."""
        self.dataset(b)
        return b in self.overlapping(a, kinds)

    def subset(self, dataset_ids: Iterable[str]) -> Catalogue:
        """A catalogue of only ``dataset_ids``, dropping overlaps with the datasets left out."""
        keep = list(dict.fromkeys(dataset_ids))
        for i in keep:
            self.dataset(i)
        kept = set(keep)
        entries = [
            DatasetEntry(
                d.id,
                d.name,
                d.domain,
                d.tasks,
                frozenset(self._overlaps["domain"][d.id] & kept),
                frozenset(self._overlaps["subject"][d.id] & kept),
                d.info,
            )
            for d in (self._datasets[i] for i in keep)
        ]
        return Catalogue(entries)


def _check_kinds(kinds: Iterable[str]) -> tuple[str, ...]:
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    bad = [k for k in kinds if k not in _OVERLAP_KINDS]
    if bad:
        raise ValueError(f"unknown overlap kinds {bad}; use any of {list(_OVERLAP_KINDS)}")
    return kinds


def leave_one_out_sources(
    catalogue: Catalogue,
    target: str | TaskEntry,
    *,
    kinds: Iterable[str] = _OVERLAP_KINDS,
    same_domain_name: bool = True,
    task_targets: Iterable[TaskTarget | str] | None = None,
) -> tuple[TaskEntry, ...]:
    """The source tasks for leave-one-out cross-domain transfer to ``target``.

    Every task of every dataset other than the target's dataset that overlaps it in
    none of ``kinds``. With ``same_domain_name`` datasets whose ``domain`` string equals
    the target's (ignoring case) also count as overlapping, declared or not.

    Args:
        catalogue: where the datasets come from.
        target: a dataset id, a task id ``"dataset_id/task_name"`` or a
            [`TaskEntry`][TaskEntry].
        kinds: which declared overlaps exclude a dataset.
        same_domain_name: also exclude datasets of the same domain name.
        task_targets: keep only tasks of these kinds (default: all kinds).

    Raises:
        KeyError: if the target dataset or task is unknown (the message lists what exists).
        ValueError: for an unknown overlap kind or task kind.

    Examples:
        >>> t = lambda ds: TaskEntry(ds, "t", "BINARY_CLASSIFICATION", {0: "n", 1: "y"})
        >>> cat = Catalogue(
        ...     [
        ...         DatasetEntry("a", "A", "CT", (t("a"),), subject_overlaps={"c"}),
        ...         DatasetEntry("b", "B", "CT", (t("b"),)),
        ...         DatasetEntry("c", "C", "MRI", (t("c"),)),
        ...         DatasetEntry("d", "D", "OCT", (t("d"),)),
        ...     ]
        ... )
        >>> [s.dataset_id for s in leave_one_out_sources(cat, "a/t")]
        ['d']
        >>> [s.dataset_id for s in leave_one_out_sources(cat, "a", same_domain_name=False)]
        ['b', 'd']
    """
    if not isinstance(catalogue, Catalogue):
        raise TypeError(f"catalogue must be a Catalogue, got {type(catalogue).__name__}")
    if isinstance(target, TaskEntry):
        dataset_id = catalogue.task(target.dataset_id, target.task_name).dataset_id
    elif isinstance(target, str) and "/" in target and target not in catalogue:
        dataset_id = catalogue.task(target).dataset_id
    else:
        dataset_id = catalogue.dataset(target).id
    excluded = set(catalogue.overlapping(dataset_id, kinds)) | {dataset_id}
    if same_domain_name:
        domain = catalogue.dataset(dataset_id).domain.strip().casefold()
        excluded |= {d.id for d in catalogue if d.domain.strip().casefold() == domain}
    allowed = None if task_targets is None else {TaskTarget.parse(k) for k in task_targets}
    return tuple(
        t
        for d in catalogue
        if d.id not in excluded
        for t in d.tasks
        if allowed is None or t.task_target in allowed
    )
