"""The functional core: inner loops, inner optimisers, gradcheck in float64, BatchNorm policy."""

from __future__ import annotations

import copy

import pytest
import torch
from learners_helpers import tiny_backbone
from torch import nn

from torchcross.learners.functional import (
    SGD,
    Adam,
    finetune,
    forward,
    inner_loop,
    maml_query_loss,
    task_buffers,
)

D = torch.float64


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _quadratic_problem(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(6, 3, generator=g, dtype=D)
    t = torch.randn(6, generator=g, dtype=D)

    def loss(p):
        return (
            ((torch.tanh(a @ p["w"]) - t) ** 2).mean()
            + 0.05 * (p["b"] ** 4).sum()
            + (p["w"][:2] * p["b"]).sum()
        )

    return loss


@pytest.mark.parametrize(
    ("opt", "torch_opt"),
    [
        (SGD(0.1), lambda ps: torch.optim.SGD(ps, lr=0.1)),
        (
            SGD(0.1, momentum=0.9, weight_decay=0.01),
            lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01),
        ),
        (Adam(0.05), lambda ps: torch.optim.Adam(ps, lr=0.05)),
        (
            Adam(0.05, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.1),
            lambda ps: torch.optim.Adam(ps, lr=0.05, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.1),
        ),
    ],
)
def test_plain_inner_loop_equals_torch_optim(opt, torch_opt):
    loss = _quadratic_problem()
    start = {"w": torch.randn(3, dtype=D), "b": torch.randn(2, dtype=D)}
    ours = finetune(loss, start, opt, 7)
    leaves = {k: v.clone().requires_grad_() for k, v in start.items()}
    ref = torch_opt(list(leaves.values()))
    for _ in range(7):
        ref.zero_grad()
        loss(leaves).backward()
        ref.step()
    for k in start:
        torch.testing.assert_close(ours[k], leaves[k].detach(), rtol=1e-12, atol=1e-14)
        assert not ours[k].requires_grad


@pytest.mark.parametrize("opt", [SGD(0.3), SGD(0.2, momentum=0.5), Adam(0.1)])
def test_gradcheck_of_second_order_query_loss(opt):
    support, query = _quadratic_problem(0), _quadratic_problem(1)

    def meta(w, b):
        return maml_query_loss(support, query, {"w": w, "b": b}, opt, 3)

    w = torch.randn(3, dtype=D, requires_grad=True)
    b = torch.randn(2, dtype=D, requires_grad=True)
    assert torch.autograd.gradcheck(meta, (w, b))
    assert torch.autograd.gradgradcheck(meta, (w, b))


def test_gradcheck_through_a_network_with_batch_norm():
    backbone, _ = tiny_backbone("mlp", True)
    names = [k for k, _ in backbone.named_parameters()]
    x = torch.randn(7, 5, dtype=D)
    y = torch.randn(7, 4, dtype=D)
    buffers = task_buffers(backbone)

    def loss(p):
        return ((forward(backbone, p, buffers, x) - y) ** 2).mean()

    def meta(*tensors):
        return maml_query_loss(loss, loss, dict(zip(names, tensors)), SGD(0.5), 2)

    params = tuple(p.detach().clone().requires_grad_() for p in backbone.parameters())
    assert torch.autograd.gradcheck(meta, params)


def test_adam_gives_finite_meta_gradients_where_gradients_are_zero():
    w = torch.randn(3, dtype=D, requires_grad=True)
    z = torch.zeros(2, dtype=D, requires_grad=True)  # gets zero gradient at the first step

    def loss(p):
        return (p["w"] ** 2).sum() * (1 + p["z"].sum()) ** 2 + (p["w"] * p["z"][0]).sum()

    out = inner_loop(loss, {"w": w, "z": z}, Adam(0.1), 3).params
    grads = torch.autograd.grad(sum(v.sum() for v in out.values()), (w, z))
    assert all(torch.isfinite(g).all() for g in grads)


