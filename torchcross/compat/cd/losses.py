"""Loss functions by task kind (torchcross 0.0.6's ``torchcross.cd.losses``), as
[`torchcross.nn.loss()`][loss].

Ordinal classes map to head outputs in the order of their keys (as everywhere in torchcross).

Examples:
    >>> import torch
    >>> from torchcross.tasks.task import TaskDescription, TaskTarget
    >>> d = TaskDescription(TaskTarget.ORDINAL_REGRESSION, {1: "a", 4: "b", 6: "c"})
    >>> get_criterion(d)(torch.zeros(2, 3), torch.tensor([4, 6]))  # log(3)
    tensor(1.0986)
    >>> get_loss_func(d.task_target, {1: "a", 4: "b", 6: "c"})(torch.zeros(2, 3), torch.tensor([4, 6]))
    tensor(1.0986)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchcross.nn.kinds import loss
from torchcross.tasks.labels import keys_to_indices
from torchcross.tasks.task import TaskDescription, TaskTarget

__all__ = ["FloatBCEWithLogitsLoss", "IndexedCrossEntropyLoss", "get_criterion", "get_loss_func"]


def get_loss_func(
    task_target: TaskTarget | str,
    classes: Mapping[int, str] | None,
    device: torch.device | str | None = None,
) -> Callable[..., Tensor]:
    """``(logits, labels, pos_class_weights=None) -> loss`` for a task kind and its classes.

    ``pos_class_weights`` are [`torchcross.nn.loss()`][loss]'s ``class_weights``.
    Regression tasks get ``F.mse_loss``. ``device`` is accepted for 0.0.6 signatures and not needed.

    Raises:
        ValueError: classes that do not fit the task kind.
    """
    description = TaskDescription(task_target, classes)
    if description.task_target is TaskTarget.REGRESSION:
        return F.mse_loss

    def task_loss(logits: Tensor, labels: Tensor, pos_class_weights: Tensor | None = None) -> Tensor:
        return loss(logits, labels, description, class_weights=pos_class_weights)

    return task_loss


class IndexedCrossEntropyLoss(nn.CrossEntropyLoss):
    """Cross-entropy for labels that are class keys (ordinal tasks with gapped keys).

    Args:
        classes: the task's classes; label ``classes``' ``i``-th smallest key is class ``i``.
        weight, size_average, ignore_index, reduce, reduction, label_smoothing: as
            `torch.nn.CrossEntropyLoss`.
    """

    def __init__(
        self,
        classes: Mapping[int, str],
        weight: Tensor | None = None,
        size_average: Any = None,
        ignore_index: int = -100,
        reduce: Any = None,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(weight, size_average, ignore_index, reduce, reduction, label_smoothing)
        self.description = TaskDescription(TaskTarget.ORDINAL_REGRESSION, classes)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return super().forward(input, keys_to_indices(target, self.description))


class FloatBCEWithLogitsLoss(nn.BCEWithLogitsLoss):
    """`torch.nn.BCEWithLogitsLoss` that accepts integer 0/1 targets."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return super().forward(input, target.reshape(input.shape).to(input.dtype))


def get_criterion(
    task_description: TaskDescription,
    pos_class_weights: Tensor | None = None,
    device: torch.device | str | None = None,
    **criterion_kwargs: Any,
) -> nn.Module:
    """The loss module of a task: cross-entropy (class keys for ordinal tasks), BCE with logits, or MSE.

    Args:
        task_description: the task.
        pos_class_weights: per-class weights (cross-entropy's ``weight``) or per-label
            positive weights (BCE's ``pos_weight``).
        device: where the module's buffers live.
        criterion_kwargs: passed to the loss module (e.g. ``reduction``).

    Raises:
        TypeError: ``task_description`` is not a [`TaskDescription`][TaskDescription].
    """
    if not isinstance(task_description, TaskDescription):
        raise TypeError(f"task_description must be a TaskDescription, got {type(task_description).__name__}")
    target = task_description.task_target
    if target is TaskTarget.MULTICLASS_CLASSIFICATION:
        criterion: nn.Module = nn.CrossEntropyLoss(weight=pos_class_weights, **criterion_kwargs)
    elif target in (TaskTarget.BINARY_CLASSIFICATION, TaskTarget.MULTILABEL_CLASSIFICATION):
        criterion = FloatBCEWithLogitsLoss(pos_weight=pos_class_weights, **criterion_kwargs)
    elif target is TaskTarget.ORDINAL_REGRESSION:
        criterion = IndexedCrossEntropyLoss(
            task_description.classes, weight=pos_class_weights, **criterion_kwargs
        )
    else:
        criterion = nn.MSELoss(**criterion_kwargs)
    return criterion.to(device) if device is not None else criterion
