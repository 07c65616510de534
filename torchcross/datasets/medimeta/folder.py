"""The metadata of MedIMeta dataset folders: ``info.yaml``, split files, discovery.

Every error names the file (and, for ``info.yaml``, the key) that is wrong. Discovery
reads each folder on its own, so one broken folder is reported by name and never hides
the good ones. Nothing is cached across calls: a changed folder is seen at once.
"""

from __future__ import annotations

import functools
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from torchcross.datasets._optional import require
from torchcross.datasets.medimeta._hdf5 import MedIMetaFileError
from torchcross.datasets.medimeta.paths import check_name, read_text, writer_leftovers
from torchcross.tasks.task import TaskDescription, TaskTarget

__all__ = [
    "SPLITS",
    "DatasetInfo",
    "MedIMetaFileError",
    "MedIMetaFolderWarning",
    "TaskInfo",
    "available_datasets",
    "available_tasks",
    "load_yaml",
    "read_info",
    "read_split",
    "scan_datasets",
]

SPLITS = ("train", "val", "test")
_SPLIT_LINE = re.compile(r"^(?:\./)?(?:images/)?(\d+)\.tiff?$")


class MedIMetaFolderWarning(UserWarning):
    """A folder under a MedIMeta ``data_path`` could not be read and was skipped."""


@dataclass(frozen=True)
class TaskInfo:
    """One task of a dataset: its name (used verbatim as the label file name), kind and classes."""

    name: str
    task_target: TaskTarget
    labels: Mapping[int, str]

    def description(self, dataset_id: str, domain: str) -> TaskDescription:
        """The [`TaskDescription`][TaskDescription] of this task, identified as
        ``"<dataset id>/<task name>"``."""
        return TaskDescription(self.task_target, self.labels, f"{dataset_id}/{self.name}", domain)


@dataclass(frozen=True)
class DatasetInfo:
    """The parsed ``info.yaml`` of one dataset folder (``raw`` keeps every key as read)."""

    id: str
    name: str
    domain: str
    input_size: tuple[int, int, int]
    tasks: tuple[TaskInfo, ...]
    total_num_samples: int | None = None
    splits_num_samples: Mapping[str, int] = field(default_factory=dict)
    original_splits_num_samples: Mapping[str, int] = field(default_factory=dict)
    domain_overlaps: tuple[str, ...] = ()
    subject_overlaps: tuple[str, ...] = ()
    summary: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def task(self, name: str) -> TaskInfo:
        """Return the task called ``name``.

        Raises:
            ValueError: naming the dataset and listing its tasks, if there is none.
        """
        for t in self.tasks:
            if t.name == name:
                return t
        names = [t.name for t in self.tasks]
        raise ValueError(f"dataset {self.id!r} has no task {name!r}; its tasks are: {names}")


def _err(path: str, key: str, problem: str) -> MedIMetaFileError:
    return MedIMetaFileError(f"{path}: key {key!r}: {problem}")


