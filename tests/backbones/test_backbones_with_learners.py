"""Every family's backbone works with every learner: fine-tuning, linear probe, ProtoNet, MAML, mm-PT.

One tiny episode per learner (forward, backward, finite outputs), and the check that MAML's
functional calls really use the parameters they are given (``torch.func.functional_call`` over the
whole module, buffers and BatchNorm included).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import TINY_VIT
from torch.func import functional_call

from torchcross.backbones import Backbone, load_backbone
from torchcross.learners import MAML, FineTuner, InnerLoop, MultiTaskPretrainer, ProtoNet
from torchcross.tasks.task import Task, TaskDescription

DESC = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b", 2: "c"}, "mc")

BUILDERS: dict[str, Callable[[dict[str, Path], str], Backbone]] = {
    "timm-vit": lambda hf, clip: load_backbone("timm:vit_tiny_patch16_224", "random", **TINY_VIT),
    "timm-efficientnet-bn": lambda hf, clip: load_backbone("timm:test_efficientnet", "random"),
    "hf-vit": lambda hf, clip: load_backbone(f"hf:{hf['vit']}"),
    "hf-dinov2": lambda hf, clip: load_backbone(f"hf:{hf['dinov2']}"),
    "hf-resnet-bn": lambda hf, clip: load_backbone(f"hf:{hf['resnet']}"),
    "open_clip": lambda hf, clip: load_backbone(f"open_clip:{clip}", "random"),
}


@pytest.fixture(params=sorted(BUILDERS))
def backbone(request: pytest.FixtureRequest, hf_folders: dict[str, Path], clip_name: str) -> Backbone:
    return BUILDERS[request.param](hf_folders, clip_name)


def _task(seed: int = 0) -> Task:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (9, 3, 40, 40), generator=g, dtype=torch.uint8)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2])
    return Task((images[:6], labels[:6]), (images[6:], labels[6:]), DESC)


def _preprocessed(backbone: Backbone, task: Task) -> Task:
    (xs, ys), (xq, yq) = task.support, task.query
    p = backbone.preprocessing
    return Task((p.apply(xs), ys), (p.apply(xq), yq), task.description)


def _finite_grads(backbone: Backbone) -> int:
    grads = [p.grad for p in backbone.parameters() if p.grad is not None]
    assert all(torch.isfinite(g).all() for g in grads)
    return len(grads)


def test_fine_tuning_and_linear_probe(backbone: Backbone) -> None:
    task = _preprocessed(backbone, _task())
    for finetune_backbone in (True, False):
        learner = FineTuner(
            backbone, backbone.num_features, inner=InnerLoop(0.01, 1), finetune_backbone=finetune_backbone
        )
        logits = learner.predict(task)
        assert logits.shape == (3, 3)
        assert torch.isfinite(logits).all()


def test_protonet_meta_step(backbone: Backbone) -> None:
    task = _preprocessed(backbone, _task())
    learner = ProtoNet(backbone)
    learner.meta_loss([task]).backward()
    assert _finite_grads(backbone) > 0
    assert torch.isfinite(learner.predict(task)).all()


def test_maml_meta_step(backbone: Backbone) -> None:
    task = _preprocessed(backbone, _task())
    learner = MAML(backbone, backbone.num_features, inner=InnerLoop(0.01, 1))
    loss = learner.meta_loss([task])
    assert torch.isfinite(loss)
    loss.backward()
    assert _finite_grads(backbone) > 0


def test_mm_pt_step(backbone: Backbone) -> None:
    task = _preprocessed(backbone, _task())
    learner = MultiTaskPretrainer(backbone, backbone.num_features)
    learner.add_task(DESC)
    loss = learner.loss(task.support, DESC)
    loss.backward()
    assert torch.isfinite(loss)
    assert _finite_grads(backbone) > 0


def test_functional_call_uses_the_given_parameters(backbone: Backbone) -> None:
    """What MAML's inner loop relies on: ``functional_call`` with the module's own parameters and buffers
    gives its forward, and with changed parameters a different output (no weights cached inside)."""
    backbone.eval()
    x = backbone.preprocessing.apply(_task().query[0])
    params = dict(backbone.named_parameters())
    buffers = dict(backbone.named_buffers())
    torch.testing.assert_close(functional_call(backbone, (params, buffers), (x,)), backbone(x))
    shifted = {k: v + 0.05 for k, v in params.items()}
    assert not torch.allclose(functional_call(backbone, (shifted, buffers), (x,)), backbone(x))


def test_deepcopy_and_state_dict_round_trip(backbone: Backbone) -> None:
    """Learners and checkpoints copy backbones and save their state dicts."""
    import copy

    x = backbone.preprocessing.apply(_task().query[0])
    twin = copy.deepcopy(backbone)
    torch.testing.assert_close(twin(x), backbone(x))
    with torch.no_grad():
        for p in twin.parameters():
            p.add_(0.01)
    twin.load_state_dict(backbone.state_dict())
    torch.testing.assert_close(twin(x), backbone(x))
    assert twin.preprocessing == backbone.preprocessing
    assert twin.identity == backbone.identity
