"""What depends on the task kind: head width and initialisation, loss, probabilities,
label encoding and predictions, dispatched through one table keyed by
[`TaskTarget`][torchcross.tasks.task.TaskTarget] (`TASK_KINDS`).

Examples:
    >>> import torch
    >>> from torchcross.tasks.task import TaskDescription
    >>> from torchcross.nn import head_forward, init_head_params, loss, probabilities
    >>> d = TaskDescription("ORDINAL_REGRESSION", {1: "none", 4: "mild", 6: "severe"})
    >>> params = init_head_params(16, d)  # zero head: uniform probabilities
    >>> logits = head_forward(torch.randn(2, 16), params)
    >>> probabilities(logits, d)
    tensor([[0.3333, 0.3333, 0.3333], [0.3333, 0.3333, 0.3333]])
    >>> loss(logits, torch.tensor([1, 6]), d)  # labels are class keys
    tensor(1.0986)
"""

from __future__ import annotations

from torchcross.nn.heads import HEAD_INITS, head_forward, init_head_params, make_head
from torchcross.nn.kinds import (
    TASK_KINDS,
    TaskKind,
    encode_labels,
    get_task_kind,
    loss,
    num_outputs,
    predictions,
    probabilities,
)

__all__ = [
    "HEAD_INITS",
    "TASK_KINDS",
    "TaskKind",
    "encode_labels",
    "get_task_kind",
    "head_forward",
    "init_head_params",
    "loss",
    "make_head",
    "num_outputs",
    "predictions",
    "probabilities",
]
