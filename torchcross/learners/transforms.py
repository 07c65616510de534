"""Gradient transformations: the small pieces inner optimisers are composed from.

A [`GradientTransformation`][GradientTransformation] is a pair of pure
functions, as in optax:
``init(params) -> state`` and ``update(updates, state, params) -> (updates, state)``.
``updates`` start as the gradients and each piece turns them into new updates;
[`chain()`][chain] runs pieces one after the other, and
[`apply_updates()`][apply_updates] adds the
result to the parameters. States are ``NamedTuple`` s of tensors, dicts and numbers
(a chain's state is the tuple of its pieces' states), so they can be flattened
generically (checkpointed inner steps do).

Every operation is out of place, so updates can be differentiated with respect to the
parameters (second-order MAML) and to learning-rate tensors (Meta-SGD). Only the
parameters named in ``updates`` are touched. Per-parameter state is created on first
use, with one step counter shared by all parameters (a parameter first updated at step
``t`` behaves as if it had received zero gradients before).

A learning rate is a float, or a mapping from parameter name to a float or tensor
(per-parameter and per-element learning rates, broadcast against the parameter).

Examples:
    >>> import torch
    >>> adam_w = chain(add_decayed_weights(0.01), scale_by_adam(), scale_by_learning_rate(0.1))
    >>> params = {"w": torch.tensor([1.0, -2.0])}
    >>> state = adam_w.init(params)
    >>> updates, state = adam_w.update({"w": torch.tensor([3.0, 0.5])}, state, params)
    >>> apply_updates(params, updates)["w"]
    tensor([ 0.9000, -2.1000])
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Union

import torch
from torch import Tensor

__all__ = [
    "EmptyState",
    "GradientTransformation",
    "LearningRate",
    "ScaleByAdamState",
    "ScaleByLearningRateState",
    "TraceState",
    "adam",
    "add_decayed_weights",
    "apply_updates",
    "chain",
    "check_learning_rate",
    "holds_tensors_in_state",
    "is_elementwise",
    "scale_by_adam",
    "scale_by_learning_rate",
    "sgd",
    "skips_zero_gradients",
    "trace",
]

LearningRate = Union[float, Mapping[str, Union[float, Tensor]]]  # noqa: UP007 (a runtime alias)
Updates = dict[str, Tensor]


class GradientTransformation(NamedTuple):
    """A pure ``(init, update)`` pair.

    Attributes:
        init: ``params -> state`` before the first step.
        update: ``(updates, state, params) -> (new updates, new state)``.
    """

    init: Callable[[Mapping[str, Tensor]], Any]
    update: Callable[[Mapping[str, Tensor], Any, Mapping[str, Tensor]], tuple[Updates, Any]]


class EmptyState(NamedTuple):
    """The state of a stateless transformation."""


class ScaleByLearningRateState(NamedTuple):
    """State of [`scale_by_learning_rate()`][scale_by_learning_rate] with
    learning-rate tensors (Meta-SGD): the rates, carried in the state so that every tensor a step reads is
    in its inputs (checkpointed steps pass them on and differentiate with respect to them)."""

    lr: dict[str, float | Tensor]


# What is known about the transformations built here, by their update function (a side table, so that a
# GradientTransformation stays a plain (init, update) pair).
_SKIPS_ZERO = "skips_zero_gradients"
_STATE_TENSORS = "holds_tensors_in_state"
_ELEMENTWISE = "elementwise"
_TRAITS: weakref.WeakKeyDictionary[Callable[..., Any], frozenset[str]] = weakref.WeakKeyDictionary()


def _with_traits(transform: GradientTransformation, *traits: str) -> GradientTransformation:
    _TRAITS[transform.update] = frozenset(traits)
    return transform


def _traits(transform: GradientTransformation) -> frozenset[str]:
    return _TRAITS.get(transform.update, frozenset())


def skips_zero_gradients(transform: GradientTransformation) -> bool:
    """Whether a first step (from ``init``) of ``transform`` leaves a parameter with a zero gradient
    unchanged, and later steps behave as if that parameter had not been in the first step at all.

    True for [`sgd()`][sgd] and [`adam()`][adam]
    without weight decay; false for other chains (the shortcut it allows is only taken for the optimisers
    known to permit it). MAML's zero-head shortcut
    ([`adapt_backbone_and_head()`][torchcross.learners.task_adaptation.adapt_backbone_and_head]) relies on it.

    Examples:
        >>> skips_zero_gradients(sgd(0.1)), skips_zero_gradients(sgd(0.1, weight_decay=0.01))
        (True, False)
    """
    return _SKIPS_ZERO in _traits(transform)


def holds_tensors_in_state(transform: GradientTransformation) -> bool:
    """Whether every tensor that ``transform.update`` reads is in its arguments (the state included), none
    hidden in the function: true for the pieces of this module and their chains (learning-rate tensors are
    carried in the state), false for transformations made elsewhere. Checkpointed inner steps need it.

    Examples:
        >>> holds_tensors_in_state(adam({"w": torch.ones(1)}))
        True
    """
    return _STATE_TENSORS in _traits(transform)


def is_elementwise(transform: GradientTransformation) -> bool:
    """Whether ``transform`` treats every element of every parameter on its own: the update of an element
    reads only that element's gradient, parameter value and state (and the step count shared by all).

    True for the pieces of this module and their chains, false for transformations made elsewhere
    (a global-norm clip, say, mixes elements). Then parameters stacked along a new first dimension
    (one slice per episode) and updated together get, slice for slice, the updates each would get
    alone: [`FineTuner.predict_many()`][torchcross.learners.finetuner.FineTuner.predict_many] relies on it to
    fine-tune many episodes at once.

    Examples:
        >>> is_elementwise(adam(0.1)), is_elementwise(chain(trace(0.9), scale_by_learning_rate(0.1)))
        (True, True)
    """
    return _ELEMENTWISE in _traits(transform)


class TraceState(NamedTuple):
    """State of [`trace()`][trace]: the momentum buffer of every parameter
    updated so far."""

    momentum_buffer: dict[str, Tensor]


class ScaleByAdamState(NamedTuple):
    """State of [`scale_by_adam()`][scale_by_adam]: the shared step count and
    the moment estimates."""

    step: int
    exp_avg: dict[str, Tensor]
    exp_avg_sq: dict[str, Tensor]


def _check_unit(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be a float in [0, 1), got {value!r}")


def _check_non_negative(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{name} must be a float >= 0, got {value!r}")


def check_learning_rate(lr: LearningRate) -> None:
    """Raise ``ValueError`` unless ``lr`` is a finite float >= 0 or a mapping name -> rate."""
    if isinstance(lr, Mapping):
        return
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr < 0:
        raise ValueError(f"lr must be a non-negative float or a mapping name -> lr, got {lr!r}")


def _lr_for(lr: LearningRate, name: str) -> float | Tensor:
    if isinstance(lr, Mapping):
        try:
            return lr[name]
        except KeyError:
            raise KeyError(
                f"no learning rate for parameter {name!r}; the lr mapping has {sorted(lr)[:8]}..."
            ) from None
    return lr


def chain(*transforms: GradientTransformation) -> GradientTransformation:
    """Run ``transforms`` one after the other; the state is the tuple of their states.

    Examples:
        >>> sgd = chain(trace(0.9), scale_by_learning_rate(0.1))
        >>> sgd.init({"w": torch.zeros(2)})
        (TraceState(momentum_buffer={}), EmptyState())
    """
    for t in transforms:
        if not isinstance(t, GradientTransformation):
            raise TypeError(f"chain takes GradientTransformation pieces, got {type(t).__name__}")

    def init(params: Mapping[str, Tensor]) -> tuple[Any, ...]:
        return tuple(t.init(params) for t in transforms)

    def update(
        updates: Mapping[str, Tensor], state: tuple[Any, ...], params: Mapping[str, Tensor]
    ) -> tuple[Updates, tuple[Any, ...]]:
        if len(state) != len(transforms):
            raise ValueError(f"chain of {len(transforms)} pieces got a state of {len(state)}")
        out, new_state = dict(updates), []
        for t, s in zip(transforms, state):
            out, s = t.update(out, s, params)
            new_state.append(s)
        return out, tuple(new_state)

    in_state = all(holds_tensors_in_state(t) for t in transforms)
    elementwise = all(is_elementwise(t) for t in transforms)
    traits = (_STATE_TENSORS,) * in_state + (_ELEMENTWISE,) * elementwise
    return _with_traits(GradientTransformation(init, update), *traits)


def add_decayed_weights(weight_decay: float) -> GradientTransformation:
    """``g + weight_decay * p``: the L2 penalty of ``torch.optim.SGD`` / ``Adam``.

    Examples:
        >>> t = add_decayed_weights(0.5)
        >>> t.update({"w": torch.tensor([1.0])}, t.init({}), {"w": torch.tensor([4.0])})[0]
        {'w': tensor([3.])}
    """
    _check_non_negative("weight_decay", weight_decay)

    def init(params: Mapping[str, Tensor]) -> EmptyState:
        return EmptyState()

    def update(
        updates: Mapping[str, Tensor], state: EmptyState, params: Mapping[str, Tensor]
    ) -> tuple[Updates, EmptyState]:
        if not weight_decay:
            return dict(updates), state
        return {k: g + weight_decay * params[k] for k, g in updates.items()}, state

    return _with_traits(GradientTransformation(init, update), _STATE_TENSORS, _ELEMENTWISE)


def trace(momentum: float) -> GradientTransformation:
    """Momentum as ``torch.optim.SGD`` (no dampening): ``b = momentum * b + g``, the first ``b`` is ``g``.

    ``momentum=0`` passes the updates through and keeps no buffers.

    Examples:
        >>> t = trace(0.5)
        >>> g = {"w": torch.tensor([2.0])}
        >>> u, s = t.update(g, t.init(g), g)
        >>> t.update(g, s, g)[0]
        {'w': tensor([3.])}
    """
    _check_unit("momentum", momentum)

    def init(params: Mapping[str, Tensor]) -> TraceState:
        return TraceState({})

    def update(
        updates: Mapping[str, Tensor], state: TraceState, params: Mapping[str, Tensor]
    ) -> tuple[Updates, TraceState]:
        if not momentum:
            return dict(updates), state
        out, buffers = {}, dict(state.momentum_buffer)
        for name, g in updates.items():
            buf = buffers.get(name)
            out[name] = buffers[name] = g if buf is None else buf * momentum + g
        return out, TraceState(buffers)

    return _with_traits(GradientTransformation(init, update), _STATE_TENSORS, _ELEMENTWISE)


def _safe_sqrt(x: Tensor) -> Tensor:
    # sqrt whose derivative at 0 is 0 instead of inf, so that parameters with a zero
    # gradient (e.g. a backbone under a zero-initialised head) do not turn second-order
    # gradients into NaN. The forward value equals torch.sqrt.
    if not x.requires_grad:
        return x.sqrt()
    positive = x > 0
    return torch.where(positive, torch.where(positive, x, torch.ones_like(x)).sqrt(), torch.zeros_like(x))


def scale_by_adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> GradientTransformation:
    """Adam's direction, as ``torch.optim.Adam``: ``m_hat / (sqrt(v_hat) + eps)``, bias-corrected.

    The square root of the second moment has derivative 0 where the moment is 0 (rather
    than infinity), so meta-gradients stay finite when some gradients are zero.

    Examples:
        >>> t = scale_by_adam()
        >>> g = {"w": torch.tensor([5.0])}
        >>> t.update(g, t.init(g), g)[0]  # the first step has unit size
        {'w': tensor([1.0000])}
    """
    _check_unit("b1", b1)
    _check_unit("b2", b2)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise ValueError(f"eps must be a float > 0, got {eps!r}")

    def init(params: Mapping[str, Tensor]) -> ScaleByAdamState:
        return ScaleByAdamState(0, {}, {})

    def update(
        updates: Mapping[str, Tensor], state: ScaleByAdamState, params: Mapping[str, Tensor]
    ) -> tuple[Updates, ScaleByAdamState]:
        step = state.step + 1
        bias_correction1 = 1 - b1**step
        bias_correction2_sqrt = math.sqrt(1 - b2**step)
        exp_avg, exp_avg_sq, out = dict(state.exp_avg), dict(state.exp_avg_sq), {}
        for name, g in updates.items():
            m, v = exp_avg.get(name), exp_avg_sq.get(name)
            m = g * (1 - b1) if m is None else torch.lerp(m, g, 1 - b1)
            v = g * g * (1 - b2) if v is None else v * b2 + g * g * (1 - b2)
            exp_avg[name], exp_avg_sq[name] = m, v
            denom = _safe_sqrt(v) / bias_correction2_sqrt + eps
            out[name] = (m / denom) / bias_correction1
        return out, ScaleByAdamState(step, exp_avg, exp_avg_sq)

    return _with_traits(GradientTransformation(init, update), _STATE_TENSORS, _ELEMENTWISE)


def scale_by_learning_rate(lr: LearningRate) -> GradientTransformation:
    """``-lr * u``: a descent step of size ``lr`` (float, or name -> float/tensor for Meta-SGD).

    A mapping that holds tensors is carried in the state
    ([`ScaleByLearningRateState`][ScaleByLearningRateState]) and read from
    there.

    Examples:
        >>> t = scale_by_learning_rate({"w": torch.tensor([0.1, 1.0])})
        >>> t.update({"w": torch.tensor([2.0, 2.0])}, t.init({}), {})[0]
        {'w': tensor([-0.2000, -2.0000])}
    """
    check_learning_rate(lr)
    in_state = isinstance(lr, Mapping) and any(isinstance(v, Tensor) for v in lr.values())
    fixed: LearningRate = 0.0 if in_state else lr  # the closure keeps no tensor

    def init(params: Mapping[str, Tensor]) -> EmptyState | ScaleByLearningRateState:
        return ScaleByLearningRateState(dict(lr)) if in_state and isinstance(lr, Mapping) else EmptyState()

    def update(
        updates: Mapping[str, Tensor],
        state: EmptyState | ScaleByLearningRateState,
        params: Mapping[str, Tensor],
    ) -> tuple[Updates, EmptyState | ScaleByLearningRateState]:
        if isinstance(state, ScaleByLearningRateState):
            rate: LearningRate = state.lr
        elif in_state:
            raise TypeError(
                "scale_by_learning_rate with learning-rate tensors reads them from its state; pass the state "
                f"its init() made (a ScaleByLearningRateState), got {type(state).__name__}"
            )
        else:
            rate = fixed
        return {k: (-_lr_for(rate, k)) * u for k, u in updates.items()}, state  # one op per parameter

    return _with_traits(GradientTransformation(init, update), _STATE_TENSORS, _ELEMENTWISE)


def sgd(lr: LearningRate, momentum: float = 0.0, weight_decay: float = 0.0) -> GradientTransformation:
    """Stochastic gradient descent as ``torch.optim.SGD`` (no dampening, no Nesterov), differentiable:
    ``chain(add_decayed_weights(weight_decay), trace(momentum), scale_by_learning_rate(lr))``.

    Args:
        lr: learning rate (float, or a mapping name -> float/tensor for Meta-SGD).
        momentum: momentum factor; the first buffer is the gradient itself.
        weight_decay: L2 penalty added to the gradient.

    Examples:
        >>> t = sgd(0.5)
        >>> p = {"w": torch.tensor([1.0, 2.0])}
        >>> apply_updates(p, t.update({"w": torch.tensor([2.0, 2.0])}, t.init(p), p)[0])["w"]
        tensor([0., 1.])
    """
    t = chain(add_decayed_weights(weight_decay), trace(momentum), scale_by_learning_rate(lr))
    return _with_traits(t, _STATE_TENSORS, _ELEMENTWISE, *((_SKIPS_ZERO,) if weight_decay == 0 else ()))


def adam(
    lr: LearningRate,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
) -> GradientTransformation:
    """Adam as ``torch.optim.Adam`` (L2 weight decay, no AMSGrad), differentiable:
    ``chain(add_decayed_weights(weight_decay), scale_by_adam(*betas, eps), scale_by_learning_rate(lr))``.

    Args:
        lr: learning rate (float, or a mapping name -> float/tensor for Meta-SGD).
        betas: decay rates of the first and second moment estimates.
        eps: added to the denominator.
        weight_decay: L2 penalty added to the gradient.

    Raises:
        ValueError: a bad setting, naming it.

    Examples:
        >>> t = adam(0.1)
        >>> p = {"w": torch.tensor([1.0])}
        >>> apply_updates(p, t.update({"w": torch.tensor([5.0])}, t.init(p), p)[0])["w"]  # moves by ~lr
        tensor([0.9000])
    """
    check_learning_rate(lr)
    if len(betas) != 2 or not all(
        isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in betas
    ):
        raise ValueError(f"betas must be a pair (beta1, beta2) of floats in [0, 1), got {betas!r}")
    t = chain(
        add_decayed_weights(weight_decay), scale_by_adam(betas[0], betas[1], eps), scale_by_learning_rate(lr)
    )
    return _with_traits(t, _STATE_TENSORS, _ELEMENTWISE, *((_SKIPS_ZERO,) if weight_decay == 0 else ()))


def apply_updates(params: Mapping[str, Tensor], updates: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``p + u`` for every parameter in ``updates``; the others are passed through as they are.

    Examples:
        >>> apply_updates({"w": torch.tensor([1.0]), "b": torch.tensor([0.0])}, {"w": torch.tensor([-0.5])})
        {'w': tensor([0.5000]), 'b': tensor([0.])}
    """
    new = dict(params)
    for name, u in updates.items():
        new[name] = params[name] + u
    return new
