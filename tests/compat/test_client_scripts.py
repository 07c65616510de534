"""Scripts in the style of torchcross 0.0.6's real clients (the MedIMeta experiments), end to end.

Written here, not copied: the same calls, on small MedIMeta-format folders, with a Lightning
``Trainer`` on the CPU for a few steps. torchopt is not installed: ``MetaSGD`` below stands in
for ``torchopt.MetaSGD``, which torchcross reads by name and keywords, never calls.
"""

from __future__ import annotations

import copyreg
import io
import os
import pickle
from functools import partial
from pathlib import Path

import lightning.pytorch as pl
import medimeta
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

import torchcross as tx
from torchcross.data import TaskTarget
from torchcross.data.metadataset import FewShotMetaDataset
from torchcross.data.task import Task, TaskDescription
from torchcross.datasets.medimeta.writer import write_synthetic_medimeta
from torchcross.models.lightning import CrossDomainMAML, SimpleCrossDomainClassifier
from torchcross.utils.collate_fn import identity

# Lightning's own notices on tiny CPU runs (few batches, no workers) and a deprecation inside it
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*LeafSpec.* is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore::lightning.fabric.utilities.warnings.PossibleUserWarning"),
    pytest.mark.filterwarnings("ignore:Your .IterableDataset. has .__len__. defined:UserWarning"),
    # torchmetrics' per-batch AUROC of a batch with one class (as in 0.0.6)
    pytest.mark.filterwarnings("ignore:No (positive|negative) samples in targets:UserWarning"),
]


class MetaSGD:  # the name and keywords of torchopt.MetaSGD
    def __init__(self, module: nn.Module, lr: float, momentum: float = 0.0) -> None:
        raise AssertionError("torchcross reads the factory, it never calls it")


@pytest.fixture(scope="module")
def data_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("clients")
    write_synthetic_medimeta(root, "toy", num_images=100, image_size=8, channels=3, seed=0)
    write_synthetic_medimeta(root, "bus", num_images=40, image_size=8, seed=1)
    return str(root)


def _backbone() -> tuple[nn.Module, int]:
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 8), nn.ReLU()), 8


def _trainer(**kwargs: object) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )


def _class_weights(source: medimeta.MedIMeta) -> torch.Tensor:
    """The MedIMeta experiments' class weighting."""
    pos = source.get_num_samples_per_class().astype(np.float32)
    neg = source.get_num_samples_per_class(neg=True).astype(np.float32)
    if source.task_description.task_target in (
        TaskTarget.MULTILABEL_CLASSIFICATION,
        TaskTarget.BINARY_CLASSIFICATION,
    ):
        return torch.from_numpy((neg + 1) / (pos + 1))
    return torch.from_numpy((pos.max() + 1) / (pos + 1))


def test_multi_domain_pretraining_script(data_path: str) -> None:
    task_ids = [("toy", "class"), ("toy", "abnormal"), ("bus", "malignancy")]
    train = medimeta.MultiMedIMetaBatchTaskSource(
        data_path, task_ids, 6, collate_fn=tx.utils.collate_fn.stack, original_splits="train"
    )
    val = medimeta.MultiMedIMetaBatchTaskSource(
        data_path, task_ids, 6, collate_fn=tx.utils.collate_fn.stack, original_splits="val"
    )
    weights = {}
    for dataset_id, task_name in task_ids:
        source = medimeta.MedIMeta(data_path, dataset_id, task_name, original_split="train")
        assert isinstance(source.task_description.classes, dict)
        weights[source.task_description.task_identifier] = _class_weights(source)
    backbone, n = _backbone()
    model = SimpleCrossDomainClassifier(
        backbone,
        n,
        partial(torch.optim.Adam, lr=1e-3),
        scale_loss_by_batch_count=True,
        pos_class_weights=weights,
    )
    before = model.backbone[1].weight.detach().clone()
    trainer = _trainer(max_epochs=2, limit_val_batches=4)
    trainer.fit(
        model,
        DataLoader(train, batch_size=None, collate_fn=identity),
        DataLoader(val, batch_size=None, collate_fn=identity),
    )
    assert not torch.equal(before, model.backbone[1].weight)
    assert len(model.heads) == 3  # one head per task, made during training
    logged = trainer.callback_metrics
    assert {"loss/train", "accuracy/train", "AUROC/train", "loss/val", "accuracy/val", "AUROC/val"} <= set(
        logged
    )
    assert all(torch.isfinite(logged[k]) for k in ("loss/train", "loss/val"))
    results = trainer.validate(model, DataLoader(val, batch_size=None, collate_fn=identity), verbose=False)
    assert {"loss/val", "AUROC/val"} <= set(results[0])


def _presample(data_path: str, out: Path, dataset_id: str, task: str, split: str, length: int) -> list:
    """What medimeta's task_presampling writes, with our episode dataset."""
    source = medimeta.MedIMeta(data_path, dataset_id, task, split=split)
    episodes = FewShotMetaDataset(
        source, None, 2, 2, filter_classes_min_samples=0, length=length, seed=0, output_indices=True
    )
    tasks = list(episodes)
    folder = out / dataset_id
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{task}_2_2_{length}_{split}.pkl", "wb") as f:
        pickle.dump(tasks, f)
    return tasks


