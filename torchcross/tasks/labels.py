"""Canonical labels: one form per task kind, normalised once at the source boundary.

=====================  ===============  ===========================================
kind                   shape            values
=====================  ===============  ===========================================
multi-class            ``(N,)``         int64 class index ``0..C-1``
binary                 ``(N, 1)``       int64 0/1
multi-label            ``(N, L)``       int64 0/1, one column per label
ordinal                ``(N,)``         int64 class *keys* (may have gaps, e.g. 1, 4, 6)
regression             ``(N,)``/``(N, D)``  float32
=====================  ===============  ===========================================

[`keys_to_indices()`][keys_to_indices] is the one place where gapped ordinal keys
become contiguous indices ``0..C-1`` (for heads, losses and metrics).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from torchcross.tasks.task import TaskDescription, TaskTarget

__all__ = [
    "as_label_array",
    "count_samples_per_class",
    "keys_to_indices",
    "normalize_labels",
    "samples_per_class_array",
]


def as_label_array(labels: Any) -> np.ndarray:
    """Labels (a tensor, an array, or a sequence of labels or label rows) as a NumPy array, unnormalised.

    Raises:
        ValueError: ragged rows.
        TypeError: rows that cannot be read as numbers.

    Examples:
        >>> as_label_array([[0, 1], np.array([1, 1])]).tolist()
        [[0, 1], [1, 1]]
    """
    if hasattr(labels, "detach") and hasattr(labels, "cpu"):  # torch.Tensor without importing torch here
        return labels.detach().cpu().numpy()
    try:
        arr = np.asarray(labels)
    except ValueError as exc:  # ragged nested sequences
        raise ValueError(
            f"labels must form a rectangular array (one row per example, rows of equal length): {exc}"
        ) from exc
    if arr.dtype == object:
        try:
            arr = np.stack([np.asarray(as_label_array(x)) for x in labels])
        except (TypeError, ValueError) as exc:
            raise TypeError(f"labels could not be read as a numeric array: {exc}") from exc
    return arr


def _integral(arr: np.ndarray, description: TaskDescription) -> np.ndarray:
    if arr.dtype == np.bool_:
        return arr.astype(np.int64)
    if np.issubdtype(arr.dtype, np.integer) or arr.size == 0:  # ``np.asarray([])`` is float64
        return arr.astype(np.int64, copy=False)
    raise TypeError(
        f"labels of {description.task_target.name} task {description.task_identifier!r} must be integers "
        f"(class keys), got dtype {arr.dtype}; convert them with labels.astype('int64') if they are "
        "whole numbers"
    )


def normalize_labels(labels: Any, description: TaskDescription) -> np.ndarray:
    """Return ``labels`` in the canonical form of ``description``'s kind (see module doc).

    Accepts numpy arrays, tensors and sequences. Binary labels may be ``(N,)`` or
    ``(N, 1)``; multi-class and ordinal labels ``(N,)`` or ``(N, 1)``.

    Raises:
        TypeError: float labels for a classification task.
        ValueError: a shape that does not fit the kind, or values outside the declared classes.

    Examples:
        >>> d = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"})
        >>> normalize_labels([0, 1, 1], d).tolist()
        [[0], [1], [1]]
    """
    arr = as_label_array(labels)
    target = description.task_target
    tid = description.task_identifier
    if target is TaskTarget.REGRESSION:
        if arr.ndim not in (1, 2):
            raise ValueError(
                f"regression labels of task {tid!r} must be (N,) or (N, D), got shape {arr.shape}"
            )
        return arr.astype(np.float32, copy=False)
    arr = _integral(arr, description)
    keys = np.asarray(description.class_keys, dtype=np.int64)
    if target is TaskTarget.MULTILABEL_CLASSIFICATION:
        if arr.size == 0 and arr.ndim == 1:  # an empty list carries no column count
            arr = arr.reshape(0, len(keys))
        if arr.ndim != 2 or arr.shape[1] != len(keys):
            raise ValueError(
                f"multi-label labels of task {tid!r} must have shape (N, {len(keys)}) "
                f"(one 0/1 column per label), got {arr.shape}"
            )
        bad = ~np.isin(arr, (0, 1))
        if bad.any():
            raise ValueError(
                f"multi-label labels of task {tid!r} must be 0/1, found {np.unique(arr[bad])[:10].tolist()}"
            )
        return np.ascontiguousarray(arr)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        want = "(N,) or (N, 1)"
        raise ValueError(f"{target.name} labels of task {tid!r} must have shape {want}, got {arr.shape}")
    bad = ~np.isin(arr, keys)
    if bad.any():
        raise ValueError(
            f"labels of task {tid!r} contain values {np.unique(arr[bad])[:10].tolist()} outside the declared "
            f"class keys {keys.tolist()}"
        )
    arr = np.ascontiguousarray(arr)
    if target is TaskTarget.BINARY_CLASSIFICATION:
        return arr[:, None]
    return arr


def keys_to_indices(labels: Any, description: TaskDescription) -> Any:
    """Map canonical multi-class/ordinal labels (class keys) to indices ``0..C-1``.

    This is the only place gapped ordinal keys are turned into contiguous indices.
    Other kinds are returned unchanged. A ``torch.Tensor`` gives a tensor on the same
    device (built from tensor operations, so it works inside ``torch.func`` transforms;
    the check for unknown keys is skipped there because it needs the values); anything
    else gives a numpy array.

    Raises:
        ValueError: a label that is not one of the task's class keys.

    Examples:
        >>> d = TaskDescription("ORDINAL_REGRESSION", {1: "a", 4: "b", 6: "c"})
        >>> keys_to_indices([6, 1, 4], d).tolist()
        [2, 0, 1]
        >>> import torch
        >>> keys_to_indices(torch.tensor([4, 6]), d)
        tensor([1, 2])
    """
    if description.task_target not in (TaskTarget.MULTICLASS_CLASSIFICATION, TaskTarget.ORDINAL_REGRESSION):
        return labels if _is_tensor(labels) else as_label_array(labels)
    if _is_tensor(labels):
        return _keys_to_indices_torch(labels, description)
    arr = as_label_array(labels)
    keys = np.asarray(description.class_keys, dtype=np.int64)
    idx = np.searchsorted(keys, arr)
    idx_clipped = np.clip(idx, 0, len(keys) - 1)
    if not np.array_equal(keys[idx_clipped], arr):
        raise ValueError(_unknown_keys_message(description))
    return idx.astype(np.int64)


def _is_tensor(labels: Any) -> bool:
    return type(labels).__module__.startswith("torch") and hasattr(labels, "detach")


def _unknown_keys_message(description: TaskDescription) -> str:
    return (
        f"labels of task {description.task_identifier!r} contain values outside class keys "
        f"{list(description.class_keys)}"
    )


def _keys_to_indices_torch(labels: Any, description: TaskDescription) -> Any:
    import torch

    labels = labels.long()
    keys = description.class_keys
    functorch = getattr(torch._C, "_functorch", None)
    check = labels.numel() > 0 and not (
        functorch is not None and functorch.is_functorch_wrapped_tensor(labels)
    )
    if keys == tuple(range(len(keys))):  # contiguous keys: the index is the key
        if check:
            low, high = torch.aminmax(labels)
            if int(low) < 0 or int(high) >= len(keys):
                raise ValueError(_unknown_keys_message(description))
        return labels
    keys_tensor = _keys_tensor(keys, labels.device)
    idx = torch.searchsorted(keys_tensor, labels.contiguous())
    if check and not torch.equal(keys_tensor.index_select(0, idx.clamp(max=len(keys) - 1)), labels):
        raise ValueError(_unknown_keys_message(description))
    return idx


@functools.lru_cache(maxsize=256)
def _keys_tensor(keys: tuple[int, ...], device: Any) -> Any:
    import torch

    return torch.tensor(keys, dtype=torch.int64, device=device)


def samples_per_class_array(labels: Any, description: TaskDescription, neg: bool = False) -> np.ndarray:
    """The counts of [`count_samples_per_class()`][count_samples_per_class] as the
    int64 array torchcross 0.0.6 returned.

    One entry per class key for multi-class (keys ``0..C-1``), multi-label (one per label)
    and ordinal tasks (in the order of ``description.classes``); binary tasks have one
    entry, the positives (with ``neg=True``: the negatives). Counts are never negative.

    Examples:
        >>> d = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"})
        >>> samples_per_class_array([[1], [0], [1]], d), samples_per_class_array([[1], [0], [1]], d, neg=True)
        (array([2]), array([1]))
    """
    counts = count_samples_per_class(labels, description, neg=neg)
    if description.task_target is TaskTarget.BINARY_CLASSIFICATION:
        keys: Any = (1,)
    elif description.task_target is TaskTarget.ORDINAL_REGRESSION:
        keys = list(description.classes)
    else:
        keys = description.class_keys
    return np.array([counts[k] for k in keys], dtype=np.int64)


def count_samples_per_class(labels: Any, description: TaskDescription, neg: bool = False) -> dict[int, int]:
    """Count examples per class key: positives, or negatives with ``neg=True``.

    For multi-class, ordinal and binary tasks an example is a positive of the class
    its label names and a negative of every other class; for multi-label tasks each
    column counts separately. Counts are never negative.

    Examples:
        >>> d = TaskDescription("MULTILABEL_CLASSIFICATION", {0: "a", 1: "b"})
        >>> count_samples_per_class([[1, 0], [1, 1], [0, 0]], d)
        {0: 2, 1: 1}
        >>> count_samples_per_class([[1, 0], [1, 1], [0, 0]], d, neg=True)
        {0: 1, 1: 2}
    """
    arr = normalize_labels(labels, description)
    n = arr.shape[0]
    keys = description.class_keys
    if description.task_target is TaskTarget.REGRESSION:
        raise ValueError("count_samples_per_class is not defined for REGRESSION tasks (no classes)")
    if description.task_target is TaskTarget.MULTILABEL_CLASSIFICATION:
        pos = arr.sum(axis=0)
    else:
        flat = arr.reshape(n)
        pos = np.array([(flat == k).sum() for k in keys]) if n else np.zeros(len(keys), dtype=np.int64)
    counts = (n - pos) if neg else pos
    return {int(k): int(c) for k, c in zip(keys, counts)}
