"""The Lightning loop of 0.0.6's cross-domain classifiers: batches ``((inputs, labels), task_description)``.

Each batch trains (or scores) the head of its own task. Logs ``loss/{train,val,test}`` and the
metrics that subclasses keep in ``training_metrics`` / ``validation_metrics`` / ``test_metrics``.
With ``scale_loss_by_batch_count`` a task's loss is multiplied by
``max_count / count``, its number of batches in the previous epoch relative to the most
frequent task's, so every task weighs the same in an epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

import torch
from lightning.pytorch import LightningModule
from torch import Tensor

from torchcross.compat.models.cross_domain import CrossDomainModel
from torchcross.compat.models.lightning.mixins import EpochLRSchedule
from torchcross.nn import loss, probabilities
from torchcross.tasks.task import TaskDescription

if TYPE_CHECKING:
    from lightning.pytorch.core.optimizer import LightningOptimizer
    from torchmetrics import MetricCollection

__all__ = ["CrossDomainLightningModule"]

Batch = tuple[tuple[Tensor, Tensor], TaskDescription]


class CrossDomainLightningModule(CrossDomainModel, EpochLRSchedule, LightningModule):
    """Manual optimisation over per-task batches; subclasses provide the metrics and `call_metrics()`."""

    optimizer: Callable[..., torch.optim.Optimizer]
    lr_scheduler: Callable[..., Any] | None = None
    pos_class_weights: Mapping[Any, Tensor] | None = None
    training_metrics: MetricCollection
    validation_metrics: MetricCollection
    test_metrics: MetricCollection

    def __init__(self) -> None:
        super().__init__()
        self.scale_loss_by_batch_count = False
        self.train_counts: dict[Any, int] = {}
        self.val_counts: dict[Any, int] = {}
        self.test_counts: dict[Any, int] = {}
        self.previous_train_counts: dict[Any, int] = {}
        self.automatic_optimization = False

    def call_metrics(self, mode: str, task_description: TaskDescription, pred: Tensor, y: Tensor) -> Any:
        """Update (and return) the metrics of ``mode`` for one batch of probabilities."""
        raise NotImplementedError(f"{type(self).__name__} must implement call_metrics")

    def get_metrics_and_loss(self, batch: Batch, mode: str) -> tuple[Any, Tensor]:
        """Metrics and loss of one batch (the loss of the task's kind, with its class weights if given)."""
        (x, y), description = batch
        logits = self(x, description)
        weights = None
        if self.pos_class_weights is not None:
            weights = self.pos_class_weights.get(description.task_identifier)
        value = loss(logits, y, description, class_weights=weights)
        counts = getattr(self, f"{mode}_counts")
        counts[description.task_identifier] = counts.get(description.task_identifier, 0) + 1
        return self.call_metrics(mode, description, probabilities(logits.detach(), description), y), value

    def on_train_epoch_start(self) -> None:
        self.previous_train_counts, self.train_counts = self.train_counts, {}

    def on_validation_epoch_start(self) -> None:
        self.val_counts = {}

    def on_test_epoch_start(self) -> None:
        self.test_counts = {}

    def _scale(self, value: Tensor, description: TaskDescription) -> Tensor:
        previous = self.previous_train_counts.get(description.task_identifier, 0)
        if not (self.scale_loss_by_batch_count and previous):
            return value
        return value * (max(self.previous_train_counts.values()) / previous)

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        optimizer = cast("LightningOptimizer", self.optimizers())
        optimizer.zero_grad()
        _, value = self.get_metrics_and_loss(batch, "train")
        self.manual_backward(self._scale(value, batch[1]))
        optimizer.step()
        size = len(batch[0][0])
        self.log("loss/train", value.detach(), batch_size=size, prog_bar=True)
        self.log_dict(self.training_metrics, batch_size=size)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        _, value = self.get_metrics_and_loss(batch, "val")
        size = len(batch[0][0])
        self.log("loss/val", value, batch_size=size, prog_bar=True)
        self.log_dict(self.validation_metrics, batch_size=size, prog_bar=True)

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        _, value = self.get_metrics_and_loss(batch, "test")
        size = len(batch[0][0])
        self.log("loss/test", value, batch_size=size, prog_bar=True)
        self.log_dict(self.test_metrics, batch_size=size)

    def optimizer_factories(self) -> tuple[Callable[..., Any], Callable[..., Any] | None]:
        return self.optimizer, self.lr_scheduler
