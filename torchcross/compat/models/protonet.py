"""Prototypical networks with 0.0.6's interface, on
[`torchcross.learners.ProtoNet`][torchcross.learners.protonet.ProtoNet].

0.0.6's distances map to the learner's: ``"squared_euclidean"`` (the default) and
``"euclidean"`` both use squared Euclidean distances, ``"cosine"`` the cosine distance.

Examples:
    >>> import torch
    >>> from torchcross.learners.backbones import mlp
    >>> from torchcross.tasks.task import Task, TaskDescription
    >>> d = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b"})
    >>> task = Task(
    ...     (torch.randn(4, 3), torch.tensor([0, 1, 0, 1])), (torch.randn(2, 3), torch.tensor([1, 0])), d
    ... )
    >>> [logits.shape for logits in ProtoNet(mlp(3, (5,)), 5)([task])]
    [torch.Size([2, 2])]
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from torchcross._checks import check_int
from torchcross.compat.models.episodic import EpisodicModel
from torchcross.compat.models.expand import with_rgb_input
from torchcross.learners.protonet import ProtoNet as _ProtoNetLearner
from torchcross.tasks.task import Task

__all__ = ["DISTANCES", "ProtoNet", "SimpleCrossDomainProtoNet"]

DISTANCES: dict[str, Literal["euclidean", "cosine"]] = {
    "squared_euclidean": "euclidean",
    "euclidean": "euclidean",
    "cosine": "cosine",
}
"""0.0.6's distance names and the [`torchcross.learners.ProtoNet`][torchcross.learners.protonet.ProtoNet]
distance each runs."""


class ProtoNet(EpisodicModel):
    """``model(tasks)``: query logits per task, from distances to the support prototypes.

    Args:
        backbone: maps inputs to features.
        num_backbone_features: feature width (kept for 0.0.6's signature).
        distance: ``"squared_euclidean"`` (default), ``"euclidean"`` or ``"cosine"``.

    Raises:
        ValueError: an unknown distance.
    """

    def __init__(
        self, backbone: nn.Module, num_backbone_features: int, distance: str = "squared_euclidean"
    ) -> None:
        super().__init__()
        if distance not in DISTANCES:
            raise ValueError(f"distance must be one of {sorted(DISTANCES)}, got {distance!r}")
        self.backbone = backbone
        self.num_backbone_features = check_int(num_backbone_features, "num_backbone_features", 1)
        self.distance = distance
        self.learner = _ProtoNetLearner(self._network(backbone), distance=DISTANCES[distance])

    @staticmethod
    def _network(backbone: nn.Module) -> nn.Module:
        return backbone

    def episode(self, task: Task) -> Tensor:
        """Query logits of one task (differentiable w.r.t. the backbone)."""
        return self.learner.query_logits(task)


class SimpleCrossDomainProtoNet(ProtoNet):
    """[`ProtoNet`][torchcross.learners.protonet.ProtoNet] whose backbone sees grey images expanded to three
    channels."""

    @staticmethod
    def _network(backbone: nn.Module) -> nn.Module:
        return with_rgb_input(backbone)
