"""The task vocabulary: task kinds, task descriptions, tasks, canonical labels and catalogues.

The bottom layer of the library: plain values and NumPy, no torch datasets. Everything
else (sampling, data, learners, metrics) speaks in these terms.

Examples:
    >>> from torchcross.tasks import TaskDescription, TaskTarget
    >>> d = TaskDescription(TaskTarget.BINARY_CLASSIFICATION, {0: "healthy", 1: "glaucoma"}, "glaucoma")
    >>> d.task_target.name, len(d.classes)
    ('BINARY_CLASSIFICATION', 2)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torchcross._lazy import lazy_exports

if TYPE_CHECKING:
    from torchcross.tasks.catalogue import Catalogue as Catalogue
    from torchcross.tasks.catalogue import DatasetEntry as DatasetEntry
    from torchcross.tasks.catalogue import TaskEntry as TaskEntry
    from torchcross.tasks.catalogue import leave_one_out_sources as leave_one_out_sources
    from torchcross.tasks.labels import count_samples_per_class as count_samples_per_class
    from torchcross.tasks.labels import keys_to_indices as keys_to_indices
    from torchcross.tasks.labels import normalize_labels as normalize_labels
    from torchcross.tasks.labels import samples_per_class_array as samples_per_class_array
    from torchcross.tasks.task import Task as Task
    from torchcross.tasks.task import TaskDescription as TaskDescription
    from torchcross.tasks.task import TaskTarget as TaskTarget

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "Task": "task",
    "TaskDescription": "task",
    "TaskTarget": "task",
    "count_samples_per_class": "labels",
    "keys_to_indices": "labels",
    "normalize_labels": "labels",
    "samples_per_class_array": "labels",
    "Catalogue": "catalogue",
    "DatasetEntry": "catalogue",
    "TaskEntry": "catalogue",
    "leave_one_out_sources": "catalogue",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
