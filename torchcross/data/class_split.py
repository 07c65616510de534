"""Class splits: meta-train, meta-validation and meta-test tasks over disjoint classes of one task.

The standard N-way K-shot benchmarks (Omniglot, mini-ImageNet) split the *classes* of one dataset, not its
examples: episodes for meta-training come from some classes and the episodes a method is evaluated on from
others it never saw (torchmeta's ``ClassSplitter`` idea).
[`split_classes()`][split_classes] draws such a split with a seed and returns one
[`ClassSubsetTaskSource`][ClassSubsetTaskSource] per part: the examples of the
part's classes, relabelled to ``0..k-1`` with a description that names them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from torchcross._checks import check_int
from torchcross.data.capabilities import BatchReadable
from torchcross.data.sources import (
    TaskSource,
    canonical_labels,
    check_task_source,
    label_tensor,
    store_canonical_labels,
)
from torchcross.sampling.episodes import get_episode_kind, relabel_description
from torchcross.tasks.task import TaskDescription

__all__ = ["ClassSubsetTaskSource", "split_classes"]


def _check_kind(description: TaskDescription, owner: str) -> TaskDescription:
    kind = get_episode_kind(description.task_target)
    if not kind.n_way:
        raise ValueError(
            f"{owner}: task {description.task_identifier!r} is {kind.target.name}; class subsets are "
            "defined for multi-class and ordinal tasks (each example in one class)"
        )
    return description


class ClassSubsetTaskSource(TaskSource):
    """The examples of some classes of a multi-class or ordinal task source, relabelled to ``0..k-1``.

    Class ``source_classes[i]`` of the wrapped source becomes class ``i``; the description
    is the source's with ``classes`` relabelled (identifiers kept). Examples keep the
    wrapped source's order. ``get_batch`` is available when the wrapped source has one.

    Args:
        task_source: a multi-class or ordinal task source.
        classes: class keys of ``task_source`` (at least two; listed in key order).

    Raises:
        TypeError: if ``task_source`` is not a map-style task source.
        ValueError: for other task kinds, an unknown or repeated class, or classes without examples.

    Examples:
        >>> d = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b", 2: "c"}, "toy")
        >>> from torchcross.data.sources import TensorTaskSource
        >>> src = TensorTaskSource(torch.arange(6.0)[:, None], [0, 1, 2, 0, 1, 2], d)
        >>> part = ClassSubsetTaskSource(src, [2, 0])
        >>> part.source_classes, part.task_description.classes, part.labels.tolist()
        ((0, 2), {0: 'a', 1: 'c'}, [0, 1, 0, 1])
        >>> x, y = part[1]
        >>> float(x), int(y)
        (2.0, 1)
    """

    def __init__(self, task_source: Any, classes: Sequence[int]) -> None:
        check_task_source(task_source, "ClassSubsetTaskSource")
        description = _check_kind(task_source.task_description, "ClassSubsetTaskSource")
        keys = tuple(sorted(check_int(c, "class key") for c in classes))
        unknown = [k for k in keys if k not in description.classes]
        if unknown or len(set(keys)) != len(keys) or len(keys) < 2:
            raise ValueError(
                f"classes must be at least two distinct class keys of task {description.task_identifier!r} "
                f"({list(description.classes)}); got {list(classes)}"
            )
        labels = canonical_labels(task_source).reshape(-1)
        lut = np.full(max(description.classes) + 1, -1, dtype=np.int64)
        lut[list(keys)] = np.arange(len(keys))
        self.indices = np.flatnonzero(lut[labels] >= 0)
        if len(self.indices) == 0:
            raise ValueError(f"task {description.task_identifier!r} has no examples of classes {list(keys)}")
        self.task_source = task_source
        self.source_classes = keys
        self.task_description = relabel_description(description, keys)
        store_canonical_labels(self, lut[labels[self.indices]])
        self._label_tensor = label_tensor(self.labels)

    def __new__(cls, *args: Any, **kwargs: Any) -> ClassSubsetTaskSource:
        inner = args[0] if args else kwargs.get("task_source")
        if cls is ClassSubsetTaskSource and isinstance(inner, BatchReadable):
            cls = _BatchReadableClassSubset  # get_batch exactly when the wrapped source has it
        return super().__new__(cls)

    def __getitem__(self, index: int) -> tuple[Any, torch.Tensor]:
        return self.task_source[int(self.indices[index])][0], self._label_tensor[index]

    def __len__(self) -> int:
        return len(self.indices)


class _BatchReadableClassSubset(ClassSubsetTaskSource):
    """A [`ClassSubsetTaskSource`][ClassSubsetTaskSource] of a
    [`BatchReadable`][BatchReadable] source; the constructor picks it."""

    def get_batch(self, indices: Any) -> tuple[Any, torch.Tensor]:
        """``(inputs, labels)`` at ``indices``: inputs in one call to the wrapped source."""
        idx = np.asarray(indices, dtype=np.int64)
        inputs = self.task_source.get_batch(self.indices[idx])[0]
        return inputs, self._label_tensor[torch.from_numpy(idx)]


def _counts(sizes: Sequence[int | float], n_classes: int) -> list[int]:
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence) or not sizes:
        raise TypeError(f"sizes must be a non-empty sequence of class counts or fractions, got {sizes!r}")
    if all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in sizes):
        counts = [check_int(s, "class count", 2, why=" (a task has at least two classes)") for s in sizes]
        if sum(counts) > n_classes:
            raise ValueError(f"sizes {list(sizes)} ask for {sum(counts)} classes; the task has {n_classes}")
        return counts
    if not all(isinstance(s, float) for s in sizes):
        raise TypeError(f"sizes must be all ints (class counts) or all floats (fractions), got {list(sizes)}")
    if any(not 0.0 < s <= 1.0 for s in sizes) or sum(sizes) > 1.0 + 1e-9:
        raise ValueError(f"fractions must be in (0, 1] and sum to at most 1, got {list(sizes)}")
    exact = [s * n_classes for s in sizes]
    counts = [math.floor(e) for e in exact]
    total = min(n_classes, round(sum(exact)))
    for j in sorted(range(len(sizes)), key=lambda j: counts[j] - exact[j])[: total - sum(counts)]:
        counts[j] += 1  # largest remainders first
    if min(counts) < 2:
        raise ValueError(
            f"fractions {list(sizes)} of {n_classes} classes give {counts} classes; every part needs at "
            "least two: pass larger fractions or class counts"
        )
    return counts


def split_classes(
    task_source: Any, sizes: Sequence[int | float] = (0.6, 0.2, 0.2), *, seed: int = 0
) -> tuple[ClassSubsetTaskSource, ...]:
    """Split a task's classes at random into disjoint parts (e.g. meta-train, meta-val, meta-test).

    Each part is a [`ClassSubsetTaskSource`][ClassSubsetTaskSource]: the examples
    of its classes, relabelled
    to ``0..k-1`` in the task's class order. Which classes go where is a pure function of
    ``seed`` and the task's class keys.

    Args:
        task_source: a multi-class or ordinal task source.
        sizes: one entry per part: class counts (ints, summing to at most the number of
            classes) or fractions of the classes (floats, summing to at most 1; rounded by
            largest remainder, so fractions summing to 1 use every class). Every part needs
            at least two classes.
        seed: the seed of the split.

    Raises:
        TypeError: ``sizes`` mixing ints and floats, or not a sequence.
        ValueError: more classes asked for than the task has, a part with no class, or a
            task kind without classes to split (binary, multi-label).

    Examples:
        >>> from torchcross.data.sources import TensorTaskSource
        >>> d = TaskDescription("MULTICLASS_CLASSIFICATION", {i: f"c{i}" for i in range(10)}, "toy")
        >>> src = TensorTaskSource(torch.zeros(50, 1), torch.arange(50) % 10, d)
        >>> train, val, test = split_classes(src, (6, 2, 2), seed=0)
        >>> len(train.source_classes), len(set(train.source_classes) & set(test.source_classes))
        (6, 0)
        >>> list(test.task_description.classes), len(test)
        ([0, 1], 10)
    """
    check_task_source(task_source, "split_classes")
    _check_kind(task_source.task_description, "split_classes")
    keys = np.asarray(task_source.task_description.class_keys, dtype=np.int64)
    counts = _counts(sizes, len(keys))
    order = np.random.default_rng(check_int(seed, "seed", 0)).permutation(keys)
    bounds = np.cumsum([0, *counts])
    return tuple(
        ClassSubsetTaskSource(task_source, order[a:b].tolist()) for a, b in itertools.pairwise(bounds)
    )
