"""0.0.6's ``SimpleClassifier`` LightningModule: supervised training on one task.

Batches are ``(inputs, labels)``. Logs ``loss/{train,val,test}`` and torchmetrics
``accuracy/...`` and ``AUROC/...`` (`torchcross.cd.metrics.Accuracy()`, ``AUROC``).

``head_init=`` and ``linear_probe=`` are the later torchcross API that the MedIMeta authors'
foundation-model benchmark (``finetune_and_test.py``) calls: ``SimpleClassifier(backbone, n, description,
partial(torch.optim.Adam, lr=1e-4), expand_input_channels=False, head_init="zero", linear_probe=True)``
trains the head only, the backbone frozen and in eval mode.

Examples:
    >>> from functools import partial
    >>> import torch
    >>> from torch import nn
    >>> from torchcross.tasks.task import TaskDescription
    >>> d = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"})
    >>> model = SimpleClassifier(
    ...     nn.Linear(4, 6), 6, d, partial(torch.optim.Adam, lr=1e-3), expand_input_channels=False
    ... )
    >>> model(torch.zeros(2, 4)).shape
    torch.Size([2, 1])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, cast

from lightning.pytorch import LightningModule
from torch import Tensor, nn
from torchmetrics import MetricCollection

from torchcross.compat.cd.activations import get_prob_func
from torchcross.compat.cd.losses import get_criterion
from torchcross.compat.cd.metrics import AUROC, Accuracy
from torchcross.compat.models.lightning.mixins import EpochLRSchedule
from torchcross.compat.models.simple import SimpleClassifier as PlainSimpleClassifier
from torchcross.tasks.task import TaskDescription

if TYPE_CHECKING:
    from lightning.pytorch.core.optimizer import LightningOptimizer

__all__ = ["SimpleClassifier"]


class SimpleClassifier(PlainSimpleClassifier, EpochLRSchedule, LightningModule):
    """`torchcross.models.SimpleClassifier` trained by Lightning (manual optimisation).

    Args:
        backbone, num_backbone_features, task_description, expand_input_channels: as
            `torchcross.models.SimpleClassifier`.
        optimizer: ``parameters -> optimiser`` (e.g. ``partial(torch.optim.Adam, lr=1e-3)``).
        lr_scheduler: ``optimiser -> scheduler``, stepped after every training epoch.
        pos_class_weights: class weights (multi-class, ordinal) or positive weights (binary,
            multi-label) of the loss (`torchcross.cd.losses.get_criterion()`).
        head_init, linear_probe: as `torchcross.models.SimpleClassifier` (``"kaiming"`` or ``"zero"``;
            ``True``: the backbone is frozen and kept in eval mode while the head trains).
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_backbone_features: int,
        task_description: TaskDescription,
        optimizer: Callable[..., Any],
        lr_scheduler: Callable[..., Any] | None = None,
        expand_input_channels: bool = True,
        pos_class_weights: Tensor | None = None,
        *,
        head_init: Literal["kaiming", "zero"] = "kaiming",
        linear_probe: bool = False,
    ) -> None:
        super().__init__(
            backbone,
            num_backbone_features,
            task_description,
            expand_input_channels,
            head_init=head_init,
            linear_probe=linear_probe,
        )
        self.register_buffer("pos_class_weights", pos_class_weights)
        self.criterion = get_criterion(task_description, pos_class_weights=pos_class_weights)
        self.pred_func = get_prob_func(task_description.task_target)
        self.optimizer, self.lr_scheduler = optimizer, lr_scheduler
        self.training_metrics = MetricCollection(
            {"accuracy": Accuracy(task_description), "AUROC": AUROC(task_description)}, postfix="/train"
        )
        self.validation_metrics = self.training_metrics.clone(postfix="/val")
        self.test_metrics = self.training_metrics.clone(postfix="/test")
        self.automatic_optimization = False

    def get_metrics(self, mode: str) -> MetricCollection:
        """The metrics of ``"train"``, ``"val"`` or ``"test"``.

        Raises:
            ValueError: another mode.
        """
        metrics = {"train": self.training_metrics, "val": self.validation_metrics, "test": self.test_metrics}
        if mode not in metrics:
            raise ValueError(f"mode must be 'train', 'val' or 'test', got {mode!r}")
        return metrics[mode]

    def do_step(self, batch: tuple[Tensor, Tensor], mode: str) -> Tensor:
        """Loss of a batch; updates the metrics of ``mode``."""
        x, y = batch
        logits = self(x)
        value = self.criterion(logits, y)
        self.get_metrics(mode)(self.pred_func(logits.detach()), y)
        return value

    def _log(self, mode: str, value: Tensor, size: int) -> None:
        self.log(f"loss/{mode}", value.detach(), batch_size=size, prog_bar=True)
        self.log_dict(self.get_metrics(mode), batch_size=size, prog_bar=mode == "val")

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        optimizer = cast("LightningOptimizer", self.optimizers())
        optimizer.zero_grad()
        value = self.do_step(batch, "train")
        self.manual_backward(value)
        optimizer.step()
        self._log("train", value, len(batch[0]))

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._log("val", self.do_step(batch, "val"), len(batch[0]))

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._log("test", self.do_step(batch, "test"), len(batch[0]))

    def optimizer_factories(self) -> tuple[Callable[..., Any], Callable[..., Any] | None]:
        return self.optimizer, self.lr_scheduler
