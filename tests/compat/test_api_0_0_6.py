"""Every public name of torchcross 0.0.6 imports from its 0.0.6 path, or is documented as removed;
the names real clients call take their 0.0.6 arguments."""

from __future__ import annotations

import importlib
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tests.compat.api_0_0_6 import API_0_0_6, REMOVED

DOCS = (Path(__file__).parents[2] / "docs" / "compatibility.md").read_text(encoding="utf-8")
ALL_NAMES = [(module, name) for module, names in API_0_0_6.items() for name in names]


def test_the_table_has_the_whole_0_0_6_api() -> None:
    assert len(ALL_NAMES) == 106
    assert len(API_0_0_6) == 36


@pytest.mark.parametrize(("module_name", "name"), ALL_NAMES, ids=[f"{m}.{n}" for m, n in ALL_NAMES])
def test_0_0_6_name_imports_or_is_documented_as_removed(module_name: str, name: str) -> None:
    qualified = f"{module_name}.{name}"
    if qualified in REMOVED:
        assert f"`{qualified}`" in DOCS, f"{qualified} is removed but docs/compatibility.md does not say so"
        assert f"`{REMOVED[qualified]}`" in DOCS
        return
    module = importlib.import_module(module_name)
    assert hasattr(module, name), f"from {module_name} import {name} fails"
    assert f"`{name}`" in DOCS, f"docs/compatibility.md does not list {name}"


@pytest.mark.parametrize("module_name", sorted(API_0_0_6))
def test_0_0_6_modules_import(module_name: str) -> None:
    if all(f"{module_name}.{n}" in REMOVED for n in API_0_0_6[module_name]) and API_0_0_6[module_name]:
        with pytest.raises(ModuleNotFoundError, match=module_name):
            importlib.import_module(module_name)
        return
    importlib.import_module(module_name)


# --------------------------------------------------------------------------- 0.0.6 calls


def _backbone() -> tuple[nn.Module, int]:
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 6)), 6


MC = {0: "a", 1: "b", 2: "c"}


def test_clients_calls_of_the_model_constructors() -> None:
    from torchcross.data.task import TaskDescription, TaskTarget
    from torchcross.models.lightning import (
        MAML,
        CrossDomainMAML,
        ProtoNet,
        SimpleClassifier,
        SimpleCrossDomainClassifier,
    )

    d = TaskDescription(TaskTarget.MULTICLASS_CLASSIFICATION, MC)
    adam = partial(torch.optim.Adam, lr=1e-3)
    sgd = partial(torch.optim.SGD, lr=0.1)
    backbone, n = _backbone()
    weights = torch.ones(3)
    classifier = SimpleClassifier(
        backbone, n, d, adam, expand_input_channels=False, pos_class_weights=weights
    )
    assert classifier(torch.zeros(2, 3, 4, 4)).shape == (2, 3)
    cross = SimpleCrossDomainClassifier(backbone, n, adam, scale_loss_by_batch_count=True)
    assert cross.scale_loss_by_batch_count
    older = SimpleCrossDomainClassifier((backbone, n), adam)  # the (backbone, width) form of older scripts
    assert older.num_backbone_features == n
    CrossDomainMAML(backbone, n, adam, sgd, sgd, 4, 32)
    MAML(backbone, n, d, adam, sgd, sgd, 2, 4, True, None)
    ProtoNet(backbone, n, adam)
    with pytest.raises(TypeError, match="needs an optimizer"):
        SimpleCrossDomainClassifier(backbone, n)


def test_clients_calls_of_cd_functions() -> None:
    from torchcross.cd.activations import get_prob_func
    from torchcross.cd.heads import new_classification_head
    from torchcross.cd.losses import get_criterion, get_loss_func
    from torchcross.cd.metrics import AUROC, Accuracy
    from torchcross.data.task import TaskDescription, TaskTarget

    d = TaskDescription(TaskTarget.MULTICLASS_CLASSIFICATION, dict(MC), "t")
    assert isinstance(d.classes, dict)  # clients assert this before building metrics
    logits = torch.randn(5, 3)
    y = torch.tensor([0, 1, 2, 0, 1])
    probs = get_prob_func(d.task_target)(logits)
    torch.testing.assert_close(probs.sum(1), torch.ones(5))
    criterion = get_criterion(d, pos_class_weights=torch.tensor([1.0, 2.0, 3.0]))
    torch.testing.assert_close(
        criterion(logits, y), nn.functional.cross_entropy(logits, y, weight=torch.tensor([1.0, 2.0, 3.0]))
    )
    torch.testing.assert_close(
        get_loss_func(d.task_target, MC)(logits, y), nn.functional.cross_entropy(logits, y)
    )
    assert float(Accuracy(d)(probs, y)) == float((probs.argmax(1) == y).float().mean())
    assert 0.0 <= float(AUROC(d)(probs, y)) <= 1.0
    head = new_classification_head(d.task_target, MC, 6)
    assert head.out_features == 3


def test_clients_class_weighting_arithmetic() -> None:
    from torchcross.data import TaskDescription, TaskTarget
    from torchcross.data.task_source import WrapTaskSource

    data = [(torch.zeros(2), torch.tensor([y])) for y in [1, 0, 0, 0, 1, 0]]
    source = WrapTaskSource(data, TaskTarget.BINARY_CLASSIFICATION, {0: "no", 1: "yes"})
    assert isinstance(source.task_description, TaskDescription)
    pos = source.get_num_samples_per_class().astype(np.float32)
    neg = source.get_num_samples_per_class(neg=True).astype(np.float32)
    weights = torch.from_numpy((neg + 1) / (pos + 1))
    torch.testing.assert_close(weights, torch.tensor([5.0 / 3.0]))


def test_utils_and_layers_of_0_0_6() -> None:
    from torchcross.utils import to_numpy
    from torchcross.utils.collate_fn import identity, stack
    from torchcross.utils.layers import Expand

    assert to_numpy(torch.tensor([1, 2])).tolist() == [1, 2]
    assert to_numpy(np.arange(2)).tolist() == [0, 1]
    assert to_numpy(3).tolist() == 3
    x, y = stack([(torch.zeros(2), torch.tensor(1)), (torch.ones(2), torch.tensor(0))])
    assert x.shape == (2, 2)
    assert y.tolist() == [1, 0]
    assert identity([1]) == [1]
    assert Expand(-1, 3, -1, -1)(torch.zeros(1, 1, 2, 2)).shape == (1, 3, 2, 2)
