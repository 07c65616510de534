"""Wrapping any map-style dataset of ``(input, label)`` pairs as a task source.

[`WrapTaskSource`][WrapTaskSource] finds the labels once, without decoding inputs
when it can, and normalises them to the canonical form of the task's kind. It is importable from
[`torchcross.data.sources`][torchcross.data.sources] too (its torchcross 0.0.6 path).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

import numpy as np
import torch
from torch.utils.data import IterableDataset, Subset

from torchcross.data.capabilities import BatchReadable, MapStyle
from torchcross.data.sources import TaskSource, check_description, label_tensor, store_canonical_labels
from torchcross.tasks.labels import as_label_array, normalize_labels
from torchcross.tasks.task import TaskDescription, TaskTarget

__all__ = ["WrapTaskSource"]


def _has_length(value: Any, n: int) -> bool:
    try:
        return len(value) == n
    except TypeError:
        return False


def _labels_from_attributes(dataset: Any, path: str = "dataset") -> tuple[Any, str] | None:
    """Labels a dataset already holds (``labels``/``targets`` attributes, through ``Subset``)."""
    n = len(dataset)
    for name in ("labels", "targets"):
        value = getattr(dataset, name, None)
        if value is not None and not callable(value) and _has_length(value, n):
            return value, f"{path}.{name}"
    if isinstance(dataset, Subset):
        found = _labels_from_attributes(dataset.dataset, f"{path}.dataset")
        if found is not None:
            return as_label_array(found[0])[np.asarray(dataset.indices, dtype=np.int64)], found[1]
    return None


def _labels_from_items(dataset: Any) -> np.ndarray:
    """Last resort: read every item once and take its label."""
    rows = []
    for i in range(len(dataset)):
        item = dataset[i]
        if not (isinstance(item, (tuple, list)) and len(item) >= 2):
            raise TypeError(
                f"cannot read labels from item {i} of {type(dataset).__name__}: it is a "
                f"{type(item).__name__}, not an (input, label) pair; pass labels= or label_fn="
            )
        rows.append(as_label_array(item[1]))
    return np.stack(rows) if rows else np.zeros(0, dtype=np.int64)


def _parse_wrap_description(
    task_description: Any, labels: Any, task_target: Any, classes: Any, tid: str, did: str, dataset: Any
) -> tuple[TaskDescription, Any]:
    # torchcross 0.0.6 signature: WrapTaskSource(dataset, task_target, classes, ...)
    if isinstance(task_description, (TaskTarget, str)):
        if task_target is not None:
            raise TypeError("task_target given twice (positionally and as a keyword)")
        task_target, task_description = task_description, None
        if isinstance(labels, Mapping):
            if classes is not None:
                raise TypeError("classes given twice (positionally and as a keyword)")
            classes, labels = labels, None
    if task_description is not None:
        if task_target is not None or classes is not None or tid or did:
            raise TypeError(
                "give either task_description or task_target, classes, task_identifier and "
                "domain_identifier, not both"
            )
        return check_description(task_description), labels
    if task_target is not None:
        return TaskDescription(task_target, classes, tid, did), labels
    inner = getattr(dataset, "task_description", None)
    if isinstance(inner, TaskDescription):
        return inner, labels
    raise TypeError(
        f"WrapTaskSource needs a task_description (or task_target and classes) for {type(dataset).__name__}, "
        "e.g. TaskDescription('MULTICLASS_CLASSIFICATION', {0: 'cat', 1: 'dog'}, 'pets')"
    )


class WrapTaskSource(TaskSource):
    """Make any map-style dataset of ``(input, label)`` pairs a task source.

    Labels are found once, without decoding inputs when possible, in this order:
    the ``labels`` argument; ``label_fn(dataset)``; a ``labels`` or ``targets``
    attribute of the dataset of the right length (torchvision datasets have one; a
    wrapped task source has ``labels``; also read through `torch.utils.data.Subset`);
    and as a last resort one pass over the dataset reading ``item[1]``. They are
    normalised once.

    Items are returned as ``(input, label)`` with the canonical label tensor, so they
    agree with ``labels``; a dataset whose items are not pairs is taken to yield inputs
    only. ``get_batch`` is available when the wrapped dataset is a task source with one.

    Args:
        dataset: the map-style dataset to wrap.
        task_description: the task; optional when ``dataset`` is itself a task source.
            For torchcross 0.0.6 code, ``WrapTaskSource(dataset, task_target, classes)``
            also works.
        labels: all labels, in any form [`normalize_labels()`][normalize_labels]
            accepts.
        task_target, classes, task_identifier, domain_identifier: the 0.0.6 way to
            describe the task, instead of ``task_description``.
        label_fn: ``label_fn(dataset) -> labels``, used when ``labels`` is not given.

    Raises:
        TypeError: if the task is not described, is described twice, or labels cannot be found.
        ValueError: if the dataset is empty, or labels do not fit the task or the dataset's length.

    Examples:
        >>> data = [(torch.zeros(2), 1), (torch.ones(2), 0), (torch.ones(2), 1)]
        >>> src = WrapTaskSource(data, TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"}))
        >>> src.labels.ravel().tolist(), src[0][1].tolist()
        ([1, 0, 1], [1])
        >>> old = WrapTaskSource(data, TaskTarget.BINARY_CLASSIFICATION, {0: "no", 1: "yes"})
        >>> old.task_description.task_target.name, old.class_counts(), old.get_num_samples_per_class()
        ('BINARY_CLASSIFICATION', {0: 1, 1: 2}, array([2]))
    """

    def __init__(
        self,
        dataset: Any,
        task_description: TaskDescription | None = None,
        labels: Any = None,
        *,
        task_target: TaskTarget | str | None = None,
        classes: Mapping[int, str] | None = None,
        task_identifier: str = "",
        domain_identifier: str = "",
        label_fn: Callable[[Any], Any] | None = None,
    ) -> None:
        if isinstance(dataset, IterableDataset) or not isinstance(dataset, MapStyle):
            raise TypeError(f"WrapTaskSource needs a map-style dataset, got {type(dataset).__name__}")
        if label_fn is not None and not callable(label_fn):
            raise TypeError(f"label_fn must be callable, got {type(label_fn).__name__}")
        desc, labels = _parse_wrap_description(
            task_description, labels, task_target, classes, task_identifier, domain_identifier, dataset
        )
        self.dataset = dataset
        self.task_description = desc
        n = len(dataset)
        if n == 0:
            raise ValueError(f"cannot wrap an empty dataset as task {desc.task_identifier!r}")
        where = "labels"
        if labels is None and label_fn is not None:
            labels, where = label_fn(dataset), "label_fn(dataset)"
        if labels is None:
            found = _labels_from_attributes(dataset)
            labels, where = found if found is not None else (_labels_from_items(dataset), "dataset items")
        try:
            canonical = normalize_labels(labels, desc)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{exc} (labels read from {where}; pass labels= to give them directly)") from exc
        if len(canonical) != n:
            raise ValueError(
                f"{where} has {len(canonical)} labels but the dataset has {n} items; give one label per item"
            )
        store_canonical_labels(self, canonical)
        self._label_tensor = label_tensor(canonical)

    def __getitem__(self, index: int) -> tuple[Any, torch.Tensor]:
        item = self.dataset[index]
        x = item[0] if isinstance(item, (tuple, list)) and len(item) == 2 else item
        return x, self._label_tensor[index]

    def __len__(self) -> int:
        return len(self.labels)

    def __new__(cls, *args: Any, **kwargs: Any) -> WrapTaskSource:
        inner = args[0] if args else kwargs.get("dataset")
        if cls is WrapTaskSource and isinstance(inner, TaskSource) and isinstance(inner, BatchReadable):
            cls = _BatchReadableWrap  # get_batch exactly when the wrapped task source has it
        return super().__new__(cls)

    def __getattr__(self, name: str) -> Any:
        if name == "get_batch":
            inner = self.__dict__.get("dataset")
            raise AttributeError(
                f"the wrapped {type(inner).__name__} has no get_batch (it is not a BatchReadable task "
                "source), so neither has this WrapTaskSource; read examples with source[i]"
            )
        raise AttributeError(f"{type(self).__name__} object has no attribute {name!r}")


class _BatchReadableWrap(WrapTaskSource):
    """A [`WrapTaskSource`][WrapTaskSource] of a
    [`BatchReadable`][BatchReadable] task source; ``WrapTaskSource(...)`` picks
    it."""

    def get_batch(self, indices: Any) -> tuple[Any, torch.Tensor]:
        """``(inputs, labels)`` at ``indices``: inputs in one call to the wrapped source, labels from here."""
        idx = np.asarray(indices, dtype=np.int64)
        inputs, _ = cast(BatchReadable, self.dataset).get_batch(idx)  # WrapTaskSource picks this class then
        return inputs, self._label_tensor[torch.from_numpy(idx)]
