"""0.0.6's ``SimpleCrossDomainClassifier`` LightningModule: multi-task training over many task sources.

Batches are ``((inputs, labels), task_description)`` (e.g. medimeta's
``MultiMedIMetaBatchTaskSource``, or ``BatchedTaskSource(..., with_task_description=True)``).
Logs ``loss/{train,val,test}`` and ``accuracy/...``, ``AUROC/...``: the mean over tasks of
each task's torchmetrics metric (`torchcross.cd.metrics.CrossDomainMeanWrapper`).

Examples:
    >>> from functools import partial
    >>> import torch
    >>> from torch import nn
    >>> model = SimpleCrossDomainClassifier(
    ...     nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 6)), 6, partial(torch.optim.Adam, lr=1e-3)
    ... )
    >>> sorted(model.validation_metrics)
    ['AUROC/val', 'accuracy/val']
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, cast

from torch import Tensor, nn
from torchmetrics import MetricCollection

from torchcross.compat.cd.metrics import AUROC, Accuracy, CrossDomainMeanWrapper
from torchcross.compat.models.cross_domain import (
    SimpleCrossDomainClassifier as PlainSimpleCrossDomainClassifier,
)
from torchcross.compat.models.lightning.cross_domain import Batch, CrossDomainLightningModule
from torchcross.tasks.task import TaskDescription

if TYPE_CHECKING:
    from lightning.pytorch.core.optimizer import LightningOptimizer

__all__ = ["SimpleCrossDomainClassifier"]

_log = logging.getLogger(__name__)


class SimpleCrossDomainClassifier(PlainSimpleCrossDomainClassifier, CrossDomainLightningModule):
    """`torchcross.models.SimpleCrossDomainClassifier` trained by Lightning.

    Args:
        backbone, num_backbone_features: the shared network and its output width (0.0.6's older
            form ``(backbone, num_backbone_features)`` as one tuple, followed by the optimiser, works too).
        optimizer: ``parameters -> optimiser``; heads made during training join it as new parameter groups.
        lr_scheduler: ``optimiser -> scheduler``, stepped after every training epoch.
        task_descriptions, add_heads_during_training: as in the plain model.
        scale_loss_by_batch_count: weigh tasks equally per epoch (see
            `torchcross.models.lightning.cross_domain`).
        pos_class_weights: ``{task_identifier: class weights}``, the ``class_weights`` of
            [`torchcross.nn.loss()`][torchcross.nn.kinds.loss] per task (not in 0.0.6; e.g. from
            ``get_num_samples_per_class(neg=True)``).
    """

    def __init__(
        self,
        backbone: nn.Module | tuple[nn.Module, int],
        num_backbone_features: int | Callable[..., Any],
        optimizer: Callable[..., Any] | None = None,
        lr_scheduler: Callable[..., Any] | None = None,
        task_descriptions: Iterable[TaskDescription] | None = None,
        add_heads_during_training: bool = True,
        scale_loss_by_batch_count: bool = False,
        *,
        pos_class_weights: Mapping[Any, Tensor] | None = None,
    ) -> None:
        if isinstance(backbone, tuple) and len(backbone) == 2 and callable(num_backbone_features):
            # the form (backbone, num_features), optimizer, ... of older 0.0.x scripts
            optimizer = num_backbone_features
            backbone, num_backbone_features = cast(Any, backbone)  # (nn.Module, int), len checked
        if optimizer is None:
            raise TypeError(
                "SimpleCrossDomainClassifier needs an optimizer, e.g. partial(torch.optim.Adam, lr=1e-3)"
            )
        descriptions = list(task_descriptions or ())
        super().__init__(backbone, num_backbone_features, descriptions, add_heads_during_training)  # type: ignore[arg-type]
        self.optimizer, self.lr_scheduler = optimizer, lr_scheduler
        self.scale_loss_by_batch_count = scale_loss_by_batch_count
        self.pos_class_weights = dict(pos_class_weights) if pos_class_weights is not None else None
        self.training_metrics = MetricCollection(
            {
                "accuracy": CrossDomainMeanWrapper(Accuracy, descriptions),
                "AUROC": CrossDomainMeanWrapper(AUROC, descriptions),
            },
            postfix="/train",
        )
        self.validation_metrics = self.training_metrics.clone(postfix="/val")
        self.test_metrics = self.training_metrics.clone(postfix="/test")

    def add_head(self, task_description: TaskDescription) -> nn.Module:
        """Make a task's head; during ``Trainer.fit`` it joins the optimiser as a new parameter group."""
        head = super().add_head(task_description)
        try:
            attached = self.trainer is not None and bool(self.trainer.optimizers)
        except RuntimeError:  # not attached to a Trainer (yet)
            attached = False
        if attached:
            cast("LightningOptimizer", self.optimizers()).optimizer.add_param_group(
                {"params": list(head.parameters())}
            )
        return head

    def call_metrics(self, mode: str, task_description: TaskDescription, pred: Tensor, y: Tensor) -> Any:
        metrics = {"train": self.training_metrics, "val": self.validation_metrics, "test": self.test_metrics}
        return metrics[mode](task_description, pred, y)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        """As in 0.0.6: a batch of a task without a head (never trained on) is skipped with a warning."""
        if not self.has_head(batch[1]):
            _log.warning(
                "Head for task %r does not exist. Skipping validation step.", batch[1].task_identifier
            )
            return
        super().validation_step(batch, batch_idx)
