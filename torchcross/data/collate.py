"""Collate functions: turn a list of examples into tensors.

* [`identity()`][identity] keeps a batch as the list of examples it is (torchcross
  0.0.6's default).
* [`stack()`][stack] stacks ``(input, label)`` pairs field by field into ``(inputs,
  labels)``
  tensors, recursing into tuples, lists and dicts.
* [`collate_task()`][collate_task] builds a [`Task`][Task] with
  tensors from
  support and query lists of ``(input, label)`` pairs, labels in canonical form.
* [`collate_tasks()`][collate_tasks] turns a batch of episodes into a meta-batch: the
  list of tasks the learners take.

Importing this module (every episode dataset does) registers ``Task`` with
``torch.utils.data.default_collate`` (its ``default_collate_fn_map``, the extension point that
``default_collate``'s documentation describes), so a plain ``DataLoader(episodes, batch_size=4)``
yields meta-batches of 4 tasks: lists, as from ``collate_fn=collate_tasks``.

``torchcross.utils.collate_fn`` re-exports `identity()` and
`stack()` under their
0.0.6 import path.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import torch

from torchcross.tasks.labels import normalize_labels
from torchcross.tasks.task import Task, TaskDescription

__all__ = ["collate_task", "collate_tasks", "identity", "stack"]

_T = TypeVar("_T")


def identity(batch: _T) -> _T:
    """Return ``batch`` unchanged (a list of examples stays a list).

    Examples:
        >>> identity([(1, 0), (2, 1)])
        [(1, 0), (2, 1)]
    """
    return batch


def stack(batch: Sequence[Any]) -> Any:
    """Stack a list of examples field by field.

    A list of ``(input, label)`` pairs becomes a tuple ``(inputs, labels)`` of tensors
    with a new leading dimension of size ``len(batch)``. Fields may be tensors, numpy
    arrays, numbers or lists of numbers (e.g. a multi-label row); tuples, dicts and
    other lists are stacked recursively (a list of ``((x1, x2), y)`` gives
    ``((X1, X2), Y)``).

    Raises:
        ValueError: if ``batch`` is empty, or examples differ in structure or shape.
        TypeError: if ``batch`` is not a sequence, or a field cannot be stacked (e.g.
            a PIL image: convert inputs to tensors first, or collate with
                [`identity()`][identity]).

    Examples:
        >>> import torch
        >>> x, y = stack([(torch.zeros(3), 0), (torch.ones(3), 1)])
        >>> x.shape, y.tolist()
        (torch.Size([2, 3]), [0, 1])
    """
    if isinstance(batch, (str, bytes)) or not isinstance(batch, Sequence):
        raise TypeError(f"stack expects a list of examples, got {type(batch).__name__}")
    if len(batch) == 0:
        raise ValueError("cannot stack an empty batch; a batch needs at least one example")
    return _stack_field(list(batch), "example")


def _is_number(value: Any) -> bool:
    return isinstance(value, (numbers.Real, np.bool_, np.number))


def _first_mismatch(values: list[Any], same: Any) -> int | None:
    return next((i for i, v in enumerate(values) if not same(v)), None)


def _stack_field(values: list[Any], where: str) -> Any:
    first = values[0]
    if isinstance(first, torch.Tensor):
        bad = _first_mismatch(values, lambda v: isinstance(v, torch.Tensor) and v.shape == first.shape)
        if bad is not None:
            got = values[bad]
            desc = f"shape {tuple(got.shape)}" if isinstance(got, torch.Tensor) else type(got).__name__
            raise ValueError(
                f"cannot stack {where}: item {bad} has {desc} but item 0 is a tensor of shape "
                f"{tuple(first.shape)}; resize inputs to a common shape or collate with identity"
            )
        return torch.stack(values)
    if isinstance(first, (np.ndarray, np.generic)) and not isinstance(first, (np.str_, np.bytes_)):
        bad = _first_mismatch(values, lambda v: np.shape(v) == np.shape(first))
        if bad is not None:
            raise ValueError(
                f"cannot stack {where}: item {bad} has shape {np.shape(values[bad])} but item 0 has "
                f"shape {np.shape(first)}"
            )
        return torch.as_tensor(np.stack(values))
    if isinstance(first, numbers.Real):
        bad = _first_mismatch(values, lambda v: isinstance(v, numbers.Real))
        if bad is not None:
            raise TypeError(f"cannot stack {where}: item {bad} is {type(values[bad]).__name__}, not a number")
        return torch.tensor(values)
    if isinstance(first, list) and all(isinstance(v, list) and all(map(_is_number, v)) for v in values):
        return _stack_field([np.asarray(v) for v in values], where)  # a list of numbers is data
    if isinstance(first, (tuple, list)):
        bad = _first_mismatch(values, lambda v: isinstance(v, (tuple, list)) and len(v) == len(first))
        if bad is not None:
            raise ValueError(
                f"cannot stack {where}: item {bad} is {values[bad]!r:.60} but item 0 has {len(first)} fields"
            )
        return tuple(_stack_field([v[i] for v in values], f"{where}[{i}]") for i in range(len(first)))
    if isinstance(first, Mapping):
        bad = _first_mismatch(values, lambda v: isinstance(v, Mapping) and v.keys() == first.keys())
        if bad is not None:
            raise ValueError(f"cannot stack {where}: item {bad} has other keys than item 0 ({list(first)})")
        return {k: _stack_field([v[k] for v in values], f"{where}[{k!r}]") for k in first}
    raise TypeError(
        f"cannot stack {where} of type {type(first).__name__}; convert inputs to tensors first "
        "(e.g. torchvision.transforms.v2.ToImage) or collate with identity"
    )


def _collate_pairs(pairs: Sequence[Any], name: str, description: TaskDescription) -> tuple[Any, torch.Tensor]:
    if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Sequence):
        raise TypeError(f"{name} must be a list of (input, label) pairs, got {type(pairs).__name__}")
    if len(pairs) == 0:
        tid = description.task_identifier
        raise ValueError(f"{name} of task {tid!r} is empty; it needs at least one (input, label) pair")
    bad = _first_mismatch(list(pairs), lambda p: isinstance(p, (tuple, list)) and len(p) == 2)
    if bad is not None:
        raise TypeError(f"{name}[{bad}] must be an (input, label) pair, got {pairs[bad]!r:.60}")
    inputs, labels = stack(pairs)
    return inputs, torch.from_numpy(np.array(normalize_labels(labels, description)))


def collate_task(
    support: Sequence[Any], query: Sequence[Any], description: TaskDescription
) -> Task[tuple[Any, torch.Tensor]]:
    """Build a [`Task`][Task] with tensors from lists of ``(input, label)`` pairs.

    Inputs are stacked with [`stack()`][stack]; labels are stacked and put into the
    canonical form of ``description``'s kind (e.g. binary labels become ``(N, 1)`` int64).

    Raises:
        TypeError: if ``description`` is not a [`TaskDescription`][TaskDescription] or
            an element is not a pair.
        ValueError: if the support or query set is empty, or labels do not fit the task.

    Examples:
        >>> import torch
        >>> from torchcross.tasks.task import TaskDescription
        >>> d = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"}, "toy")
        >>> t = collate_task([(torch.zeros(3), 0), (torch.ones(3), 1)], [(torch.ones(3), 1)], d)
        >>> t.support[0].shape, t.support[1].tolist(), t.query[1].shape
        (torch.Size([2, 3]), [[0], [1]], torch.Size([1, 1]))
    """
    if not isinstance(description, TaskDescription):
        raise TypeError(f"description must be a TaskDescription, got {type(description).__name__}")
    return Task(
        _collate_pairs(support, "support", description),
        _collate_pairs(query, "query", description),
        description,
    )


def collate_tasks(batch: Sequence[Any]) -> list[Task[Any]]:
    """A meta-batch from a batch of episodes: the list of [`Task`][Task]s, as the
    learners take it.

    Use it as a ``DataLoader``'s ``collate_fn`` (a plain ``DataLoader(episodes, batch_size=4)``
    does the same: see the module doc). Tasks of one description and equal shapes can also be
    stacked into one task of ``(T, N, ...)`` tensors with
    [`stack_tasks()`][torchcross.data.task_batch.stack_tasks].

    Raises:
        TypeError: ``batch`` is not a sequence, or an item is not a ``Task``.
        ValueError: ``batch`` is empty.

    Examples:
        >>> import torch
        >>> from torchcross.tasks.task import TaskDescription
        >>> d = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"}, "toy")
        >>> t = collate_task([(torch.zeros(3), 0), (torch.ones(3), 1)], [(torch.ones(3), 1)], d)
        >>> len(collate_tasks([t, t])), torch.utils.data.default_collate([t, t]) == [t, t]
        (2, True)
    """
    if isinstance(batch, (str, bytes, Task)) or not isinstance(batch, Sequence):
        raise TypeError(f"collate_tasks expects a list of tasks, got {type(batch).__name__}")
    if len(batch) == 0:
        raise ValueError("cannot collate an empty batch of tasks; a meta-batch needs at least one task")
    bad = _first_mismatch(list(batch), lambda t: isinstance(t, Task))
    if bad is not None:
        raise TypeError(
            f"collate_tasks: item {bad} is a {type(batch[bad]).__name__}, not a Task; a meta-batch holds "
            "episodes (Task objects)"
        )
    return list(batch)


def _collate_tasks_for_torch(batch: Sequence[Any], *, collate_fn_map: Any = None) -> list[Task[Any]]:
    return collate_tasks(batch)


def _register_with_default_collate() -> None:
    """Teach ``torch.utils.data.default_collate`` that a batch of tasks is a list of them (once;
    a handler registered for ``Task`` before is kept)."""
    try:
        from torch.utils.data._utils.collate import default_collate_fn_map
    except ImportError:  # a torch without the extension point: DataLoaders need collate_fn=collate_tasks
        return
    default_collate_fn_map.setdefault(Task, _collate_tasks_for_torch)


_register_with_default_collate()
