"""The contract every learner keeps, checked once for all of them (as torchvision's dataset tests do).

* ``predict`` (and ``predict_many``) leave every parameter and buffer bit-identical, in
  train and eval mode, with BatchNorm and with a spectral-norm layer (whose power
  iteration writes buffers in place as it runs), and create no ``.grad``;
* the same task gives the same logits twice;
* a learner with ``predict_many`` gives what ``predict`` gives task by task;
* the meta-gradient (where the learner has one) equals a float64 reference unrolled by
  hand with ``torch.autograd``.

MAML and FineTuner run with a fresh head per task on tasks of every kind, and with a
learned head (``head="learned"``, a given ``nn.Linear``) or none (``head=None``, the
backbone outputs the logits) on tasks that all have three outputs.

Everything runs in float64 on tiny backbones with two inner steps.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from learners_helpers import (
    fixed_width_tasks,
    logits_backbone,
    mixed_tasks,
    num_out,
    reference_loss,
    tiny_backbone,
)
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.utils.parametrizations import spectral_norm

from torchcross.evaluation.episodic import BatchPredictor, Predictor
from torchcross.learners.finetuner import FineTuner
from torchcross.learners.maml import MAML
from torchcross.learners.multitask import MultiTaskPretrainer
from torchcross.learners.protonet import ProtoNet
from torchcross.tasks.task import Task

LR, STEPS = 0.3, 2


def spectral_backbone() -> tuple[nn.Module, tuple[int, ...]]:
    torch.manual_seed(0)
    net = nn.Sequential(spectral_norm(nn.Linear(5, 4)), nn.ReLU(), nn.Linear(4, 4)).double()
    net.num_features = 4
    return net, (5,)


BACKBONES: dict[str, Callable[[], tuple[nn.Module, tuple[int, ...]]]] = {
    "mlp": lambda: tiny_backbone("mlp", False),
    "mlp-bn": lambda: tiny_backbone("mlp", True),
    "conv-bn": lambda: tiny_backbone("conv", True),
    "spectral": spectral_backbone,
    "mlp-bn-logits": lambda: logits_backbone("mlp", True),  # outputs 3 logits (head=None)
}
LEARNED = (("head", "learned"), ("num_outputs", 3))
GIVEN = (("head", "given"),)  # an nn.Linear(num_features, 3), made in Case.build
NO_HEAD = (("head", None),)


@dataclass(frozen=True)
class Case:
    """One learner configuration: how to build it, and its meta-gradient reference if it has one."""

    learner: str
    backbone: str
    options: tuple[tuple[str, object], ...] = ()

    @property
    def id(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in self.options)
        return f"{self.learner}[{self.backbone}{',' + opts if opts else ''}]"

    @property
    def fixed_width(self) -> bool:
        """A learned head or none: every task has 3 outputs."""
        return dict(self.options).get("head", "per_task") != "per_task"

    def build(self) -> tuple[nn.Module, list[Task]]:
        backbone, shape = BACKBONES[self.backbone]()
        kw = dict(self.options)
        width = backbone.num_features
        if kw.get("head") == "given":
            torch.manual_seed(2)
            kw["head"] = nn.Linear(width, 3).double()
        if self.learner == "MAML":
            learner = MAML(backbone, width, inner_lr=LR, num_inner_steps=STEPS, **kw)
        elif self.learner == "FineTuner":
            learner = FineTuner(backbone, width, num_steps=STEPS, lr=0.05, **kw)
        elif self.learner == "ProtoNet":
            learner = ProtoNet(backbone, **kw)
        else:
            raise AssertionError(self.learner)
        return learner, fixed_width_tasks(shape, seed=1) if self.fixed_width else mixed_tasks(shape, seed=1)


def _maml_cases() -> list[Case]:
    cases = []
    for backbone in ("mlp", "mlp-bn", "conv-bn", "spectral"):
        cases.append(Case("MAML", backbone))
    for options in (
        (("first_order", True),),
        (("anil", True),),
        (("meta_sgd", True),),
        (("meta_sgd", True), ("first_order", True)),
        (("checkpoint", True),),
        (("checkpoint", True), ("meta_sgd", True)),
    ):
        cases.append(Case("MAML", "mlp-bn", options))
    cases.append(Case("MAML", "mlp", (("meta_sgd", True),)))
    for backbone in ("mlp", "mlp-bn", "conv-bn", "spectral"):
        cases.append(Case("MAML", backbone, LEARNED))
    for options in (
        (("first_order", True),),
        (("anil", True),),
        (("meta_sgd", True),),
        (("checkpoint", True),),
        (("head_init", "kaiming"),),
    ):
        cases.append(Case("MAML", "mlp-bn", LEARNED + options))
    cases.append(Case("MAML", "conv-bn", (*GIVEN, ("anil", True))))
    cases.append(Case("MAML", "mlp-bn-logits", NO_HEAD))
    cases.append(Case("MAML", "mlp-bn-logits", (*NO_HEAD, ("first_order", True), ("meta_sgd", True))))
    return cases


MAML_CASES = _maml_cases()
PREDICTOR_CASES = [
    *MAML_CASES,
    Case("MAML", "mlp-bn", (("inner_optimizer", "adam"),)),
    Case("MAML", "mlp-bn", (("head_init", "kaiming"),)),
    *[Case("FineTuner", b) for b in ("mlp-bn", "conv-bn", "spectral")],
    Case("FineTuner", "mlp-bn", (("batch_norm", "batch"),)),
    *[Case("FineTuner", b, (("finetune_backbone", True),)) for b in ("mlp-bn", "spectral")],
    Case("FineTuner", "mlp-bn", (("finetune_backbone", True), ("batch_norm", "batch"))),
    *[Case("FineTuner", b, GIVEN) for b in ("mlp-bn", "spectral")],
    Case("FineTuner", "mlp-bn", (*GIVEN, ("finetune_backbone", True))),
    Case("FineTuner", "mlp-bn-logits", (*NO_HEAD, ("finetune_backbone", True))),
    *[Case("ProtoNet", b) for b in ("mlp", "mlp-bn", "conv-bn", "spectral")],
    Case("ProtoNet", "mlp-bn", (("distance", "cosine"),)),
]
# Spectral norm's power iteration runs once per forward pass, and MAML's zero-head
# shortcut saves one: its meta-gradient is left to the other backbones.
GRADIENT_CASES = [
    c for c in PREDICTOR_CASES if c.learner in ("MAML", "ProtoNet") and c.backbone != "spectral"
]
GRADIENT_CASES = [
    c
    for c in GRADIENT_CASES
    if "inner_optimizer" not in dict(c.options) and ("head_init" not in dict(c.options) or c.fixed_width)
]


def _state(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict(keep_vars=True).items()}


def _assert_unchanged(module: nn.Module, before: dict[str, Tensor]) -> None:
    after = module.state_dict(keep_vars=True)
    assert list(after) == list(before)
    for k, v in after.items():
        assert v.dtype == before[k].dtype, k
        assert torch.equal(v, before[k]), f"{k} changed"
    assert all(p.grad is None for p in module.parameters())


def _predictions(learner: nn.Module, tasks: list[Task]) -> list[Tensor]:
    out = [learner.predict(t) for t in tasks]
    if isinstance(learner, BatchPredictor):
        out += learner.predict_many(tasks)
    return out


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("case", PREDICTOR_CASES, ids=lambda c: c.id)
def test_predict_leaves_every_parameter_and_buffer_bit_identical(case: Case, mode: str) -> None:
    learner, tasks = case.build()
    assert isinstance(learner, Predictor)
    learner.train(mode == "train")
    modes = [m.training for m in learner.modules()]
    before = _state(learner)
    for logits, task in zip(_predictions(learner, tasks), tasks * 2):
        assert logits.shape == (task.query[0].shape[0], num_out(task.description))
        assert not logits.requires_grad
    _assert_unchanged(learner, before)
    assert [m.training for m in learner.modules()] == modes


@pytest.mark.parametrize("case", PREDICTOR_CASES, ids=lambda c: c.id)
def test_same_task_gives_the_same_logits_twice(case: Case) -> None:
    learner, tasks = case.build()
    first = [learner.predict(t) for t in tasks]
    if dict(case.options).get("head_init") == "kaiming":  # heads are drawn from a seeded stream
        learner, _ = case.build()
    second = [learner.predict(t) for t in tasks]
    for a, b in zip(first, second):
        assert torch.equal(a, b)


@pytest.mark.parametrize("case", [c for c in PREDICTOR_CASES if c.learner == "FineTuner"], ids=lambda c: c.id)
def test_predict_many_equals_predict_task_by_task(case: Case) -> None:
    learner, tasks = case.build()
    assert isinstance(learner, BatchPredictor)
    for a, b in zip(learner.predict_many(tasks), [learner.predict(t) for t in tasks]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_only_learners_with_predict_many_are_batch_predictors() -> None:
    assert not isinstance(Case("MAML", "mlp").build()[0], BatchPredictor)
    assert not isinstance(Case("ProtoNet", "mlp").build()[0], BatchPredictor)


# ---------------------------------------------------------------- meta-gradients


def _forward(backbone: nn.Module, params: dict[str, Tensor], x: Tensor) -> Tensor:
    """Batch-statistics BatchNorm on copies of the buffers, as the learners' ``"batch"`` policy."""
    buffers = {k: b.clone() for k, b in backbone.named_buffers()}
    with torch.no_grad():
        modes = {m: m.training for m in backbone.modules()}
    backbone.train()
    try:
        return functional_call(backbone, (params, buffers), (x,))
    finally:
        for m, t in modes.items():
            m.training = t


