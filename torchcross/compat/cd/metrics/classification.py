"""Accuracy and AUROC by task kind (torchcross 0.0.6's ``torchcross.cd.metrics.classification``).

``get_accuracy_func`` and ``get_auroc_func`` score probabilities with
[`torchcross.evaluation.metrics.accuracy()`][accuracy] and [`auroc()`][auroc]. ``Accuracy(task_description)``
and ``AUROC(task_description)`` build the stateful torchmetrics metric of the task's kind; ordinal tasks
(labels are class keys) get `IndexedMulticlassAccuracy` / `IndexedMulticlassAUROC`.

Examples:
    >>> import torch
    >>> from torchcross.tasks.task import TaskDescription
    >>> d = TaskDescription("ORDINAL_REGRESSION", {1: "low", 5: "mid", 8: "high"})
    >>> metric = Accuracy(d)
    >>> type(metric).__name__, round(float(metric(torch.eye(3), torch.tensor([1, 5, 1]))), 4)
    ('IndexedMulticlassAccuracy', 0.6667)
    >>> score = get_accuracy_func(d.task_target, {1: "low", 5: "mid", 8: "high"})
    >>> round(float(score(torch.eye(3), torch.tensor([1, 5, 1]))), 4)
    0.6667
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal, cast

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.classification import (
    AUROC as _TorchmetricsAUROC,
)
from torchmetrics.classification import (
    Accuracy as _TorchmetricsAccuracy,
)
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryAUROC,
    MulticlassAccuracy,
    MulticlassAUROC,
    MultilabelAccuracy,
    MultilabelAUROC,
)

from torchcross.evaluation.metrics import accuracy, auroc
from torchcross.tasks.labels import keys_to_indices
from torchcross.tasks.task import TaskDescription, TaskTarget

__all__ = [
    "AUROC",
    "Accuracy",
    "IndexedMulticlassAUROC",
    "IndexedMulticlassAccuracy",
    "get_accuracy_func",
    "get_auroc_func",
]

# torchmetrics' ``average`` values (multi-class AUROC has no "micro")
_Average = Literal["micro", "macro", "weighted", "none"]
_MulticlassAUROCAverage = Literal["macro", "weighted", "none"]


def _scorer(score: Callable[..., float], description: TaskDescription) -> Callable[[Tensor, Tensor], Tensor]:
    def scored(probabilities: Tensor, labels: Tensor) -> Tensor:
        value = score(probabilities, labels, description, from_logits=False)
        return torch.tensor(value, dtype=torch.float32, device=probabilities.device)

    return scored


def get_accuracy_func(
    task_target: TaskTarget | str, classes: Mapping[int, str] | None, device: torch.device | str | None = None
) -> Callable[[Tensor, Tensor], Tensor]:
    """``(probabilities, labels) -> accuracy`` (a 0-d tensor) for a task kind and its classes.

    ``device`` is accepted for 0.0.6 signatures; the result lives on the probabilities' device.

    Raises:
        ValueError: classes that do not fit the task kind, or a regression task.
    """
    return _scorer(accuracy, _classification_description(task_target, classes, "accuracy"))


def get_auroc_func(
    task_target: TaskTarget | str, classes: Mapping[int, str] | None, device: torch.device | str | None = None
) -> Callable[[Tensor, Tensor], Tensor]:
    """``(probabilities, labels) -> macro AUROC`` (a 0-d tensor; NaN where undefined).

    Raises:
        ValueError: classes that do not fit the task kind, or a regression task.
    """
    return _scorer(auroc, _classification_description(task_target, classes, "AUROC"))


def _classification_description(
    task_target: TaskTarget | str, classes: Mapping[int, str] | None, what: str
) -> TaskDescription:
    return _not_regression(TaskDescription(task_target, classes), what)


def _not_regression(description: TaskDescription, what: str) -> TaskDescription:
    if description.task_target is TaskTarget.REGRESSION:
        raise ValueError(f"{what} is not defined for REGRESSION tasks")
    return description


class _ClassKeyLabels:
    """Labels that are class keys (``i``-th smallest key: class ``i``), turned into indices on update."""

    task_description: TaskDescription

    def _keys(self, classes: Mapping[int, str]) -> None:
        self.task_description = TaskDescription(TaskTarget.ORDINAL_REGRESSION, classes)

    def update(self, preds: Tensor, target: Tensor) -> None:
        super().update(preds, keys_to_indices(target, self.task_description))  # type: ignore[misc]


class IndexedMulticlassAccuracy(_ClassKeyLabels, MulticlassAccuracy):
    """Multi-class accuracy for labels that are class keys (``i``-th smallest key: class ``i``)."""

    def __init__(
        self,
        classes: Mapping[int, str],
        top_k: int = 1,
        average: _Average | None = "micro",
        multidim_average: Literal["global", "samplewise"] = "global",
        ignore_index: int | None = None,
        validate_args: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            len(classes),
            top_k=top_k,
            average=average,
            multidim_average=multidim_average,
            ignore_index=ignore_index,
            validate_args=validate_args,
            **kwargs,
        )
        self._keys(classes)


class IndexedMulticlassAUROC(_ClassKeyLabels, MulticlassAUROC):
    """Multi-class AUROC for labels that are class keys (``i``-th smallest key: class ``i``)."""

    def __init__(
        self,
        classes: Mapping[int, str],
        average: _MulticlassAUROCAverage | None = "macro",
        thresholds: int | list[float] | Tensor | None = None,
        ignore_index: int | None = None,
        validate_args: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            len(classes),
            average=average,
            thresholds=thresholds,
            ignore_index=ignore_index,
            validate_args=validate_args,
            **kwargs,
        )
        self._keys(classes)


def _check(task_description: Any, what: str) -> TaskDescription:
    if not isinstance(task_description, TaskDescription):
        raise TypeError(f"{what} needs a TaskDescription, got {type(task_description).__name__}")
    return _not_regression(task_description, what)


class Accuracy(_TorchmetricsAccuracy):
    """``Accuracy(task_description)``: the torchmetrics accuracy of the task's kind (micro average).

    Multi-class: ``MulticlassAccuracy``; multi-label: ``MultilabelAccuracy``; binary:
    ``BinaryAccuracy``; ordinal: `IndexedMulticlassAccuracy`.

    Raises:
        TypeError: not a [`TaskDescription`][TaskDescription].
        ValueError: a regression task.
    """

    def __new__(  # type: ignore[misc]
        cls,
        task_description: TaskDescription,
        *,
        top_k: int = 1,
        threshold: float = 0.5,
        average: _Average | None = "micro",
        multidim_average: Literal["global", "samplewise"] = "global",
        ignore_index: int | None = None,
        validate_args: bool = True,
        **kwargs: Any,
    ) -> Metric:
        d = _check(task_description, "Accuracy")
        kwargs.update(
            multidim_average=multidim_average, ignore_index=ignore_index, validate_args=validate_args
        )
        n = len(d.classes)
        if d.task_target is TaskTarget.MULTICLASS_CLASSIFICATION:
            return MulticlassAccuracy(n, top_k, average, **kwargs)
        if d.task_target is TaskTarget.MULTILABEL_CLASSIFICATION:
            return MultilabelAccuracy(n, threshold, average, **kwargs)
        if d.task_target is TaskTarget.BINARY_CLASSIFICATION:
            return BinaryAccuracy(threshold, **kwargs)
        return IndexedMulticlassAccuracy(d.classes, top_k, average, **kwargs)


class AUROC(_TorchmetricsAUROC):
    """``AUROC(task_description)``: the torchmetrics AUROC of the task's kind (macro average).

    Multi-class: ``MulticlassAUROC``; multi-label: ``MultilabelAUROC``; binary:
    ``BinaryAUROC``; ordinal: `IndexedMulticlassAUROC`.

    Raises:
        TypeError: not a [`TaskDescription`][TaskDescription].
        ValueError: a regression task.
    """

    def __new__(  # type: ignore[misc]
        cls,
        task_description: TaskDescription,
        *,
        average: _Average | None = "macro",
        max_fpr: float | None = None,
        thresholds: int | list[float] | Tensor | None = None,
        ignore_index: int | None = None,
        validate_args: bool = True,
        **kwargs: Any,
    ) -> Metric:
        d = _check(task_description, "AUROC")
        kwargs.update(thresholds=thresholds, ignore_index=ignore_index, validate_args=validate_args)
        n = len(d.classes)
        if d.task_target is TaskTarget.MULTICLASS_CLASSIFICATION:
            return MulticlassAUROC(n, cast("_MulticlassAUROCAverage | None", average), **kwargs)
        if d.task_target is TaskTarget.MULTILABEL_CLASSIFICATION:
            return MultilabelAUROC(n, average, **kwargs)
        if d.task_target is TaskTarget.BINARY_CLASSIFICATION:
            return BinaryAUROC(max_fpr, **kwargs)
        return IndexedMulticlassAUROC(d.classes, cast("_MulticlassAUROCAverage | None", average), **kwargs)
