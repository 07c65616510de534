"""Probability functions by task kind (torchcross 0.0.6's ``torchcross.cd.activations``).

Examples:
    >>> import torch
    >>> from torchcross.tasks.task import TaskTarget
    >>> get_prob_func(TaskTarget.BINARY_CLASSIFICATION)(torch.zeros(1, 1))
    tensor([[0.5000]])
    >>> get_log_prob_func(TaskTarget.MULTICLASS_CLASSIFICATION)(torch.zeros(1, 2)).exp()
    tensor([[0.5000, 0.5000]])
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from torchcross.nn.kinds import get_task_kind
from torchcross.tasks.task import TaskTarget

__all__ = ["get_log_prob_func", "get_prob_func"]


def _identity(x: Tensor) -> Tensor:
    return x


def _log_softmax(x: Tensor) -> Tensor:
    return torch.log_softmax(x, dim=-1)


def get_prob_func(task_target: TaskTarget | str) -> Callable[[Tensor], Tensor]:
    """``logits -> probabilities`` for a task kind (see
    [`torchcross.nn.probabilities()`][torchcross.nn.kinds.probabilities]).

    Softmax over the last axis for multi-class and ordinal tasks, sigmoid for binary and
    multi-label tasks, the identity for regression.

    Raises:
        ValueError: an unknown task kind.
    """
    if TaskTarget.parse(task_target) is TaskTarget.REGRESSION:
        return _identity
    return get_task_kind(task_target).probabilities


def get_log_prob_func(task_target: TaskTarget | str) -> Callable[[Tensor], Tensor]:
    """``logits -> log probabilities``: log-softmax, log-sigmoid, or the identity for regression.

    Raises:
        ValueError: an unknown task kind.
    """
    if TaskTarget.parse(task_target) is TaskTarget.REGRESSION:
        return _identity
    return _log_softmax if get_task_kind(task_target).softmax else F.logsigmoid
