"""Task sources: map-style datasets that know which task their labels belong to.

A [`TaskSource`][TaskSource] is a `torch.utils.data.Dataset` of ``(input, label)`` pairs with two extra
attributes: ``task_description`` (a [`TaskDescription`][TaskDescription]) and ``labels`` (all labels, in the
canonical form of the task's kind, see [`torchcross.tasks.labels`][torchcross.tasks.labels]). Episode samplers
read ``labels`` instead of loading inputs.

Sources may offer an optional fast path, ``get_batch(indices) -> (inputs, labels)``,
that reads many examples in one operation;
``isinstance(source, BatchReadable)`` tells ([`torchcross.data.capabilities`][torchcross.data.capabilities]).

* [`TensorTaskSource`][TensorTaskSource]: in-memory inputs and labels.
* [`WrapTaskSource`][torchcross.data.wrap_source.WrapTaskSource]: any dataset of
  ``(input, label)`` pairs plus a description (defined in its own module).
* [`SubsetTaskSource`][SubsetTaskSource]: some examples of a source, by index.
* [`ConcatTaskSource`][ConcatTaskSource]: several sources (usually different tasks)
  end to end.
* [`BatchedTaskSource`][torchcross.data.batched_source.BatchedTaskSource]: an iterable of
  batches of one source (defined in its own module).
"""

from __future__ import annotations

import bisect
import contextlib
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset

from torchcross.data.capabilities import BatchReadable, MapStyle
from torchcross.tasks.labels import count_samples_per_class, normalize_labels, samples_per_class_array
from torchcross.tasks.task import TaskDescription, TaskTarget  # noqa: F401  (TaskTarget: doctest)

__all__ = [
    "ConcatTaskSource",
    "SubsetTaskSource",
    "TaskSource",
    "TensorTaskSource",
    "canonical_labels",
    "check_description",
    "check_task_source",
    "label_tensor",
    "store_canonical_labels",
]

_CACHE = "_tc_canonical_cache"


class TaskSource(Dataset):
    """Base class of task sources: a map-style dataset plus ``task_description`` and ``labels``.

    Subclasses set ``self.task_description`` and ``self.labels`` (any array-like; call
    [`canonical_labels()`][canonical_labels] to read them in canonical form) and
    implement ``__getitem__``; ``__len__`` defaults to the number of labels.

    (0.0.6-style subclasses that set ``task_target`` and ``classes`` instead of ``task_description``
    subclass ``torchcross.compat.data.task_source.TaskSource``, also importable as
    ``torchcross.data.task_source.TaskSource``.)

    Examples:
        >>> class Coins(TaskSource):
        ...     def __init__(self):
        ...         self.task_description = TaskDescription("BINARY_CLASSIFICATION", {0: "tails", 1: "heads"})
        ...         self.labels = np.array([[0], [1], [1]])
        ...
        ...     def __getitem__(self, i):
        ...         return i, self.labels[i]
        >>> src = Coins()
        >>> len(src), src.class_counts(neg=True)
        (3, {0: 2, 1: 1})
        >>> src.get_num_samples_per_class(), src.get_num_samples_per_class(neg=True)  # as arrays
        (array([2]), array([1]))
    """

    task_description: TaskDescription
    labels: Any

    def __len__(self) -> int:
        return len(self.labels)

    def class_counts(self, neg: bool = False) -> dict[int, int]:
        """Examples per class key: positives, or negatives with ``neg=True``.

        See [`count_samples_per_class()`][count_samples_per_class].
        """
        return count_samples_per_class(canonical_labels(self), self.task_description, neg=neg)

    def get_num_samples_per_class(self, neg: bool = False) -> np.ndarray:
        """The counts of [`class_counts()`][TaskSource.class_counts] as the int64
        array torchcross 0.0.6 returned.

        Shape ``(num_classes,)`` (multi-label: one per label; ordinal: in the order of the
        classes); binary tasks: ``(1,)``, the positives (negatives with ``neg=True``).
        See [`samples_per_class_array()`][samples_per_class_array].
        """
        return samples_per_class_array(canonical_labels(self), self.task_description, neg=neg)


