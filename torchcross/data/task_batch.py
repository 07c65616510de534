"""Meta-batches: several collated tasks as one set of tensors.

* [`stack_tasks()`][stack_tasks]: tasks of the same task with equal shapes (e.g.
  fixed-shot episodes
  of one source) become one [`Task`][Task] of ``(T, N, ...)`` tensors;
* [`pad_tasks()`][pad_tasks]: tasks of different sizes, class counts or kinds
  become a [`PaddedTaskBatch`][PaddedTaskBatch] with zero-padded tensors and masks,
  for learners that batch tasks (``vmap`` over the task dimension, or one padded forward pass).

Both expect collated tasks: ``support`` and ``query`` are ``(inputs, labels)`` tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from torchcross.tasks.task import Task, TaskDescription

__all__ = ["PaddedTaskBatch", "pad_tasks", "stack_tasks"]


def _pairs(tasks: Sequence[Task], fn: str) -> list[tuple[Tensor, Tensor, Tensor, Tensor]]:
    if isinstance(tasks, Task) or not isinstance(tasks, Sequence) or len(tasks) == 0:
        raise ValueError(f"{fn} needs a non-empty sequence of tasks, got {type(tasks).__name__}")
    out = []
    for i, task in enumerate(tasks):
        if not isinstance(task, Task):
            raise TypeError(f"{fn}: item {i} is a {type(task).__name__}, not a Task")
        parts: list[Tensor] = []
        for name in ("support", "query"):
            pair = getattr(task, name)
            if not (
                isinstance(pair, (tuple, list))
                and len(pair) == 2
                and all(isinstance(t, Tensor) for t in pair)
            ):
                raise TypeError(
                    f"{fn}: task {i}'s {name} is not an (inputs, labels) pair of tensors; collate episodes "
                    "first (collate_fn=None, output_indices=False)"
                )
            if len(pair[0]) != len(pair[1]):
                raise ValueError(
                    f"{fn}: task {i}'s {name} has {len(pair[0])} inputs but {len(pair[1])} labels"
                )
            parts.extend(pair)
        support_x, support_y, query_x, query_y = parts
        out.append((support_x, support_y, query_x, query_y))
    return out


def stack_tasks(tasks: Sequence[Task]) -> Task:
    """Stack tasks of equal shapes and equal descriptions into one task of ``(T, ...)`` tensors.

    Returns a [`Task`][Task] whose support is ``(inputs (T, N_s, *input_shape), labels
    (T, N_s, *label_shape))`` and likewise the query, with the shared description.

    Raises:
        ValueError: shapes or descriptions differ (the message names the first mismatch;
            use [`pad_tasks()`][pad_tasks] for such tasks).

    Examples:
        >>> import torch
        >>> d = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"})
        >>> t = Task((torch.zeros(4, 3), torch.zeros(4, 1)), (torch.ones(6, 3), torch.ones(6, 1)), d)
        >>> batch = stack_tasks([t, t])
        >>> batch.support[0].shape, batch.query[1].shape
        (torch.Size([2, 4, 3]), torch.Size([2, 6, 1]))
    """
    pairs = _pairs(tasks, "stack_tasks")
    names = ("support inputs", "support labels", "query inputs", "query labels")
    first = pairs[0]
    for i, parts in enumerate(pairs[1:], start=1):
        for name, a, b in zip(names, first, parts):
            if a.shape != b.shape:
                raise ValueError(
                    f"stack_tasks: task {i}'s {name} have shape {tuple(b.shape)}, task 0's {tuple(a.shape)}; "
                    "use pad_tasks for tasks of different sizes"
                )
        if tasks[i].description != tasks[0].description:
            raise ValueError(
                f"stack_tasks: task {i}'s description differs from task 0's ({tasks[i].description} vs "
                f"{tasks[0].description}); use pad_tasks, which keeps one description per task"
            )
    xs, ys, xq, yq = (torch.stack([p[j] for p in pairs]) for j in range(4))
    return Task((xs, ys), (xq, yq), tasks[0].description)


@dataclass(frozen=True)
class PaddedTaskBatch:
    """``T`` tasks padded to common sizes, with masks saying what is real.

    Attributes:
        support_inputs: ``(T, S, *input_shape)``, zero beyond each task's support size.
        support_labels: ``(T, S, *label_shape)``; ``label_pad_value`` where padded. When
            tasks' labels differ in rank (multi-class ``(n,)`` next to multi-label
            ``(n, k)``), single-label labels become ``(n, 1)`` and the width is padded to
            the widest.
        support_mask: ``(T, S)`` bool, True for real examples.
        query_inputs, query_labels, query_mask: the same for the query sets (``Q`` rows).
        class_mask: ``(T, C)`` bool, True for the classes (multi-label: labels) each task
            has (``C`` is the largest class count).
        descriptions: each task's description.
        label_shapes: each task's original per-example label shape (for
            [`unpad()`][PaddedTaskBatch.unpad]).
    """

    support_inputs: Tensor
    support_labels: Tensor
    support_mask: Tensor
    query_inputs: Tensor
    query_labels: Tensor
    query_mask: Tensor
    class_mask: Tensor
    descriptions: tuple[TaskDescription, ...]
    label_shapes: tuple[tuple[int, ...], ...]

    def __len__(self) -> int:
        return len(self.descriptions)

    @property
    def num_classes(self) -> Tensor:
        """``(T,)`` int64: the number of classes of each task."""
        return self.class_mask.sum(dim=1)

    def unpad(self, index: int) -> Task:
        """Task ``index`` as it was before padding."""
        shape = self.label_shapes[index]

        def part(inputs: Tensor, labels: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
            n = int(mask[index].sum())
            y = labels[index, :n]
            if y.dim() - 1 > len(shape):  # promoted from (n,) to (n, 1)
                y = y[:, 0]
            if shape:
                crop = (slice(None), *(slice(0, s) for s in shape))
                y = y[crop]
            return inputs[index, :n], y

        return Task(
            part(self.support_inputs, self.support_labels, self.support_mask),
            part(self.query_inputs, self.query_labels, self.query_mask),
            self.descriptions[index],
        )


def _pad_stack(tensors: list[Tensor], value: float, what: str, same_trailing: bool) -> Tensor:
    n = max(t.shape[0] for t in tensors)
    trailing = [tuple(t.shape[1:]) for t in tensors]
    if same_trailing and len(set(trailing)) > 1:
        raise ValueError(
            f"pad_tasks: {what} differ in shape per example {sorted(set(trailing))}; only counts are padded"
        )
    width = tuple(max(s[d] for s in trailing) for d in range(len(trailing[0])))
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    out = torch.full((len(tensors), n, *width), value, dtype=dtype, device=tensors[0].device)
    for i, t in enumerate(tensors):
        where: tuple[int | slice, ...] = (i, slice(0, t.shape[0]), *(slice(0, s) for s in t.shape[1:]))
        out[where] = t
    return out


def pad_tasks(tasks: Sequence[Task], label_pad_value: int = -100) -> PaddedTaskBatch:
    """Pad tasks of different sizes, class counts or kinds into one
    [`PaddedTaskBatch`][PaddedTaskBatch].

    Inputs must share their per-example shape; example counts and label widths are padded.
    ``label_pad_value`` defaults to ``-100``, the ``ignore_index`` of
    `torch.nn.functional.cross_entropy()`.

    Examples:
        >>> import torch
        >>> mc = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b", 2: "c"})
        >>> ml = TaskDescription("MULTILABEL_CLASSIFICATION", {0: "x", 1: "y"})
        >>> t1 = Task(
        ...     (torch.zeros(3, 5), torch.tensor([0, 1, 2])), (torch.zeros(3, 5), torch.tensor([2, 1, 0])), mc
        ... )
        >>> t2 = Task(
        ...     (torch.ones(4, 5), torch.ones(4, 2, dtype=torch.long)),
        ...     (torch.ones(2, 5), torch.zeros(2, 2, dtype=torch.long)),
        ...     ml,
        ... )
        >>> b = pad_tasks([t1, t2])
        >>> (
        ...     b.support_inputs.shape,
        ...     b.support_labels.shape,
        ...     b.support_mask.sum(1).tolist(),
        ...     b.num_classes.tolist(),
        ... )
        (torch.Size([2, 4, 5]), torch.Size([2, 4, 2]), [3, 4], [3, 2])
        >>> torch.equal(b.unpad(0).support[1], t1.support[1])
        True
    """
    pairs = _pairs(tasks, "pad_tasks")
    label_shapes = tuple(tuple(p[1].shape[1:]) for p in pairs)
    for i, p in enumerate(pairs):
        if tuple(p[3].shape[1:]) != label_shapes[i]:
            raise ValueError(
                f"pad_tasks: task {i}'s support and query labels differ in shape per example "
                f"({label_shapes[i]} vs {tuple(p[3].shape[1:])})"
            )
    ranks = {len(s) for s in label_shapes}
    if len(ranks) > 1 and ranks != {0, 1}:
        raise ValueError(
            f"pad_tasks: cannot pad labels of per-example shapes {sorted(set(label_shapes))} together"
        )

    def labels(j: int) -> list[Tensor]:
        ys = [p[j] for p in pairs]
        return [y[:, None] if len(ranks) > 1 and y.dim() == 1 else y for y in ys]

    sup_x = _pad_stack([p[0] for p in pairs], 0, "support inputs", True)
    qry_x = _pad_stack([p[2] for p in pairs], 0, "query inputs", True)
    if sup_x.shape[2:] != qry_x.shape[2:]:
        raise ValueError(
            f"pad_tasks: support and query inputs differ in shape ({sup_x.shape[2:]} vs {qry_x.shape[2:]})"
        )
    n_classes = [t.description.num_classes for t in tasks]
    device = sup_x.device
    return PaddedTaskBatch(
        support_inputs=sup_x,
        support_labels=_pad_stack(labels(1), label_pad_value, "support labels", False),
        support_mask=_mask([len(p[0]) for p in pairs], device),
        query_inputs=qry_x,
        query_labels=_pad_stack(labels(3), label_pad_value, "query labels", False),
        query_mask=_mask([len(p[2]) for p in pairs], device),
        class_mask=_mask(n_classes, device),
        descriptions=tuple(t.description for t in tasks),
        label_shapes=label_shapes,
    )


def _mask(lengths: list[int], device: torch.device) -> Tensor:
    return torch.arange(max(lengths), device=device)[None, :] < torch.tensor(lengths, device=device)[:, None]
