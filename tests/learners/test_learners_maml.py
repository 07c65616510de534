"""MAML: meta-gradients against a hand-unrolled loop and `higher`, in float64, for all task kinds."""

from __future__ import annotations

import copy

import pytest
import torch
from learners_helpers import (
    KINDS,
    MULTICLASS,
    assert_grads_close,
    backbone_grads,
    make_task,
    mixed_tasks,
    num_out,
    reference_loss,
    reference_maml_grads,
    tiny_backbone,
)

from torchcross.learners.maml import MAML, CrossDomainMAML
from torchcross.tasks.task import Task

LR, STEPS = 0.3, 3


def _maml(backbone, **kw):
    kw.setdefault("inner_lr", LR)
    kw.setdefault("num_inner_steps", STEPS)
    return MAML(backbone, backbone.num_features, **kw)


@pytest.mark.parametrize("net", ["mlp", "conv"])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_second_order_matches_hand_unrolled_loop_on_mixed_kinds(net, batch_norm):
    backbone, shape = tiny_backbone(net, batch_norm)
    tasks = mixed_tasks(shape)
    expected = reference_maml_grads(backbone, backbone.num_features, tasks, LR, STEPS)
    maml = _maml(backbone)
    maml.meta_loss(tasks).backward()
    assert_grads_close(backbone_grads(maml), expected)
    maml.zero_grad()
    maml.meta_backward(tasks)
    assert_grads_close(backbone_grads(maml), expected)


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_kind_alone_matches_reference(kind):
    backbone, shape = tiny_backbone("mlp", True)
    tasks = [make_task(KINDS[kind], shape, 8, 6, seed) for seed in range(2)]
    expected = reference_maml_grads(backbone, backbone.num_features, tasks, LR, STEPS)
    maml = _maml(backbone)
    maml.meta_backward(tasks)
    assert_grads_close(backbone_grads(maml), expected)


@pytest.mark.parametrize(
    ("net", "batch_norm"), [("mlp", False), ("mlp", True), ("conv", True), ("conv", False)]
)
def test_second_order_matches_higher(net, batch_norm):
    import higher

    backbone, shape = tiny_backbone(net, batch_norm)
    tasks = mixed_tasks(shape, seed=3)
    model = torch.nn.ModuleDict({"backbone": copy.deepcopy(backbone)}).train()
    for task in tasks:
        head = torch.nn.Linear(backbone.num_features, num_out(task.description)).double()
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.zeros_(head.bias)
        net_ = torch.nn.Sequential(model["backbone"], head)
        opt = torch.optim.SGD(net_.parameters(), lr=LR)
        with higher.innerloop_ctx(net_, opt, copy_initial_weights=False) as (fnet, diffopt):
            for _ in range(STEPS):
                diffopt.step(reference_loss(fnet(task.support[0]), task.support[1], task.description))
            (reference_loss(fnet(task.query[0]), task.query[1], task.description) / len(tasks)).backward()
    expected = backbone_grads(model)
    maml = _maml(backbone)
    maml.meta_backward(tasks)
    assert_grads_close(backbone_grads(maml), expected)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_first_order_matches_detached_inner_gradients(batch_norm):
    backbone, shape = tiny_backbone("conv", batch_norm)
    tasks = mixed_tasks(shape, seed=5)
    expected = reference_maml_grads(backbone, backbone.num_features, tasks, LR, STEPS, first_order=True)
    maml = _maml(backbone, first_order=True)
    maml.meta_backward(tasks)
    assert_grads_close(backbone_grads(maml), expected)


def test_anil_matches_reference():
    backbone, shape = tiny_backbone("conv", True)
    tasks = mixed_tasks(shape, seed=7)
    expected = reference_maml_grads(backbone, backbone.num_features, tasks, LR, STEPS, anil=True)
    maml = _maml(backbone, anil=True)
    maml.meta_loss(tasks).backward()
    assert_grads_close(backbone_grads(maml), expected)


def test_checkpointed_inner_loop_gives_the_same_gradients():
    backbone, shape = tiny_backbone("conv", True)
    tasks = mixed_tasks(shape, seed=9)
    expected = reference_maml_grads(backbone, backbone.num_features, tasks, LR, STEPS)
    maml = _maml(backbone, checkpoint=True)
    maml.meta_backward(tasks)
    assert_grads_close(backbone_grads(maml), expected)


@pytest.mark.parametrize("options", [{"meta_sgd": True}, {"inner_optimizer": "adam", "first_order": True}])
def test_checkpointing_with_options_gives_the_same_gradients(options):
    backbone, shape = tiny_backbone("mlp", True)
    tasks = mixed_tasks(shape, seed=10)
    plain = _maml(copy.deepcopy(backbone), **options)
    ckpt = _maml(copy.deepcopy(backbone), checkpoint=True, **options)
    plain.meta_backward(tasks)
    ckpt.meta_backward(tasks)
    expected = {k: p.grad for k, p in plain.named_parameters()}
    assert_grads_close({k: p.grad for k, p in ckpt.named_parameters()}, expected, rtol=1e-10)