def canonical_labels(source: Any) -> np.ndarray:
    """Return ``source.labels`` normalised to the canonical form of its kind.

    Cheap for torchcross's own sources (their labels already are canonical); for
    foreign sources (e.g. written for torchcross 0.0.6) the result is cached until
    ``source.labels`` or the description is replaced.

    Examples:
        >>> d = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"})
        >>> src = TensorTaskSource(torch.zeros(3, 2), [0, 1, 1], d)
        >>> canonical_labels(src).shape
        (3, 1)
    """
    labels = source.labels
    desc = source.task_description
    cache = getattr(source, "__dict__", {}).get(_CACHE)
    if cache is not None and cache[0] is labels and (cache[1] is desc or cache[1] == desc):
        return cache[2]
    out = normalize_labels(labels, desc)
    _remember_canonical(source, labels, desc, out)
    return out


def _remember_canonical(source: Any, labels: Any, desc: TaskDescription, canonical: np.ndarray) -> None:
    with contextlib.suppress(AttributeError, TypeError):  # no writable __dict__: no cache
        source.__dict__[_CACHE] = (labels, desc, canonical)


def store_canonical_labels(source: Any, labels: np.ndarray) -> None:
    """Set ``source.labels`` to ``labels``, already canonical, so
    [`canonical_labels()`][canonical_labels] is free.

    For task source classes: call it in ``__init__`` after setting ``task_description``.

    Examples:
        >>> d = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b"})
        >>> src = TensorTaskSource(torch.zeros(2, 1), [0, 1], d)
        >>> store_canonical_labels(src, np.array([1, 0]))
        >>> canonical_labels(src).tolist()
        [1, 0]
    """
    source.labels = labels
    _remember_canonical(source, labels, source.task_description, labels)


def label_tensor(labels: np.ndarray) -> torch.Tensor:
    """``labels`` as a tensor sharing their memory (a copy when they are read-only, e.g. memory-mapped).

    Examples:
        >>> label_tensor(np.array([0, 1])).tolist()
        [0, 1]
    """
    # torch.from_numpy warns on read-only arrays (e.g. memory-mapped labels): copy those.
    return torch.from_numpy(labels if labels.flags.writeable else labels.copy())


def check_description(task_description: Any, what: str = "task_description") -> TaskDescription:
    """``task_description`` itself if it is a [`TaskDescription`][TaskDescription]; else
    a ``TypeError`` naming ``what``.

    Examples:
        >>> check_description({0: "a"}, "description")
        Traceback (most recent call last):
        ...
        TypeError: description must be a TaskDescription, got dict: {0: 'a'}
    """
    if not isinstance(task_description, TaskDescription):
        raise TypeError(
            f"{what} must be a TaskDescription, got {type(task_description).__name__}: "
            f"{task_description!r:.80}"
        )
    return task_description


def check_task_source(task_source: Any, owner: str) -> None:
    """Check that ``task_source`` is a map-style task source; ``owner`` (who needs it) names the error.

    Raises:
        TypeError: an iterable-style dataset, or one without ``task_description`` and ``labels``.

    Examples:
        >>> check_task_source([(0, 1)], "MyDataset")
        Traceback (most recent call last):
        ...
        TypeError: MyDataset needs a task source with task_description and labels, got list; ...
    """
    if isinstance(task_source, IterableDataset) or not isinstance(task_source, MapStyle):
        raise TypeError(
            f"{owner} needs a map-style task source (with __getitem__ and __len__), got "
            f"{type(task_source).__name__}"
        )
    if not hasattr(task_source, "task_description") or not hasattr(task_source, "labels"):
        raise TypeError(
            f"{owner} needs a task source with task_description and labels, got "
            f"{type(task_source).__name__}; "
            "wrap a plain dataset with WrapTaskSource(dataset, task_description) first"
        )


