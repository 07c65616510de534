"""The torchcross 0.0.6 import path of the task sources; defined in
[`torchcross.data.sources`][torchcross.data.sources],
[`torchcross.data.wrap_source`][torchcross.data.wrap_source] and
[`torchcross.data.batched_source`][torchcross.data.batched_source].

Examples:
    >>> from torchcross.data.task_source import TaskSource
    >>> from torchcross.data import TaskSource as Same
    >>> TaskSource is Same
    True
"""

from __future__ import annotations

from torchcross.data.batched_source import BatchedTaskSource
from torchcross.data.sources import (
    ConcatTaskSource,
    SubsetTaskSource,
    TaskSource,
    TensorTaskSource,
    canonical_labels,
)
from torchcross.data.wrap_source import WrapTaskSource

__all__ = [
    "BatchedTaskSource",
    "ConcatTaskSource",
    "SubsetTaskSource",
    "TaskSource",
    "TensorTaskSource",
    "WrapTaskSource",
    "canonical_labels",
]