def _get(
    raw: Mapping[str, Any], key: str, kind: type | tuple[type, ...], path: str, required: bool = True
) -> Any:
    if key not in raw or raw[key] is None:
        if required:
            raise _err(path, key, "missing")
        return None
    value = raw[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise _err(path, key, f"expected {names}, got {type(value).__name__}: {value!r}")
    return value


def _counts(raw: Mapping[str, Any], key: str, path: str) -> dict[str, int]:
    value = _get(raw, key, dict, path, required=False) or {}
    out = {}
    for split, n in value.items():
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise _err(path, f"{key}.{split}", f"expected a non-negative int, got {n!r}")
        out[str(split)] = n
    return out


def _task(raw: Any, i: int, path: str) -> TaskInfo:
    key = f"tasks[{i}]"
    if not isinstance(raw, dict):
        raise _err(path, key, f"expected a mapping with task_name, task_target, labels, got {raw!r}")
    name = raw.get("task_name")
    if not isinstance(name, str) or not name:
        raise _err(path, f"{key}.task_name", f"expected a non-empty str, got {name!r}")
    try:
        check_name(name, "task name")
    except ValueError as exc:
        raise _err(path, f"{key}.task_name", str(exc)) from None
    target_name: Any = raw.get("task_target")  # TaskTarget.parse checks it
    try:
        target = TaskTarget.parse(target_name)
    except (ValueError, TypeError) as exc:
        raise _err(path, f"{key}.task_target", str(exc)) from None
    labels = raw.get("labels")
    if not isinstance(labels, dict):
        raise _err(path, f"{key}.labels", f"expected a mapping {{int: name}}, got {labels!r}")
    for k, v in labels.items():
        if isinstance(v, bool) or not isinstance(v, (str, int, float)):
            raise _err(path, f"{key}.labels.{k}", f"a class name must be text, got {type(v).__name__}: {v!r}")
    try:
        desc = TaskDescription(target, labels, name)
    except (ValueError, TypeError) as exc:
        raise _err(path, f"{key}.labels", str(exc)) from None
    return TaskInfo(name, target, desc.classes)


def _ids(raw: Mapping[str, Any], key: str, path: str) -> tuple[str, ...]:
    values = _get(raw, key, list, path, required=False) or []
    bad = [v for v in values if not isinstance(v, str) or not v]
    if bad:
        raise _err(path, key, f"expected a list of dataset ids, got entries {bad[:5]!r}")
    return tuple(values)


def parse_info(raw: Any, path: str, folder_id: str | None = None) -> DatasetInfo:
    """Validate a loaded ``info.yaml`` mapping; ``path`` is used in error messages."""
    if not isinstance(raw, dict):
        raise MedIMetaFileError(f"{path}: expected a YAML mapping at the top level, got {type(raw).__name__}")
    ds_id = _get(raw, "id", str, path)
    if folder_id is not None and ds_id != folder_id:
        raise _err(path, "id", f"{ds_id!r} differs from the folder name {folder_id!r}; rename one of them")
    size = _get(raw, "input_size", list, path)
    if len(size) != 3 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size):
        raise _err(path, "input_size", f"expected [C, H, W] of positive ints, got {size!r}")
    if size[0] not in (1, 3):
        raise _err(path, "input_size", f"channels must be 1 or 3, got {size[0]}")
    tasks_raw = _get(raw, "tasks", list, path)
    if not tasks_raw:
        raise _err(path, "tasks", "the dataset declares no task")
    tasks = tuple(_task(t, i, path) for i, t in enumerate(tasks_raw))
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise _err(path, "tasks", f"duplicate task names in {names}")
    total = _get(raw, "total_num_samples", int, path, required=False)
    return DatasetInfo(
        id=ds_id,
        name=str(_get(raw, "name", str, path)),
        domain=str(_get(raw, "domain", str, path)),
        input_size=(size[0], size[1], size[2]),
        tasks=tasks,
        total_num_samples=total,
        splits_num_samples=_counts(raw, "splits_num_samples", path),
        original_splits_num_samples=_counts(raw, "original_splits_num_samples", path),
        domain_overlaps=_ids(raw, "domain_overlaps", path),
        subject_overlaps=_ids(raw, "subject_overlaps", path),
        summary=str(raw.get("summary") or ""),
        raw=raw,
    )


def read_info(dataset_dir: str | os.PathLike[str]) -> DatasetInfo:
    """Read and validate ``<dataset_dir>/info.yaml``.

    Raises:
        MedIMetaFileError: naming the file (and key) if it is missing or malformed.
    """
    dataset_dir = os.fspath(dataset_dir)
    path = os.path.join(dataset_dir, "info.yaml")
    if not os.path.lexists(path):
        raise MedIMetaFileError(f"{path}: missing (every MedIMeta dataset folder has an info.yaml)")
    raw = load_yaml(read_text(path), path)
    return parse_info(raw, path, os.path.basename(os.path.normpath(dataset_dir)))


