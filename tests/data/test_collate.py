"""Collate functions: identity, stack, collate_task, and the 0.0.6 import path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torchcross.data.collate import collate_task, identity, stack
from torchcross.tasks.task import Task, TaskDescription

BIN = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"}, "bin")
ML = TaskDescription("MULTILABEL_CLASSIFICATION", {0: "x", 1: "y", 2: "z"}, "ml")
ORD = TaskDescription("ORDINAL_REGRESSION", {1: "a", 4: "b", 6: "c"}, "ord")


def test_identity_returns_its_argument() -> None:
    batch = [(torch.zeros(1), 0)]
    assert identity(batch) is batch


def test_stack_tensor_pairs() -> None:
    x, y = stack([(torch.full((2, 3), float(i)), torch.tensor(i)) for i in range(4)])
    assert x.shape == (4, 2, 3)
    assert x[:, 0, 0].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert y.tolist() == [0, 1, 2, 3]
    assert y.dtype == torch.int64


def test_stack_returns_a_tuple_like_0_0_6() -> None:
    out = stack([(torch.zeros(1), torch.zeros(1))])
    assert isinstance(out, tuple)
    assert len(out) == 2


@pytest.mark.parametrize(
    ("labels", "dtype", "expected"),
    [
        ([0, 2, 1], torch.int64, [0, 2, 1]),
        ([True, False, True], torch.bool, [True, False, True]),
        ([0.5, 1.0, 2.0], torch.float32, [0.5, 1.0, 2.0]),
        ([np.int64(1), np.int64(0), np.int64(1)], torch.int64, [1, 0, 1]),
        ([np.array([1, 0]), np.array([0, 0]), np.array([1, 1])], torch.int64, [[1, 0], [0, 0], [1, 1]]),
    ],
)
def test_stack_numbers_and_arrays(labels: list, dtype: torch.dtype, expected: list) -> None:
    _, y = stack([(torch.zeros(2), label) for label in labels])
    assert y.dtype == dtype
    assert y.tolist() == expected


def test_stack_recurses_into_tuples_lists_and_dicts() -> None:
    batch = [
        ((torch.zeros(2), np.ones(3, dtype=np.float32)), {"y": i, "views": [torch.zeros(1), torch.ones(1)]})
        for i in range(3)
    ]
    (x1, x2), meta = stack(batch)
    assert x1.shape == (3, 2)
    assert x2.shape == (3, 3)
    assert x2.dtype == torch.float32
    assert meta["y"].tolist() == [0, 1, 2]
    v0, v1 = meta["views"]
    assert v0.tolist() == [[0.0]] * 3
    assert v1.tolist() == [[1.0]] * 3


def test_stack_treats_a_list_of_numbers_as_one_field() -> None:
    _, y = stack([(0, [1, 0, 1]), (1, [0, 0, 1])])
    assert y.tolist() == [[1, 0, 1], [0, 0, 1]]
    _, w = stack([(0, [0.5, 1]), (1, [np.float32(2), True])])
    assert w.dtype == torch.float64
    assert w.tolist() == [[0.5, 1.0], [2.0, 1.0]]


@pytest.mark.parametrize(
    ("batch", "error", "match"),
    [
        ([], ValueError, "cannot stack an empty batch"),
        ("ab", TypeError, "expects a list of examples, got str"),
        ({0: (1, 2)}, TypeError, "expects a list of examples, got dict"),
        (
            [(torch.zeros(2), 0), (torch.zeros(3), 1)],
            ValueError,
            r"example\[0\]: item 1 has shape \(3,\) but item 0",
        ),
        ([(torch.zeros(2), 0), (np.zeros(2), 1)], ValueError, r"item 1 has ndarray but item 0 is a tensor"),
        (
            [(np.zeros(2), 0), (np.zeros(3), 1)],
            ValueError,
            r"item 1 has shape \(3,\) but item 0 has shape \(2,\)",
        ),
        (
            [(torch.zeros(2), 0), (torch.zeros(2), "b")],
            TypeError,
            r"example\[1\]: item 1 is str, not a number",
        ),
        ([(torch.zeros(2), 0), (torch.zeros(2),)], ValueError, "item 1 is .* but item 0 has 2 fields"),
        ([(0, [1, 0]), (1, [1, 0, 1])], ValueError, r"item 1 has shape \(3,\) but item 0 has shape \(2,\)"),
        ([{"a": 1}, {"b": 1}], ValueError, r"item 1 has other keys than item 0 \(\['a'\]\)"),
        ([("text", 0)], TypeError, r"cannot stack example\[0\] of type str; convert inputs to tensors"),
        ([(object(), 0)], TypeError, "of type object;.*or collate with identity"),
        ([(np.str_("a"), 0)], TypeError, "of type str_"),
    ],
)
def test_stack_errors(batch: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        stack(batch)  # type: ignore[arg-type]


def test_collate_task_builds_canonical_tensors() -> None:
    support = [(torch.full((3,), float(i)), i % 2) for i in range(4)]
    query = [(torch.zeros(3), 1)]
    task = collate_task(support, query, BIN)
    assert isinstance(task, Task)
    assert task.description is BIN
    xs, ys = task.support
    assert xs.shape == (4, 3)
    assert ys.tolist() == [[0], [1], [0], [1]]
    assert ys.dtype == torch.int64
    assert task.query[1].shape == (1, 1)


def test_collate_task_keeps_ordinal_keys_and_multilabel_rows() -> None:
    t = collate_task([(np.zeros(2), 6), (np.ones(2), 1)], [(np.zeros(2), np.int64(4))], ORD)
    assert t.support[1].tolist() == [6, 1]
    assert t.support[0].dtype == torch.float64
    t = collate_task([(torch.zeros(1), torch.tensor([1, 0, 1]))], [(torch.zeros(1), [0, 1, 0])], ML)
    assert t.support[1].tolist() == [[1, 0, 1]]
    assert t.query[1].tolist() == [[0, 1, 0]]


@pytest.mark.parametrize(
    ("support", "query", "desc", "error", "match"),
    [
        (
            [(torch.zeros(1), 0)],
            [(torch.zeros(1), 1)],
            {"kind": "binary"},
            TypeError,
            "description must be a TaskDescription",
        ),
        ([], [(torch.zeros(1), 1)], BIN, ValueError, "support of task 'bin' is empty"),
        ([(torch.zeros(1), 0)], [], BIN, ValueError, "query of task 'bin' is empty"),
        (
            [(torch.zeros(1), 0, "extra")],
            [(torch.zeros(1), 1)],
            BIN,
            TypeError,
            r"support\[0\] must be an \(input, label\) pair",
        ),
        (
            torch.zeros(2, 2),
            [(torch.zeros(1), 1)],
            BIN,
            TypeError,
            "support must be a list of .*pairs, got Tensor",
        ),
        ([(torch.zeros(1), 0)], [(torch.zeros(1), 2)], BIN, ValueError, r"values \[2\] outside"),
        ([(torch.zeros(1), 0.5)], [(torch.zeros(1), 1)], BIN, TypeError, "must be integers"),
    ],
)
def test_collate_task_errors(support: object, query: object, desc: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        collate_task(support, query, desc)  # type: ignore[arg-type]


def test_0_0_6_import_path() -> None:
    import torchcross.utils
    from torchcross.utils import collate_fn
    from torchcross.utils.collate_fn import identity as old_identity
    from torchcross.utils.collate_fn import stack as old_stack

    assert old_identity is identity
    assert old_stack is stack
    assert collate_fn.collate_task is collate_task
    assert torchcross.utils.collate_fn is collate_fn
    assert set(collate_fn.__all__) == {"collate_task", "identity", "stack"}