def test_kaiming_head_and_adam_inner_loop_match_plain_loss_and_backward():
    backbone, shape = tiny_backbone("mlp", True)
    tasks = mixed_tasks(shape, seed=11)
    a = _maml(copy.deepcopy(backbone), head_init="kaiming", inner_optimizer="adam", seed=4)
    b = _maml(copy.deepcopy(backbone), head_init="kaiming", inner_optimizer="adam", seed=4)
    a.meta_loss(tasks).backward()
    b.meta_backward(tasks)
    assert_grads_close(backbone_grads(a), backbone_grads(b), rtol=1e-10)
    assert all(torch.isfinite(g).all() for g in backbone_grads(b).values())


def test_meta_sgd_learns_inner_rates_with_correct_gradients():
    backbone, shape = tiny_backbone("mlp", False)
    tasks = mixed_tasks(shape, seed=13)
    maml = _maml(backbone, meta_sgd=True)
    lr_names = list(dict(maml.inner_lrs.named_parameters()))
    assert len(lr_names) == len(list(backbone.parameters())) + 2

    # With all rates equal to LR the backbone gradient is plain MAML's.
    expected = reference_maml_grads(backbone, backbone.num_features, tasks, LR, STEPS)
    maml.meta_backward(tasks)
    assert_grads_close(backbone_grads(maml), expected)
    # The gradient of one rate matches a central finite difference of the meta-loss.
    name = lr_names[0]
    rate = maml.inner_lrs[name]
    analytic = rate.grad.flatten()[0].item()
    eps = 1e-6
    with torch.no_grad():
        rate.flatten()[0] += eps
    up = maml.meta_loss(tasks).item()
    with torch.no_grad():
        rate.flatten()[0] -= 2 * eps
    down = maml.meta_loss(tasks).item()
    assert analytic == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-9)


def test_vmap_path_equals_loop():
    backbone, shape = tiny_backbone("conv", True)
    tasks = [make_task(MULTICLASS, shape, 6, 6, seed) for seed in range(3)]
    loop = _maml(copy.deepcopy(backbone), batching="loop")
    vmapped = _maml(copy.deepcopy(backbone), batching="vmap")
    assert loop.meta_backward(tasks) == pytest.approx(vmapped.meta_backward(tasks), rel=1e-12)
    assert_grads_close(backbone_grads(vmapped), backbone_grads(loop), rtol=1e-10)
    first_order = _maml(copy.deepcopy(backbone), batching="vmap", first_order=True)
    first_order.meta_backward(tasks)
    expected = reference_maml_grads(backbone, backbone.num_features, tasks, LR, STEPS, first_order=True)
    assert_grads_close(backbone_grads(first_order), expected)


def test_collated_batch_is_accepted():
    backbone, shape = tiny_backbone("mlp", False)
    tasks = [make_task(MULTICLASS, shape, 6, 6, seed) for seed in range(2)]
    stacked = Task(
        (torch.stack([t.support[0] for t in tasks]), torch.stack([t.support[1] for t in tasks])),
        (torch.stack([t.query[0] for t in tasks]), torch.stack([t.query[1] for t in tasks])),
        MULTICLASS,
    )
    maml = _maml(backbone)
    assert maml.meta_loss(stacked).item() == pytest.approx(maml.meta_loss(tasks).item(), rel=1e-12)


@pytest.mark.parametrize("net", ["mlp", "conv"])
def test_predict_leaves_every_weight_and_buffer_bit_identical(net):
    backbone, shape = tiny_backbone(net, True)
    maml = _maml(backbone, eval_num_inner_steps=4, head_init="kaiming")
    before = {k: v.clone() for k, v in maml.state_dict().items()}
    maml.eval()
    for task in mixed_tasks(shape) * 3:
        logits = maml.predict(task)
        assert logits.shape == (6, num_out(task.description))
        assert not logits.requires_grad
    maml.train()
    maml.meta_loss(mixed_tasks(shape))  # a meta-loss without optimiser step changes nothing either
    for k, v in maml.state_dict().items():
        if k == "head_step":  # counts training calls: kaiming heads are drawn from (seed, step, slot)
            assert v == before[k] + 1
            continue
        assert torch.equal(before[k], v), k
        assert v.dtype == before[k].dtype