def test_first_order_and_non_differentiable_modes():
    loss = _quadratic_problem()
    w = torch.randn(3, dtype=D, requires_grad=True)
    b = torch.randn(2, dtype=D, requires_grad=True)
    fo = inner_loop(loss, {"w": w, "b": b}, SGD(0.3), 2, first_order=True).params
    # first order: the adapted parameters depend on the start through the identity only
    assert torch.autograd.grad(fo["w"].sum(), w)[0].tolist() == [1.0, 1.0, 1.0]
    plain = inner_loop(loss, {"w": w, "b": b}, SGD(0.3), 2, differentiable=False)
    assert not plain.params["w"].requires_grad
    torch.testing.assert_close(plain.params["w"], fo["w"].detach())
    assert plain.losses.shape == (2,)
    assert inner_loop(loss, {"w": w}, SGD(0.3), 0).params["w"] is w


def test_adapt_subset_then_all_takes_partial_derivatives():
    # Regression: a parameter held fixed for a step and adapted afterwards must get the
    # partial derivative at the current point, not the total derivative through the
    # parameters that were computed from it.
    loss = _quadratic_problem()
    w = torch.randn(3, dtype=D, requires_grad=True)
    b = torch.randn(2, dtype=D, requires_grad=True)
    first = inner_loop(loss, {"w": w, "b": b}, SGD(0.3), 1, adapt=["b"])
    split = inner_loop(loss, first.params, SGD(0.3), 2, state=first.state).params

    # hand-unrolled: step 1 on b only, then two steps on both
    p = {"w": w, "b": b}
    gb = torch.autograd.grad(loss(p), p["b"], create_graph=True)[0]
    p = {"w": w * 1, "b": b - 0.3 * gb}
    for _ in range(2):
        gw, gb = torch.autograd.grad(loss(p), (p["w"], p["b"]), create_graph=True)
        p = {"w": p["w"] - 0.3 * gw, "b": p["b"] - 0.3 * gb}
    for k in p:
        torch.testing.assert_close(split[k], p[k], rtol=1e-13, atol=1e-14)
    ours = torch.autograd.grad(split["w"].sum() + split["b"].sum(), (w, b))
    ref = torch.autograd.grad(p["w"].sum() + p["b"].sum(), (w, b))
    for a, r in zip(ours, ref):
        torch.testing.assert_close(a, r, rtol=1e-12, atol=1e-14)


def test_checkpointed_inner_loop_equals_plain():
    loss = _quadratic_problem()
    w = torch.randn(3, dtype=D, requires_grad=True)
    b = torch.randn(2, dtype=D, requires_grad=True)
    for opt in (SGD(0.3), Adam(0.1)):
        plain = maml_query_loss(loss, loss, {"w": w, "b": b}, opt, 4)
        ckpt = maml_query_loss(loss, loss, {"w": w, "b": b}, opt, 4, checkpoint=True)
        for a, r in zip(torch.autograd.grad(ckpt, (w, b)), torch.autograd.grad(plain, (w, b))):
            torch.testing.assert_close(a, r, rtol=1e-12, atol=1e-14)


def test_checkpointed_step_handles_learned_rates_momentum_and_fixed_parameters():
    loss = _quadratic_problem()
    w = torch.randn(3, dtype=D, requires_grad=True)
    b = torch.randn(2, dtype=D, requires_grad=True)
    lr_w = torch.full((3,), 0.2, dtype=D, requires_grad=True)
    lr_b = torch.tensor(0.1, dtype=D, requires_grad=True)
    for opt in (SGD({"w": lr_w, "b": lr_b}, momentum=0.5), Adam({"w": lr_w, "b": lr_b})):
        results = []
        for ckpt in (False, True):
            first = inner_loop(loss, {"w": w, "b": b}, opt, 1, adapt=["w"], checkpoint=ckpt)
            out = inner_loop(loss, first.params, opt, 3, state=first.state, checkpoint=ckpt).params
            results.append(torch.autograd.grad(loss(out), (w, b, lr_w, lr_b)))
        for a, r in zip(*results):
            torch.testing.assert_close(a, r, rtol=1e-12, atol=1e-14)


