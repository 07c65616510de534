"""`MAML.adapted_logits()` under every head policy: the same logits as `predict()`, in float64.

``adapted_logits`` once re-implemented the logits of ``_adapted_logits`` and forgot the no-head case
(``head=None`` raised ``KeyError: 'head.weight'``); it now goes through the one implementation.
"""

from __future__ import annotations

import pytest
import torch
from learners_helpers import (
    BINARY,
    MULTICLASS,
    MULTILABEL,
    ORDINAL,
    logits_backbone,
    make_task,
    tiny_backbone,
)

from torchcross.learners.maml import MAML
from torchcross.tasks.task import Task

LR, STEPS = 0.3, 2
# every head policy MAML supports: a new head per task (zero or kaiming), a meta-learned one, none
HEADS = {
    "per_task_zero": {"head": "per_task", "head_init": "zero"},
    "per_task_kaiming": {"head": "per_task", "head_init": "kaiming"},
    "learned": {"head": "learned", "num_outputs": 3, "head_init": "kaiming"},
    "learned_module": {"head": "module"},
    "none": {"head": None},
}


def _maml(policy: str) -> MAML:
    kw = dict(HEADS[policy])
    if policy == "none":
        backbone, _ = logits_backbone("mlp", batch_norm=True)
    else:
        backbone, _ = tiny_backbone("mlp", batch_norm=True)
    if kw["head"] == "module":
        torch.manual_seed(2)
        kw["head"] = torch.nn.Linear(backbone.num_features, 3).double()
    # the same steps in training and evaluation: training=True then adapts like predict()
    return MAML(backbone, backbone.num_features, inner_lr=LR, num_inner_steps=STEPS, seed=3, **kw)


def _tasks(policy: str) -> list[Task]:
    kinds = [MULTICLASS, MULTILABEL]  # 3 outputs: a learned head or the backbone's logits fit them
    if policy.startswith("per_task"):
        kinds += [BINARY, ORDINAL]
    return [make_task(d, (5,), 8, 6, seed=i) for i, d in enumerate(kinds)]


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("policy", list(HEADS))
def test_adapted_logits_match_predict_under_every_head_policy(policy: str, training: bool) -> None:
    maml = _maml(policy)
    before = {k: v.clone() for k, v in maml.state_dict().items()}
    for task in _tasks(policy):
        support, query = maml.adapted_logits(task, training=training)
        expected_query = maml.predict(task)
        # the support logits: the adapted model's logits of the support inputs (a task whose query is its
        # support set adapts identically and predicts them)
        expected_support = maml.predict(Task(task.support, task.support, task.description))
        assert query.shape == expected_query.shape
        assert support.shape == expected_support.shape
        torch.testing.assert_close(query.detach(), expected_query, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(support, expected_support, rtol=1e-10, atol=1e-12)
        assert not support.requires_grad
        assert query.requires_grad is training
        if training:  # the query logits carry the graph back to the meta-parameters
            query.sum().backward()
            grads = [p.grad for p in maml.parameters()]
            assert any(g is not None and torch.count_nonzero(g) > 0 for g in grads)
            maml.zero_grad(set_to_none=True)
    after = maml.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # nothing adapted in place


def test_adapted_logits_without_a_head_are_the_backbones_adapted_outputs() -> None:
    backbone, _ = logits_backbone("mlp", batch_norm=False)
    maml = MAML(backbone, 3, inner_lr=LR, num_inner_steps=STEPS, head=None)
    task = make_task(MULTICLASS, (5,), 8, 6, seed=0)
    support, query = maml.adapted_logits(task, training=False)
    params = maml.adapt(task)
    assert params.keys() == {f"backbone.{k}" for k, _ in backbone.named_parameters()}
    adapted = {k.removeprefix("backbone."): v for k, v in params.items()}
    with torch.no_grad():
        ref_query = torch.func.functional_call(backbone, adapted, (task.query[0],))
        ref_support = torch.func.functional_call(backbone, adapted, (task.support[0],))
    torch.testing.assert_close(query, ref_query, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(support, ref_support, rtol=1e-10, atol=1e-12)