def test_predict_equals_manual_adaptation_and_works_under_inference_mode():
    backbone, shape = tiny_backbone("mlp", True)
    task = make_task(KINDS["ordinal"], shape, 8, 6, 1)
    maml = _maml(backbone, eval_num_inner_steps=2)
    with torch.inference_mode():
        inference_task = Task(
            tuple(t.clone() for t in task.support), tuple(t.clone() for t in task.query), task.description
        )
        logits = maml.predict(inference_task)
    params = maml.adapt(task)
    assert set(params) >= {"head.weight", "head.bias"}
    # adapted head after 2 plain SGD steps, checked against a hand loop
    fast = {k: v.detach().clone() for k, v in backbone.named_parameters()}
    w = torch.zeros(4, backbone.num_features, dtype=torch.float64)
    b = torch.zeros(4, dtype=torch.float64)
    buffers = {k: v.clone() for k, v in backbone.named_buffers()}
    backbone.train()
    for _ in range(2):
        leaves = [t.requires_grad_() for t in [*fast.values(), w, b]]
        feats = torch.func.functional_call(backbone, (dict(zip(fast, leaves)), buffers), (task.support[0],))
        loss = reference_loss(feats @ leaves[-2].T + leaves[-1], task.support[1], task.description)
        grads = torch.autograd.grad(loss, leaves)
        new = [(t - LR * g).detach() for t, g in zip(leaves, grads)]
        fast, w, b = dict(zip(fast, new[:-2])), new[-2], new[-1]
    feats = torch.func.functional_call(backbone, (fast, buffers), (task.query[0],))
    torch.testing.assert_close(logits, feats @ w.T + b, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(params["head.weight"], w)


def test_eval_steps_differ_from_training_steps():
    backbone, shape = tiny_backbone("mlp", False)
    task = make_task(MULTICLASS, shape, 6, 6, 0)
    zero = _maml(backbone, eval_num_inner_steps=0)
    assert torch.count_nonzero(zero.predict(task)) == 0  # zero head, no steps
    assert torch.count_nonzero(_maml(backbone).predict(task)) > 0


def test_cross_domain_maml_is_maml():
    backbone, _ = tiny_backbone("mlp", False)
    assert isinstance(CrossDomainMAML(backbone, backbone.num_features, inner_lr=0.1, num_inner_steps=1), MAML)


def test_frozen_parameters_are_neither_adapted_nor_given_gradients():
    backbone, shape = tiny_backbone("mlp", False)
    first = backbone.layers[0]
    first.weight.requires_grad_(False)
    maml = _maml(backbone)
    maml.meta_backward(mixed_tasks(shape))
    assert first.weight.grad is None
    assert first.bias.grad is not None
    assert "backbone.layers.0.weight" in maml.adapt(mixed_tasks(shape)[0])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"inner_lr": -1.0}, ValueError, "inner_lr must be a non-negative float, got -1.0"),
        ({"num_inner_steps": -1}, ValueError, "num_inner_steps must be >= 0"),
        ({"eval_num_inner_steps": 1.5}, ValueError, "eval_num_inner_steps must be an int, got float"),
        ({"head_init": "ones"}, ValueError, "head_init must be 'zero' or 'kaiming', got 'ones'"),
        ({"batch_norm": "running"}, ValueError, "batch_norm must be one of .* got 'running'"),
        ({"batching": "threads"}, ValueError, "batching must be one of .* got 'threads'"),
        ({"inner_optimizer": "rmsprop"}, ValueError, "inner_optimizer must be 'sgd', 'adam' or callable"),
        ({"inner_optimizer": 3}, TypeError, "inner_optimizer must be 'sgd', 'adam' or a callable, got int"),
    ],
)
def test_bad_arguments_raise(kwargs, error, match):
    backbone, _ = tiny_backbone("mlp", False)
    with pytest.raises(error, match=match):
        _maml(backbone, **kwargs)


def test_bad_inputs_raise():
    backbone, shape = tiny_backbone("mlp", False)
    maml = _maml(backbone)
    with pytest.raises(TypeError, match=r"backbone must be an nn.Module, got str"):
        MAML("not a module", 3, inner_lr=0.1, num_inner_steps=1)
    with pytest.raises(ValueError, match="num_backbone_features must be >= 1"):
        MAML(backbone, 0, inner_lr=0.1, num_inner_steps=1)
    with pytest.raises(ValueError, match="no tasks"):
        maml.meta_loss([])
    with pytest.raises(TypeError, match="tasks must be a list of Task or a collated batch"):
        maml.meta_loss("tasks")
    with pytest.raises(TypeError, match="expected a torchcross Task, got list"):
        maml.predict([make_task(MULTICLASS, shape, 4, 4, 0)])
    bad = make_task(MULTICLASS, shape, 4, 4, 0)
    with pytest.raises(ValueError, match="inputs but"):
        maml.predict(Task((bad.support[0], bad.support[1][:2]), bad.query, MULTICLASS))
    with pytest.raises(ValueError, match="one description"):
        _maml(backbone, batching="vmap").meta_backward(mixed_tasks(shape))


@pytest.mark.parametrize("options", [{"meta_sgd": True}, {"anil": True}, {"inner_optimizer": "adam"}])
def test_vmap_path_equals_loop_with_options(options):
    backbone, shape = tiny_backbone("mlp", True)
    tasks = [make_task(KINDS["ordinal"], shape, 8, 6, seed) for seed in range(3)]
    loop = _maml(copy.deepcopy(backbone), batching="loop", **options)
    vmapped = _maml(copy.deepcopy(backbone), batching="vmap", **options)
    loop.meta_backward(tasks)
    vmapped.meta_backward(tasks)
    expected = {k: p.grad for k, p in loop.named_parameters()}
    assert_grads_close({k: p.grad for k, p in vmapped.named_parameters()}, expected, rtol=1e-10)
