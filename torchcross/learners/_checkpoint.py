"""Gradient checkpointing of second-order inner steps.

A checkpointed step keeps only its inputs (parameters, learning rates, optimiser state).
Its forward pass runs the step without building a graph; the backward pass runs it
again with ``create_graph=True`` and back-propagates through that recomputation, so at
most one step's graph exists at a time. ``torch.utils.checkpoint`` is not used here:
an inner step differentiates inside the checkpointed region, which makes it recompute
every step during the forward pass as well.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from torchcross.learners.inner_optimizers import SGD, Adam, AdamState, SGDState

__all__ = ["checkpointed_step", "supports_checkpoint"]

ParamDict = dict[str, Tensor]


def _state_tensors(state: Any) -> tuple[list[Tensor], Callable[[list[Tensor]], Any]]:
    if isinstance(state, SGDState):
        keys = list(state.momentum_buffer)
        return [state.momentum_buffer[k] for k in keys], lambda ts: SGDState(dict(zip(keys, ts)))
    avg, sq = list(state.exp_avg), list(state.exp_avg_sq)
    step = state.step

    def rebuild(ts: list[Tensor]) -> AdamState:
        return AdamState(step, dict(zip(avg, ts[: len(avg)])), dict(zip(sq, ts[len(avg) :])))

    return [state.exp_avg[k] for k in avg] + [state.exp_avg_sq[k] for k in sq], rebuild


def supports_checkpoint(optimizer: Any, state: Any) -> bool:
    """Whether :func:`checkpointed_step` knows how to take ``optimizer``'s step apart."""
    return isinstance(optimizer, (SGD, Adam)) and isinstance(state, (SGDState, AdamState))


class _Step(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, run: Callable[[list[Tensor], bool], list[Tensor]], *inputs: Tensor
    ) -> tuple[Tensor, ...]:
        ctx.run = run
        ctx.save_for_backward(*inputs)
        with torch.enable_grad():
            leaves = [t.detach().requires_grad_(t.is_floating_point()) for t in inputs]
            outputs = run(leaves, False)
        return tuple(o.detach() for o in outputs)

    @staticmethod
    def backward(ctx: Any, *grad_outputs: Tensor) -> tuple[Tensor | None, ...]:
        inputs = ctx.saved_tensors
        wanted = [i for i, t in enumerate(inputs) if ctx.needs_input_grad[i + 1]]
        with torch.enable_grad():
            leaves = [t.detach().requires_grad_(t.is_floating_point()) for t in inputs]
            outputs = run_outputs = ctx.run(leaves, True)
            pairs = [(o, g) for o, g in zip(outputs, grad_outputs) if g is not None and o.requires_grad]
            del run_outputs
            grads = torch.autograd.grad(
                [o for o, _ in pairs],
                [leaves[i] for i in wanted],
                [g for _, g in pairs],
                allow_unused=True,
                create_graph=torch.is_grad_enabled(),
            )
        out: list[Tensor | None] = [None] * len(inputs)
        for i, g in zip(wanted, grads):
            out[i] = g
        return (None, *out)


def checkpointed_step(
    loss_fn: Callable[[ParamDict], Tensor],
    optimizer: SGD | Adam,
    names: list[str],
    params: ParamDict,
    state: SGDState | AdamState,
) -> tuple[ParamDict, Any, Tensor]:
    """One second-order inner step of ``names`` that stores only its inputs.

    ``loss_fn`` must depend on differentiable tensors only through ``params`` (tensors it
    captures from outside receive no gradient through a checkpointed step).
    """
    keys = list(params)
    lr = optimizer.lr
    lr_keys = [k for k, v in lr.items() if isinstance(v, Tensor)] if isinstance(lr, Mapping) else []
    state_list, rebuild = _state_tensors(state)
    n_p, n_lr = len(keys), len(lr_keys)
    loss_box: list[Tensor] = []

    def run(tensors: list[Tensor], create_graph: bool) -> list[Tensor]:
        p = dict(zip(keys, tensors[:n_p]))
        opt = optimizer
        if lr_keys:
            opt = dataclasses.replace(optimizer, lr={**lr, **dict(zip(lr_keys, tensors[n_p : n_p + n_lr]))})
        loss = loss_fn(p)
        grads = torch.autograd.grad(loss, [p[n] for n in names], create_graph=create_graph)
        new, new_state = opt.update(p, dict(zip(names, grads)), rebuild(tensors[n_p + n_lr :]))
        loss_box.append(loss.detach())
        out_state, _ = _state_tensors(new_state)
        return [new[n] for n in names] + out_state

    outputs = _Step.apply(run, *params.values(), *[lr[k] for k in lr_keys], *state_list)
    new = dict(params)
    new.update(zip(names, outputs[: len(names)]))
    _, rebuild_out = _state_tensors(_next_state_shape(optimizer, state, names))
    return new, rebuild_out(list(outputs[len(names) :])), loss_box[0]


def _next_state_shape(optimizer: SGD | Adam, state: Any, names: list[str]) -> Any:
    """The state's structure after a step of ``names`` (values are placeholders)."""
    empty = torch.empty(0)
    if isinstance(state, SGDState):
        keys = list(state.momentum_buffer) + [n for n in names if n not in state.momentum_buffer]
        return SGDState(
            {k: empty for k in keys}
            if isinstance(optimizer, SGD) and optimizer.momentum
            else dict(state.momentum_buffer)
        )
    avg = list(state.exp_avg) + [n for n in names if n not in state.exp_avg]
    return AdamState(state.step + 1, {k: empty for k in avg}, {k: empty for k in avg})
