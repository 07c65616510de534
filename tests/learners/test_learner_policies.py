"""Thin learners: InnerLoop and HeadPolicy values, one optimiser abstraction, the older keywords kept."""

from __future__ import annotations

import copy
import functools
import inspect

import pytest
import torch
from learners_helpers import MULTICLASS, fixed_width_tasks, make_task, mixed_tasks, tiny_backbone
from torch import nn

from torchcross.learners import MAML, FineTuner, HeadPolicy, InnerLoop, adam, sgd
from torchcross.learners._checkpoint import supports_checkpoint
from torchcross.learners.functional import inner_loop, maml_task_loss
from torchcross.learners.inner_optimizers import SGD, Adam, as_transformation
from torchcross.learners.multitask import MultiTaskPretrainer
from torchcross.learners.protonet import ProtoNet
from torchcross.learners.transforms import (
    ScaleByLearningRateState,
    chain,
    holds_tensors_in_state,
    scale_by_learning_rate,
    skips_zero_gradients,
    trace,
)

D = torch.float64


def _count(cls: type) -> int:
    return len(inspect.signature(cls.__init__).parameters) - 1  # without self


def test_maml_and_finetuner_take_at_most_eight_parameters() -> None:
    assert _count(MAML) <= 8
    assert _count(FineTuner) <= 8
    assert _count(ProtoNet) <= 8
    assert _count(MultiTaskPretrainer) <= 8


