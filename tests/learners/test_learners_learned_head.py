"""Classic MAML: a meta-learned head (or none), against `higher` and a hand-unrolled loop in float64."""

from __future__ import annotations

import copy

import pytest
import torch
from learners_helpers import (
    BINARY,
    MULTICLASS,
    assert_grads_close,
    fixed_width_tasks,
    logits_backbone,
    make_task,
    reference_learned_head_grads,
    reference_loss,
    tiny_backbone,
)
from torch import nn

from torchcross.learners.finetuner import FineTuner
from torchcross.learners.maml import MAML
from torchcross.nn import make_head

LR, STEPS = 0.3, 3
MODES = {
    "second_order": {},
    "first_order": {"first_order": True},
    "anil": {"anil": True},
}


def _learned(backbone: nn.Module, **kw) -> MAML:
    kw.setdefault("head", "learned")
    if kw["head"] == "learned":
        kw.setdefault("num_outputs", 3)
        kw.setdefault("head_init", "kaiming")  # a non-zero head: every path of the head matters
    return MAML(backbone, backbone.num_features, inner_lr=LR, num_inner_steps=STEPS, **kw)


def _grads(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: p.grad.clone() for k, p in model.named_parameters()}


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize(("net", "batch_norm"), [("mlp", True), ("conv", True), ("conv", False)])
def test_learned_head_matches_higher(net: str, batch_norm: bool, mode: str) -> None:
    import higher

    backbone, shape = tiny_backbone(net, batch_norm)
    tasks = fixed_width_tasks(shape, seed=3)
    maml = _learned(copy.deepcopy(backbone), **MODES[mode])
    model = nn.ModuleDict({"backbone": backbone, "head": copy.deepcopy(maml.head)}).train()
    for task in tasks:
        net_ = nn.Sequential(model["backbone"], model["head"])
        adapted = model["head"].parameters() if mode == "anil" else net_.parameters()
        opt = torch.optim.SGD(adapted, lr=LR)
        # first order: the inner gradients are detached (grad_callback), the identity path stays
        detach = (lambda grads: [g.detach() for g in grads]) if mode == "first_order" else None
        with higher.innerloop_ctx(net_, opt, copy_initial_weights=False) as (fnet, diffopt):
            for _ in range(STEPS):
                support = reference_loss(fnet(task.support[0]), task.support[1], task.description)
                diffopt.step(support, grad_callback=detach)
            (reference_loss(fnet(task.query[0]), task.query[1], task.description) / len(tasks)).backward()
    expected = _grads(model)
    maml.meta_backward(tasks)
    assert_grads_close(_grads(maml), expected)


@pytest.mark.parametrize("path", ["meta_backward", "meta_loss"])
@pytest.mark.parametrize("mode", list(MODES))
def test_learned_head_matches_hand_unrolled_float64_loop(mode: str, path: str) -> None:
    backbone, shape = tiny_backbone("conv", True)
    tasks = fixed_width_tasks(shape, seed=5)
    maml = _learned(backbone, **MODES[mode])
    expected = reference_learned_head_grads(
        copy.deepcopy(backbone),
        copy.deepcopy(maml.head),
        tasks,
        LR,
        STEPS,
        first_order=mode == "first_order",
        anil=mode == "anil",
    )
    if path == "meta_backward":
        maml.meta_backward(tasks)
    else:
        maml.meta_loss(tasks).backward()
    assert_grads_close(_grads(maml), expected)
    assert float(maml.head.weight.grad.abs().max()) > 0  # the head is meta-learned


@pytest.mark.parametrize("mode", ["second_order", "first_order"])
def test_no_head_matches_hand_unrolled_float64_loop(mode: str) -> None:
    backbone, shape = logits_backbone("mlp", True)
    tasks = fixed_width_tasks(shape, seed=7)
    maml = _learned(backbone, head=None, **MODES[mode])
    expected = reference_learned_head_grads(
        copy.deepcopy(backbone), None, tasks, LR, STEPS, first_order=mode == "first_order"
    )
    maml.meta_backward(tasks)
    assert_grads_close(_grads(maml), expected)
    assert maml.head is None
    assert not any(k.startswith("head.") for k in maml.state_dict())
    assert set(maml.adapt(tasks[0])) == {"backbone." + k for k, _ in backbone.named_parameters()}


