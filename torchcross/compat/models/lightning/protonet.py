"""0.0.6's ``ProtoNet`` and ``SimpleCrossDomainProtoNet`` LightningModules (query metrics only).

Examples:
    >>> from functools import partial
    >>> import torch
    >>> from torchcross.learners.backbones import mlp
    >>> model = ProtoNet(mlp(3, (5,)), 5, partial(torch.optim.Adam, lr=1e-3))
    >>> sorted(model.test_metrics)
    ['AUROC/metatest/query', 'accuracy/metatest/query']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from torchcross.compat.models.expand import with_rgb_input
from torchcross.compat.models.lightning.episodic import EpisodicLightningModule, query_loss, score
from torchcross.compat.models.protonet import ProtoNet as PlainProtoNet
from torchcross.tasks.task import Task

__all__ = ["PROTONET_KEYS", "ProtoNet", "SimpleCrossDomainProtoNet"]

PROTONET_KEYS = ("accuracy/meta{}/query", "AUROC/meta{}/query")
"""0.0.6's metric keys of the ProtoNet models."""


class ProtoNet(PlainProtoNet, EpisodicLightningModule):
    """0.0.6's ``models.lightning.ProtoNet``:
    [`torchcross.models.ProtoNet`][torchcross.learners.protonet.ProtoNet] trained by Lightning.

    The support loss is logged as 0 (prototypes are not fitted), as in 0.0.6.

    Args:
        backbone, num_backbone_features, distance: as
            `torchcross.models.ProtoNet`.
        outer_optimizer: ``parameters -> optimiser``.
        outer_lr_scheduler: ``optimiser -> scheduler``, stepped after every training epoch.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_backbone_features: int,
        outer_optimizer: Callable[..., Any],
        distance: str = "squared_euclidean",
        outer_lr_scheduler: Callable[..., Any] | None = None,
    ) -> None:
        super().__init__(backbone, num_backbone_features, distance)
        self.outer_optimizer, self.outer_lr_scheduler = outer_optimizer, outer_lr_scheduler
        self.configure_metrics(PROTONET_KEYS)

    def task_results(self, task: Task, slot: int) -> tuple[tuple[Tensor, ...], Tensor, Tensor]:
        logits = self.episode(task)
        return score(logits.detach(), task.query[1], task), torch.zeros(()), query_loss(logits, task)


class SimpleCrossDomainProtoNet(ProtoNet):
    """[`ProtoNet`][torchcross.learners.protonet.ProtoNet] whose backbone sees grey images expanded to three
    channels."""

    _network = staticmethod(with_rgb_input)
