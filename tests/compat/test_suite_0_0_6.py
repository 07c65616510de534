"""The intent of torchcross 0.0.6's own test suite, ported (in our words) to this library.

Where 0.0.6's tests encode a 0.0.6 bug, the port tests the fixed behaviour; docs/compatibility.md
lists those exceptions.
"""

from __future__ import annotations

import io
import pickle

import pytest
import torch
from torch.utils.data import Dataset, TensorDataset
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryAUROC,
    MulticlassAccuracy,
    MulticlassAUROC,
    MultilabelAccuracy,
    MultilabelAUROC,
)

from torchcross.cd.metrics import AUROC, Accuracy, IndexedMulticlassAccuracy, IndexedMulticlassAUROC
from torchcross.data import (
    BatchedTaskSource,
    ConcatTaskSource,
    RandomInterleaveDataset,
    Task,
    TaskDescription,
    TaskSource,
    TaskTarget,
    WrapTaskSource,
)
from torchcross.data.metadataset import (
    CollectionMetaDataset,
    IterableMetaDataset,
    MetaChainDataset,
    MetaConcatDataset,
    MetaDataset,
)

AB = {0: "a", 1: "b"}


class PairSource(TaskSource):
    """A 0.0.6-style source: class attributes, no __init__."""

    data = torch.rand(10)
    labels = torch.tensor([0, 1] * 5)
    task_description = TaskDescription(TaskTarget.MULTICLASS_CLASSIFICATION, AB, task_identifier="test")

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.data[index], self.labels[index]


class Tasks(MetaDataset):  # no __len__: not required
    source = PairSource()

    def __getitem__(self, index: int) -> Task:
        return Task(self.source[index], self.source[-index], self.source.task_description)


class TaskStream(IterableMetaDataset):
    source = PairSource()

    def __iter__(self):
        for i in range(10):
            yield Task(self.source[i], self.source[-i], self.source.task_description)


# ----------------------------------------------------------------- meta_dataset/test_base.py


def test_meta_dataset_items_and_sums() -> None:
    assert isinstance(Tasks()[0], Task)
    assert isinstance(Tasks() + Tasks(), MetaConcatDataset)
    with pytest.raises(TypeError, match="has no len"):
        len(Tasks())


def test_meta_concat_dataset() -> None:
    with pytest.raises(ValueError, match="needs at least one dataset"):  # 0.0.6: AssertionError
        MetaConcatDataset([])
    both = MetaConcatDataset([Tasks(), Tasks()])
    assert len(both.datasets) == 2
    assert isinstance(both[(0, 0)], Task)
    with pytest.raises(TypeError, match=r"index a MetaConcatDataset with \(dataset index"):
        both[0]


def test_iterable_meta_dataset_and_chains() -> None:
    tasks = list(TaskStream())
    assert len(tasks) == 10
    assert all(isinstance(t, Task) for t in tasks)
    chain = TaskStream() + TaskStream()
    assert isinstance(chain, MetaChainDataset)
    assert len(list(chain)) == 20
    assert len(MetaChainDataset([TaskStream(), TaskStream()]).datasets) == 2


# ----------------------------------------------------------------- meta_dataset/test_collection.py


def _dataset() -> Dataset:
    return TensorDataset(torch.rand(10), torch.randint(0, 3, (10,)))


def test_collection_meta_dataset() -> None:
    d3 = TaskDescription(TaskTarget.MULTICLASS_CLASSIFICATION, {0: "a", 1: "b", 2: "c"})
    tasks = [Task(_dataset(), _dataset(), d3) for _ in range(5)]
    assert CollectionMetaDataset(tasks).tasks == tasks
    datasets = [_dataset() for _ in range(5)]
    descriptions = [TaskDescription(TaskTarget.MULTICLASS_CLASSIFICATION, AB, "test") for _ in range(5)]
    collection = CollectionMetaDataset(datasets, datasets, descriptions)
    assert len(collection) == 5
    for task, ds, d in zip(collection.tasks, datasets, descriptions):
        assert task.support is ds
        assert task.query is ds
        # 0.0.6's test read task.task_target and task.classes, which a Task never had
        assert task.description.task_target is d.task_target
        assert task.description.classes == d.classes
    with pytest.raises(TypeError, match="is a TensorDataset, not a Task"):
        CollectionMetaDataset(datasets)
    with pytest.raises(ValueError, match="differ in length"):
        CollectionMetaDataset(tasks, datasets, datasets[:2])
    with pytest.raises(TypeError, match="takes \\(tasks\\) or"):
        CollectionMetaDataset()
    with pytest.raises(ValueError, match="needs at least one task"):
        CollectionMetaDataset([])


# ----------------------------------------------------------------- data/test_task_source.py


class Pairs(Dataset):
    data = torch.rand(10)
    labels = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1, 1, 0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.data[index], self.labels[index]

    def __len__(self) -> int:
        return len(self.data)


@pytest.mark.parametrize("target", [TaskTarget.MULTICLASS_CLASSIFICATION, TaskTarget.BINARY_CLASSIFICATION])
def test_wrap_task_source(target: TaskTarget) -> None:
    dataset = Pairs()
    source = WrapTaskSource(dataset, target, AB)
    assert source.labels.ravel().tolist() == dataset.labels.tolist()  # binary: canonical (N, 1)
    assert source.task_description.classes == AB  # 0.0.6's WrapTaskSource had only the description
    assert source.task_description.task_target is target
    for i in range(len(dataset)):
        x, y = source[i]
        assert x == dataset[i][0]
        assert int(y.reshape(())) == int(dataset[i][1])


