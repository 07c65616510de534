"""The torchcross 0.0.6 import path of the task vocabulary; defined in
[`torchcross.tasks`][torchcross.tasks.catalogue.Catalogue.tasks].

Examples:
    >>> from torchcross.data.task import Task
    >>> from torchcross.tasks import Task as Same
    >>> Task is Same
    True
"""

from __future__ import annotations

from torchcross.tasks.task import Task, TaskDescription, TaskTarget

__all__ = ["Task", "TaskDescription", "TaskTarget"]
