"""torchcross 0.0.6's ``torchcross.data.task_source``: the task sources (defined in
[`torchcross.data.sources`][torchcross.data.sources],
[`torchcross.data.wrap_source`][torchcross.data.wrap_source] and
[`torchcross.data.batched_source`][torchcross.data.batched_source]), and
[`LegacyTaskSource`][LegacyTaskSource], the base for sources that
describe their task with 0.0.6-style attributes.

Examples:
    >>> from torchcross.data.task_source import TaskSource
    >>> from torchcross.data import TaskSource as Same
    >>> TaskSource is Same
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torchcross.data.batched_source import BatchedTaskSource
from torchcross.data.sources import (
    ConcatTaskSource,
    SubsetTaskSource,
    TaskSource,
    TensorTaskSource,
    canonical_labels,
)
from torchcross.data.wrap_source import WrapTaskSource
from torchcross.tasks.task import TaskDescription, TaskTarget  # noqa: F401  (TaskTarget: doctest)

__all__ = [
    "BatchedTaskSource",
    "ConcatTaskSource",
    "LegacyTaskSource",
    "SubsetTaskSource",
    "TaskSource",
    "TensorTaskSource",
    "WrapTaskSource",
    "canonical_labels",
]

ATTRIBUTES = ("task_target", "classes", "task_identifier", "domain_identifier")
_MISSING = object()


def _plain_attr(obj: Any, name: str) -> Any:
    """``obj.name`` without falling back to `LegacyTaskSource.__getattr__()` (``_MISSING`` if unset)."""
    try:
        return object.__getattribute__(obj, name)
    except AttributeError:
        return _MISSING


class LegacyTaskSource(TaskSource):
    """A [`TaskSource`][TaskSource] described by attributes, as 0.0.6-style readers
    are: ``task_target``, ``classes``, ``task_identifier`` and ``domain_identifier``.

    Whichever side is missing is derived from the other: ``task_description`` from those attributes
    (memoised, rebuilt when they change), and the attributes from ``task_description``. Subclasses
    need not call ``super().__init__()``.

    Examples:
        >>> import numpy as np
        >>> class Old(LegacyTaskSource):  # a 0.0.6-style reader
        ...     def __init__(self):
        ...         self.task_target = TaskTarget.BINARY_CLASSIFICATION
        ...         self.classes = {0: "no", 1: "yes"}
        ...         self.labels = np.array([[0], [1], [1]])
        ...
        ...     def __getitem__(self, i):
        ...         return i, self.labels[i]
        >>> src = Old()
        >>> src.task_description.num_classes, len(src), src.class_counts(neg=True)
        (2, 3, {0: 2, 1: 1})
        >>> src.get_num_samples_per_class(), src.get_num_samples_per_class(neg=True)  # 0.0.6's arrays
        (array([2]), array([1]))
    """

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails: derive the 0.0.6 attributes from the
        # description, or the description from the 0.0.6 attributes.
        if name == "task_description":
            desc = _derive_description(self)
            if desc is not None:
                return desc
            raise AttributeError(
                f"{type(self).__name__} object has no attribute 'task_description'; set "
                "self.task_description = TaskDescription(...) (or task_target and classes) in __init__"
            )
        if name in ATTRIBUTES:
            desc = _plain_attr(self, "task_description")
            if isinstance(desc, TaskDescription):
                return getattr(desc, name)
        raise AttributeError(f"{type(self).__name__} object has no attribute {name!r}")


def _derive_description(source: Any) -> TaskDescription | None:
    """Build (and memoise) a description from 0.0.6-style attributes, or return None."""
    target = _plain_attr(source, "task_target")
    classes = _plain_attr(source, "classes")
    if target is _MISSING or classes is _MISSING:
        return None
    tid = _plain_attr(source, "task_identifier")
    did = _plain_attr(source, "domain_identifier")
    tid = "" if tid in (_MISSING, None) else tid
    did = "" if did in (_MISSING, None) else did
    items = tuple(classes.items()) if isinstance(classes, Mapping) else classes
    key = (target, items, tid, did)
    memo = source.__dict__.get("_tc_derived_description")
    if memo is not None and memo[0] == key:
        return memo[1]
    desc = TaskDescription(target, classes, tid, did)
    source.__dict__["_tc_derived_description"] = (key, desc)
    return desc