MAX_INFO_SIZE = 10_000_000
"""The largest a YAML document (``info.yaml``) may be once its aliases are expanded, counted
as characters of its values plus one per value; a real ``info.yaml`` is a few thousand. Larger
documents are refused while they are parsed, before anything is built."""


def load_yaml(text: str, path: str) -> Any:
    """Parse ``text`` (the YAML file ``path``) safely, refusing alias bombs.

    PyYAML's safe loader, except that a document whose aliases (``*name``) expand it
    beyond `MAX_INFO_SIZE` is refused while it is parsed (a "billion laughs" document of
    a kilobyte would otherwise load, then exhaust memory when printed or compared), and
    so is an alias inside the value it names.

    Raises:
        MedIMetaFileError: naming ``path`` (and the line) for invalid or too large YAML.

    Examples:
        >>> load_yaml("splits: &s {train: 3}\\noriginal: *s", "info.yaml")
        {'splits': {'train': 3}, 'original': {'train': 3}}
    """
    yaml = require("yaml")
    loader = _bounded_loader(yaml)(text)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        if getattr(exc, "context", None) == _TOO_LARGE:
            raise MedIMetaFileError(
                f"{path}: line {exc.problem_mark.line + 1}: with its YAML aliases ('*name') written out it "
                f"holds more than {MAX_INFO_SIZE:,} characters; refused (a kilobyte of aliases can expand "
                "to gigabytes): write the values out without aliases"
            ) from None
        raise MedIMetaFileError(f"{path}: not valid YAML ({exc})") from None
    finally:
        loader.dispose()


_TOO_LARGE = "info.yaml expands beyond MAX_INFO_SIZE"


@functools.cache
def _bounded_loader(yaml: Any) -> type:
    """PyYAML's safe loader, refusing documents that expand beyond `MAX_INFO_SIZE`.

    Aliases (``*name``) share one object, so a "billion laughs" document of a kilobyte
    loads quickly, then exhausts memory when it is printed, compared or copied. The
    composer counts each node's size with its aliases expanded and stops at the limit;
    an alias inside the value it names (a recursive value) is refused too.
    """

    class BoundedSafeLoader(yaml.SafeLoader):
        def compose_document(self) -> Any:
            self._sizes: dict[int, int] = {}
            try:
                return super().compose_document()
            finally:
                self._sizes = {}

        def compose_node(self, parent: Any, index: Any) -> Any:
            alias = self.check_event(yaml.AliasEvent)
            mark = self.peek_event().start_mark
            node = super().compose_node(parent, index)
            if alias:
                if id(node) not in self._sizes:
                    raise yaml.composer.ComposerError(
                        None, None, "found an alias inside the value it names (a recursive value)", mark
                    )
                size = self._sizes[id(node)]
            elif isinstance(node, yaml.SequenceNode):
                size = 1 + sum(self._sizes[id(v)] for v in node.value)
            elif isinstance(node, yaml.MappingNode):
                size = 1 + sum(self._sizes[id(k)] + self._sizes[id(v)] for k, v in node.value)
            else:
                size = 1 + len(node.value)
            self._sizes[id(node)] = size
            if size > MAX_INFO_SIZE:
                raise yaml.composer.ComposerError(_TOO_LARGE, None, "too large", mark)
            return node

    return BoundedSafeLoader


