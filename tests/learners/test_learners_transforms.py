"""Gradient transformations and their chains; generic state flattening; Meta-SGD rates; task adaptation."""

from __future__ import annotations

from typing import NamedTuple

import pytest
import torch
from learners_helpers import MULTICLASS, make_task, tiny_backbone

from torchcross.learners._checkpoint import flatten_tensors, supports_checkpoint
from torchcross.learners.functional import (
    SGD,
    Adam,
    EmptyState,
    ScaleByAdamState,
    TraceState,
    TransformOptimizer,
    adapt_backbone_and_head,
    add_decayed_weights,
    apply_updates,
    chain,
    finetune,
    forward,
    init_meta_sgd_rates,
    inner_loop,
    maml_query_loss,
    scale_by_adam,
    scale_by_learning_rate,
    split_meta_sgd_rates,
    task_buffers,
    trace,
    with_meta_sgd_rates,
)

D = torch.float64


def _problem(seed: int = 0):
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


def _start(seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"w": torch.randn(3, generator=g, dtype=D), "b": torch.randn(2, generator=g, dtype=D)}


@pytest.mark.parametrize(
    ("alias", "pieces"),
    [
        (
            SGD(0.1, momentum=0.9, weight_decay=0.01),
            [add_decayed_weights(0.01), trace(0.9), scale_by_learning_rate(0.1)],
        ),
        (SGD(0.2), [add_decayed_weights(0.0), trace(0.0), scale_by_learning_rate(0.2)]),
        (
            Adam(0.05, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.1),
            [add_decayed_weights(0.1), scale_by_adam(0.8, 0.9, 1e-6), scale_by_learning_rate(0.05)],
        ),
    ],
)
def test_aliases_are_their_chains_bit_for_bit(alias, pieces):
    composed = TransformOptimizer(chain(*pieces))
    for differentiable in (False, True):
        start = {k: v.requires_grad_(differentiable) for k, v in _start().items()}
        a = inner_loop(_problem(), start, alias, 4, differentiable=differentiable)
        b = inner_loop(_problem(), start, composed, 4, differentiable=differentiable)
        for k in start:
            assert torch.equal(a.params[k], b.params[k]), k
        assert torch.equal(a.losses, b.losses)
    assert type(a.state) is tuple
    assert len(a.state) == 3


def test_states_are_named_tuples():
    p = _start()
    assert SGD(0.1, momentum=0.5).init(p) == (EmptyState(), TraceState({}), EmptyState())
    _, state = Adam(0.1).update(p, {"w": torch.ones(3, dtype=D)}, Adam(0.1).init(p))
    assert isinstance(state[1], ScaleByAdamState)
    assert state[1].step == 1
    assert set(state[1].exp_avg) == {"w"}


def test_a_composed_chain_is_adamw():
    # decoupled weight decay: the decay is added after Adam's scaling, not to the gradient
    adamw = chain(scale_by_adam(), add_decayed_weights(0.1), scale_by_learning_rate(0.05))
    ours = finetune(_problem(), _start(), adamw, 6)  # a bare transformation is accepted
    leaves = {k: v.clone().requires_grad_() for k, v in _start().items()}
    ref = torch.optim.AdamW(list(leaves.values()), lr=0.05, weight_decay=0.1)
    for _ in range(6):
        ref.zero_grad()
        _problem()(leaves).backward()
        ref.step()
    for k in leaves:
        torch.testing.assert_close(ours[k], leaves[k].detach(), rtol=1e-12, atol=1e-14)


def test_pieces_update_only_the_named_parameters():
    params = {"w": torch.ones(2, dtype=D), "b": torch.ones(1, dtype=D)}
    tx = chain(add_decayed_weights(0.5), trace(0.9), scale_by_adam(), scale_by_learning_rate(0.1))
    updates, state = tx.update({"w": torch.ones(2, dtype=D)}, tx.init(params), params)
    assert set(updates) == {"w"}
    new = apply_updates(params, updates)
    assert new["b"] is params["b"]
    assert set(state[1].momentum_buffer) == {"w"}


def test_checkpointing_a_chain_with_a_learned_rate_in_a_closure():
    # TransformOptimizer hides its tensors in closures: the checkpointed step falls back
    # to torch.utils.checkpoint, and the learned rate still gets its gradient.
    w = torch.randn(3, dtype=D, requires_grad=True)
    b = torch.randn(2, dtype=D, requires_grad=True)
    rate = torch.tensor(0.2, dtype=D, requires_grad=True)
    opt = TransformOptimizer(chain(trace(0.5), scale_by_learning_rate({"w": rate, "b": rate})))
    assert not supports_checkpoint(opt, opt.init({}))
    assert supports_checkpoint(SGD({"w": rate, "b": rate}), SGD(0.1).init({}))
    grads = []
    for ckpt in (False, True):
        q = maml_query_loss(_problem(0), _problem(1), {"w": w, "b": b}, opt, 3, checkpoint=ckpt)
        grads.append(torch.autograd.grad(q, (w, b, rate)))
    for a, r in zip(*grads):
        torch.testing.assert_close(a, r, rtol=1e-12, atol=1e-14)


class _Pair(NamedTuple):
    step: int
    moments: dict


