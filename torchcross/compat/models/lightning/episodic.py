"""Meta-training and episodic evaluation with 0.0.6's loop and logging keys.

A batch is a list of tasks (a meta-batch). Training adapts on each task's support set and
backpropagates the mean query loss (one task's graph at a time), then the outer optimiser
steps. Validation and test adapt copies of the meta-parameters with gradients enabled, under
Lightning's default ``inference_mode`` too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import Tensor

from torchcross.compat.models.episodic import EpisodicModel
from torchcross.compat.models.lightning.mixins import EpochLRSchedule, MeanMetricsMixin
from torchcross.distributed.gradients import all_reduce_gradients
from torchcross.evaluation.metrics import accuracy, auroc
from torchcross.nn import loss
from torchcross.tasks.task import Task

if TYPE_CHECKING:
    from collections.abc import Mapping

    from lightning.pytorch.core.optimizer import LightningOptimizer
    from torchmetrics import Metric

__all__ = ["EPISODIC_KEYS", "EpisodicLightningModule", "query_loss", "score", "trainable"]

EPISODIC_KEYS = (
    "accuracy/meta{}/support",
    "accuracy/meta{}/query",
    "AUROC/meta{}/support",
    "AUROC/meta{}/query",
)
"""0.0.6's metric keys of the MAML models (``{}``: ``train``, ``val`` or ``test``)."""


def trainable(x: Any) -> Any:
    """Inference tensors (made under ``inference_mode``) as ordinary tensors autograd can use.

    Examples:
        >>> with torch.inference_mode():
        ...     t = torch.ones(2)
        >>> trainable([t])[0].is_inference()
        False
    """
    if isinstance(x, Tensor):
        return x.clone() if x.is_inference() else x
    if isinstance(x, Task):
        return Task(trainable(x.support), trainable(x.query), x.description)
    if isinstance(x, (tuple, list)):
        return type(x)(trainable(v) for v in x)
    return x


def score(logits: Tensor, labels: Tensor, task: Task) -> tuple[Tensor, Tensor]:
    """``(accuracy, AUROC)`` of logits as 0-d tensors (AUROC is NaN where undefined)."""
    d = task.description
    return torch.tensor(accuracy(logits, labels, d)), torch.tensor(auroc(logits, labels, d))


class EpisodicLightningModule(EpisodicModel, EpochLRSchedule, MeanMetricsMixin):
    """Manual optimisation over meta-batches; subclasses implement `task_results()`.

    Subclasses set ``outer_optimizer`` (``parameters -> optimiser``) and
    ``outer_lr_scheduler`` (``optimiser -> scheduler`` or ``None``).
    """

    outer_optimizer: Callable[[Iterable[Any]], torch.optim.Optimizer]
    outer_lr_scheduler: Callable[[torch.optim.Optimizer], Any] | None = None

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False

    def task_results(self, task: Task, slot: int) -> tuple[tuple[Tensor, ...], Tensor, Tensor]:
        """``(metric values, support loss, query loss)`` of one task; the query loss carries the
        meta-gradient in training mode."""
        raise NotImplementedError(f"{type(self).__name__} must implement task_results(task, slot)")

    def _run(self, batch: Sequence[Task] | Task, mode: str) -> None:
        tasks = [batch] if isinstance(batch, Task) else list(batch)
        values, support_losses, query_losses = [], [], []
        with torch.inference_mode(False), torch.enable_grad():
            for slot, task in enumerate(map(trainable, tasks)):
                metrics, support_loss, query_loss = self.task_results(task, slot)
                if mode == "train":
                    self.manual_backward(query_loss / len(tasks))
                values.append(metrics)
                support_losses.append(support_loss.detach())
                query_losses.append(query_loss.detach())
        if mode == "train":
            all_reduce_gradients(self)
        self.update_metrics(mode, values)
        size = len(tasks)
        self.log(f"loss/meta{mode}/support", torch.stack(support_losses).mean(), batch_size=size)
        self.log(f"loss/meta{mode}/query", torch.stack(query_losses).mean(), batch_size=size, prog_bar=True)
        self.log_dict(cast("Mapping[str, Metric]", self.metrics_of(mode)), batch_size=size)

    def training_step(self, batch: Sequence[Task] | Task, batch_idx: int) -> None:
        optimizer = cast("LightningOptimizer", self.optimizers())
        optimizer.zero_grad()
        self._run(batch, "train")
        optimizer.step()

    def validation_step(self, batch: Sequence[Task] | Task, batch_idx: int) -> None:
        self._run(batch, "val")

    def test_step(self, batch: Sequence[Task] | Task, batch_idx: int) -> None:
        self._run(batch, "test")

    def optimizer_factories(self) -> tuple[Callable[..., Any], Callable[..., Any] | None]:
        return self.outer_optimizer, self.outer_lr_scheduler


def query_loss(logits: Tensor, task: Task) -> Tensor:
    """The loss of the task's kind on its query set."""
    return loss(logits, task.query[1], task.description)
