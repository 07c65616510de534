"""Hostile input to the learners: labels outside 0/1, inputs the backbone cannot take, learning rates that
diverge, a linear probe whose support and query were normalised differently, and DataLoader batches."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from torchcross.data import FewShotMetaDataset, TensorTaskSource
from torchcross.data.collate import collate_tasks
from torchcross.evaluation.episodic import evaluate
from torchcross.learners.backbones import conv4, mlp
from torchcross.learners.divergence import DivergenceRule, DivergenceWarning
from torchcross.learners.finetuner import FineTuner
from torchcross.learners.maml import MAML
from torchcross.learners.protonet import ProtoNet
from torchcross.learners.stateless import BackboneInputError
from torchcross.nn import encode_labels, loss
from torchcross.tasks.task import Task, TaskDescription

BINARY = TaskDescription("BINARY_CLASSIFICATION", {0: "healthy", 1: "sick"}, "toy/bin")
MULTILABEL = TaskDescription("MULTILABEL_CLASSIFICATION", {0: "a", 1: "b"}, "toy/ml")


def _labels(desc: TaskDescription, n: int) -> torch.Tensor:
    if desc is BINARY:
        return (torch.arange(n) % 2).reshape(n, 1)
    y = torch.stack([torch.arange(n) % 2, (torch.arange(n) // 2) % 2], dim=1)
    return y


def _task(desc: TaskDescription, width: int = 16, n: int = 4, seed: int = 0) -> Task:
    g = torch.Generator().manual_seed(seed)
    return Task(
        (torch.randn(n, width, generator=g), _labels(desc, n)),
        (torch.randn(n, width, generator=g), _labels(desc, n)),
        desc,
    )


LEARNERS: dict[str, Callable[[], nn.Module]] = {
    "MAML": lambda: MAML(mlp(16, (8,)), 8, inner_lr=0.1, num_inner_steps=1),
    "FineTuner": lambda: FineTuner(mlp(16, (8,)), 8, num_steps=2),
    "ProtoNet": lambda: ProtoNet(mlp(16, (8,))),
}


# --- 1. labels outside {0, 1} ---------------------------------------------------------------------


def _with_bad_label(task: Task, where: str, value: int) -> Task:
    pair = getattr(task, where)
    y = pair[1].clone()
    y[1, 0] = value
    parts = {"support": task.support, "query": task.query, where: (pair[0], y)}
    return Task(parts["support"], parts["query"], task.description)


@pytest.mark.parametrize("value", [-1, 2])
@pytest.mark.parametrize("desc", [BINARY, MULTILABEL], ids=["binary", "multilabel"])
@pytest.mark.parametrize("name", list(LEARNERS))
def test_support_labels_outside_zero_one_are_refused_by_every_learner(name, desc, value) -> None:
    task = _with_bad_label(_task(desc), "support", value)
    learner = LEARNERS[name]()
    bad = rf"labels of task '{desc.task_identifier}' must be 0/1, got values \[{value}\]; map them to 0/1"
    with pytest.raises(ValueError, match=bad):
        learner.predict(task)
    if hasattr(learner, "meta_loss"):
        with pytest.raises(ValueError, match=bad):
            learner.meta_loss([task])


@pytest.mark.parametrize("desc", [BINARY, MULTILABEL], ids=["binary", "multilabel"])
@pytest.mark.parametrize("name", ["MAML", "ProtoNet"])
def test_query_labels_outside_zero_one_are_refused_in_training(name, desc) -> None:
    task = _with_bad_label(_task(desc), "query", -1)
    learner = LEARNERS[name]()
    with pytest.raises(ValueError, match=r"must be 0/1, got values \[-1\]"):
        learner.meta_loss([task])
    with pytest.raises(ValueError, match=r"must be 0/1, got values \[-1\]"):
        learner.meta_backward([task, task])


def test_the_kind_table_checks_zero_one_values_for_every_caller() -> None:
    with pytest.raises(
        ValueError, match=r"binary labels of task 'toy/bin' must be 0/1, got values \[-1, 2\]"
    ):
        encode_labels(torch.tensor([[0], [-1], [2]]), BINARY)
    with pytest.raises(ValueError, match=r"must be 0/1, got values \[0\.5\]"):
        loss(torch.zeros(2, 2), torch.tensor([[0.0, 1.0], [0.5, 1.0]]), MULTILABEL)
    with pytest.raises(ValueError, match=r"must be 0/1, got values \[nan\]"):
        encode_labels(torch.tensor([[math.nan]]), BINARY)
    assert encode_labels(torch.tensor([[0], [1]]), BINARY).tolist() == [[0.0], [1.0]]
    # inside torch.func transforms the values cannot be read: no check, no error
    per_row = torch.func.vmap(lambda y: encode_labels(y[None], BINARY))(torch.tensor([[0], [1]]))
    assert per_row.shape == (2, 1, 1)


# --- 3. inputs the backbone cannot take ------------------------------------------------------------


def _call(learner: nn.Module, how: str, task: Task) -> object:
    if how == "predict_many":
        return learner.predict_many([task, task])
    if how == "meta_backward":
        return learner.meta_backward([task, task])
    return getattr(learner, how)(task if how != "meta_loss" else [task])


@pytest.mark.parametrize(
    ("name", "how"),
    [
        ("MAML", "predict"),
        ("MAML", "adapt"),
        ("MAML", "meta_loss"),
        ("MAML", "meta_backward"),
        ("FineTuner", "predict"),
        ("FineTuner", "predict_many"),
        ("ProtoNet", "predict"),
        ("ProtoNet", "meta_backward"),
    ],
)
def test_inputs_of_another_width_name_the_task_the_shape_and_what_the_backbone_takes(name, how) -> None:
    learner = LEARNERS[name]()
    task = _task(BINARY, width=20)
    with pytest.raises(
        BackboneInputError,
        match=r"task 'toy/bin': the backbone cannot take inputs of shape \((4|8), 20\) .*"
        r"mat1 and mat2 shapes cannot be multiplied.*Linear\(in_features=16.*takes inputs of shape \(N, 16\)",
    ) as caught:
        _call(learner, how, task)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, RuntimeError)
    assert type(caught.value.__cause__) is RuntimeError  # torch's own error, chained
    assert caught.value.task_identifier == "toy/bin"


def test_images_with_other_channels_name_the_first_convolution() -> None:
    learner = ProtoNet(conv4(3, hidden=4, image_size=16))
    y = _labels(BINARY, 4)
    task = Task((torch.randn(4, 1, 16, 16), y), (torch.randn(4, 1, 16, 16), y), BINARY)
    with pytest.raises(BackboneInputError, match=r"to have 3 channels.*Conv2d\(3, 4.*\(N, 3, H, W\)"):
        learner.predict(task)


def test_errors_that_are_not_about_the_input_pass_unchanged() -> None:
    class Broken(nn.Module):
        def forward(self, x):
            raise RuntimeError("something else broke")

    with pytest.raises(RuntimeError, match=r"^something else broke$") as caught:
        ProtoNet(Broken()).predict(_task(BINARY))
    assert not isinstance(caught.value, BackboneInputError)


def test_the_input_check_runs_no_extra_forward_pass() -> None:
    backbone = mlp(16, (8,))
    calls = []
    backbone.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    ProtoNet(backbone).predict(_task(BINARY))
    assert calls == [4, 4]  # support and query, once each


# --- 2. divergence --------------------------------------------------------------------------------


def test_the_divergence_rule() -> None:
    rule = DivergenceRule()
    assert rule.limit(0.69) == 1000.0
    assert rule.limit(10.0) == 10_000.0
    assert rule.limit(1e5) == 1e6
    assert not rule.diverged(999.0, 0.69)
    assert rule.diverged(1001.0, 0.69)
    assert rule.diverged(1.5e29, 1.5e29)  # a run that diverged at its first step
    assert rule.diverged(math.nan, 0.5)
    assert rule.diverged(math.inf, 0.5)
    with pytest.raises(ValueError, match=r"factor must be >= 1, got 0\.5"):
        DivergenceRule(factor=0.5)
    with pytest.raises(ValueError, match=r"bound must be > 0, got nan"):
        DivergenceRule(bound=math.nan)


def _evaluate_quietly(learner: nn.Module, tasks: list[Task]) -> tuple[object, list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = evaluate(learner, tasks, progress=False)
    return result, caught


@pytest.mark.parametrize(
    "make",
    [
        lambda: MAML(mlp(16, (8,)), 8, inner_lr=1e25, num_inner_steps=1),  # the zero-head shortcut
        lambda: MAML(mlp(16, (8,)), 8, inner_lr=1e25, num_inner_steps=1, anil=True),
        lambda: MAML(mlp(16, (8,)), 8, inner_lr=1e25, num_inner_steps=1, head_init="kaiming"),
        lambda: FineTuner(mlp(16, (8,)), 8, num_steps=1, lr=1e25, optimizer="sgd"),
        lambda: FineTuner(mlp(16, (8,)), 8, num_steps=1, lr=1e25, optimizer="sgd", finetune_backbone=True),
    ],
    ids=["maml", "anil", "maml-kaiming", "probe", "finetune"],
)
def test_a_diverged_adaptation_is_left_out_not_scored(make) -> None:
    torch.manual_seed(0)
    tasks = [_task(BINARY, seed=s) for s in range(3)]
    result, caught = _evaluate_quietly(make(), tasks)
    assert result.left_out() == {"non-finite": 3}  # before: finite logits near 1e29, an AUROC
    assert math.isnan(result.summary()["auroc"].mean)
    assert caught
    assert all(w.category is DivergenceWarning for w in caught)
    pattern = r"diverged on task 'toy/bin': .*(support loss went from|support logits reach).*lower the"
    assert all(re.search(pattern, str(w.message)) for w in caught)


def test_predict_many_checks_every_episode_as_predict_does() -> None:
    tuner = FineTuner(mlp(16, (8,)), 8, num_steps=1, lr=1e25, optimizer="sgd")
    tasks = [_task(BINARY, seed=s) for s in range(2)]
    with pytest.warns(DivergenceWarning, match=r"fine-tuning diverged on task 'toy/bin'"):
        batched = tuner.predict_many(tasks)
    assert all(torch.isnan(b).all() for b in batched)


@pytest.mark.parametrize(
    "make",
    [
        lambda: MAML(mlp(16, (8,)), 8, inner_lr=0.5, num_inner_steps=5),
        lambda: FineTuner(mlp(16, (8,)), 8, num_steps=50, lr=1e-2),
        lambda: FineTuner(mlp(16, (8,)), 8, num_steps=50, lr=1e-2, finetune_backbone=True),
    ],
    ids=["maml", "probe", "finetune"],
)
def test_ordinary_learning_rates_never_trip_the_check(make) -> None:
    tasks = [_task(BINARY, seed=s) for s in range(3)]
    result = evaluate(make(), tasks, progress=False)  # a DivergenceWarning would fail the test
    assert result.left_out() == {}


# --- 4. a linear probe under the "support" BatchNorm policy ------------------------------------------


def _separable(desc: TaskDescription, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = _labels(desc, n)
    x = torch.randn(n, 1, 16, 16, generator=g)
    x[:, :, :8] += 1.5 * y[:, :1].float().reshape(n, 1, 1, 1)
    x[:, :, 8:] += 1.5 * y[:, -1:].float().reshape(n, 1, 1, 1)
    return x, y


@pytest.mark.parametrize("desc", [BINARY, MULTILABEL], ids=["binary", "multilabel"])
def test_a_support_policy_probe_on_a_random_conv4_is_not_degenerate(desc) -> None:
    torch.manual_seed(0)
    backbone = conv4(1, hidden=8, image_size=16)
    tuner = FineTuner(backbone, backbone.num_features, num_steps=50, lr=1e-2, batch_norm="support")
    for seed in range(3):
        task = Task(_separable(desc, 8, seed), _separable(desc, 8, 100 + seed), desc)
        predicted = tuner.predict(task) > 0
        # before: every query in one class (accuracy 0.5 on every binary episode)
        for column in range(predicted.shape[1]):
            assert 0 < int(predicted[:, column].sum()) < predicted.shape[0], (seed, column)


def test_a_support_policy_probe_normalises_support_and_query_alike() -> None:
    torch.manual_seed(0)
    backbone = conv4(1, hidden=4, image_size=16)
    backbone.eval()
    outputs: list[torch.Tensor] = []
    backbone.register_forward_hook(lambda module, args, out: outputs.append(out.detach().clone()))
    tuner = FineTuner(backbone, backbone.num_features, num_steps=5, lr=1e-2, batch_norm="support")
    xs, ys = _separable(BINARY, 8, 0)
    tuner.predict(Task((xs, ys), (xs, ys), BINARY))  # the query is the support set itself
    fitted_on, query = outputs[-2], outputs[-1]
    torch.testing.assert_close(query, fitted_on, rtol=0, atol=0)
    assert not any(m.training for m in backbone.modules())
    assert all(m.momentum == 0.1 for m in backbone.modules() if isinstance(m, nn.BatchNorm2d))


# --- 5. DataLoader batches of episodes -------------------------------------------------------------


def _episodes() -> FewShotMetaDataset:
    desc = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b", 2: "c"}, "toy/mc")
    source = TensorTaskSource(torch.randn(60, 16), torch.arange(60) % 3, desc)
    return FewShotMetaDataset(source, n_shot=2, n_query=2, filter_classes_min_samples=0, length=8, seed=0)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_plain_dataloader_yields_meta_batches_of_tasks(num_workers) -> None:
    episodes = _episodes()
    batches = list(DataLoader(episodes, batch_size=4, num_workers=num_workers))  # before: TypeError
    assert [len(b) for b in batches] == [4, 4]
    assert all(isinstance(batch, list) for batch in batches)
    # no worker: episodes in order; two: worker w takes episodes w, w + 2, ... and batches them
    order = [0, 1, 2, 3, 4, 5, 6, 7] if num_workers == 0 else [0, 2, 4, 6, 1, 3, 5, 7]
    loaded = [task for batch in batches for task in batch]
    for i, task in zip(order, loaded, strict=True):
        assert isinstance(task, Task)
        assert torch.equal(task.support[0], episodes[i].support[0])
        assert torch.equal(task.query[1], episodes[i].query[1])
    maml = MAML(mlp(16, (8,)), 8, inner_lr=0.1, num_inner_steps=1)
    assert math.isfinite(maml.meta_backward(batches[0]))


def test_importing_an_episode_dataset_is_enough_for_a_plain_dataloader() -> None:
    """In a fresh process, without importing torchcross.data.collate (as a user script would)."""
    code = (
        "import torch\n"
        "from torch.utils.data import DataLoader\n"
        "from torchcross.data.metadataset import FewShotMetaDataset\n"
        "from torchcross.data.sources import TensorTaskSource\n"
        "from torchcross.tasks.task import TaskDescription\n"
        "d = TaskDescription('BINARY_CLASSIFICATION', {0: 'n', 1: 'y'}, 't')\n"
        "source = TensorTaskSource(torch.randn(20, 2), torch.arange(20) % 2, d)\n"
        "episodes = FewShotMetaDataset(source, None, 2, 2, 0, length=4)\n"
        "batch = next(iter(DataLoader(episodes, batch_size=4)))\n"
        "print(type(batch).__name__, len(batch), type(batch[0]).__name__)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["list", "4", "Task"]


def test_collate_tasks_names_what_is_not_a_task() -> None:
    episodes = _episodes()
    assert collate_tasks([episodes[0], episodes[1]])[1] is not None
    with pytest.raises(TypeError, match=r"collate_tasks: item 1 is a tuple, not a Task"):
        collate_tasks([episodes[0], (1, 2)])
    with pytest.raises(ValueError, match=r"cannot collate an empty batch of tasks"):
        collate_tasks([])
    with pytest.raises(TypeError, match=r"collate_tasks expects a list of tasks, got Task"):
        collate_tasks(episodes[0])