def test_func_gradients_equal_autograd():
    loss = _quadratic_problem()
    w = torch.randn(3, dtype=D, requires_grad=True)
    b = torch.randn(2, dtype=D, requires_grad=True)
    for fo in (False, True):
        a = inner_loop(loss, {"w": w, "b": b}, Adam(0.1), 3, first_order=fo).params
        f = inner_loop(loss, {"w": w, "b": b}, Adam(0.1), 3, first_order=fo, use_func=True).params
        ga = torch.autograd.grad(a["w"].sum() + a["b"].pow(2).sum(), (w, b))
        gf = torch.autograd.grad(f["w"].sum() + f["b"].pow(2).sum(), (w, b))
        for x, y in zip(ga, gf):
            torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-14)


def test_inner_loop_never_touches_the_module():
    backbone, _ = tiny_backbone("mlp", True)
    backbone.train()
    before = copy.deepcopy(backbone.state_dict())
    params = dict(backbone.named_parameters())
    x = torch.randn(6, 5, dtype=D)
    for policy in ("batch", "frozen"):
        buffers = task_buffers(backbone, policy)
        inner_loop(
            lambda p, b=buffers, c=policy: forward(backbone, p, b, x, c).pow(2).mean(), params, SGD(0.1), 2
        )
    assert backbone.training
    assert all(m.training for m in backbone.modules())
    for k, v in backbone.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_batch_norm_policies():
    bn = nn.BatchNorm1d(3).double()
    with torch.no_grad():
        bn.running_mean.fill_(5.0)
    bn.eval()
    x = torch.randn(8, 3, dtype=D) * 2 + 1
    params = dict(bn.named_parameters())
    batch = forward(bn, params, task_buffers(bn, "batch"), x, "batch")  # batch statistics even in eval mode
    torch.testing.assert_close(batch.mean(0), torch.zeros(3, dtype=D), atol=1e-12, rtol=0)
    bn.train()
    frozen = forward(bn, params, task_buffers(bn, "frozen"), x, "frozen")  # running statistics, not updated
    torch.testing.assert_close(frozen, (x - 5.0) / torch.sqrt(torch.ones(3, dtype=D) + bn.eps))
    assert bn.running_mean.eq(5.0).all()
    assert int(bn.num_batches_tracked) == 0
    assert bn.training


def test_errors():
    loss = _quadratic_problem()
    p = {"w": torch.zeros(3, dtype=D), "b": torch.zeros(2, dtype=D)}
    with pytest.raises(ValueError, match="num_steps must be >= 0"):
        inner_loop(loss, p, SGD(0.1), -1)
    with pytest.raises(KeyError, match="not in params"):
        inner_loop(loss, p, SGD(0.1), 1, adapt=["nope"])
    with pytest.raises(ValueError, match="use_func"):
        inner_loop(loss, p, SGD(0.1), 1, differentiable=False, use_func=True)
    with pytest.raises(KeyError, match="no learning rate"):
        inner_loop(loss, p, SGD({"w": 0.1}), 1)
    with pytest.raises(ValueError, match=r"batch_norm must be one of .* got 'running'"):
        task_buffers(nn.Linear(1, 1), "running")
    for bad, match in (
        (lambda: SGD(-1.0), "lr must be a non-negative float or a mapping name -> lr, got -1.0"),
        (lambda: SGD(0.1, momentum=1.0), r"momentum must be a float in \[0, 1\), got 1.0"),
        (lambda: SGD(0.1, weight_decay=-1), "weight_decay must be a float >= 0, got -1"),
        (lambda: Adam(0.1, betas=(0.9,)), r"betas must be a pair \(beta1, beta2\)"),
        (lambda: Adam(0.1, betas=(0.9, 1.0)), r"betas must be a pair .* got \(0.9, 1.0\)"),
        (lambda: Adam(0.1, eps=0), "eps must be a float > 0, got 0"),
        (lambda: Adam(0.1, weight_decay=-1), "weight_decay must be a float >= 0, got -1"),
        (lambda: SGD(True), "lr must be a non-negative float .* got True"),
    ):
        with pytest.raises(ValueError, match=match):
            bad()