@pytest.mark.parametrize(
    "options",
    [{}, {"anil": True}, {"meta_sgd": True}, {"first_order": True}, {"head": None}],
    ids=["second_order", "anil", "meta_sgd", "first_order", "no_head"],
)
def test_vmap_path_equals_loop(options: dict) -> None:
    backbone, shape = logits_backbone("mlp", True) if "head" in options else tiny_backbone("mlp", True)
    tasks = [make_task(MULTICLASS, shape, 6, 6, seed) for seed in range(3)]
    loop = _learned(copy.deepcopy(backbone), batching="loop", **options)
    vmapped = _learned(copy.deepcopy(backbone), batching="vmap", **options)
    assert loop.meta_backward(tasks) == pytest.approx(vmapped.meta_backward(tasks), rel=1e-12)
    assert_grads_close(_grads(vmapped), _grads(loop), rtol=1e-10)


def test_learned_head_is_a_parameter_in_state_dict_and_moved_by_the_outer_step() -> None:
    backbone, shape = tiny_backbone("mlp", False)
    maml = _learned(backbone, head_init="zero")
    assert dict(maml.named_parameters())["head.weight"] is maml.head.weight
    assert maml.state_dict()["head.weight"].shape == (3, backbone.num_features)
    assert not maml.head.weight.any()
    outer = torch.optim.SGD(maml.parameters(), lr=0.5)
    outer.zero_grad()
    maml.meta_backward(fixed_width_tasks(shape))
    outer.step()
    assert maml.head.weight.any()
    restored = _learned(copy.deepcopy(backbone), head_init="zero")
    restored.load_state_dict(maml.state_dict())
    task = fixed_width_tasks(shape, seed=9)[0]
    assert torch.equal(restored.predict(task), maml.predict(task))


def test_learned_kaiming_head_is_drawn_from_the_seed_like_make_head() -> None:
    backbone, _ = tiny_backbone("mlp", False)
    a, b = _learned(copy.deepcopy(backbone), seed=3), _learned(copy.deepcopy(backbone), seed=3)
    c = _learned(copy.deepcopy(backbone), seed=4)
    gen = torch.Generator().manual_seed(3)
    expected = make_head(backbone.num_features, 3, "kaiming", generator=gen, dtype=torch.float64)
    assert torch.equal(a.head.weight, expected.weight)
    assert torch.equal(a.head.bias, expected.bias)
    assert torch.equal(a.head.weight, b.head.weight)
    assert not torch.equal(a.head.weight, c.head.weight)
    assert a.head.weight.dtype == torch.float64
    assert "head_step" not in a.state_dict()  # drawn once, not per training call


def test_a_given_linear_is_the_meta_learned_head() -> None:
    backbone, shape = tiny_backbone("mlp", False)
    head = nn.Linear(backbone.num_features, 3).double()
    maml = MAML(backbone, backbone.num_features, inner_lr=LR, num_inner_steps=STEPS, head=head)
    assert maml.head is head
    assert maml.head_mode == "learned"
    assert maml.head_init is None
    maml.meta_backward(fixed_width_tasks(shape))
    assert head.weight.grad is not None


def test_meta_sgd_gives_a_learned_head_per_element_rates() -> None:
    backbone, _ = tiny_backbone("mlp", False)
    maml = _learned(backbone, meta_sgd=True)
    assert maml.inner_lrs["head__weight"].shape == maml.head.weight.shape
    assert maml.inner_lrs["head__bias"].shape == maml.head.bias.shape


def test_a_task_of_another_width_raises_naming_both_widths() -> None:
    backbone, shape = tiny_backbone("mlp", False)
    maml = _learned(backbone)
    binary = make_task(BINARY, shape, 4, 4, 0)
    five = make_task(MULTICLASS.with_classes({i: str(i) for i in range(5)}), shape, 10, 5, 0)
    match = r"task 'bin' \(BINARY_CLASSIFICATION, 2 classes\) needs 1 output .* learned head has 3 outputs"
    for call in (maml.meta_backward, maml.meta_loss):
        with pytest.raises(ValueError, match=match):
            call([fixed_width_tasks(shape)[0], binary])
    for call in (maml.predict, maml.adapt):
        with pytest.raises(
            ValueError, match=r"needs 5 outputs .* learned head has 3 outputs \(num_outputs=3\)"
        ):
            call(five)
    logits, _ = logits_backbone("mlp", False)
    with pytest.raises(ValueError, match=r"needs 1 output .* head=None and the backbone outputs 3 logits"):
        _learned(logits, head=None).predict(make_task(BINARY, shape, 4, 4, 0))