def _maml_reference(learner: MAML, tasks: list[Task]) -> dict[str, Tensor]:
    """Mean query loss after STEPS plain SGD steps from zero heads (or the learned head, or
    none), differentiated by hand."""
    backbone = learner.backbone
    named = dict(backbone.named_parameters())
    rates = None if learner.inner_lrs is None else dict(learner.inner_lrs.named_parameters())
    learned = learner.head  # the meta-learned head, or None
    no_head = learner.head_mode == "none"

    def rate(name: str) -> Tensor | float:
        return LR if rates is None else rates[name.replace(".", "__")]

    losses = []
    for task in tasks:
        (xs, ys), (xq, yq), desc = task.support, task.query, task.description
        fast = dict(named)
        if learned is not None:
            w, b = learned.weight, learned.bias
        else:
            w = torch.zeros(
                num_out(desc), learner.num_backbone_features, dtype=torch.float64, requires_grad=True
            )
            b = torch.zeros(num_out(desc), dtype=torch.float64, requires_grad=True)

        def logits(fast: dict[str, Tensor], x: Tensor, w: Tensor, b: Tensor) -> Tensor:
            out = _forward(backbone, fast, x)
            return out if no_head else out @ w.T + b

        for _ in range(STEPS):
            loss = reference_loss(logits(fast, xs, w, b), ys, desc)
            names = [] if learner.anil else list(fast)
            grads = torch.autograd.grad(
                loss,
                [fast[n] for n in names] + ([] if no_head else [w, b]),
                create_graph=not learner.first_order,
            )
            fast = {**fast, **{n: fast[n] - rate("backbone." + n) * g for n, g in zip(names, grads)}}
            if not no_head:
                w, b = w - rate("head.weight") * grads[-2], b - rate("head.bias") * grads[-1]
        losses.append(reference_loss(logits(fast, xq, w, b), yq, desc))
    wrt = {"backbone." + k: p for k, p in named.items()}
    if learned is not None:
        wrt.update({"head.weight": learned.weight, "head.bias": learned.bias})
    wrt.update({"inner_lrs." + k: p for k, p in (rates or {}).items()})
    grads = torch.autograd.grad(torch.stack(losses).mean(), list(wrt.values()))
    return dict(zip(wrt, grads))