def test_cross_domain_maml_script_trains_then_tests_on_presampled_episodes(
    data_path: str, tmp_path: Path
) -> None:
    train_ids = [("toy", "class"), ("toy", "Finding labels"), ("bus", "malignancy")]
    for dataset_id, task in train_ids:
        _presample(data_path, tmp_path, dataset_id, task, "train", 4)
    _presample(data_path, tmp_path, "toy", "class", "test", 3)
    stack = tx.utils.collate_fn.stack
    train = medimeta.MultiPickledMedIMetaTaskDataset(
        str(tmp_path), data_path, train_ids, n_support=2, n_query=2, length=4, split="train", collate_fn=stack
    )
    test = medimeta.PickledMedIMetaTaskDataset(
        str(tmp_path), data_path, "toy", "class", 2, 2, 3, split="test", collate_fn=stack
    )
    backbone, n = _backbone()
    model = CrossDomainMAML(
        backbone,
        n,
        partial(torch.optim.Adam, lr=1e-2),
        partial(MetaSGD, lr=0.1),
        partial(torch.optim.SGD, lr=0.1),
        2,
        4,
    )
    trainer = _trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer.fit(
        model,
        DataLoader(train, batch_size=2, shuffle=True, collate_fn=identity),
        DataLoader(train, batch_size=2, collate_fn=identity),
    )
    logged = set(trainer.callback_metrics)
    assert {
        "loss/metatrain/query",
        "loss/metaval/query",
        "AUROC/metaval/query",
        "accuracy/metaval/support",
    } <= logged
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    assert any(not torch.equal(before[k], trained[k]) for k in trained)
    # fine-tune on each test episode's support set and score its query set (default inference_mode)
    results = trainer.test(model, DataLoader(test, batch_size=1, collate_fn=identity), verbose=False)
    assert {
        "loss/metatest/query",
        "loss/metatest/support",
        "accuracy/metatest/query",
        "AUROC/metatest/query",
    } <= set(results[0])
    assert np.isfinite(results[0]["loss/metatest/query"])
    for k, v in model.state_dict().items():  # fine-tuning never touches the meta-learned weights
        assert torch.equal(v, trained[k]), k


class _Pickler06(pickle.Pickler):
    """Writes tasks as torchcross 0.0.6 did: plain dataclass state, numpy int64 indices and one
    label tensor per class in each episode (0.0.6's FewShotMetaDataset reused them), identifiers None."""

    def reducer_override(self, obj: object) -> object:
        if isinstance(obj, TaskDescription):
            state = {
                "task_target": obj.task_target,
                "classes": dict(obj.classes),
                "task_identifier": None,
                "domain_identifier": None,
            }
            return copyreg._reconstructor, (TaskDescription, object, None), state
        if isinstance(obj, Task):
            labels: dict[int, torch.Tensor] = {}
            parts = [
                [(np.int64(i), labels.setdefault(int(y), torch.tensor(int(y)))) for i, y in part]
                for part in (obj.support, obj.query)
            ]
            state = {"support": parts[0], "query": parts[1], "description": obj.description}
            return copyreg._reconstructor, (Task, object, None), state
        return NotImplemented


def test_presampled_task_files_are_the_size_0_0_6_wrote(data_path: str, tmp_path: Path) -> None:
    tasks = _presample(data_path, tmp_path, "toy", "class", "train", 20)
    ours = os.path.getsize(tmp_path / "toy" / "class_2_2_20_train.pkl")
    buffer = io.BytesIO()
    _Pickler06(buffer).dump(tasks)
    assert ours <= len(buffer.getvalue()) * 1.05


def test_the_lr_scheduler_steps_once_per_training_epoch(data_path: str) -> None:
    """0.0.6's ``lr_scheduler`` / ``outer_lr_scheduler``: made from the optimiser, stepped per epoch."""
    halve = partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5)
    train = medimeta.MultiMedIMetaBatchTaskSource(
        data_path, [("toy", "class")], 6, collate_fn=tx.utils.collate_fn.stack, original_splits="train"
    )
    backbone, n = _backbone()
    model = SimpleCrossDomainClassifier(backbone, n, partial(torch.optim.Adam, lr=1e-3), halve)
    trainer = _trainer(max_epochs=2, limit_train_batches=2)
    trainer.fit(model, DataLoader(train, batch_size=None, collate_fn=identity))
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(2.5e-4)

    episodes = FewShotMetaDataset(
        medimeta.MedIMeta(data_path, "toy", "class", original_split="train"), None, 2, 2, 0, length=4, seed=0
    )
    backbone, n = _backbone()
    maml = CrossDomainMAML(
        backbone,
        n,
        partial(torch.optim.Adam, lr=1e-2),
        partial(MetaSGD, lr=0.1),
        partial(torch.optim.SGD, lr=0.1),
        1,
        outer_lr_scheduler=halve,
    )
    trainer = _trainer(max_epochs=3, limit_train_batches=1)
    trainer.fit(maml, DataLoader(episodes, batch_size=2, collate_fn=identity))
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(1.25e-3)