def test_a_backbone_with_other_logits_than_declared_raises() -> None:
    backbone, shape = logits_backbone("mlp", False, width=4)
    maml = MAML(backbone, 3, inner_lr=LR, num_inner_steps=1, head=None)  # declares 3, outputs 4
    with pytest.raises(ValueError, match=r"backbone \(no head\) returns outputs of shape \(9, 4\).*\(N, 3\)"):
        maml.meta_backward(fixed_width_tasks(shape))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"head": "shared"},
            ValueError,
            r"head must be 'per_task', 'learned', an nn.Linear or None, got 'shared'",
        ),
        ({"head": 3}, TypeError, r"head must be 'per_task', 'learned', an nn.Linear or None, got int"),
        ({"head": nn.Conv1d(4, 3, 1)}, TypeError, r"head must be an nn.Linear .* got Conv1d"),
        ({"head": nn.Linear(4, 3, bias=False)}, ValueError, r"nn.Linear has no bias"),
        ({"head": nn.Linear(5, 3)}, ValueError, r"reads 5 features, but num_backbone_features is 4"),
        ({"head": "learned"}, ValueError, r"head='learned' needs num_outputs="),
        ({"head": "learned", "num_outputs": 0}, ValueError, r"num_outputs must be >= 1"),
        (
            {"num_outputs": 5},
            ValueError,
            r"num_outputs=5 sizes the head of head='learned', got head='per_task'",
        ),
        ({"head": None, "num_outputs": 4}, ValueError, r"num_outputs=4 sizes .* got head=None"),
        ({"head": nn.Linear(4, 3), "head_init": "zero"}, ValueError, r"head_init='zero' .* head=Linear"),
        ({"head": None, "head_init": "kaiming"}, ValueError, r"head_init='kaiming' .* head=None"),
        ({"head": "learned", "num_outputs": 3, "head_init": "ones"}, ValueError, r"head_init must be"),
        ({"head": None, "anil": True}, ValueError, r"anil=True adapts only the head, and head=None has none"),
    ],
)
def test_bad_head_arguments_raise(kwargs: dict, error: type, match: str) -> None:
    backbone, _ = tiny_backbone("mlp", False)
    with pytest.raises(error, match=match):
        MAML(backbone, backbone.num_features, inner_lr=LR, num_inner_steps=1, **kwargs)


# ---------------------------------------------------------------- FineTuner


def test_finetuner_starts_every_episode_from_a_given_head() -> None:
    backbone, shape = tiny_backbone("mlp", False)
    maml = _learned(backbone)
    task = fixed_width_tasks(shape, seed=2)[0]
    zero_steps = FineTuner(backbone, backbone.num_features, num_steps=0, head=maml.head)
    with torch.no_grad():
        expected = maml.head(backbone(task.query[0]))
    torch.testing.assert_close(zero_steps.predict(task), expected, rtol=1e-12, atol=1e-12)

    tuner = FineTuner(backbone, backbone.num_features, num_steps=3, lr=0.1, optimizer="sgd", head=maml.head)
    before = copy.deepcopy(maml.head.state_dict())
    feats = backbone(task.support[0]).detach()
    w, b = maml.head.weight.detach().clone(), maml.head.bias.detach().clone()
    for _ in range(3):  # the probe by hand: plain SGD on the head from the given weights
        w.requires_grad_(), b.requires_grad_()
        gw, gb = torch.autograd.grad(reference_loss(feats @ w.T + b, task.support[1], MULTICLASS), [w, b])
        w, b = (w - 0.1 * gw).detach(), (b - 0.1 * gb).detach()
    torch.testing.assert_close(tuner.adapt(task)["head.weight"], w, rtol=1e-12, atol=1e-12)
    assert all(torch.equal(v, before[k]) for k, v in maml.head.state_dict().items())
    batched = tuner.predict_many(fixed_width_tasks(shape, seed=2))
    torch.testing.assert_close(batched[0], tuner.predict(task), rtol=1e-10, atol=1e-12)


def test_finetuner_without_a_head_finetunes_a_backbone_that_outputs_logits() -> None:
    backbone, shape = logits_backbone("mlp", False)
    tuner = FineTuner(backbone, 3, num_steps=2, lr=0.1, head=None, finetune_backbone=True)
    task = fixed_width_tasks(shape)[0]
    assert tuner.predict(task).shape == (6, 3)
    assert not any(k.startswith("head.") for k in tuner.adapt(task))
    with pytest.raises(ValueError, match=r"needs 1 output .* head=None and the backbone outputs 3 logits"):
        tuner.predict(make_task(BINARY, shape, 4, 4, 0))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"head": "learned"}, r"FineTuner meta-learns nothing, so it has no head='learned'"),
        ({"head": None}, r"head=None with finetune_backbone=False leaves nothing to fine-tune"),
        ({"head": nn.Linear(4, 3), "head_init": "kaiming"}, r"head_init='kaiming' .* head=Linear"),
    ],
)
def test_finetuner_bad_head_arguments_raise(kwargs: dict, match: str) -> None:
    backbone, _ = tiny_backbone("mlp", False)
    with pytest.raises(ValueError, match=match):
        FineTuner(backbone, backbone.num_features, **kwargs)
