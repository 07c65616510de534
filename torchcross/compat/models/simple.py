"""A backbone and one linear head for a single task (torchcross 0.0.6's ``SimpleClassifier``).

Also takes the two keywords of the later torchcross API that the MedIMeta authors' foundation-model
benchmark calls: ``head_init`` (``"kaiming"``, 0.0.6's PyTorch default, or ``"zero"``) and
``linear_probe`` (train the head only: the backbone is frozen and stays in eval mode).

Examples:
    >>> import torch
    >>> from torch import nn
    >>> from torchcross.tasks.task import TaskDescription
    >>> d = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b", 2: "c"})
    >>> model = SimpleClassifier(nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 8)), 8, d)
    >>> model(torch.zeros(2, 1, 8, 8)).shape  # grey images are expanded to 3 channels
    torch.Size([2, 3])
    >>> probe = SimpleClassifier(nn.Linear(4, 8), 8, d, False, head_init="zero", linear_probe=True)
    >>> probe.train().backbone.training, probe.backbone.weight.requires_grad
    (False, False)
    >>> probe(torch.ones(2, 4))
    tensor([[0., 0., 0.],
            [0., 0., 0.]], grad_fn=<AddmmBackward0>)
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Literal, TypeVar

import torch
from torch import Tensor, nn

from torchcross._checks import check_int
from torchcross.compat.cd.heads import new_classification_head
from torchcross.compat.models.expand import Expand
from torchcross.tasks.task import TaskDescription

__all__ = ["HEAD_INITS", "SimpleClassifier"]

_M = TypeVar("_M", bound="SimpleClassifier")

HEAD_INITS = ("kaiming", "zero")
"""The ``head_init`` values of `SimpleClassifier`: PyTorch's ``nn.Linear`` init, or zero weights and bias."""


class SimpleClassifier(nn.Module):
    """``net = [Expand(-1, 3, -1, -1)] + backbone + head``.

    Args:
        backbone: maps inputs to features ``(N, num_backbone_features)``.
        num_backbone_features: feature width.
        task_description: the task (its kind and classes size the head).
        expand_input_channels: put ``Expand(-1, 3, -1, -1)`` before the backbone.
        head_init: ``"kaiming"`` (default, as 0.0.6): PyTorch's ``nn.Linear`` init (Kaiming-uniform
            weights, uniform bias, from the global generator); ``"zero"``: zero weights and bias.
        linear_probe: train the head only: every backbone parameter gets ``requires_grad=False`` (the
            module passed in is changed), the backbone stays in eval mode whatever ``train()`` sets, and
            its features are computed without a graph.

    Raises:
        TypeError: a backbone that is not a module, or not a
            [`TaskDescription`][TaskDescription].
        ValueError: an unknown ``head_init``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_backbone_features: int,
        task_description: TaskDescription,
        expand_input_channels: bool = True,
        *,
        head_init: Literal["kaiming", "zero"] = "kaiming",
        linear_probe: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(backbone, nn.Module):
            raise TypeError(f"backbone must be an nn.Module, got {type(backbone).__name__}")
        if not isinstance(task_description, TaskDescription):
            raise TypeError(
                f"task_description must be a TaskDescription, got {type(task_description).__name__}"
            )
        if not isinstance(head_init, str) or head_init not in HEAD_INITS:
            raise ValueError(
                f"head_init must be one of {HEAD_INITS} (PyTorch's nn.Linear init, or zero weights and "
                f"bias), got {head_init!r}"
            )
        self.backbone = backbone
        self.num_backbone_features = check_int(num_backbone_features, "num_backbone_features", 1)
        self.task_description = task_description
        self.head_init = head_init
        self.linear_probe = bool(linear_probe)
        self.head = new_classification_head(
            task_description.task_target, task_description.classes, self.num_backbone_features, init=head_init
        )
        layers: OrderedDict[str, nn.Module] = OrderedDict(backbone=self.backbone, head=self.head)
        if expand_input_channels:
            layers = OrderedDict(input_module=Expand(-1, 3, -1, -1), **layers)
        self.net = torch.nn.Sequential(layers)
        if self.linear_probe:
            self.backbone.requires_grad_(False)
            self.backbone.eval()

    def train(self: _M, mode: bool = True) -> _M:
        """Set train (or eval) mode; with ``linear_probe`` the backbone stays in eval mode."""
        super().train(mode)
        if self.linear_probe:
            self.backbone.eval()
        return self

    def forward(self, x: Tensor) -> Tensor:
        if not self.linear_probe:
            return self.net(x)
        with torch.no_grad():
            features = self.net[:-1](x)
        return self.head(features)
