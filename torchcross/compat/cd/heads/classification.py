"""A new linear head per task kind (0.0.6's ``new_classification_head``), as
[`torchcross.nn.make_head()`][make_head].

Examples:
    >>> from torchcross.tasks.task import TaskTarget
    >>> head = new_classification_head(TaskTarget.MULTICLASS_CLASSIFICATION, {0: "a", 1: "b", 2: "c"}, 8)
    >>> head.out_features, float(head.weight.detach().abs().sum())
    (3, 0.0)
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from torchcross.nn.heads import make_head
from torchcross.tasks.task import TaskDescription, TaskTarget

__all__ = ["new_classification_head"]

_INITS = {"zero": "zero", "kaiming": "kaiming", "default": "kaiming"}


def new_classification_head(
    task_target: TaskTarget | str,
    classes: Mapping[int, str] | None,
    num_in_features: int,
    device: torch.device | str | None = None,
    init: str = "zero",
) -> nn.Linear:
    """``nn.Linear(num_in_features, width)``: one output per class (binary and regression: one).

    Args:
        task_target: the task kind.
        classes: the task's classes.
        num_in_features: the feature width.
        device: where the head lives.
        init: ``"zero"`` (default), ``"kaiming"`` or ``"default"`` (both PyTorch's ``nn.Linear`` init).

    Raises:
        ValueError: an unknown ``init``, or classes that do not fit the task kind.
    """
    if init not in _INITS:
        raise ValueError(f"init must be one of {sorted(_INITS)}, got {init!r}")
    description = TaskDescription(task_target, classes)
    if description.task_target is TaskTarget.REGRESSION:
        head = nn.Linear(num_in_features, 1, device=device)
        if init == "zero":
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        return head
    generator = None
    if _INITS[init] == "kaiming":  # PyTorch's own draw: the global generator, as nn.Linear
        generator = torch.Generator(device=device or "cpu").manual_seed(int(torch.randint(2**62, ())))
    return make_head(num_in_features, description, _INITS[init], generator=generator, device=device)
