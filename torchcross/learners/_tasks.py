"""Reading the learners' task inputs: a list of tasks, or one collated batch of tasks."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from torchcross.data.task_batch import PaddedTaskBatch
from torchcross.learners.stateless import BackboneInputError
from torchcross.tasks.task import Task, TaskDescription

__all__ = ["as_task_list", "check_task", "naming_task", "signature", "stack_tensors", "task_tensors"]


@contextmanager
def naming_task(task: Task) -> Iterator[None]:
    """Context: a [`BackboneInputError`][BackboneInputError] raised inside
    is raised again naming ``task`` (chained to torch's own error). Free until something raises."""
    try:
        yield
    except BackboneInputError as exc:
        if exc.task_identifier is not None:
            raise
        tid = task.description.task_identifier
        named = BackboneInputError(f"task {tid!r}: {exc}", task_identifier=tid)
        raise named from exc.__cause__ or exc


def _split(pair: Any, where: str) -> tuple[Tensor, Tensor]:
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise TypeError(
            f"task.{where} must be an (inputs, labels) pair of tensors, got {type(pair).__name__}; "
            "collate the task first"
        )
    x, y = pair
    for name, t in (("inputs", x), ("labels", y)):
        if not isinstance(t, Tensor):
            raise TypeError(f"task.{where} {name} must be a tensor, got {type(t).__name__}; collate the task")
    return x, y


def check_task(task: Any) -> Task:
    """Return ``task`` if it is a collated [`Task`][Task] with matching sizes, else
    raise."""
    if not isinstance(task, Task):
        raise TypeError(f"expected a torchcross Task, got {type(task).__name__}")
    for where, pair in (("support", task.support), ("query", task.query)):
        x, y = _split(pair, where)
        if x.shape[0] != y.shape[0]:
            raise ValueError(
                f"task {task.description.task_identifier!r}: {where} has {x.shape[0]} inputs but "
                f"{y.shape[0]} labels"
            )
    if task.support[0].shape[0] == 0:
        raise ValueError(f"task {task.description.task_identifier!r} has an empty support set")
    return task


def _unstack(batch: Task) -> list[Task]:
    xs, ys = _split(batch.support, "support")
    xq, yq = _split(batch.query, "query")
    n = xs.shape[0]
    if any(t.shape[0] != n for t in (ys, xq, yq)):
        raise ValueError(
            "a collated batch of tasks must have the same leading (task) dimension in support and query "
            f"inputs and labels, got {[tuple(t.shape) for t in (xs, ys, xq, yq)]}"
        )
    return [Task((xs[i], ys[i]), (xq[i], yq[i]), batch.description) for i in range(n)]


def as_task_list(tasks: Sequence[Task] | Task | PaddedTaskBatch) -> list[Task]:
    """A list of checked tasks from a list of tasks or from one collated batch.

    A collated batch is a [`Task`][Task] whose tensors have a leading task dimension
    ``(T, N, ...)`` sharing its description
    ([`torchcross.data.task_batch.stack_tasks()`][torchcross.data.task_batch.stack_tasks]),
    or a [`PaddedTaskBatch`][PaddedTaskBatch] (``pad_tasks``), unpadded here.
    """
    if isinstance(tasks, PaddedTaskBatch):
        out = [tasks.unpad(i) for i in range(len(tasks))]
    elif isinstance(tasks, Task):
        out = _unstack(tasks)
    elif isinstance(tasks, Sequence) and not isinstance(tasks, (str, bytes, Tensor)):
        out = list(tasks)
    else:
        raise TypeError(
            f"tasks must be a list of Task or a collated batch (a Task), got {type(tasks).__name__}"
        )
    if not out:
        raise ValueError("got no tasks; a meta-batch needs at least one task")
    return [check_task(t) for t in out]


def task_tensors(task: Task) -> tuple[Tensor, Tensor, Tensor, Tensor, TaskDescription]:
    """``(support inputs, support labels, query inputs, query labels, description)``, usable
    inside ``torch.inference_mode`` callers (inference tensors are cloned)."""
    xs, ys = task.support[0], task.support[1]
    xq, yq = task.query[0], task.query[1]
    out = []
    for t in (xs, ys, xq, yq):
        out.append(t.clone() if t.is_inference() else t)
    return out[0], out[1], out[2], out[3], task.description


def signature(tasks: Sequence[Task]) -> tuple[Any, ...] | None:
    """A key shared by tasks that can be stacked for ``vmap``, or ``None`` if they differ."""
    key = None
    for t in tasks:
        k = (
            t.description,
            *(
                (tuple(x.shape), x.dtype, x.device)
                for x in (t.support[0], t.support[1], t.query[0], t.query[1])
            ),
        )
        if key is None:
            key = k
        elif k != key:
            return None
    return key


def stack_tensors(tasks: Sequence[Task]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Stack equally shaped tasks along a new leading dimension."""
    return tuple(torch.stack([t.support[i] if i < 2 else t.query[i - 2] for t in tasks]) for i in range(4))  # type: ignore[return-value]
