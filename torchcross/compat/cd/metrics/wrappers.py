"""One metric per task in a cross-domain run (torchcross 0.0.6's ``torchcross.cd.metrics.wrappers``).

Examples:
    >>> import torch
    >>> from torchcross.compat.cd.metrics import Accuracy
    >>> from torchcross.tasks.task import TaskDescription
    >>> a = TaskDescription("BINARY_CLASSIFICATION", {0: "n", 1: "y"}, "task.a")
    >>> b = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "x", 1: "y"}, "task.b")
    >>> metric = CrossDomainMeanWrapper(Accuracy)
    >>> metric.update(a, torch.tensor([[0.9], [0.2]]), torch.tensor([[1], [1]]))
    >>> metric.update(b, torch.tensor([[0.9, 0.1]]), torch.tensor([0]))
    >>> float(metric.compute())  # mean of 0.5 and 1.0
    0.75
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from torch import nn
from torchmetrics import Metric
from torchmetrics.wrappers.abstract import WrapperMetric

from torchcross.tasks.task import TaskDescription

__all__ = ["CrossDomainMeanWrapper", "CrossDomainWrapper"]


class CrossDomainWrapper(WrapperMetric):
    """A metric per task, made by ``metric_constructor(task_description, *metric_args, **metric_kwargs)``.

    ``update(description, *args)`` and ``forward(description, *args)`` go to the task's metric
    (made on first use with ``auto_add_metrics``); `compute()` returns
    ``{task_identifier: value}``. Tasks are told apart by their identifiers (any string, dots
    included, or ``None``).

    Raises:
        ValueError: a second metric for one task, or an unknown task without ``auto_add_metrics``.
    """

    is_differentiable = False

    def __init__(
        self,
        metric_constructor: Callable[..., Metric],
        task_descriptions: list[TaskDescription] | None = None,
        metric_args: tuple[Any, ...] = (),
        metric_kwargs: dict[str, Any] | None = None,
        auto_add_metrics: bool = True,
    ) -> None:
        super().__init__()
        self.metric_constructor, self.metric_args = metric_constructor, tuple(metric_args)
        self.metric_kwargs, self.auto_add_metrics = dict(metric_kwargs or {}), auto_add_metrics
        self.metrics = nn.ModuleDict()
        self.keys: dict[str | None, str] = {}  # task identifier -> ModuleDict key (no dots allowed there)
        for description in task_descriptions or ():
            self.add_metric(description)

    def add_metric(self, task_description: TaskDescription) -> None:
        """Make the metric of a new task."""
        tid = task_description.task_identifier
        if tid in self.keys:
            raise ValueError(f"task {tid!r} already has a metric")
        self.keys[tid] = f"task{len(self.keys)}"
        self.metrics[self.keys[tid]] = self.metric_constructor(
            task_description, *self.metric_args, **self.metric_kwargs
        ).to(self.device)

    def _metric(self, task_description: TaskDescription) -> Metric:
        tid = task_description.task_identifier
        if tid not in self.keys:
            if not self.auto_add_metrics:
                raise ValueError(
                    f"task {tid!r} has no metric; add it with add_metric or set auto_add_metrics"
                )
            self.add_metric(task_description)
        return cast(Metric, self.metrics[self.keys[tid]])

    def update(self, task_description: TaskDescription, *args: Any, **kwargs: Any) -> None:
        """Update the task's metric."""
        self._metric(task_description).update(*args, **kwargs)

    def forward(self, task_description: TaskDescription, *args: Any, **kwargs: Any) -> Any:
        """The task's metric on this batch (and update it)."""
        self._forward_cache = self._metric(task_description)(*args, **kwargs)
        return self._forward_cache

    def compute(self) -> Any:
        """``{task_identifier: value}`` over the tasks seen."""
        return {tid: cast(Metric, self.metrics[key]).compute() for tid, key in self.keys.items()}

    def reset(self) -> None:
        """Reset every task's metric."""
        for metric in self.metrics.values():
            cast(Metric, metric).reset()
        super().reset()


class CrossDomainMeanWrapper(CrossDomainWrapper):
    """`CrossDomainWrapper` whose `compute()` is the mean over the tasks' values.

    Raises:
        ValueError: `compute()` before any task was seen.
    """

    def compute(self) -> Any:
        """The mean of the tasks' values."""
        if not self.keys:
            raise ValueError("CrossDomainMeanWrapper.compute: no task has been scored yet")
        values = [cast(Metric, self.metrics[key]).compute() for key in self.keys.values()]
        return sum(values) / len(values)
