"""Meta-batch collation: stacking equal tasks, padding heterogeneous ones with masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torchcross.data import TensorTaskSource
from torchcross.data.metadataset.few_shot import FewShotMetaDataset, SubTaskRandomFewShotMetaDataset
from torchcross.data.task_batch import PaddedTaskBatch, pad_tasks, stack_tasks
from torchcross.tasks.task import Task, TaskDescription

DESCRIPTIONS = {
    "multiclass": TaskDescription("MULTICLASS_CLASSIFICATION", {i: str(i) for i in range(5)}, "mc"),
    "binary": TaskDescription("BINARY_CLASSIFICATION", {0: "n", 1: "p"}, "bin"),
    "multilabel": TaskDescription("MULTILABEL_CLASSIFICATION", {0: "a", 1: "b", 2: "c"}, "ml"),
    "ordinal": TaskDescription("ORDINAL_REGRESSION", {1: "a", 4: "b", 6: "c", 8: "d"}, "ord"),
}


def source(kind: str, n: int = 200) -> TensorTaskSource:
    rng = np.random.default_rng(0)
    d = DESCRIPTIONS[kind]
    if kind == "multilabel":
        labels = (rng.random((n, 3)) < 0.4).astype(np.int64)
    else:
        labels = np.array(d.class_keys)[rng.permutation(np.arange(n) % d.num_classes)]
    return TensorTaskSource(torch.randn(n, 1, 4, 4), labels, d)


def test_stack_tasks_of_one_dataset() -> None:
    ds = FewShotMetaDataset(source("multiclass"), None, 2, 3, 0, seed=0)
    tasks = [ds[i] for i in range(4)]
    batch = stack_tasks(tasks)
    assert batch.support[0].shape == (4, 10, 1, 4, 4)
    assert batch.support[1].shape == (4, 10)
    assert batch.query[0].shape == (4, 15, 1, 4, 4)
    assert batch.description == tasks[0].description
    for i, t in enumerate(tasks):
        assert torch.equal(batch.support[0][i], t.support[0])
        assert torch.equal(batch.query[1][i], t.query[1])


def test_stack_tasks_names_mismatches() -> None:
    a = FewShotMetaDataset(source("multiclass"), None, 2, 3, 0, seed=0)[0]
    b = FewShotMetaDataset(source("multiclass"), None, 3, 3, 0, seed=0)[0]
    with pytest.raises(
        ValueError, match=r"task 1's support inputs have shape \(15, 1, 4, 4\), task 0's \(10, 1, 4, 4\)"
    ):
        stack_tasks([a, b])
    other = Task(a.support, a.query, a.description.with_classes({i: f"x{i}" for i in range(5)}))
    with pytest.raises(ValueError, match="task 1's description differs"):
        stack_tasks([a, other])
    pairs = FewShotMetaDataset(source("binary"), None, 1, 1, 0, output_indices=True, seed=0)[0]
    with pytest.raises(TypeError, match="collate episodes first"):
        stack_tasks([pairs])
    with pytest.raises(ValueError, match="non-empty sequence"):
        stack_tasks([])
    with pytest.raises(TypeError, match="item 0 is a str"):
        stack_tasks(["task"])
    bad = Task((torch.zeros(3, 2), torch.zeros(2)), a.query, a.description)
    with pytest.raises(ValueError, match="3 inputs but 2 labels"):
        stack_tasks([bad])


def _mixed_tasks() -> list[Task]:
    tasks = []
    for kind in DESCRIPTIONS:
        ds = SubTaskRandomFewShotMetaDataset(
            source(kind),
            n_support_samples_per_class_max=4,
            n_query_samples_per_class=3,
            filter_classes_min_samples=0,
            seed=1,
        )
        tasks += [ds[0], ds[1]]
    return tasks


def test_pad_tasks_mixed_kinds_round_trip() -> None:
    tasks = _mixed_tasks()
    batch = pad_tasks(tasks)
    assert isinstance(batch, PaddedTaskBatch)
    assert len(batch) == len(tasks)
    n_sup = [len(t.support[0]) for t in tasks]
    n_qry = [len(t.query[0]) for t in tasks]
    assert batch.support_inputs.shape == (len(tasks), max(n_sup), 1, 4, 4)
    assert batch.support_mask.sum(1).tolist() == n_sup
    assert batch.query_mask.sum(1).tolist() == n_qry
    assert batch.num_classes.tolist() == [t.description.num_classes for t in tasks]
    assert batch.class_mask.shape == (len(tasks), max(t.description.num_classes for t in tasks))
    width = max(t.support[1].shape[1] if t.support[1].dim() == 2 else 1 for t in tasks)
    assert batch.support_labels.shape == (len(tasks), max(n_sup), width)
    for i, t in enumerate(tasks):
        back = batch.unpad(i)
        assert back.description == t.description
        for x, y in ((back.support, t.support), (back.query, t.query)):
            assert torch.equal(x[0], y[0])
            assert torch.equal(x[1], y[1])
            assert x[1].shape == y[1].shape
        # padding is zero for inputs and -100 for labels
        assert (batch.support_inputs[i, n_sup[i] :] == 0).all()
        assert (batch.support_labels[i, n_sup[i] :] == -100).all()


def test_pad_tasks_single_kind_keeps_label_rank() -> None:
    ds = SubTaskRandomFewShotMetaDataset(source("multiclass"), filter_classes_min_samples=0, seed=3)
    tasks = [ds[i] for i in range(3)]
    batch = pad_tasks(tasks, label_pad_value=-1)
    assert batch.support_labels.dim() == 2
    assert batch.label_shapes == ((), (), ())
    assert (batch.support_labels[~batch.support_mask] == -1).all()
    assert all(torch.equal(batch.unpad(i).support[1], t.support[1]) for i, t in enumerate(tasks))


def test_pad_tasks_errors() -> None:
    d = DESCRIPTIONS["multiclass"]
    a = Task(
        (torch.zeros(2, 3), torch.zeros(2, dtype=torch.long)),
        (torch.zeros(2, 3), torch.zeros(2, dtype=torch.long)),
        d,
    )
    b = Task(
        (torch.zeros(2, 4), torch.zeros(2, dtype=torch.long)),
        (torch.zeros(2, 4), torch.zeros(2, dtype=torch.long)),
        d,
    )
    with pytest.raises(ValueError, match="support inputs differ in shape per example"):
        pad_tasks([a, b])
    c = Task((torch.zeros(2, 3), torch.zeros(2, 2)), (torch.zeros(2, 3), torch.zeros(2, 3)), d)
    with pytest.raises(ValueError, match="support and query labels differ"):
        pad_tasks([c])
    e = Task((torch.zeros(2, 3), torch.zeros(2, 2, 2)), (torch.zeros(2, 3), torch.zeros(2, 2, 2)), d)
    with pytest.raises(ValueError, match="cannot pad labels"):
        pad_tasks([a, e])
    f = Task((torch.zeros(2, 3), torch.zeros(2)), (torch.zeros(2, 5), torch.zeros(2)), d)
    with pytest.raises(ValueError, match="support and query inputs differ"):
        pad_tasks([f])
