"""The base of 0.0.6's episodic models: a meta-batch of tasks in, one output per task out.

Examples:
    >>> class Count(EpisodicModel):
    ...     def episode(self, task):
    ...         return len(task)
    >>> Count()(["ab", "c"])
    [2, 1]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from torchcross.tasks.task import Task

__all__ = ["EpisodicModel"]


class EpisodicModel(nn.Module):
    """``model(batch)`` is ``[model.episode(task) for task in batch]``; subclasses define `episode()`."""

    def forward(self, batch: Sequence[Task] | Task) -> list[Any]:
        tasks = [batch] if isinstance(batch, Task) else list(batch)
        return [self.episode(task) for task in tasks]

    def episode(self, task: Task) -> Any:
        """The output for one task (e.g. its query logits)."""
        raise NotImplementedError(f"{type(self).__name__} must implement episode(task)")
