"""0.0.6's ``MAML`` and ``CrossDomainMAML`` LightningModules.

Examples:
    >>> from functools import partial
    >>> import torch
    >>> from torchcross.learners.backbones import mlp
    >>> sgd = partial(torch.optim.SGD, lr=0.1)
    >>> model = CrossDomainMAML(mlp(3, (5,)), 5, partial(torch.optim.Adam, lr=1e-3), sgd, sgd, 2, 4)
    >>> sorted(model.validation_metrics)
    ['AUROC/metaval/query', 'AUROC/metaval/support', 'accuracy/metaval/query', 'accuracy/metaval/support']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from torchcross.compat.models.lightning.episodic import (
    EPISODIC_KEYS,
    EpisodicLightningModule,
    query_loss,
    score,
)
from torchcross.compat.models.maml import MAML as PlainMAML
from torchcross.compat.models.maml import CrossDomainMAML as PlainCrossDomainMAML
from torchcross.compat.models.maml import head_init_t
from torchcross.nn import loss
from torchcross.tasks.task import Task, TaskDescription

__all__ = ["MAML", "CrossDomainMAML"]


class _MAMLSteps(EpisodicLightningModule):
    def task_results(self, task: Task, slot: int) -> tuple[tuple[Tensor, ...], Tensor, Tensor]:
        support_logits, query_logits = self.outputs(task, slot)  # type: ignore[operator]
        support_loss = loss(support_logits, task.support[1], task.description)
        metrics = (
            *score(support_logits, task.support[1], task),
            *score(query_logits.detach(), task.query[1], task),
        )
        # EPISODIC_KEYS order: accuracy support, accuracy query, AUROC support, AUROC query
        ordered = (metrics[0], metrics[2], metrics[1], metrics[3])
        return ordered, support_loss, query_loss(query_logits, task)


class MAML(PlainMAML, _MAMLSteps):
    """0.0.6's ``models.lightning.MAML``: [`torchcross.models.MAML`][torchcross.learners.maml.MAML] trained by
    Lightning.

    Args:
        backbone, num_backbone_features, task_description: as
            `torchcross.models.MAML`.
        outer_optimizer: ``parameters -> optimiser`` (e.g. ``partial(torch.optim.Adam, lr=1e-3)``).
        inner_optimizer, eval_inner_optimizer, num_inner_steps, eval_num_inner_steps,
            transductive, reset_head: as `torchcross.models.MAML`.
        outer_lr_scheduler: ``optimiser -> scheduler``, stepped after every training epoch.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_backbone_features: int,
        task_description: TaskDescription,
        outer_optimizer: Callable[..., Any],
        inner_optimizer: Any,
        eval_inner_optimizer: Any,
        num_inner_steps: int,
        eval_num_inner_steps: int | None = None,
        transductive: bool = True,
        reset_head: head_init_t | None = None,
        outer_lr_scheduler: Callable[..., Any] | None = None,
    ) -> None:
        super().__init__(
            backbone,
            num_backbone_features,
            task_description,
            inner_optimizer,
            eval_inner_optimizer,
            num_inner_steps,
            eval_num_inner_steps,
            transductive,
            reset_head,
        )
        self.outer_optimizer, self.outer_lr_scheduler = outer_optimizer, outer_lr_scheduler
        self.configure_metrics(EPISODIC_KEYS)


class CrossDomainMAML(PlainCrossDomainMAML, _MAMLSteps):
    """0.0.6's ``models.lightning.CrossDomainMAML``:
    [`torchcross.models.CrossDomainMAML`][torchcross.learners.maml.CrossDomainMAML] in Lightning.

    Args:
        backbone, num_backbone_features: as
            `torchcross.models.CrossDomainMAML`.
        outer_optimizer: ``parameters -> optimiser`` (e.g. ``partial(torch.optim.Adam, lr=1e-3)``).
        inner_optimizer, eval_inner_optimizer, num_inner_steps, eval_num_inner_steps,
            transductive, head_init: as
                `torchcross.models.CrossDomainMAML`.
        outer_lr_scheduler: ``optimiser -> scheduler``, stepped after every training epoch.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_backbone_features: int,
        outer_optimizer: Callable[..., Any],
        inner_optimizer: Any,
        eval_inner_optimizer: Any,
        num_inner_steps: int,
        eval_num_inner_steps: int | None = None,
        transductive: bool = True,
        head_init: head_init_t | None = None,
        outer_lr_scheduler: Callable[..., Any] | None = None,
    ) -> None:
        super().__init__(
            backbone,
            num_backbone_features,
            inner_optimizer,
            eval_inner_optimizer,
            num_inner_steps,
            eval_num_inner_steps,
            transductive,
            head_init,
        )
        self.outer_optimizer, self.outer_lr_scheduler = outer_optimizer, outer_lr_scheduler
        self.configure_metrics(EPISODIC_KEYS)
