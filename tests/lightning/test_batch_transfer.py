"""Tasks, task lists and ``(batch, description)`` pairs pass through Lightning's default batch transfer."""

from __future__ import annotations

import torch
from lightning.fabric.utilities.apply_func import _TransferableDataType
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import move_data_to_device
from lightning_utilities.core.apply_func import apply_to_collection

from torchcross.tasks.task import Task, TaskDescription

D = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b"}, "t")


def _task() -> Task:
    return Task((torch.zeros(2, 3), torch.tensor([0, 1])), (torch.ones(1, 3), torch.tensor([1])), D)


def _same(a: Task, b: Task) -> None:
    for x, y in zip([*a.support, *a.query], [*b.support, *b.query]):
        assert torch.equal(x, y)
    assert a.description is b.description


def test_default_transfer_batch_to_device_moves_tasks_lists_and_pairs() -> None:
    module = LightningModule()
    task = _task()
    moved = module.transfer_batch_to_device(task, torch.device("cpu"), 0)
    assert isinstance(moved, Task)
    assert moved is not task
    _same(moved, task)
    tasks = module.transfer_batch_to_device([task, _task()], torch.device("cpu"), 0)
    assert isinstance(tasks, list)
    assert len(tasks) == 2
    _same(tasks[0], task)
    batch, description = module.transfer_batch_to_device(
        ((torch.zeros(4, 3), torch.tensor([0, 1, 0, 1])), D), torch.device("cpu"), 0
    )
    assert description is D
    assert batch[0].shape == (4, 3)
    assert move_data_to_device({"tasks": [task]}, "cpu")["tasks"][0].description is D


def test_apply_to_collection_treats_tasks_and_descriptions_as_transferable() -> None:
    assert isinstance(_task(), _TransferableDataType)
    assert isinstance(D, _TransferableDataType)
    out = apply_to_collection([(_task(), D)], _TransferableDataType, lambda x: x.to(torch.float64))
    task, description = out[0]
    assert task.support[0].dtype == torch.float64
    assert task.support[1].dtype == torch.int64
    assert description is D


def test_task_to_moves_nested_tensors_and_keeps_other_values() -> None:
    task = Task(
        {"x": torch.zeros(2, dtype=torch.float32), "ids": [3, 4]}, [torch.tensor([1, 0])], D
    )  # any nesting of dicts and lists
    moved = task.to("cpu", torch.float64)
    assert moved.support["x"].dtype == torch.float64
    assert moved.support["ids"] == [3, 4]
    assert moved.query[0].dtype == torch.int64
    like = task.to(torch.zeros((), dtype=torch.float64))  # Tensor.to(other): dtype and device of other
    assert like.support["x"].dtype == torch.float64
    assert like.query[0].dtype == torch.int64
    assert task.to(dtype=torch.float16).support["x"].dtype == torch.float16
    assert D.to("cpu") is D
