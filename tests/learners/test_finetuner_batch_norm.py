"""FineTuner's "support" BatchNorm policy against a torch training loop (train mode, then eval mode)."""

from __future__ import annotations

import copy

import pytest
import torch
from learners_helpers import mixed_tasks, num_out, reference_loss, tiny_backbone

from torchcross.learners.finetuner import FINETUNE_BATCH_NORM, FineTuner


def _train_then_eval(backbone, task, *, steps, lr, finetune_backbone):
    """The authors' loop: a deep copy in train mode on the support set, eval mode on the query set.

    A linear probe sets the running statistics to the support set's (one train-mode pass with
    momentum 1), then computes support and query features alike in eval mode with them."""
    model = copy.deepcopy(backbone)
    head = torch.nn.Linear(backbone.num_features, num_out(task.description)).double()
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    params = list(head.parameters()) + (list(model.parameters()) if finetune_backbone else [])
    opt = torch.optim.Adam(params, lr=lr)
    model.train()
    if finetune_backbone:
        for _ in range(steps):
            opt.zero_grad()
            reference_loss(head(model(task.support[0])), task.support[1], task.description).backward()
            opt.step()
    else:  # a linear probe: support statistics once, then eval-mode features for support and query
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._NormBase):
                m.momentum = 1.0
        with torch.no_grad():
            model(task.support[0])
            model.eval()
            feats = model(task.support[0])
        for _ in range(steps):
            opt.zero_grad()
            reference_loss(head(feats), task.support[1], task.description).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        return head(model(task.query[0])), model


@pytest.mark.parametrize("finetune_backbone", [False, True])
@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_support_policy_equals_train_mode_fitting_and_eval_mode_query(finetune_backbone, kind):
    backbone, shape = tiny_backbone(kind, True)
    with torch.no_grad():  # non-trivial running statistics to start from
        for m in backbone.modules():
            if isinstance(m, torch.nn.modules.batchnorm._NormBase):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    backbone.eval()  # as during evaluation: the policy sets the modes itself
    before = copy.deepcopy(backbone.state_dict())
    tuner = FineTuner(
        backbone,
        backbone.num_features,
        num_steps=4,
        lr=0.05,
        finetune_backbone=finetune_backbone,
        batch_norm="support",
    )
    for task in mixed_tasks(shape):
        expected, reference_model = _train_then_eval(
            backbone, task, steps=4, lr=0.05, finetune_backbone=finetune_backbone
        )
        # the reference's running statistics moved: the query really used updated statistics
        assert not torch.equal(
            reference_model.state_dict()[_first_running_mean(backbone)], before[_first_running_mean(backbone)]
        )
        torch.testing.assert_close(tuner.predict(task), expected, rtol=1e-8, atol=1e-10)
        torch.testing.assert_close(tuner.predict_many([task, task])[1], expected, rtol=1e-8, atol=1e-10)
    for k, v in backbone.state_dict().items():  # the meta-parameters and buffers are untouched
        assert torch.equal(v, before[k]), k
    assert not any(m.training for m in backbone.modules())


def _first_running_mean(module: torch.nn.Module) -> str:
    return next(k for k in module.state_dict() if k.endswith("running_mean"))


def test_the_policies_differ_and_unknown_ones_are_refused():
    backbone, shape = tiny_backbone("conv", True)
    task = mixed_tasks(shape)[0]
    logits = {
        bn: FineTuner(backbone, backbone.num_features, num_steps=3, lr=0.1, batch_norm=bn).predict(task)
        for bn in FINETUNE_BATCH_NORM
    }
    assert not torch.allclose(logits["support"], logits["frozen"])
    assert not torch.allclose(logits["support"], logits["batch"])
    with pytest.raises(ValueError, match=r"batch_norm must be one of \('frozen', 'batch', 'support'\)"):
        FineTuner(backbone, backbone.num_features, batch_norm="train")
