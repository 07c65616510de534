"""Gradient checkpointing of second-order inner steps.

A checkpointed step keeps only its inputs (parameters and the optimiser state, which carries
the optimiser's tensors such as learned learning rates). Its forward pass runs the step without
building a graph; the backward pass runs it again with ``create_graph=True`` and
back-propagates through that recomputation, so at most one step's graph exists at a
time. ``torch.utils.checkpoint`` is not used here: an inner step differentiates inside
the checkpointed region, which makes it recompute every step during the forward pass
as well.

The state is taken apart generically (`flatten_tensors()`): any nesting
of ``NamedTuple`` s, tuples, lists, dicts and frozen dataclasses whose leaves are tensors
or plain values (numbers, strings, ``None``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from torchcross.learners.transforms import GradientTransformation, apply_updates, holds_tensors_in_state

__all__ = ["Unflatten", "checkpointed_step", "flatten_tensors", "grads_or_zeros", "supports_checkpoint"]

ParamDict = dict[str, Tensor]
Unflatten = Callable[[list[Tensor]], Any]
_PLAIN = (int, float, bool, str, type(None))


def grads_or_zeros(loss: Tensor, inputs: list[Tensor], create_graph: bool = False) -> list[Tensor]:
    """``torch.autograd.grad(loss, inputs)``, with zeros for inputs the loss does not use.

    A backbone may hold parameters that its forward pass never uses (DINOv2's ``mask_token``, used
    only with masked inputs); their gradient is zero, and Adam and SGD leave them unchanged.
    """
    grads = torch.autograd.grad(loss, inputs, create_graph=create_graph, allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for t, g in zip(inputs, grads)]


def flatten_tensors(tree: Any) -> tuple[list[Tensor], Unflatten]:
    """The tensors of ``tree`` (depth first) and a function that rebuilds ``tree`` from new ones.

    Raises:
        TypeError: ``tree`` holds something that is neither a container, a tensor nor a
            plain value (a function, a module, ...): its tensors could not all be found.

    Examples:
        >>> from typing import NamedTuple
        >>> class S(NamedTuple):
        ...     step: int
        ...     avg: dict
        >>> leaves, rebuild = flatten_tensors((S(3, {"w": torch.zeros(1)}), ()))
        >>> rebuild([torch.ones(1)])
        (S(step=3, avg={'w': tensor([1.])}), ())
    """
    if isinstance(tree, Tensor):
        return [tree], lambda ts: ts[0]
    if isinstance(tree, _PLAIN):
        return [], lambda ts: tree
    if isinstance(tree, Mapping):
        keys = list(tree)
        leaves, rebuild = flatten_tensors([tree[k] for k in keys])
        return leaves, lambda ts: dict(zip(keys, rebuild(ts)))
    if dataclasses.is_dataclass(tree) and not isinstance(tree, type):
        names = [f.name for f in dataclasses.fields(tree) if f.init]
        leaves, rebuild = flatten_tensors([getattr(tree, n) for n in names])
        return leaves, lambda ts: dataclasses.replace(tree, **dict(zip(names, rebuild(ts))))
    if isinstance(tree, (tuple, list)):
        parts = [flatten_tensors(x) for x in tree]
        sizes = [len(leaves) for leaves, _ in parts]

        def rebuild_sequence(ts: list[Tensor]) -> Any:
            items, start = [], 0
            for (_, rebuild), size in zip(parts, sizes):
                items.append(rebuild(ts[start : start + size]))
                start += size
            if isinstance(tree, list):
                return items
            return tuple(items) if type(tree) is tuple else type(tree)(*items)  # a NamedTuple

        return [t for leaves, _ in parts for t in leaves], rebuild_sequence
    raise TypeError(
        f"cannot take apart a {type(tree).__name__}: states and optimisers must be NamedTuples, "
        "tuples, lists, dicts or frozen dataclasses of tensors and plain values"
    )


def _flattenable(tree: Any) -> bool:
    try:
        flatten_tensors(tree)
    except TypeError:
        return False
    return True


def supports_checkpoint(optimizer: Any, state: Any) -> bool:
    """Whether `checkpointed_step()` can find every tensor of ``optimizer`` and ``state``.

    A ``GradientTransformation`` qualifies when its update reads tensors from its arguments only
    ([`holds_tensors_in_state()`][holds_tensors_in_state]: the pieces of
    [`transforms`][torchcross.learners.transforms] and their chains); other objects (the older
    inner-optimiser dataclasses) when they can be taken apart. Transformations made elsewhere may hide
    tensors in closures; their steps are checkpointed with ``torch.utils.checkpoint`` instead.
    """
    if isinstance(optimizer, GradientTransformation):
        return holds_tensors_in_state(optimizer) and _flattenable(state)
    return _flattenable(optimizer) and _flattenable(state)


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
    optimizer: GradientTransformation,
    names: list[str],
    params: ParamDict,
    state: Any,
) -> tuple[ParamDict, Any, Tensor]:
    """One second-order inner step of ``names`` that stores only its inputs.

    ``optimizer`` and ``state`` must pass `supports_checkpoint()`. ``loss_fn`` must
    depend on differentiable tensors only through ``params`` (tensors it captures from
    outside receive no gradient through a checkpointed step).
    """
    keys = list(params)
    state_tensors, rebuild_state = flatten_tensors(state)
    n_p = len(keys)
    loss_box: list[Tensor] = []
    out_state: list[Unflatten] = []

    def run(tensors: list[Tensor], create_graph: bool) -> list[Tensor]:
        p = dict(zip(keys, tensors[:n_p]))
        loss = loss_fn(p)
        grads = grads_or_zeros(loss, [p[n] for n in names], create_graph=create_graph)
        updates, new_state = optimizer.update(dict(zip(names, grads)), rebuild_state(tensors[n_p:]), p)
        new = apply_updates(p, updates)
        loss_box.append(loss.detach())
        new_state_tensors, rebuild_new_state = flatten_tensors(new_state)
        out_state.append(rebuild_new_state)
        return [new[n] for n in names] + new_state_tensors

    outputs = _Step.apply(run, *params.values(), *state_tensors)
    new = dict(params)
    new.update(zip(names, outputs[: len(names)]))
    return new, out_state[0](list(outputs[len(names) :])), loss_box[0]