def _prototype_logits(fs: Tensor, ys: Tensor, fq: Tensor, task: Task, distance: str) -> Tensor:
    def dist(a: Tensor, b: Tensor) -> Tensor:  # (N, F), (F,) -> (N,)
        if distance == "euclidean":
            return ((a - b) ** 2).sum(1)
        unit = a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)  # zero features: cosine 0
        return 1 - unit @ (b / b.norm().clamp_min(1e-12))

    desc = task.description
    if desc.task_target.name in ("MULTICLASS_CLASSIFICATION", "ORDINAL_REGRESSION"):
        return torch.stack([-dist(fq, fs[ys == k].mean(0)) for k in sorted(desc.classes)], 1)
    ys = ys.reshape(ys.shape[0], -1)
    columns = []
    for label in range(ys.shape[1]):
        pos, neg = fs[ys[:, label] == 1].mean(0), fs[ys[:, label] == 0].mean(0)
        columns.append(dist(fq, neg) - dist(fq, pos))
    return torch.stack(columns, 1)


def _protonet_reference(learner: ProtoNet, tasks: list[Task]) -> dict[str, Tensor]:
    backbone = learner.backbone
    named = dict(backbone.named_parameters())
    losses = []
    for task in tasks:
        (xs, ys), (xq, yq) = task.support, task.query
        logits = _prototype_logits(
            _forward(backbone, named, xs), ys, _forward(backbone, named, xq), task, learner.distance
        )
        losses.append(reference_loss(learner.scale * logits, yq, task.description))
    grads = torch.autograd.grad(torch.stack(losses).mean(), list(named.values()))
    return {"backbone." + k: g for k, g in zip(named, grads)}


