"""The older inner-optimiser objects, kept working: [`SGD`][SGD] and
[`Adam`][Adam] describe the chains that
[`sgd()`][sgd] and [`adam()`][adam] build.

Inner loops take one kind of optimiser, a
[`GradientTransformation`][GradientTransformation] (``update(updates, state,
params)``); [`as_transformation()`][as_transformation] turns the objects
of this module into one (their ``transform``). Deprecated, still accepted: an inner optimiser as a pair of
pure functions on parameter dicts,
``init(params) -> state`` and ``update(params, grads, state) -> (new params, new state)``
([`InnerOptimizer`][InnerOptimizer]).
`SGD` and `Adam` are
friendly names for chains
of the pieces in [`torchcross.learners.transforms`][torchcross.learners.transforms]:

* ``SGD(lr, momentum, weight_decay)`` is
  ``chain(add_decayed_weights(weight_decay), trace(momentum), scale_by_learning_rate(lr))``;
* ``Adam(lr, betas, eps, weight_decay)`` is
  ``chain(add_decayed_weights(weight_decay), scale_by_adam(*betas, eps), scale_by_learning_rate(lr))``.

[`TransformOptimizer`][TransformOptimizer] turns any other chain into an
inner optimiser. Nothing is written in place, so the new parameters can be differentiated with respect to the
starting ones (second-order MAML) and to learning-rate tensors (Meta-SGD). Without gradient tracking,
`SGD` computes exactly what ``torch.optim.SGD`` computes, and
`Adam` what ``torch.optim.Adam`` computes up to rounding.

Examples:
    >>> import torch
    >>> opt = SGD(lr=0.5)  # sgd(0.5) is the GradientTransformation it applies
    >>> params = {"w": torch.tensor([1.0, 2.0])}
    >>> new, state = opt.update(params, {"w": torch.tensor([2.0, 2.0])}, opt.init(params))
    >>> new["w"]
    tensor([0., 1.])
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from torch import Tensor

from torchcross.learners.transforms import (
    GradientTransformation,
    LearningRate,
    ScaleByAdamState,
    TraceState,
    adam,
    apply_updates,
    check_learning_rate,
    sgd,
)

__all__ = [
    "SGD",
    "Adam",
    "AdamState",
    "InnerOptimizer",
    "LearningRate",
    "as_transformation",
    "SGDState",
    "TransformOptimizer",
    "SkipsZeroGradients",
]

ParamDict = dict[str, Tensor]

SGDState = tuple[Any, TraceState, Any]
"""The state of [`SGD`][torchcross.learners.inner_optimizers.SGD]: ``(EmptyState(),
TraceState(momentum_buffer), EmptyState())``."""

AdamState = tuple[Any, ScaleByAdamState, Any]
"""The state of [`Adam`][torchcross.learners.inner_optimizers.Adam]: ``(EmptyState(), ScaleByAdamState(...),
EmptyState())``."""


class InnerOptimizer(Protocol):
    """What [`inner_loop()`][torchcross.learners.functional.inner_loop] needs from an optimiser."""

    def init(self, params: Mapping[str, Tensor]) -> Any:
        """The state before the first step."""
        ...

    def update(
        self, params: Mapping[str, Tensor], grads: Mapping[str, Tensor], state: Any
    ) -> tuple[ParamDict, Any]:
        """One step: new parameters (all of them) and the new state."""
        ...


@runtime_checkable
class SkipsZeroGradients(Protocol):
    """An inner optimiser that says whether its first step skips parameters with a zero gradient.

    When ``first_step_skips_zero_gradients`` is true, a first step (from ``init``) that gets a zero gradient
    for a parameter returns that parameter unchanged, and later steps behave as if that parameter had not been
    in the first step at all. MAML's zero-head shortcut
    ([`adapt_backbone_and_head()`][torchcross.learners.task_adaptation.adapt_backbone_and_head]) relies on it;
    optimisers without it take every step in full.
    """

    @property
    def first_step_skips_zero_gradients(self) -> bool: ...


def _step(
    transform: GradientTransformation,
    params: Mapping[str, Tensor],
    grads: Mapping[str, Tensor],
    state: Any,
) -> tuple[ParamDict, Any]:
    updates, state = transform.update(grads, state, params)
    return apply_updates(params, updates), state


@dataclass(frozen=True)
class TransformOptimizer:
    """The inner optimiser that applies ``transform``'s updates: ``p + u``.

    Examples:
        >>> import torch
        >>> from torchcross.learners.transforms import chain, scale_by_learning_rate, trace
        >>> opt = TransformOptimizer(chain(trace(0.9), scale_by_learning_rate(0.5)))
        >>> p = {"w": torch.tensor([1.0])}
        >>> opt.update(p, {"w": torch.tensor([2.0])}, opt.init(p))[0]
        {'w': tensor([0.])}
    """

    transform: GradientTransformation

    def __post_init__(self) -> None:
        if not isinstance(self.transform, GradientTransformation):
            raise TypeError(
                f"transform must be a GradientTransformation (e.g. chain(...)), got "
                f"{type(self.transform).__name__}"
            )

    def init(self, params: Mapping[str, Tensor]) -> Any:
        """``transform.init(params)``."""
        return self.transform.init(params)

    def update(
        self, params: Mapping[str, Tensor], grads: Mapping[str, Tensor], state: Any
    ) -> tuple[ParamDict, Any]:
        """New parameters ``p + u`` with ``u`` the transformed ``grads``, and the new state."""
        return _step(self.transform, params, grads, state)


@dataclass(frozen=True)
class SGD:
    """Stochastic gradient descent, as ``torch.optim.SGD`` (no dampening, no Nesterov).

    Args:
        lr: learning rate (float, or a mapping name -> float/tensor for Meta-SGD).
        momentum: momentum factor; the first buffer is the gradient itself.
        weight_decay: L2 penalty added to the gradient.

    Examples:
        >>> SGD(lr=0.1, momentum=0.9)
        SGD(lr=0.1, momentum=0.9, weight_decay=0.0)
    """

    lr: LearningRate
    momentum: float = 0.0
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        self.transform  # noqa: B018 (building the pieces checks every argument)

    @property
    def transform(self) -> GradientTransformation:
        """The chain this optimiser applies (built anew on each call; the pieces hold no state).

        ``chain(add_decayed_weights(weight_decay), trace(momentum), scale_by_learning_rate(lr))``
        """
        return sgd(self.lr, self.momentum, self.weight_decay)

    @property
    def first_step_skips_zero_gradients(self) -> bool:
        """Without weight decay, yes (see
        [`SkipsZeroGradients`][SkipsZeroGradients])."""
        return self.weight_decay == 0

    def init(self, params: Mapping[str, Tensor]) -> SGDState:
        """Empty state (buffers are created on first use)."""
        return self.transform.init(params)

    def update(
        self, params: Mapping[str, Tensor], grads: Mapping[str, Tensor], state: SGDState
    ) -> tuple[ParamDict, SGDState]:
        """``p - lr * g`` (with momentum and weight decay if configured) for every ``p`` in ``grads``."""
        return _step(self.transform, params, grads, state)


@dataclass(frozen=True)
class Adam:
    """Adam, as ``torch.optim.Adam`` (L2 weight decay, no AMSGrad), differentiable.

    The square root of the second moment has derivative 0 where the moment is 0
    (rather than infinity), so meta-gradients stay finite when some gradients are zero.

    Args:
        lr: learning rate (float, or a mapping name -> float/tensor for Meta-SGD).
        betas: decay rates of the first and second moment estimates.
        eps: added to the denominator.
        weight_decay: L2 penalty added to the gradient.

    Examples:
        >>> import torch
        >>> opt = Adam(lr=0.1)
        >>> p = {"w": torch.tensor([1.0])}
        >>> opt.update(p, {"w": torch.tensor([5.0])}, opt.init(p))[0]["w"]  # first step moves by ~lr
        tensor([0.9000])
    """

    lr: LearningRate
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        check_learning_rate(self.lr)
        if len(self.betas) != 2 or not all(
            isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in self.betas
        ):
            raise ValueError(f"betas must be a pair (beta1, beta2) of floats in [0, 1), got {self.betas!r}")
        self.transform  # noqa: B018 (validates eps and weight_decay)

    @property
    def transform(self) -> GradientTransformation:
        """The chain this optimiser applies (built anew on each call; the pieces hold no state).

        ``chain(add_decayed_weights(weight_decay), scale_by_adam(*betas, eps), scale_by_learning_rate(lr))``
        """
        return adam(self.lr, self.betas, self.eps, self.weight_decay)

    @property
    def first_step_skips_zero_gradients(self) -> bool:
        """Without weight decay, yes (see
        [`SkipsZeroGradients`][SkipsZeroGradients])."""
        return self.weight_decay == 0

    def init(self, params: Mapping[str, Tensor]) -> AdamState:
        """Step 0 with no moments (they start at zero on first use)."""
        return self.transform.init(params)

    def update(
        self, params: Mapping[str, Tensor], grads: Mapping[str, Tensor], state: AdamState
    ) -> tuple[ParamDict, AdamState]:
        """One Adam step for every parameter in ``grads``."""
        return _step(self.transform, params, grads, state)


def _wrap(optimizer: Any) -> GradientTransformation:
    """A GradientTransformation over an object with ``update(params, grads, state)``: its updates are the
    differences of the new parameters and the old ones (equal up to rounding)."""

    def init(params: Mapping[str, Tensor]) -> Any:
        return optimizer.init(params)

    def update(
        updates: Mapping[str, Tensor], state: Any, params: Mapping[str, Tensor]
    ) -> tuple[ParamDict, Any]:
        new, state = optimizer.update(params, updates, state)
        return {k: new[k] - params[k] for k in updates}, state

    return GradientTransformation(init, update)


def as_transformation(optimizer: Any) -> GradientTransformation:
    """``optimizer`` as the one optimiser abstraction of inner loops, a ``GradientTransformation``.

    A ``GradientTransformation`` is returned as it is; [`SGD`][SGD], [`Adam`][Adam] and
    [`TransformOptimizer`][TransformOptimizer] give their ``transform`` (the same steps, bit for bit); any
    other object with ``init(params)`` and ``update(params, grads, state)`` (the deprecated `InnerOptimizer`
    form) is wrapped, its updates being the differences of the parameters it returns (equal up to rounding).

    Raises:
        TypeError: ``optimizer`` is none of these.

    Examples:
        >>> import torch
        >>> as_transformation(SGD(0.1)).update({"w": torch.ones(1)}, SGD(0.1).init({}), {})[0]
        {'w': tensor([-0.1000])}
    """
    if isinstance(optimizer, GradientTransformation):
        return optimizer
    transform = getattr(optimizer, "transform", None)
    if isinstance(transform, GradientTransformation):
        return transform
    if callable(getattr(optimizer, "init", None)) and callable(getattr(optimizer, "update", None)):
        return _wrap(optimizer)
    raise TypeError(
        f"an inner optimiser must be a GradientTransformation (e.g. sgd(lr), adam(lr) or chain(...) from "
        f"torchcross.learners.transforms), got {type(optimizer).__name__}"
    )
