"""Canonical labels: normalisation, key-to-index mapping and per-class counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from torchcross.tasks.labels import count_samples_per_class, keys_to_indices, normalize_labels
from torchcross.tasks.task import TaskDescription, TaskTarget

MC = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b", 2: "c"}, "mc")
BIN = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"}, "bin")
ML = TaskDescription("MULTILABEL_CLASSIFICATION", {0: "x", 1: "y", 2: "z", 3: "w"}, "ml")
ORD = TaskDescription("ORDINAL_REGRESSION", {1: "a", 4: "b", 6: "c", 8: "d", 10: "e"}, "ord")
REG = TaskDescription("REGRESSION", {}, "reg")


# --------------------------------------------------------------------------- normalize_labels


@pytest.mark.parametrize(
    ("labels", "desc", "expected"),
    [
        ([2, 0, 1], MC, np.array([2, 0, 1])),
        ([[2], [0]], MC, np.array([2, 0])),
        (torch.tensor([1, 1]), MC, np.array([1, 1])),
        ([0, 1, 1], BIN, np.array([[0], [1], [1]])),
        ([[0], [1]], BIN, np.array([[0], [1]])),
        (np.array([True, False]), BIN, np.array([[1], [0]])),
        (torch.tensor([[1], [0]], dtype=torch.uint8), BIN, np.array([[1], [0]])),
        ([[1, 0, 0, 1], [0, 0, 0, 0]], ML, np.array([[1, 0, 0, 1], [0, 0, 0, 0]])),
        ([10, 1, 6], ORD, np.array([10, 1, 6])),
        ([0.5, 2.0], REG, np.array([0.5, 2.0], dtype=np.float32)),
        ([[0.5, 1.0]], REG, np.array([[0.5, 1.0]], dtype=np.float32)),
    ],
)
def test_normalize_labels_gives_the_canonical_form(
    labels: object, desc: TaskDescription, expected: np.ndarray
) -> None:
    out = normalize_labels(labels, desc)
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == (np.float32 if desc.task_target is TaskTarget.REGRESSION else np.int64)
    assert out.flags.c_contiguous


def test_normalize_labels_accepts_tensors_that_need_grad_and_object_arrays() -> None:
    y = torch.tensor([0.5, 1.5], requires_grad=True)
    np.testing.assert_allclose(normalize_labels(y, REG), [0.5, 1.5])
    objs = np.empty(2, dtype=object)
    objs[0], objs[1] = torch.tensor(1), torch.tensor(0)
    np.testing.assert_array_equal(normalize_labels(objs, BIN), [[1], [0]])


def test_normalize_labels_of_nothing_is_empty() -> None:
    assert normalize_labels([], MC).shape == (0,)
    assert normalize_labels([], BIN).shape == (0, 1)
    assert normalize_labels(np.zeros((0, 4), dtype=np.int64), ML).shape == (0, 4)


@pytest.mark.parametrize(
    ("labels", "desc", "error", "match"),
    [
        (np.array([0.0, 1.0]), MC, TypeError, "must be integers .*float64.*astype"),
        ([0.5, 1.0], BIN, TypeError, "must be integers"),
        (["a", "b"], MC, TypeError, "must be integers"),
        ([0, 3], MC, ValueError, r"values \[3\] outside the declared class keys \[0, 1, 2\]"),
        ([0, 2], BIN, ValueError, r"values \[2\] outside"),
        ([1, 2, 4], ORD, ValueError, r"values \[2\] outside the declared class keys \[1, 4, 6, 8, 10\]"),
        ([-1, 0], MC, ValueError, r"values \[-1\]"),
        ([[0, 1], [1, 0]], MC, ValueError, r"must have shape \(N,\) or \(N, 1\), got \(2, 2\)"),
        (np.zeros((2, 1, 1), dtype=int), BIN, ValueError, "must have shape"),
        ([1, 0, 1], ML, ValueError, r"must have shape \(N, 4\)"),
        ([[1, 0]], ML, ValueError, r"must have shape \(N, 4\).*got \(1, 2\)"),
        ([[2, 0, 0, 1]], ML, ValueError, r"must be 0/1, found \[2\]"),
        (np.zeros((2, 2, 2)), REG, ValueError, r"must be \(N,\) or \(N, D\)"),
        ([[0], [1, 2]], MC, ValueError, "rectangular array"),
    ],
)
def test_normalize_labels_errors(labels: object, desc: TaskDescription, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        normalize_labels(labels, desc)


def test_normalize_labels_reports_unreadable_object_labels() -> None:
    objs = np.empty(2, dtype=object)
    objs[0], objs[1] = np.zeros(2, dtype=np.int64), np.zeros(3, dtype=np.int64)
    with pytest.raises(TypeError, match="could not be read as a numeric array"):
        normalize_labels(objs, MC)


def test_error_messages_name_the_task() -> None:
    with pytest.raises(ValueError, match="'ord'"):
        normalize_labels([3], ORD)


# --------------------------------------------------------------------------- keys_to_indices


def test_keys_to_indices_maps_gapped_ordinal_keys() -> None:
    np.testing.assert_array_equal(keys_to_indices([1, 10, 6, 4, 8], ORD), [0, 4, 2, 1, 3])
    assert keys_to_indices(np.array([], dtype=np.int64), ORD).shape == (0,)


def test_keys_to_indices_is_identity_for_contiguous_and_other_kinds() -> None:
    np.testing.assert_array_equal(keys_to_indices([2, 0, 1], MC), [2, 0, 1])
    ml = np.array([[1, 0, 0, 1]])
    np.testing.assert_array_equal(keys_to_indices(ml, ML), ml)
    np.testing.assert_array_equal(keys_to_indices([[1], [0]], BIN), [[1], [0]])


@pytest.mark.parametrize("bad", [[2], [11], [0], [-3]])
def test_keys_to_indices_rejects_unknown_keys(bad: list[int]) -> None:
    with pytest.raises(ValueError, match=r"outside class keys \[1, 4, 6, 8, 10\]"):
        keys_to_indices(bad, ORD)


# --------------------------------------------------------------------------- count_samples_per_class


@pytest.mark.parametrize(
    ("labels", "desc", "pos", "neg"),
    [
        ([0, 2, 2, 1, 2], MC, {0: 1, 1: 1, 2: 3}, {0: 4, 1: 4, 2: 2}),
        ([[1], [1], [0]], BIN, {0: 1, 1: 2}, {0: 2, 1: 1}),
        ([[1, 0, 0, 1], [1, 1, 0, 0]], ML, {0: 2, 1: 1, 2: 0, 3: 1}, {0: 0, 1: 1, 2: 2, 3: 1}),
        ([1, 10, 10, 6], ORD, {1: 1, 4: 0, 6: 1, 8: 0, 10: 2}, {1: 3, 4: 4, 6: 3, 8: 4, 10: 2}),
        ([], MC, {0: 0, 1: 0, 2: 0}, {0: 0, 1: 0, 2: 0}),
    ],
)
def test_count_samples_per_class(labels: object, desc: TaskDescription, pos: dict, neg: dict) -> None:
    assert count_samples_per_class(labels, desc) == pos
    assert count_samples_per_class(labels, desc, neg=True) == neg
    assert all(type(k) is int and type(v) is int for k, v in pos.items())


def test_count_samples_per_class_rejects_regression() -> None:
    with pytest.raises(ValueError, match="not defined for REGRESSION"):
        count_samples_per_class([0.5], REG)


# --------------------------------------------------------------------------- properties


@st.composite
def _task_and_labels(draw: st.DrawFn) -> tuple[TaskDescription, object]:
    """A random description of any classification kind and labels for it, in a raw (non-canonical) form."""
    target = draw(st.sampled_from([t for t in TaskTarget if t is not TaskTarget.REGRESSION]))
    n = draw(st.integers(0, 40))
    if target is TaskTarget.BINARY_CLASSIFICATION:
        keys = [0, 1]
    elif target is TaskTarget.ORDINAL_REGRESSION:
        keys = sorted(draw(st.sets(st.integers(0, 30), min_size=2, max_size=6)))
    else:
        keys = list(range(draw(st.integers(2, 6))))
    desc = TaskDescription(target, {k: f"c{k}" for k in keys})
    if target is TaskTarget.MULTILABEL_CLASSIFICATION:
        labels = np.array(
            draw(
                st.lists(
                    st.lists(st.integers(0, 1), min_size=len(keys), max_size=len(keys)),
                    min_size=n,
                    max_size=n,
                )
            ),
            dtype=np.int64,
        ).reshape(n, len(keys))
    else:
        labels = np.array(draw(st.lists(st.sampled_from(keys), min_size=n, max_size=n)), dtype=np.int64)
        if draw(st.booleans()):
            labels = labels[:, None]  # (N, 1) is accepted for every single-label kind
    form = draw(st.sampled_from(["numpy", "tensor", "list", "int32"]))
    if form == "tensor":
        return desc, torch.from_numpy(labels)
    if form == "list":
        return desc, labels.tolist()
    if form == "int32":
        return desc, labels.astype(np.int32)
    return desc, labels


@given(_task_and_labels())
def test_normalize_labels_is_idempotent_and_has_the_kind_shape(case: tuple[TaskDescription, object]) -> None:
    desc, labels = case
    once = normalize_labels(labels, desc)
    twice = normalize_labels(once, desc)
    np.testing.assert_array_equal(once, twice)
    assert once.dtype == np.int64
    n = len(labels)
    expected_shape = {
        TaskTarget.MULTICLASS_CLASSIFICATION: (n,),
        TaskTarget.ORDINAL_REGRESSION: (n,),
        TaskTarget.BINARY_CLASSIFICATION: (n, 1),
        TaskTarget.MULTILABEL_CLASSIFICATION: (n, desc.num_classes),
    }[desc.task_target]
    assert once.shape == expected_shape
    assert np.isin(
        once, desc.class_keys if desc.task_target is not TaskTarget.MULTILABEL_CLASSIFICATION else (0, 1)
    ).all()


@given(_task_and_labels())
def test_counts_are_exact_and_positive_plus_negative_is_n(case: tuple[TaskDescription, object]) -> None:
    desc, labels = case
    canon = normalize_labels(labels, desc)
    n = len(canon)
    pos = count_samples_per_class(labels, desc)
    neg = count_samples_per_class(labels, desc, neg=True)
    assert list(pos) == list(desc.class_keys) == list(neg)
    for key in desc.class_keys:
        assert pos[key] >= 0
        assert neg[key] >= 0
        assert pos[key] + neg[key] == n
        # independent reference: count by looping over examples
        if desc.task_target is TaskTarget.MULTILABEL_CLASSIFICATION:
            column = desc.class_keys.index(key)
            assert pos[key] == sum(int(row[column]) for row in canon.tolist())
        else:
            assert pos[key] == sum(1 for y in canon.reshape(n).tolist() if y == key)
    if desc.task_target is not TaskTarget.MULTILABEL_CLASSIFICATION:
        assert sum(pos.values()) == n


@given(_task_and_labels())
def test_keys_to_indices_inverts_to_the_keys(case: tuple[TaskDescription, object]) -> None:
    desc, labels = case
    canon = normalize_labels(labels, desc)
    idx = keys_to_indices(canon, desc)
    if desc.task_target in (TaskTarget.MULTICLASS_CLASSIFICATION, TaskTarget.ORDINAL_REGRESSION):
        assert ((idx >= 0) & (idx < desc.num_classes)).all()
        np.testing.assert_array_equal(np.asarray(desc.class_keys, dtype=np.int64)[idx], canon)
    else:
        np.testing.assert_array_equal(idx, canon)
