"""The medimeta 0.0.6 client package works on top of this torchcross.

CI installs it with ``pip install --no-deps medimeta==0.0.6`` before testing; nothing is
installed here. Folders are written by our MedIMeta writer, in the exact format the
client reads.
"""

from __future__ import annotations

import copyreg
import io
import os
import pickle
from pathlib import Path

import medimeta
import numpy as np
import pytest
import torch

from torchcross.data.metadataset import FewShotMetaDataset
from torchcross.data.task import Task, TaskDescription, TaskTarget
from torchcross.datasets.medimeta.reader import MedIMeta as OurMedIMeta
from torchcross.datasets.medimeta.writer import write_synthetic_medimeta
from torchcross.utils.collate_fn import identity, stack


@pytest.fixture(scope="module")
def data_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("medimeta_client")
    write_synthetic_medimeta(root, "toy", num_images=60, image_size=8, channels=3, seed=0)
    write_synthetic_medimeta(root, "bus", num_images=30, image_size=8, seed=1)
    return root


def test_client_imports_and_lists(data_path: Path) -> None:
    assert sorted(medimeta.get_available_datasets(str(data_path))) == ["bus", "toy"]
    tasks = medimeta.get_available_tasks(str(data_path))
    assert tasks["toy"] == ["class", "abnormal", "Finding labels", "severity grade"]


@pytest.mark.parametrize("task", ["class", "abnormal", "Finding labels", "severity grade"])
def test_client_medimeta_items_and_labels(data_path: Path, task: str) -> None:
    theirs = medimeta.MedIMeta(str(data_path), "toy", task, split="train")
    ours = OurMedIMeta(data_path, "toy", task, split="train", mean=0.5, std=0.5)
    assert theirs.task_description.task_target is ours.task_description.task_target
    assert dict(theirs.task_description.classes) == dict(ours.task_description.classes)
    assert len(theirs) == len(ours) == 36
    assert np.array_equal(np.asarray(theirs.split_indices), ours.split_indices)
    # 0.0.6 keeps raw labels (binary reshaped to (N, 1)); our canonical form agrees
    assert np.array_equal(np.asarray(theirs.labels).reshape(ours.labels.shape), ours.labels)
    x_theirs, y_theirs = theirs[5]
    x_ours, y_ours = ours[5]
    assert x_theirs.shape == x_ours.shape == (3, 8, 8)
    torch.testing.assert_close(x_theirs, x_ours, rtol=0, atol=1e-6)  # Resize(same)+ToTensor+Normalize(.5,.5)
    assert torch.equal(y_theirs.reshape(y_ours.shape).long(), y_ours)
    assert sum(theirs.class_counts().values()) == sum(ours.class_counts().values())


def test_client_multi_task_batch_source(data_path: Path) -> None:
    ids = [("toy", "class"), ("toy", "Finding labels"), ("bus", "malignancy")]
    stream = medimeta.MultiMedIMetaBatchTaskSource(
        str(data_path), ids, batch_size=5, splits=["train", "val", None], collate_fn=stack
    )
    counts: dict[str, int] = {}
    for (x, y), desc in stream:
        assert isinstance(desc, TaskDescription)
        assert x.shape[1:] == (3, 8, 8) or x.shape[1:] == (1, 8, 8)
        assert x.shape[0] == y.shape[0] <= 5
        counts[desc.task_identifier] = counts.get(desc.task_identifier, 0) + x.shape[0]
    assert counts == {
        "Synthetic toy: class": 36,
        "Synthetic toy: Finding labels": 12,
        "Breast Ultrasound: malignancy": 30,
    }


def _presample(data_path: Path, out: Path, split: str) -> list[Task]:
    """What medimeta's task_presampling does, with our FewShotMetaDataset."""
    source = medimeta.MedIMeta(str(data_path), "toy", "class", split=split)
    episodes = FewShotMetaDataset(
        source, None, 2, 3, filter_classes_min_samples=0, length=4, seed=0, output_indices=True
    )
    tasks = list(episodes)
    folder = out / "toy"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"class_2_3_4_{split}.pkl", "wb") as f:
        pickle.dump(tasks, f)
    return tasks


def test_pickled_task_dataset_reads_our_presampled_episodes(data_path: Path, tmp_path: Path) -> None:
    tasks = _presample(data_path, tmp_path, "train")
    ds = medimeta.PickledMedIMetaTaskDataset(
        str(tmp_path),
        str(data_path),
        "toy",
        "class",
        n_support=2,
        n_query=3,
        length=4,
        split="train",
        collate_fn=stack,
    )
    assert len(ds) == 4
    source = OurMedIMeta(data_path, "toy", "class", split="train", mean=0.5, std=0.5)
    for k in range(4):
        task = ds[k]
        assert task.description == tasks[k].description
        idx = [i for i, _ in tasks[k].support]
        sx, sy = task.support
        assert sx.shape == (6, 3, 8, 8)
        assert sy.tolist() == [0, 0, 1, 1, 2, 2]
        torch.testing.assert_close(sx, source.get_batch(idx)[0], rtol=0, atol=1e-6)
        assert task.query[0].shape == (9, 3, 8, 8)
    raw = medimeta.PickledMedIMetaTaskDataset(
        str(tmp_path), str(data_path), "toy", "class", 2, 3, 4, split="train"
    )[0]
    assert isinstance(raw.support, list)
    assert raw.support[0][0].shape == (3, 8, 8)
    with pytest.raises(ValueError, match="not found"):
        medimeta.PickledMedIMetaTaskDataset(str(tmp_path), str(data_path), "toy", "class", 5, 3, 4)


class _Pickler06(pickle.Pickler):
    """Pickle Task/TaskDescription the way torchcross 0.0.6 did: plain dataclass state dicts."""

    def reducer_override(self, obj: object) -> object:
        if isinstance(obj, TaskDescription):
            state = {
                "task_target": obj.task_target,
                "classes": dict(obj.classes),
                "task_identifier": obj.task_identifier,
            }
            return copyreg._reconstructor, (TaskDescription, object, None), state
        if isinstance(obj, Task):
            state = {"support": obj.support, "query": obj.query, "description": obj.description}
            return copyreg._reconstructor, (Task, object, None), state
        return NotImplemented


def test_pickles_in_the_06_layout_load(data_path: Path, tmp_path: Path) -> None:
    desc = TaskDescription(
        TaskTarget.MULTICLASS_CLASSIFICATION, {0: "normal", 1: "benign"}, "Synthetic toy: class"
    )
    old_task = Task([(0, torch.tensor(0)), (1, torch.tensor(1))], [(2, torch.tensor(1))], desc)
    buf = io.BytesIO()
    _Pickler06(buf).dump([old_task])
    assert b"torchcross.data.task" in buf.getvalue()  # classes are referred to by module path
    os.makedirs(tmp_path / "toy")
    (tmp_path / "toy" / "class_1_1_1_test.pkl").write_bytes(buf.getvalue())
    ds = medimeta.PickledMedIMetaTaskDataset(
        str(tmp_path), str(data_path), "toy", "class", 1, 1, 1, split="test"
    )
    task = ds[0]
    assert task.description == TaskDescription(desc.task_target, desc.classes, desc.task_identifier, None)
    assert task.description.domain_identifier is None  # a field the pickle lacks: 0.0.6's default
    assert len(task.support) == 2
    assert task.support[1][0].shape == (3, 8, 8)
    assert identity([1]) == [1]