class TensorTaskSource(TaskSource):
    """A task source over in-memory inputs and labels.

    Args:
        inputs: a tensor (or array) whose first dimension indexes examples.
        labels: labels in any form [`normalize_labels()`][normalize_labels] accepts.
        task_description: the task the labels belong to.

    Raises:
        TypeError: if ``task_description`` is not a
            [`TaskDescription`][TaskDescription].
        ValueError: if ``inputs`` and ``labels`` differ in length, the source is empty,
            or the labels do not fit the task.

    Examples:
        >>> d = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b", 2: "c"}, "toy")
        >>> src = TensorTaskSource(torch.randn(6, 4), [0, 1, 2, 0, 1, 2], d)
        >>> x, y = src[1]
        >>> x.shape, int(y), src.class_counts()
        (torch.Size([4]), 1, {0: 2, 1: 2, 2: 2})
        >>> src.get_batch([0, 3])[1].tolist()
        [0, 0]
    """

    def __init__(self, inputs: Any, labels: Any, task_description: TaskDescription) -> None:
        self.task_description = check_description(task_description)
        self.inputs = inputs if isinstance(inputs, torch.Tensor) else torch.as_tensor(np.asarray(inputs))
        if self.inputs.ndim == 0:
            raise ValueError("inputs must have a leading example dimension, got a scalar")
        tid = task_description.task_identifier
        store_canonical_labels(self, normalize_labels(labels, task_description))
        if len(self.inputs) != len(self.labels):
            raise ValueError(
                f"inputs and labels of task {tid!r} differ in length: "
                f"{len(self.inputs)} inputs, {len(self.labels)} labels"
            )
        if len(self.labels) == 0:
            raise ValueError(f"task source {tid!r} is empty; give it at least one example")
        self._label_tensor = label_tensor(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inputs[index], self._label_tensor[index]

    def __len__(self) -> int:
        return len(self.labels)

    def get_batch(self, indices: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(inputs[indices], labels[indices])`` in one indexing operation.

        Raises:
            IndexError: if an index is outside ``-len(self)..len(self)-1``.
        """
        idx = np.asarray(indices, dtype=np.int64)
        n = len(self.labels)
        if ((idx < -n) | (idx >= n)).any():
            raise IndexError(
                f"indices {idx[(idx < -n) | (idx >= n)][:10].tolist()} out of range for {n} examples"
            )
        idx_t = torch.from_numpy(np.where(idx < 0, idx + n, idx))
        return self.inputs.index_select(0, idx_t.to(self.inputs.device)), self._label_tensor.index_select(
            0, idx_t
        )


def _check_indices(indices: Any, n: int) -> np.ndarray:
    if isinstance(indices, torch.Tensor):
        arr = indices.detach().cpu().numpy()
    elif isinstance(indices, np.ndarray):
        arr = indices
    else:
        try:
            arr = np.asarray(list(indices))
        except TypeError:
            raise TypeError(
                f"indices must be a sequence of ints, got {type(indices).__name__}: {indices!r:.80}"
            ) from None
    if arr.dtype == np.bool_:
        raise TypeError("indices must be ints, got a boolean mask; use np.flatnonzero(mask)")
    if arr.size == 0:
        raise ValueError("indices are empty; a subset needs at least one example")
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"indices must be ints, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"indices must be one-dimensional, got shape {arr.shape}")
    bad = (arr < -n) | (arr >= n)
    if bad.any():
        raise ValueError(
            f"indices {arr[bad][:10].tolist()} are out of range for a source of {n} examples; "
            f"valid indices are -{n}..{n - 1}"
        )
    arr = arr.astype(np.int64)
    return np.where(arr < 0, arr + n, arr)


class SubsetTaskSource(TaskSource):
    """Some examples of a task source, selected by index (repeats allowed).

    Negative indices count from the end, as in Python; they are stored
    non-negative in ``indices``. ``labels`` are the source's canonical labels at
    those indices; ``get_batch`` is available when the source has one.

    Args:
        task_source: any task source.
        indices: ints in ``-len(task_source)..len(task_source)-1``.

    Raises:
        TypeError: if ``task_source`` is not a map-style task source, or ``indices`` are not ints.
        ValueError: if ``indices`` are empty, not one-dimensional or out of range.

    Examples:
        >>> d = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b"})
        >>> src = TensorTaskSource(torch.arange(5.0)[:, None], [0, 1, 0, 1, 1], d)
        >>> sub = SubsetTaskSource(src, [4, -5])
        >>> sub.indices.tolist(), sub.labels.tolist(), float(sub[1][0])
        ([4, 0], [1, 0], 0.0)
    """

    def __init__(self, task_source: Any, indices: Any) -> None:
        check_task_source(task_source, "SubsetTaskSource")
        self.task_source = task_source
        self.task_description = task_source.task_description
        self.indices = _check_indices(indices, len(task_source))
        store_canonical_labels(self, canonical_labels(task_source)[self.indices])

    def __getitem__(self, index: int) -> Any:
        return self.task_source[int(self.indices[index])]

    def __len__(self) -> int:
        return len(self.indices)

    def __new__(cls, *args: Any, **kwargs: Any) -> SubsetTaskSource:
        inner = args[0] if args else kwargs.get("task_source")
        if cls is SubsetTaskSource and isinstance(inner, BatchReadable):
            cls = _BatchReadableSubset  # get_batch exactly when the wrapped source has it
        return super().__new__(cls)

    def __getattr__(self, name: str) -> Any:
        if name == "get_batch":
            inner = self.__dict__.get("task_source")
            raise AttributeError(
                f"the wrapped {type(inner).__name__} has no get_batch (it is not BatchReadable), so neither "
                "has this SubsetTaskSource; read examples with source[i]"
            )
        raise AttributeError(f"{type(self).__name__} object has no attribute {name!r}")


class _BatchReadableSubset(SubsetTaskSource):
    """A [`SubsetTaskSource`][SubsetTaskSource] of a
    [`BatchReadable`][BatchReadable] source; ``SubsetTaskSource(...)`` picks
    it."""

    def get_batch(self, indices: Any) -> Any:
        """``(inputs, labels)`` of the subset's examples at ``indices``, in one call to the wrapped source."""
        return self.task_source.get_batch(self.indices[np.asarray(indices, dtype=np.int64)])


class ConcatTaskSource(TaskSource):
    """Several task sources end to end; item ``i`` is ``(item, task_description)``.

    As in torchcross 0.0.6, every item comes with the description of the source it
    is from, since the sources are usually different tasks. When all sources describe
    the same task (e.g. a train and a val split), ``task_description`` is that task and
    ``labels`` are the concatenated canonical labels; otherwise reading them raises
    `AttributeError` and ``task_descriptions`` lists each source's.

    Args:
        datasets: the task sources (at least one).

    Raises:
        ValueError: if ``datasets`` is empty.
        TypeError: if an element is not a map-style task source.

    Examples:
        >>> da = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "x", 1: "y"}, "a")
        >>> db = TaskDescription("BINARY_CLASSIFICATION", {0: "n", 1: "p"}, "b")
        >>> a = TensorTaskSource(torch.zeros(2, 1), [0, 1], da)
        >>> b = TensorTaskSource(torch.ones(3, 1), [1, 0, 1], db)
        >>> cat = ConcatTaskSource([a, b])
        >>> len(cat), cat.cumulative_sizes, cat[2][1].task_identifier
        (5, [2, 5], 'b')
    """

    def __init__(self, datasets: Iterable[Any]) -> None:
        if isinstance(datasets, TaskSource) or not isinstance(datasets, Iterable):
            raise TypeError(f"datasets must be a list of task sources, got {type(datasets).__name__}")
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatTaskSource needs at least one task source, got an empty list")
        for i, ds in enumerate(self.datasets):
            check_task_source(ds, f"ConcatTaskSource (datasets[{i}])")
        self.task_descriptions = [ds.task_description for ds in self.datasets]
        self.cumulative_sizes = np.cumsum([len(ds) for ds in self.datasets]).tolist()
        if self.cumulative_sizes[-1] == 0:
            raise ValueError("ConcatTaskSource of only empty task sources is empty")
        if all(d == self.task_descriptions[0] for d in self.task_descriptions):
            self.task_description = self.task_descriptions[0]
            store_canonical_labels(self, np.concatenate([canonical_labels(ds) for ds in self.datasets]))

    def __getattr__(self, name: str) -> Any:
        d = self.__dict__
        if name in ("task_description", "labels") and "task_description" not in d:
            ids = [desc.task_identifier for desc in d.get("task_descriptions", ())]
            raise AttributeError(
                f"ConcatTaskSource of different tasks {ids} has no single {name}; "
                "use task_descriptions, or the description that comes with each item"
            )
        raise AttributeError(f"{type(self).__name__} object has no attribute {name!r}")

    def __len__(self) -> int:
        return self.cumulative_sizes[-1]

    def __getitem__(self, index: int) -> tuple[Any, TaskDescription]:
        n = len(self)
        if index < -n or index >= n:
            raise IndexError(f"index {index} is out of range for a ConcatTaskSource of {n} examples")
        if index < 0:
            index += n
        which = bisect.bisect_right(self.cumulative_sizes, index)
        start = self.cumulative_sizes[which - 1] if which else 0
        return self.datasets[which][index - start], self.task_descriptions[which]