def test_flatten_tensors_round_trips_nested_states_and_optimisers():
    state = (EmptyState(), _Pair(3, {"a": torch.zeros(2), "b": [torch.ones(1), 2.0]}), None)
    leaves, rebuild = flatten_tensors(state)
    assert len(leaves) == 2
    again = rebuild([t + 1 for t in leaves])
    assert again[1].step == 3
    assert isinstance(again[1], _Pair)
    assert again[2] is None
    assert again[1].moments["a"].tolist() == [1.0, 1.0]
    assert again[1].moments["b"][1] == 2.0
    rate = torch.tensor(0.5)
    leaves, rebuild = flatten_tensors(SGD({"w": rate, "b": 0.1}, momentum=0.5))
    assert leaves == [rate]
    assert rebuild([torch.tensor(0.25)]) == SGD({"w": torch.tensor(0.25), "b": 0.1}, momentum=0.5)
    with pytest.raises(TypeError, match="cannot take apart a function"):
        flatten_tensors((lambda: 0,))


def test_meta_sgd_rates():
    params = {"backbone.a.w": torch.zeros(2, 3, dtype=D), "backbone.b": torch.zeros(3, dtype=D)}
    rates = init_meta_sgd_rates(params, ["head.weight"], 0.25)
    assert list(rates) == ["backbone__a__w", "backbone__b", "head__weight"]
    assert rates["backbone__a__w"].shape == (2, 3)
    assert rates["head__weight"].shape == ()
    assert all(r.dtype == D and bool((r == 0.25).all()) for r in rates.values())
    meta = with_meta_sgd_rates(params, rates, [*params, "head.weight"])
    back, lrs = split_meta_sgd_rates(meta)
    assert back == params
    assert lrs["head.weight"] is rates["head__weight"]
    with pytest.raises(ValueError, match=r"parameter names \['a.b', 'a__b'\] collide"):
        init_meta_sgd_rates({"a.b": torch.zeros(1), "a__b": torch.zeros(1)}, [], 0.1)


def _adaptation(optimizer, zero_head: bool, **kw):
    backbone, shape = tiny_backbone("mlp", True)
    task = make_task(MULTICLASS, shape, 8, 4, 0)
    buffers = task_buffers(backbone)
    meta = {"backbone." + k: p for k, p in backbone.named_parameters()}

    def features(p, x):
        return forward(backbone, {k[9:]: v for k, v in p.items() if k.startswith("backbone.")}, buffers, x)

    head = {"head.weight": torch.zeros(3, 4, dtype=D), "head.bias": torch.zeros(3, dtype=D)}
    adapted = adapt_backbone_and_head(
        features,
        {**meta, **head},
        task.support,
        MULTICLASS,
        optimizer,
        3,
        backbone=list(meta),
        zero_head=zero_head,
        **kw,
    )
    loss = sum(v.sum() for v in adapted.values())
    return adapted, torch.autograd.grad(loss, list(meta.values())) if loss.requires_grad else ()


@pytest.mark.parametrize("optimizer", [SGD(0.3), SGD(0.3, momentum=0.5), Adam(0.1)])
@pytest.mark.parametrize("first_order", [False, True])
def test_zero_head_shortcuts_equal_the_full_inner_loop(optimizer, first_order):
    fast, fast_grads = _adaptation(optimizer, True, first_order=first_order)
    full, full_grads = _adaptation(optimizer, False, first_order=first_order)
    for k in full:
        torch.testing.assert_close(fast[k], full[k], rtol=1e-12, atol=1e-14)
    for a, r in zip(fast_grads, full_grads):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize(
    "optimizer",
    [SGD(0.3, weight_decay=0.1), TransformOptimizer(chain(trace(0.5), scale_by_learning_rate(0.3)))],
)
def test_optimisers_that_do_not_skip_zero_gradients_take_every_step_in_full(optimizer):
    a, _ = _adaptation(optimizer, True, differentiable=False)
    b, _ = _adaptation(optimizer, False, differentiable=False)
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: chain(trace(0.5), "sgd"), "chain takes GradientTransformation pieces, got str"),
        (lambda: TransformOptimizer(SGD(0.1)), r"transform must be a GradientTransformation \(e.g. chain"),
        (lambda: scale_by_adam(b1=1.0), r"b1 must be a float in \[0, 1\), got 1.0"),
        (lambda: scale_by_adam(eps=-1.0), "eps must be a float > 0, got -1.0"),
        (lambda: trace(-0.1), r"momentum must be a float in \[0, 1\)"),
        (lambda: add_decayed_weights(float("nan")), "weight_decay must be a float >= 0, got nan"),
        (lambda: scale_by_learning_rate(float("inf")), "lr must be a non-negative float"),
    ],
)
def test_bad_pieces_raise(make, match):
    with pytest.raises((TypeError, ValueError), match=match):
        make()


def test_chain_state_of_the_wrong_length_raises():
    tx = chain(trace(0.5), scale_by_learning_rate(0.1))
    with pytest.raises(ValueError, match="chain of 2 pieces got a state of 1"):
        tx.update({"w": torch.ones(1)}, (TraceState({}),), {"w": torch.ones(1)})
