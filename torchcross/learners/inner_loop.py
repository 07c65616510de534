"""Inner loops: optimiser steps on a loss that is a function of a parameter dict.

Inner loops are loss-agnostic: they take ``loss_fn(params) -> scalar``. Three modes:

* second order (default): gradients with ``create_graph=True``; the adapted
  parameters are differentiable functions of the starting ones (exact MAML);
* ``first_order=True``: inner gradients are detached, so the adapted parameters
  depend on the starting ones through the identity only (FOMAML);
* ``differentiable=False``: a plain fine-tuning run on detached copies (evaluation).

Examples:
    >>> import torch
    >>> from torchcross.learners.transforms import sgd
    >>> w = torch.tensor([2.0], requires_grad=True)
    >>> adapted = inner_loop(lambda p: (p["w"] ** 2).sum(), {"w": w}, sgd(0.25), num_steps=1).params
    >>> adapted["w"]  # 2 - 0.25 * 4, still a function of w
    tensor([1.], grad_fn=<AddBackward0>)
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint as _checkpoint

from torchcross._checks import check_int
from torchcross.learners._checkpoint import checkpointed_step, grads_or_zeros, supports_checkpoint
from torchcross.learners.inner_optimizers import InnerOptimizer, as_transformation
from torchcross.learners.transforms import GradientTransformation, apply_updates

__all__ = ["InnerLoopResult", "finetune", "inner_loop", "maml_query_loss", "transform_step"]

ParamDict = dict[str, Tensor]


def transform_step(
    transform: GradientTransformation, params: Mapping[str, Tensor], grads: Mapping[str, Tensor], state: Any
) -> tuple[ParamDict, Any]:
    """One optimiser step: ``params`` plus ``transform``'s updates of ``grads``, and the new state.

    Examples:
        >>> from torchcross.learners.transforms import sgd
        >>> t = sgd(0.5)
    >>> transform_step(t, {"w": torch.tensor([1.0])}, {"w": torch.tensor([2.0])}, t.init({}))[0]
        {'w': tensor([0.])}
    """
    updates, state = transform.update(grads, state, params)
    return apply_updates(params, updates), state


class InnerLoopResult(NamedTuple):
    """What [`inner_loop()`][torchcross.learners.functional.inner_loop] returns.

    Attributes:
        params: the adapted parameters (all of them; the ones not adapted unchanged).
        state: the optimiser state after the last step (pass it on to continue).
        losses: the loss before each step, detached, ``(num_steps,)``.
    """

    params: ParamDict
    state: Any
    losses: Tensor


def _check_steps(num_steps: int) -> None:
    check_int(num_steps, "num_steps", 0)


def _adapt_names(params: Mapping[str, Tensor], adapt: Collection[str] | None) -> list[str]:
    if adapt is None:
        return list(params)
    names = list(adapt)
    missing = [n for n in names if n not in params]
    if missing:
        raise KeyError(f"adapt names parameters that are not in params: {missing}; params has {list(params)}")
    return names


def _autograd_step(
    loss_fn: Callable[[ParamDict], Tensor],
    optimizer: GradientTransformation,
    names: list[str],
    create_graph: bool,
    params: ParamDict,
    state: Any,
) -> tuple[ParamDict, Any, Tensor]:
    loss = loss_fn(params)
    grads = grads_or_zeros(loss, [params[n] for n in names], create_graph=create_graph)
    new, state = transform_step(optimizer, params, dict(zip(names, grads)), state)
    return new, state, loss.detach()


def _plain_step(
    loss_fn: Callable[[ParamDict], Tensor],
    optimizer: GradientTransformation,
    names: list[str],
    params: ParamDict,
    state: Any,
) -> tuple[ParamDict, Any, Tensor]:
    for n in names:
        params[n] = params[n].detach().requires_grad_()
    loss = loss_fn(params)
    grads = grads_or_zeros(loss, [params[n] for n in names])
    with torch.no_grad():
        new, state = transform_step(
            optimizer, {k: v.detach() for k, v in params.items()}, dict(zip(names, grads)), state
        )
    return new, state, loss.detach()


def _func_step(
    loss_fn: Callable[[ParamDict], Tensor],
    optimizer: GradientTransformation,
    names: list[str],
    first_order: bool,
    params: ParamDict,
    state: Any,
) -> tuple[ParamDict, Any, Tensor]:
    fixed = {k: v for k, v in params.items() if k not in names}

    def sub_loss(sub: ParamDict) -> Tensor:
        return loss_fn({**fixed, **sub})

    grads, loss = torch.func.grad_and_value(sub_loss)({n: params[n] for n in names})
    if first_order:
        grads = {k: g.detach() for k, g in grads.items()}
    new, state = transform_step(optimizer, params, grads, state)
    return new, state, loss.detach()


def inner_loop(
    loss_fn: Callable[[ParamDict], Tensor],
    params: Mapping[str, Tensor],
    optimizer: GradientTransformation | InnerOptimizer,
    num_steps: int,
    *,
    adapt: Collection[str] | None = None,
    first_order: bool = False,
    differentiable: bool = True,
    checkpoint: bool = False,
    state: Any = None,
    use_func: bool = False,
) -> InnerLoopResult:
    """Take ``num_steps`` optimiser steps on ``loss_fn`` from ``params``.

    Args:
        loss_fn: ``params -> scalar loss`` (it receives all parameters).
        params: the starting parameters; never modified.
        optimizer: a gradient transformation ([`sgd()`][torchcross.learners.transforms.sgd],
            [`adam()`][torchcross.learners.transforms.adam], ``chain(...)``), whose updates are added to the
            parameters. The older objects ([`SGD`][torchcross.learners.inner_optimizers.SGD],
            [`Adam`][torchcross.learners.inner_optimizers.Adam]) are still accepted
            ([`as_transformation()`][as_transformation]).
        num_steps: number of steps (0 returns ``params`` unchanged).
        adapt: names of the parameters to update (default: all); the others are
            held fixed but still receive outer gradients through ``loss_fn``.
        first_order: detach the inner gradients (first-order MAML).
        differentiable: ``False`` runs on detached copies without building a graph
            across steps (fine-tuning); the result does not require gradients.
        checkpoint: do not store each second-order step's intermediate results;
            recompute them during the backward pass (``torch.utils.checkpoint``,
            non-reentrant). Saves memory in long inner loops for one more forward
            pass per step.
        state: optimiser state to continue from (default: ``optimizer.init``).
        use_func: take gradients with ``torch.func.grad`` instead of
            ``torch.autograd.grad`` (needed inside ``torch.func.vmap``).

    Returns:
        An [`InnerLoopResult`][torchcross.learners.functional.InnerLoopResult] ``(params, state, losses)``.

    Examples:
        >>> from torchcross.learners.transforms import sgd
        >>> p = {"w": torch.tensor([3.0])}
        >>> r = inner_loop(lambda q: (q["w"] ** 2).sum(), p, sgd(0.5), 2, differentiable=False)
        >>> r.params["w"], r.losses
        (tensor([0.]), tensor([9., 0.]))
    """
    _check_steps(num_steps)
    optimizer = as_transformation(optimizer)
    names = _adapt_names(params, adapt)
    current: ParamDict = dict(params)
    if state is None:
        state = optimizer.init(current)
    if not differentiable:
        if use_func:
            raise ValueError(
                "use_func=True needs differentiable=True (it exists for vmap over meta-gradients)"
            )
        current = {k: v.detach() for k, v in current.items()}
    losses: list[Tensor] = []
    with torch.enable_grad():
        for _ in range(num_steps):
            if use_func:
                current, state, loss = _func_step(loss_fn, optimizer, names, first_order, current, state)
            elif not differentiable:
                current, state, loss = _plain_step(loss_fn, optimizer, names, current, state)
            else:
                # A fresh node per adapted tensor makes each step's gradient the partial
                # derivative at the current point, even for a tensor that earlier steps held
                # fixed while other parameters were computed from it.
                for n in names:
                    t = current[n]
                    current[n] = t.view_as(t) if t.requires_grad else t.detach().requires_grad_()
                create_graph = not first_order
                if checkpoint and create_graph and supports_checkpoint(optimizer, state):
                    current, state, loss = checkpointed_step(loss_fn, optimizer, names, current, state)
                elif checkpoint and create_graph:
                    current, state, loss = _checkpoint(
                        _autograd_step, loss_fn, optimizer, names, True, current, state, use_reentrant=False
                    )
                else:
                    current, state, loss = _autograd_step(
                        loss_fn, optimizer, names, create_graph, current, state
                    )
            losses.append(loss)
    stacked = torch.stack(losses) if losses else torch.zeros(0)
    return InnerLoopResult(current, state, stacked)


def maml_query_loss(
    support_loss: Callable[[ParamDict], Tensor],
    query_loss: Callable[[ParamDict], Tensor],
    params: Mapping[str, Tensor],
    optimizer: GradientTransformation | InnerOptimizer,
    num_steps: int,
    **inner_kwargs: Any,
) -> Tensor:
    """MAML's task loss: adapt on the support loss, return the query loss of the result.

    ``inner_kwargs`` go to [`inner_loop()`][torchcross.learners.functional.inner_loop] (``adapt``,
    ``first_order``, ``checkpoint``, ``use_func``). Differentiate the result with respect to ``params`` for
    the meta-gradient.

    Examples:
        >>> from torchcross.learners.transforms import sgd
        >>> w = torch.tensor([1.0], requires_grad=True)
        >>> q = maml_query_loss(lambda p: (p["w"] ** 2).sum(), lambda p: p["w"].sum(), {"w": w}, sgd(0.25), 1)
        >>> q, torch.autograd.grad(q, w)[0]
        (tensor(0.5000, grad_fn=<SumBackward0>), tensor([0.5000]))
    """
    adapted = inner_loop(support_loss, params, optimizer, num_steps, **inner_kwargs).params
    return query_loss(adapted)


def finetune(
    loss_fn: Callable[[ParamDict], Tensor],
    params: Mapping[str, Tensor],
    optimizer: GradientTransformation | InnerOptimizer,
    num_steps: int,
    *,
    adapt: Collection[str] | None = None,
) -> ParamDict:
    """A fine-tuning run: [`inner_loop()`][torchcross.learners.functional.inner_loop] without a graph; returns
    detached parameters.

    Examples:
        >>> from torchcross.learners.transforms import sgd
        >>> finetune(lambda p: ((p["w"] - 4) ** 2).sum(), {"w": torch.zeros(1)}, sgd(0.25), 3)["w"]
        tensor([3.5000])
    """
    return inner_loop(loss_fn, params, optimizer, num_steps, adapt=adapt, differentiable=False).params
