"""One backbone, one head per task (0.0.6's ``CrossDomainModel`` and ``SimpleCrossDomainClassifier``).

`SimpleCrossDomainClassifier` is a [`MultiTaskPretrainer`][MultiTaskPretrainer]
(zero-initialised heads, grey images expanded to three channels) with 0.0.6's interface:
``model(x, task_description)``, ``get_net(task_description)``, ``add_head(task_description)``.

Examples:
    >>> import torch
    >>> from torch import nn
    >>> from torchcross.tasks.task import TaskDescription
    >>> d = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"}, "a.task")
    >>> model = SimpleCrossDomainClassifier(nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 8)), 8)
    >>> model(torch.zeros(2, 1, 8, 8), d).shape  # the head is added on first use in training
    torch.Size([2, 1])
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import cast

import torch
from torch import Tensor, nn

from torchcross._checks import check_int
from torchcross.compat.models.expand import with_rgb_input
from torchcross.learners.multitask import MultiTaskPretrainer
from torchcross.tasks.task import TaskDescription

__all__ = ["CrossDomainModel", "SimpleCrossDomainClassifier"]


class CrossDomainModel(nn.Module):
    """``model(x, task_description)`` runs ``model.get_net(task_description)`` on ``x``."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("device_dummy", torch.empty(0), persistent=False)

    def forward(self, x: Tensor, task_description: TaskDescription) -> Tensor:
        return self.get_net(task_description)(x)

    def get_net(self, task_description: TaskDescription) -> nn.Module:
        """The network for one task."""
        raise NotImplementedError(f"{type(self).__name__} must implement get_net(task_description)")


class SimpleCrossDomainClassifier(CrossDomainModel):
    """A shared backbone with a zero-initialised linear head per task.

    Args:
        backbone: maps 3-channel inputs to features ``(N, num_backbone_features)``.
        num_backbone_features: feature width.
        task_descriptions: tasks to make heads for now.
        add_heads_during_training: in training mode, make a head for an unknown task on first use.

    Raises:
        ValueError: (from `get_net()`) no head for a task, outside training or without
            ``add_heads_during_training``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_backbone_features: int,
        task_descriptions: Iterable[TaskDescription] | None = None,
        add_heads_during_training: bool = True,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.num_backbone_features = check_int(num_backbone_features, "num_backbone_features", 1)
        self.pretrainer = MultiTaskPretrainer(
            with_rgb_input(backbone), self.num_backbone_features, head_init="zero"
        )
        self.heads = self.pretrainer.heads
        self.add_heads_during_training = add_heads_during_training
        for description in task_descriptions or ():
            self.add_head(description)

    def has_head(self, task_description: TaskDescription) -> bool:
        """Whether ``task_description`` has a head."""
        return task_description in self.pretrainer.descriptions

    def head(self, task_description: TaskDescription) -> nn.Module:
        """The task's head, made now if in training with ``add_heads_during_training``."""
        if not self.has_head(task_description):
            if not (self.training and self.add_heads_during_training):
                raise ValueError(f"Head for task {task_description.task_identifier!r} does not exist.")
            return self.add_head(task_description)
        return self.pretrainer.head(task_description)

    def get_net(self, task_description: TaskDescription) -> nn.Module:
        return nn.Sequential(
            OrderedDict(
                input_module=cast(nn.Module, self.pretrainer.backbone.input_module),
                backbone=self.backbone,
                head=self.head(task_description),
            )
        )

    def forward(self, x: Tensor, task_description: TaskDescription) -> Tensor:
        self.head(task_description)
        return self.pretrainer(x, task_description)

    def add_head(self, task_description: TaskDescription) -> nn.Module:
        """Make (and return) the head of a new task.

        Raises:
            ValueError: the task already has a head.
        """
        return self.pretrainer.add_task(task_description)