def _assert_close(actual: dict[str, Tensor | None], expected: dict[str, Tensor]) -> None:
    assert set(actual) == set(expected)
    scale = max(float(g.abs().max()) for g in expected.values())
    assert scale > 0
    for k, g in expected.items():
        torch.testing.assert_close(actual[k], g, rtol=1e-9, atol=1e-9 * scale, msg=lambda m, k=k: f"{k}: {m}")


@pytest.mark.parametrize("path", ["meta_backward", "meta_loss"])
@pytest.mark.parametrize("case", GRADIENT_CASES, ids=lambda c: c.id)
def test_meta_gradient_matches_float64_reference_unrolled_by_hand(case: Case, path: str) -> None:
    learner, tasks = case.build()
    reference = copy.deepcopy(learner)
    expected = (_maml_reference if case.learner == "MAML" else _protonet_reference)(reference, tasks)
    before = _state(learner)
    if path == "meta_backward":
        value = learner.meta_backward(tasks)
        assert value == pytest.approx(float(copy.deepcopy(learner).meta_loss(tasks).detach()), rel=1e-12)
    else:
        learner.meta_loss(tasks).backward()
    _assert_close({k: p.grad for k, p in learner.named_parameters()}, expected)
    for k, p in learner.named_parameters():  # the gradient step is the optimiser's: nothing else moved
        assert torch.equal(p.detach(), before[k]), k


def test_multitask_pretrainer_forward_in_eval_mode_changes_nothing_and_repeats() -> None:
    # The pre-trainer has no predict and no meta-gradient; in train mode its BatchNorm
    # layers update their running statistics on purpose (see its module doc).
    backbone, shape = tiny_backbone("mlp", True)
    tasks = mixed_tasks(shape)
    model = MultiTaskPretrainer(backbone, backbone.num_features, [t.description for t in tasks]).eval()
    before = _state(model)
    first = [model(t.query[0], t.description) for t in tasks]
    second = [model(t.query[0], t.description) for t in tasks]
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    _assert_unchanged(model, before)