def _grads(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(
    ("new", "old"),
    [
        ({"inner": InnerLoop(0.3, 2)}, {"inner_lr": 0.3, "num_inner_steps": 2}),
        (
            {
                "inner": InnerLoop(0.3, 2, first_order=True, optimizer="adam"),
                "head": HeadPolicy("per_task", "kaiming", 4),
            },
            {
                "inner_lr": 0.3,
                "num_inner_steps": 2,
                "first_order": True,
                "inner_optimizer": "adam",
                "head_init": "kaiming",
                "seed": 4,
            },
        ),
        (
            {"inner": InnerLoop(0.3, 2, meta_sgd=True), "checkpoint": True},
            {"inner_lr": 0.3, "num_inner_steps": 2, "meta_sgd": True, "checkpoint": True},
        ),
        ({"inner": InnerLoop(0.3, 2, anil=True)}, {"inner_lr": 0.3, "num_inner_steps": 2, "anil": True}),
    ],
)
def test_maml_new_settings_equal_the_older_keywords_bit_for_bit(new: dict, old: dict) -> None:
    backbone, shape = tiny_backbone("mlp", True)
    tasks = mixed_tasks(shape, seed=3)
    a, b = MAML(copy.deepcopy(backbone), 4, **new), MAML(copy.deepcopy(backbone), 4, **old)
    assert a.inner == b.inner
    assert a.head_policy == b.head_policy
    a.meta_backward(tasks)
    b.meta_backward(tasks)
    ga, gb = _grads(a), _grads(b)
    assert ga.keys() == gb.keys()
    for k in ga:
        assert torch.equal(ga[k], gb[k]), k
    assert torch.equal(a.predict(tasks[0]), b.predict(tasks[0]))


def test_maml_learned_and_absent_heads_from_a_head_policy() -> None:
    backbone, shape = tiny_backbone("mlp", False)
    learned = MAML(
        copy.deepcopy(backbone),
        4,
        inner=InnerLoop(0.3, 1),
        head=HeadPolicy.learned(3, init="kaiming", seed=2),
    )
    older = MAML(
        copy.deepcopy(backbone),
        4,
        inner_lr=0.3,
        num_inner_steps=1,
        head="learned",
        num_outputs=3,
        head_init="kaiming",
        seed=2,
    )
    assert torch.equal(learned.head.weight, older.head.weight)
    given = nn.Linear(4, 3).to(D)
    mine = MAML(copy.deepcopy(backbone), 4, inner=InnerLoop(0.3, 1), head=HeadPolicy.learned(module=given))
    assert mine.head is given
    assert mine.head_policy.module is given
    task = fixed_width_tasks(shape)[0]
    assert mine.predict(task).shape == (6, 3)
    none = MAML(
        nn.Sequential(backbone, nn.Linear(4, 3).to(D)), 3, inner=InnerLoop(0.3, 1), head=HeadPolicy.none()
    )
    assert none.head_mode == "none"
    assert none.adapted_logits(task)[1].shape == (6, 3)


def test_finetuner_new_settings_equal_the_older_keywords_bit_for_bit() -> None:
    backbone, shape = tiny_backbone("conv", True)
    task = make_task(MULTICLASS, shape, 8, 6, 0)
    pairs = [
        (
            {"inner": InnerLoop(0.05, 3, optimizer="adam")},
            {"num_steps": 3, "lr": 0.05},
        ),
        (
            {
                "inner": InnerLoop(
                    0.05, 3, optimizer=functools.partial(SGD, momentum=0.9, weight_decay=0.01)
                ),
                "finetune_backbone": True,
                "batch_norm": "support",
            },
            {
                "num_steps": 3,
                "lr": 0.05,
                "optimizer": "sgd",
                "momentum": 0.9,
                "weight_decay": 0.01,
                "finetune_backbone": True,
                "batch_norm": "support",
            },
        ),
        (
            {
                "inner": InnerLoop(0.05, 3, optimizer=functools.partial(adam, weight_decay=0.01)),
                "head": HeadPolicy(init="kaiming", seed=5),
            },
            {"num_steps": 3, "lr": 0.05, "weight_decay": 0.01, "head_init": "kaiming", "seed": 5},
        ),
    ]
    for new, old in pairs:
        a, b = (
            FineTuner(backbone, backbone.num_features, **new),
            FineTuner(backbone, backbone.num_features, **old),
        )
        assert a.head_policy == b.head_policy
        assert torch.equal(a.predict(task), b.predict(task))


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (
            lambda b: MAML(b, 4, inner_lr=0.1),
            TypeError,
            r"missing the inner loop: pass inner=InnerLoop\(lr=\.\.\., steps=\.\.\.\) .*num_inner_steps=",
        ),
        (
            lambda b: MAML(b, 4, inner=InnerLoop(0.1, 1), inner_lr=0.2),
            TypeError,
            r"inner=InnerLoop\(\.\.\.\) replaces inner_lr=: pass them as InnerLoop fields \(lr\)",
        ),
        (
            lambda b: MAML(b, 4, inner=InnerLoop(0.1, 1), inner_steps=2),
            TypeError,
            r"MAML\(\) got unexpected keyword argument\(s\) 'inner_steps'",
        ),
        (
            lambda b: MAML(b, 4, inner=InnerLoop(0.1, 1), head=HeadPolicy(), seed=3),
            TypeError,
            r"head=HeadPolicy\(\.\.\.\) replaces seed=",
        ),
        (
            lambda b: MAML(b, 4, inner=(0.1, 1)),
            TypeError,
            r"inner must be an InnerLoop\(lr=\.\.\., steps=\.\.\.\), got tuple",
        ),
        (
            lambda b: MAML(b, 4, inner=InnerLoop(0.1, 1, anil=True), head=HeadPolicy.none()),
            ValueError,
            r"anil=True adapts only the head",
        ),
        (
            lambda b: FineTuner(b, 4, inner=InnerLoop(0.1, 1, meta_sgd=True)),
            ValueError,
            r"FineTuner .* InnerLoop meta_sgd must be left out",
        ),
        (
            lambda b: FineTuner(b, 4, inner=InnerLoop(0.1, 1), lr=0.2),
            TypeError,
            r"inner=InnerLoop\(\.\.\.\) replaces lr=",
        ),
        (
            lambda b: FineTuner(b, 4, inner_lr=0.2),
            TypeError,
            r"FineTuner\(\) got unexpected keyword argument\(s\) 'inner_lr'",
        ),
        (
            lambda b: FineTuner(b, 4, head=HeadPolicy.learned(3)),
            ValueError,
            r"FineTuner meta-learns nothing, so it has no head='learned'",
        ),
    ],
)
def test_bad_settings_raise_naming_the_fix(make, error: type, match: str) -> None:
    backbone, _ = tiny_backbone("mlp", False)
    with pytest.raises(error, match=match):
        make(backbone)


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: InnerLoop(-1.0, 1), ValueError, r"InnerLoop lr must be a non-negative float, got -1.0"),
        (lambda: InnerLoop(0.1, -1), ValueError, r"InnerLoop steps must be >= 0"),
        (lambda: InnerLoop(0.1, 1, anil=1), TypeError, r"InnerLoop anil must be True or False, got 1"),
        (
            lambda: InnerLoop(0.1, 1, optimizer="rmsprop"),
            ValueError,
            r"InnerLoop optimizer must be 'sgd', 'adam'",
        ),
        (
            lambda: HeadPolicy("shared"),
            ValueError,
            r"HeadPolicy kind must be 'per_task', 'learned' or 'none'",
        ),
        (lambda: HeadPolicy(init="ones"), ValueError, r"head_init must be 'zero' or 'kaiming', got 'ones'"),
        (lambda: HeadPolicy.learned(), ValueError, r"HeadPolicy.learned takes a width .* or a module"),
        (lambda: HeadPolicy(width=3), ValueError, r"a 'per_task' HeadPolicy takes no width or module"),
        (lambda: HeadPolicy.none(seed=3), ValueError, r"HeadPolicy.none\(\) has no head to initialise"),
    ],
)
def test_settings_values_check_themselves(make, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        make()


def test_sgd_and_adam_are_the_older_objects_chains_bit_for_bit() -> None:
    def loss(p):
        return (p["w"] ** 3).sum() + (p["w"] * p["b"]).sum()

    w = torch.randn(3, dtype=D, requires_grad=True)
    b = torch.randn(3, dtype=D, requires_grad=True)
    for new, old in [
        (sgd(0.1, 0.9, 0.01), SGD(0.1, 0.9, 0.01)),
        (adam(0.05, (0.8, 0.9), 1e-6, 0.1), Adam(0.05, (0.8, 0.9), 1e-6, 0.1)),
    ]:
        a = inner_loop(loss, {"w": w, "b": b}, new, 3).params
        c = inner_loop(loss, {"w": w, "b": b}, old, 3).params
        assert all(torch.equal(a[k], c[k]) for k in a)
        assert as_transformation(old) is not old
        assert skips_zero_gradients(as_transformation(old)) is False


def test_learning_rate_tensors_live_in_the_state_so_checkpointed_steps_see_them() -> None:
    rate = torch.full((3,), 0.2, dtype=D, requires_grad=True)
    t = sgd({"w": rate}, momentum=0.5)
    state = t.init({})
    assert isinstance(state[2], ScaleByLearningRateState)
    assert state[2].lr["w"] is rate
    assert holds_tensors_in_state(t)
    assert supports_checkpoint(t, state)
    assert skips_zero_gradients(sgd(0.1))
    assert not skips_zero_gradients(sgd(0.1, weight_decay=0.1))
    assert not skips_zero_gradients(chain(trace(0.5), scale_by_learning_rate(0.1)))
    with pytest.raises(TypeError, match=r"reads them from its state; pass the state its init\(\) made"):
        scale_by_learning_rate({"w": rate}).update({"w": rate}, (), {})

    def loss(p):
        return (p["w"] ** 2).sum()

    w = torch.randn(3, dtype=D, requires_grad=True)
    results = []
    for ckpt in (False, True):
        out = inner_loop(loss, {"w": w}, t, 3, checkpoint=ckpt).params
        results.append(torch.autograd.grad(loss(out), (w, rate)))
    for x, y in zip(*results):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-14)


def test_maml_task_loss_is_what_maml_trains_on() -> None:
    backbone, shape = tiny_backbone("mlp", False)
    maml = MAML(backbone, 4, inner=InnerLoop(0.3, 2))
    task = mixed_tasks(shape, seed=5)[0]
    expected = maml.meta_loss([task])
    features, params, options = maml._adaptation(
        maml._meta(), maml.new_head(task.description, maml._like()), training=True
    )
    ours = maml_task_loss(features, params, task.support, task.query, task.description, **options)
    assert torch.equal(ours, expected)
