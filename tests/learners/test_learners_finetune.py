"""FineTuner against a hand-written torch.optim loop on a deep copy; batched linear probe."""

from __future__ import annotations

import copy

import pytest
import torch
from learners_helpers import KINDS, MULTICLASS, make_task, mixed_tasks, num_out, reference_loss, tiny_backbone

from torchcross.learners.finetuner import FineTuner, _unique_rows
from torchcross.tasks.task import Task


def _reference(backbone, task, *, steps, lr, optimizer, finetune_backbone, batch_norm, momentum=0.0):
    model = copy.deepcopy(backbone)
    head = torch.nn.Linear(backbone.num_features, num_out(task.description)).double()
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    params = list(head.parameters()) + (list(model.parameters()) if finetune_backbone else [])
    if optimizer == "adam":
        opt = torch.optim.Adam(params, lr=lr)
    else:
        opt = torch.optim.SGD(params, lr=lr, momentum=momentum)
    model.train(batch_norm == "batch")
    for _ in range(steps):
        opt.zero_grad()
        reference_loss(head(model(task.support[0])), task.support[1], task.description).backward()
        opt.step()
    with torch.no_grad():
        return head(model(task.query[0]))


@pytest.mark.parametrize("finetune_backbone", [False, True])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("batch_norm", ["frozen", "batch"])
def test_equals_torch_optim_loop_on_a_deep_copy(finetune_backbone, optimizer, batch_norm):
    backbone, shape = tiny_backbone("mlp", True)
    with torch.no_grad():  # non-trivial running statistics
        backbone.layers[1].running_mean.uniform_(-1, 1)
        backbone.layers[1].running_var.uniform_(0.5, 2)
    before = copy.deepcopy(backbone.state_dict())
    tuner = FineTuner(
        backbone,
        backbone.num_features,
        num_steps=6,
        lr=0.05,
        optimizer=optimizer,
        finetune_backbone=finetune_backbone,
        batch_norm=batch_norm,
        momentum=0.9 * (optimizer == "sgd"),
    )
    for task in mixed_tasks(shape):
        expected = _reference(
            backbone,
            task,
            steps=6,
            lr=0.05,
            optimizer=optimizer,
            finetune_backbone=finetune_backbone,
            batch_norm=batch_norm,
            momentum=0.9 * (optimizer == "sgd"),
        )
        torch.testing.assert_close(tuner.predict(task), expected, rtol=1e-10, atol=1e-12)
    for k, v in backbone.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("batch_norm", [True, False])
def test_predict_many_equals_episode_by_episode(batch_norm):
    backbone, shape = tiny_backbone("conv", batch_norm)
    tuner = FineTuner(backbone, backbone.num_features, num_steps=5, lr=0.1, head_init="kaiming", seed=3)
    pool = [make_task(d, shape, 8, 6, i % 3) for i, d in enumerate(list(KINDS.values()) * 3)]
    # episodes that share images, like fixed episodes drawn from one task source
    tasks = [Task((t.support[0][:6], t.support[1][:6]), t.query, t.description) for t in pool] + pool
    start = copy.deepcopy(tuner.state_dict())  # state_dict() shares the buffers' storage
    batched = tuner.predict_many(tasks)
    tuner.load_state_dict(start)  # the same heads again: they are keyed by (seed, head_step, -1)
    single = [tuner.predict(t) for t in tasks]
    assert int(tuner.head_step) == len(tasks)
    for a, b in zip(batched, single):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def test_predict_many_falls_back_when_features_depend_on_the_batch():
    backbone, shape = tiny_backbone("mlp", True)
    tasks = mixed_tasks(shape)
    for tuner in (
        FineTuner(backbone, backbone.num_features, num_steps=3, batch_norm="batch"),
        FineTuner(backbone, backbone.num_features, num_steps=3, finetune_backbone=True),
    ):
        for a, b in zip(tuner.predict_many(tasks), [tuner.predict(t) for t in tasks]):
            torch.testing.assert_close(a, b)
    assert FineTuner(backbone, backbone.num_features).predict_many([]) == []


def test_unique_rows():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0], [1.0, 2.0], [5.0, 6.0], [3.0, 4.0]])
    reps, inverse = _unique_rows(x)
    assert len(reps) == 3
    assert torch.equal(x[reps][inverse], x)
    nan = torch.tensor([[float("nan")], [float("nan")]])
    reps, inverse = _unique_rows(nan)  # NaN never equals itself: every row kept
    assert reps.tolist() == [0, 1]


def test_linear_probe_adapts_only_the_head():
    backbone, shape = tiny_backbone("mlp", False)
    params = FineTuner(backbone, backbone.num_features, num_steps=2).adapt(
        make_task(MULTICLASS, shape, 6, 3, 0)
    )
    assert set(params) == {"head.weight", "head.bias"}
    full = FineTuner(backbone, backbone.num_features, num_steps=2, finetune_backbone=True)
    assert any(k.startswith("backbone.") for k in full.adapt(make_task(MULTICLASS, shape, 6, 3, 0)))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_steps": -1}, "num_steps must be >= 0"),
        ({"optimizer": "lbfgs"}, "optimizer must be 'adam' or 'sgd', got 'lbfgs'"),
        ({"head_init": "one"}, "head_init must be 'zero' or 'kaiming', got 'one'"),
        ({"batch_norm": "x"}, "batch_norm must be one of .* got 'x'"),
        ({"feature_batch_size": 0}, "feature_batch_size must be >= 1, got 0"),
    ],
)
def test_bad_arguments(kwargs, match):
    backbone, _ = tiny_backbone("mlp", False)
    with pytest.raises(ValueError, match=match):
        FineTuner(backbone, backbone.num_features, **kwargs)


def test_bad_backbone():
    backbone, _ = tiny_backbone("mlp", False)
    with pytest.raises(ValueError, match="num_backbone_features must be >= 1"):
        FineTuner(backbone, 0)
    with pytest.raises(TypeError, match=r"backbone must be an nn.Module, got str"):
        FineTuner("backbone", 3)
