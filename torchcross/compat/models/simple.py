"""A backbone and one linear head for a single task (torchcross 0.0.6's ``SimpleClassifier``).

Examples:
    >>> import torch
    >>> from torch import nn
    >>> from torchcross.tasks.task import TaskDescription
    >>> d = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b", 2: "c"})
    >>> model = SimpleClassifier(nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 8)), 8, d)
    >>> model(torch.zeros(2, 1, 8, 8)).shape  # grey images are expanded to 3 channels
    torch.Size([2, 3])
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn

from torchcross._checks import check_int
from torchcross.compat.cd.heads import new_classification_head
from torchcross.compat.models.expand import Expand
from torchcross.tasks.task import TaskDescription

__all__ = ["SimpleClassifier"]


class SimpleClassifier(nn.Module):
    """``net = [Expand(-1, 3, -1, -1)] + backbone + head``; the head has PyTorch's default init.

    Args:
        backbone: maps inputs to features ``(N, num_backbone_features)``.
        num_backbone_features: feature width.
        task_description: the task (its kind and classes size the head).
        expand_input_channels: put ``Expand(-1, 3, -1, -1)`` before the backbone.

    Raises:
        TypeError: a backbone that is not a module, or not a
            [`TaskDescription`][TaskDescription].
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_backbone_features: int,
        task_description: TaskDescription,
        expand_input_channels: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(backbone, nn.Module):
            raise TypeError(f"backbone must be an nn.Module, got {type(backbone).__name__}")
        if not isinstance(task_description, TaskDescription):
            raise TypeError(
                f"task_description must be a TaskDescription, got {type(task_description).__name__}"
            )
        self.backbone = backbone
        self.num_backbone_features = check_int(num_backbone_features, "num_backbone_features", 1)
        self.task_description = task_description
        self.head = new_classification_head(
            task_description.task_target, task_description.classes, self.num_backbone_features, init="kaiming"
        )
        layers: OrderedDict[str, nn.Module] = OrderedDict(backbone=self.backbone, head=self.head)
        if expand_input_channels:
            layers = OrderedDict(input_module=Expand(-1, 3, -1, -1), **layers)
        self.net = torch.nn.Sequential(layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
