"""split_classes and ClassSubsetTaskSource: disjoint class sets, relabelled, for N-way benchmarks."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from torchcross.data import ClassSubsetTaskSource, split_classes
from torchcross.data.capabilities import BatchReadable
from torchcross.data.metadataset import FewShotMetaDataset
from torchcross.data.sources import TensorTaskSource, canonical_labels
from torchcross.data.wrap_source import WrapTaskSource
from torchcross.tasks.task import TaskDescription


def _source(n_classes: int = 20, per_class: int = 6, kind: str = "MULTICLASS_CLASSIFICATION", step: int = 1):
    keys = [step * i for i in range(n_classes)]
    labels = np.tile(keys, per_class)
    d = TaskDescription(kind, {k: f"char {k}" for k in keys}, "alphabet", "glyphs")
    return TensorTaskSource(torch.arange(len(labels), dtype=torch.float32)[:, None], labels, d)


def _check_part(part: ClassSubsetTaskSource, src: TensorTaskSource) -> None:
    original = canonical_labels(src)
    keys = part.source_classes
    assert list(keys) == sorted(keys)
    assert part.task_description.classes == {i: src.task_description.classes[k] for i, k in enumerate(keys)}
    assert part.task_description.task_identifier == "alphabet"
    assert part.indices.tolist() == np.flatnonzero(np.isin(original, keys)).tolist()  # source order
    assert [keys[y] for y in part.labels.tolist()] == original[part.indices].tolist()
    x, y = part[len(part) - 1]
    assert int(x) == part.indices[-1]
    assert keys[int(y)] == original[part.indices[-1]]


@settings(max_examples=40, deadline=None)
@given(
    n_classes=st.integers(3, 30),
    fractions=st.lists(st.integers(1, 10), min_size=1, max_size=4),
    seed=st.integers(0, 2**31),
    ordinal=st.booleans(),
)
def test_fractions_split_every_class_once(
    n_classes: int, fractions: list[int], seed: int, ordinal: bool
) -> None:
    kind = "ORDINAL_REGRESSION" if ordinal else "MULTICLASS_CLASSIFICATION"
    src = _source(n_classes, 2, kind, step=3 if ordinal else 1)
    shares = [f / sum(fractions) for f in fractions]
    assume(min(shares) * n_classes >= 2)  # every part rounds to two classes or more
    parts = split_classes(src, shares, seed=seed)
    assert len(parts) == len(fractions)
    keys = [k for p in parts for k in p.source_classes]
    assert sorted(keys) == list(src.task_description.class_keys)  # disjoint, and all of them
    for part, share in zip(parts, shares):
        assert abs(len(part.source_classes) - share * n_classes) < 1
        _check_part(part, src)


def test_counts_seeds_and_determinism() -> None:
    src = _source(20)
    train, val, test = split_classes(src, (12, 4, 4), seed=1)
    assert [len(p.source_classes) for p in (train, val, test)] == [12, 4, 4]
    again = split_classes(src, (12, 4, 4), seed=1)
    assert [p.source_classes for p in again] == [p.source_classes for p in (train, val, test)]
    assert split_classes(src, (12, 4, 4), seed=2)[2].source_classes != test.source_classes
    assert len(split_classes(src, (5,), seed=0)[0].source_classes) == 5  # fewer classes than the task has


def test_n_way_episodes_come_from_their_split() -> None:
    src = _source(20)
    train, _, test = split_classes(src, (0.6, 0.2, 0.2), seed=0)
    for part in (train, test):
        episodes = FewShotMetaDataset(part, None, 1, 2, length=20, seed=0, n_way=3)
        for task in episodes:
            names = set(task.description.classes.values())
            assert names <= {src.task_description.classes[k] for k in part.source_classes}
            ids = torch.cat([task.support[0], task.query[0]])[:, 0].long().numpy()
            assert set(canonical_labels(src)[ids].tolist()) <= set(part.source_classes)
            assert sorted(task.support[1].tolist()) == [0, 1, 2]


def test_get_batch_exactly_when_the_source_has_it_and_pickling() -> None:
    src = _source(6)
    part = ClassSubsetTaskSource(src, [4, 1])
    assert isinstance(part, BatchReadable)
    inputs, labels = part.get_batch([0, 3, 2])
    stacked = [part[i] for i in (0, 3, 2)]
    assert torch.equal(inputs, torch.stack([x for x, _ in stacked]))
    assert labels.tolist() == [int(y) for _, y in stacked]
    plain = WrapTaskSource([src[i] for i in range(len(src))], src.task_description)
    wrapped = ClassSubsetTaskSource(plain, [4, 1])
    assert not isinstance(wrapped, BatchReadable)
    assert torch.equal(wrapped[2][0], part[2][0])
    copy = pickle.loads(pickle.dumps(part))
    assert isinstance(copy, BatchReadable)
    assert copy.source_classes == (1, 4)
    assert torch.equal(copy.get_batch([1])[0], part.get_batch([1])[0])


@pytest.mark.parametrize(
    ("sizes", "error", "match"),
    [
        ((12, 0.2), TypeError, r"all ints \(class counts\) or all floats \(fractions\)"),
        ((15, 10), ValueError, r"sizes \[15, 10\] ask for 25 classes; the task has 20"),
        ((10, 1), ValueError, r"class count must be >= 2 \(a task has at least two classes\)"),
        ((0.7, 0.5), ValueError, r"fractions must be in \(0, 1\] and sum to at most 1"),
        ((0.9, 0.06), ValueError, r"give \[18, 1\] classes; every part needs at least two"),
        ((), TypeError, "sizes must be a non-empty sequence"),
        ("abc", TypeError, "sizes must be a non-empty sequence"),
    ],
)
def test_split_argument_errors(sizes, error, match) -> None:
    with pytest.raises(error, match=match):
        split_classes(_source(20), sizes)


def test_other_errors() -> None:
    with pytest.raises(ValueError, match="seed must be >= 0"):
        split_classes(_source(), (2, 2), seed=-1)
    binary = TensorTaskSource(
        torch.zeros(4, 1), [0, 1, 0, 1], TaskDescription("BINARY_CLASSIFICATION", {0: "n", 1: "p"}, "b")
    )
    with pytest.raises(
        ValueError, match="split_classes: task 'b' is BINARY_CLASSIFICATION; class subsets are defined for"
    ):
        split_classes(binary, (1, 1))
    with pytest.raises(TypeError, match="split_classes needs a task source with task_description and labels"):
        split_classes([1, 2], (1, 1))
    src = _source(4)
    match = r"classes must be at least two distinct class keys of task 'alphabet' \(\[0, 1, 2, 3\]\)"
    for classes in ([1, 7], [1, 1], [2]):
        with pytest.raises(ValueError, match=match):
            ClassSubsetTaskSource(src, classes)
    names = {0: "a", 1: "b", 2: "c", 3: "d"}
    sparse = TensorTaskSource(
        torch.zeros(4, 1), [0, 1, 0, 1], TaskDescription("MULTICLASS_CLASSIFICATION", names, "s")
    )
    with pytest.raises(ValueError, match=r"task 's' has no examples of classes \[2, 3\]"):
        ClassSubsetTaskSource(sparse, [2, 3])
