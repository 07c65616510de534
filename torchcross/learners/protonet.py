"""Prototypical networks for all four task kinds.

[`ProtoNet`][ProtoNet] embeds support and query sets with its backbone, builds
prototypes from the support set ([`prototypes()`][torchcross.learners.functional.prototypes]: one per class
for multi-class and ordinal tasks, a negative and a positive one per label for binary and multi-label tasks)
and scores the query set by distance
([`prototype_logits()`][torchcross.learners.functional.prototype_logits]). Meta-training minimises the query
loss of each task's kind.

BatchNorm policy: as [`MAML`][torchcross.learners.maml.MAML] (``"batch"``: support and query
are each normalised with their own batch statistics; running statistics are never read
or written).

Examples:
    >>> import torch
    >>> from torchcross.tasks.task import Task, TaskDescription
    >>> from torchcross.learners.backbones import mlp
    >>> net = ProtoNet(mlp(4, (8,)))
    >>> d = TaskDescription("MULTILABEL_CLASSIFICATION", {0: "a", 1: "b"})
    >>> y = torch.tensor([[0, 1], [1, 0], [1, 1], [0, 0]])
    >>> task = Task((torch.randn(4, 4), y), (torch.randn(3, 4), y[:3]), d)
    >>> net.predict(task).shape
    torch.Size([3, 2])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from torchcross.distributed.gradients import all_reduce_gradients, check_unwrapped
from torchcross.learners._prototypes import DISTANCES, prototype_logits, prototypes
from torchcross.learners._tasks import as_task_list, check_task, naming_task, task_tensors
from torchcross.learners.functional import BATCH_NORM_POLICIES, forward, task_buffers
from torchcross.nn import loss
from torchcross.tasks.task import Task

__all__ = ["ProtoNet"]


class ProtoNet(nn.Module):
    """Prototypical network over a backbone, for tasks of any kind.

    Args:
        backbone: maps inputs to features ``(N, F)``.
        distance: ``"euclidean"`` (squared) or ``"cosine"``.
        scale: logits are ``scale`` times the (negated) distances.
        batch_norm: ``"batch"`` or ``"frozen"``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        *,
        distance: Literal["euclidean", "cosine"] = "euclidean",
        scale: float = 1.0,
        batch_norm: Literal["batch", "frozen"] = "batch",
    ) -> None:
        super().__init__()
        if not isinstance(backbone, nn.Module):
            raise TypeError(f"backbone must be an nn.Module, got {type(backbone).__name__}")
        if distance not in DISTANCES:
            raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale!r}")
        if batch_norm not in BATCH_NORM_POLICIES:
            raise ValueError(f"batch_norm must be one of {BATCH_NORM_POLICIES}, got {batch_norm!r}")
        self.backbone, self.distance, self.scale, self.batch_norm = (
            backbone,
            distance,
            float(scale),
            batch_norm,
        )

    def query_logits(self, task: Task) -> Tensor:
        """Differentiable query logits ``(N_query, num_outputs)`` of one task."""
        xs, ys, xq, _, desc = task_tensors(check_task(task))
        params = dict(self.backbone.named_parameters())
        buffers = task_buffers(self.backbone, self.batch_norm)
        with naming_task(task):
            protos = prototypes(forward(self.backbone, params, buffers, xs, self.batch_norm), ys, desc)
            fq = forward(self.backbone, params, buffers, xq, self.batch_norm)
        return prototype_logits(fq, protos, desc, self.distance, self.scale)

    def meta_loss(self, tasks: Sequence[Task] | Task) -> Tensor:
        """Mean query loss over a list (or collated batch) of tasks of any kinds."""
        tasks = as_task_list(tasks)
        return torch.stack([loss(self.query_logits(t), t.query[1], t.description) for t in tasks]).mean()

    def forward(self, tasks: Sequence[Task] | Task) -> Tensor:
        """Same as [`meta_loss()`][ProtoNet.meta_loss]."""
        return self.meta_loss(tasks)

    def meta_backward(self, tasks: Sequence[Task] | Task, *, sync: bool = True) -> float:
        """Accumulate the gradient of [`meta_loss()`][ProtoNet.meta_loss] into
        ``.grad`` task by task; return the loss.

        Under ``torch.distributed`` the gradients are then averaged over ranks in one all-reduce
        (``sync=False`` skips it), as in `MAML.meta_backward <torchcross.learners.MAML.meta_backward>()`.
        """
        tasks = as_task_list(tasks)
        check_unwrapped(self)
        total = 0.0
        for t in tasks:
            task_loss = loss(self.query_logits(t), t.query[1], t.description) / len(tasks)
            task_loss.backward()
            total += float(task_loss.detach())
        if sync:
            all_reduce_gradients(self)
        return total

    @torch.no_grad()
    def predict(self, task: Task) -> Tensor:
        """Query logits of one task, without gradients; the module is not changed."""
        return self.query_logits(task)