def read_split(path: str | os.PathLike[str], num_images: int) -> np.ndarray:
    """Read a split file (lines ``images/000123.tiff``) into sorted int64 row indices.

    Blank lines (including trailing ones) are ignored.

    Raises:
        MedIMetaFileError: naming the file and line for a malformed, duplicate or
            out-of-range line.
    """
    path = os.fspath(path)
    lines = read_text(path).splitlines()
    out = []
    for lineno, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        m = _SPLIT_LINE.match(text)
        if m is None:
            raise MedIMetaFileError(
                f"{path}: line {lineno}: {text!r} is not an image path like 'images/000123.tiff'"
            )
        idx = int(m.group(1))
        if idx >= num_images:
            raise MedIMetaFileError(
                f"{path}: line {lineno}: image index {idx} is out of range for {num_images} images"
            )
        out.append(idx)
    arr = np.asarray(out, dtype=np.int64)
    arr.sort()
    if arr.size > 1 and np.any(arr[1:] == arr[:-1]):
        dup = np.unique(arr[1:][arr[1:] == arr[:-1]])[:5].tolist()
        raise MedIMetaFileError(f"{path}: image indices {dup} are listed more than once")
    return arr


def scan_datasets(
    data_path: str | os.PathLike[str],
) -> tuple[dict[str, DatasetInfo], dict[str, str]]:
    """Read every dataset folder under ``data_path``: ``(infos by id, problems by folder)``.

    A folder without ``info.yaml`` is not a dataset and is ignored; one with a broken
    ``info.yaml`` (malformed, not UTF-8, a directory or a FIFO: only regular files are
    opened) is listed in the problems with the error message, and so are the hidden
    leftovers of an interrupted [`write_medimeta()`][torchcross.datasets.medimeta.write_medimeta].
    Other hidden entries are ignored.

    Raises:
        FileNotFoundError: if ``data_path`` is not a directory.
    """
    data_path = os.fspath(data_path)
    if not os.path.isdir(data_path):
        raise FileNotFoundError(f"MedIMeta data_path {data_path!r} is not a directory")
    infos: dict[str, DatasetInfo] = {}
    problems: dict[str, str] = {}
    for entry in sorted(os.listdir(data_path)):
        folder = os.path.join(data_path, entry)
        if entry.startswith(".") or not os.path.isdir(folder):
            continue
        if not os.path.lexists(os.path.join(folder, "info.yaml")):
            continue
        try:
            infos[entry] = read_info(folder)
        except MedIMetaFileError as exc:
            problems[entry] = str(exc)
    problems.update(writer_leftovers(data_path))
    return infos, problems


def _report(problems: dict[str, str], errors: str) -> None:
    if not problems:
        return
    message = "skipped broken MedIMeta dataset folders:\n" + "\n".join(f"  {v}" for v in problems.values())
    if errors == "raise":
        raise MedIMetaFileError(message)
    if errors == "warn":
        warnings.warn(message, MedIMetaFolderWarning, stacklevel=3)
    elif errors != "ignore":
        raise ValueError(f"errors must be 'warn', 'raise' or 'ignore', got {errors!r}")


def available_datasets(
    data_path: str | os.PathLike[str], errors: Literal["warn", "raise", "ignore"] = "warn"
) -> list[str]:
    """The ids of the readable datasets under ``data_path``, sorted.

    Broken folders are skipped with a
    [`MedIMetaFolderWarning`][torchcross.datasets.medimeta.MedIMetaFolderWarning] naming each file
    (``errors="raise"`` raises instead, ``"ignore"`` is silent).
    """
    infos, problems = scan_datasets(data_path)
    _report(problems, errors)
    return sorted(infos)


def available_tasks(
    data_path: str | os.PathLike[str], errors: Literal["warn", "raise", "ignore"] = "warn"
) -> dict[str, list[str]]:
    """``{dataset id: [task names]}`` of the readable datasets under ``data_path``.

    Only tasks whose label file exists are listed. Broken folders are handled as in
    [`available_datasets()`][torchcross.datasets.medimeta.available_datasets].
    """
    infos, problems = scan_datasets(data_path)
    _report(problems, errors)
    out = {}
    for ds_id, info in sorted(infos.items()):
        labels_dir = os.path.join(os.fspath(data_path), ds_id, "task_labels")
        out[ds_id] = [t.name for t in info.tasks if os.path.exists(os.path.join(labels_dir, f"{t.name}.npy"))]
    return out