@pytest.mark.parametrize("batch_size", [2, 3, 4, 5])
@pytest.mark.parametrize("shuffle", [True, False])
def test_batched_task_source_batch_sizes(batch_size: int, shuffle: bool) -> None:
    source = WrapTaskSource(Pairs(), TaskTarget.MULTICLASS_CLASSIFICATION, AB)
    batches = list(BatchedTaskSource(source, batch_size, shuffle))
    assert all(len(b) in (batch_size, 10 % batch_size) for b in batches)
    assert sum(len(b) for b in batches) == 10


def test_random_interleave_covers_all_batches() -> None:
    # 0.0.6's test imported RandomChainTaskSource, which 0.0.6 never had; its intent, on the real class
    source = WrapTaskSource(Pairs(), TaskTarget.MULTICLASS_CLASSIFICATION, AB)
    a, b = BatchedTaskSource(source, 2, True), BatchedTaskSource(source, 3, True)
    mixed = RandomInterleaveDataset([a, b])
    assert len(mixed) == len(a) + len(b)
    assert len(list(mixed)) == len(a) + len(b)


def test_concat_task_source_items_and_descriptions() -> None:
    first = WrapTaskSource(Pairs(), TaskTarget.MULTICLASS_CLASSIFICATION, AB)
    second = WrapTaskSource(Pairs(), TaskTarget.BINARY_CLASSIFICATION, AB)
    both = ConcatTaskSource([first, second])
    for i in range(len(both)):
        (x, y), description = both[i]
        source, j = (first, i) if i < len(first) else (second, i - len(first))
        assert x == source[j][0]
        assert torch.equal(y, source[j][1])
        assert description == source.task_description


# ----------------------------------------------------------------- cd/metrics/classification.py

MC = TaskDescription(TaskTarget.MULTICLASS_CLASSIFICATION, {0: "A", 1: "B", 2: "C"}, "mc", "d")
BIN = TaskDescription(TaskTarget.BINARY_CLASSIFICATION, {0: "Negative", 1: "Positive"}, "bin", "d")
ML = TaskDescription(TaskTarget.MULTILABEL_CLASSIFICATION, {0: "X", 1: "Y", 2: "Z"}, "ml", "d")
ORD_CLASSES = {1: "Low", 5: "Medium", 8: "High"}
ORD = TaskDescription(TaskTarget.ORDINAL_REGRESSION, ORD_CLASSES, "ord", "d")


def _ordinal_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    preds = torch.randn(10, 3, generator=gen).softmax(-1)
    indices = (torch.arange(10) % 3)[torch.randperm(10, generator=gen)]  # every class present
    keys = torch.tensor(sorted(ORD_CLASSES))[indices]
    return preds, indices, keys


@pytest.mark.parametrize(
    ("indexed", "base"),
    [
        (IndexedMulticlassAccuracy(ORD_CLASSES), MulticlassAccuracy(3, average="micro")),
        (IndexedMulticlassAUROC(ORD_CLASSES), MulticlassAUROC(3)),
    ],
)
def test_indexed_metrics_score_class_keys_as_indices(indexed, base) -> None:
    preds, indices, keys = _ordinal_batch()
    assert indexed(preds, keys) == base(preds, indices)
    assert indexed.compute() == base.compute()
    assert IndexedMulticlassAccuracy(MC.classes).num_classes == 3


@pytest.mark.parametrize(
    ("description", "accuracy_type", "auroc_type"),
    [
        (MC, MulticlassAccuracy, MulticlassAUROC),
        (BIN, BinaryAccuracy, BinaryAUROC),
        (ML, MultilabelAccuracy, MultilabelAUROC),
        (ORD, IndexedMulticlassAccuracy, IndexedMulticlassAUROC),
    ],
)
def test_metric_factories_pick_the_kind(description, accuracy_type, auroc_type) -> None:
    for factory, expected in ((Accuracy, accuracy_type), (AUROC, auroc_type)):
        metric = factory(description)
        assert isinstance(metric, expected)
        if description.task_target is TaskTarget.BINARY_CLASSIFICATION:
            assert not hasattr(metric, "num_classes")
        elif description.task_target is TaskTarget.MULTILABEL_CLASSIFICATION:
            assert metric.num_labels == 3
        else:
            assert metric.num_classes == 3
    with pytest.raises(ValueError, match="not defined for REGRESSION"):
        Accuracy(TaskDescription("REGRESSION"))
    with pytest.raises(TypeError, match="needs a TaskDescription, got dict"):
        AUROC({0: "a"})


def test_pickles_load_with_only_0_0_6_classes() -> None:
    """What 0.0.6 can load: the pickle names only classes it has (no FrozenClasses)."""
    task = Task([(3, torch.tensor(0)), (5, torch.tensor(1))], [(7, torch.tensor(1))], MC)
    allowed = {("torchcross.data.task", n) for n in ("Task", "TaskDescription", "TaskTarget")}

    class Old:  # 0.0.6's dataclasses: no __setstate__, the state goes to __dict__
        def __init__(self, *args: object) -> None:
            self.args = args

    class Unpickler06(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> object:
            if module.startswith("torchcross"):
                assert (module, name) in allowed, f"0.0.6 has no {module}.{name}"
                if name == "TaskTarget":
                    return lambda value: ("TaskTarget", value)
                return type(name, (Old,), {})
            return super().find_class(module, name)

    old = Unpickler06(io.BytesIO(pickle.dumps(task))).load()
    assert type(old).__name__ == "Task"
    assert type(old.description.classes) is dict
    assert old.description.classes == {0: "A", 1: "B", 2: "C"}
    assert old.description.task_identifier == "mc"
    assert old.support[1][0] == 5
