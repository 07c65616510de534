"""Differentiable optimisers for inner loops: pure ``init`` / ``update`` pairs on parameter dicts.

An inner optimiser never writes to a tensor: :meth:`SGD.update` and :meth:`Adam.update`
return new parameter and state dicts built from out-of-place operations, so the result
can be differentiated with respect to the starting parameters (second-order MAML) and
with respect to learnable learning rates (Meta-SGD). Without gradient tracking they
compute exactly what ``torch.optim.SGD`` / ``torch.optim.Adam`` compute.

Only the parameters named in ``grads`` are updated; the others are passed through as
the same tensor objects. State is created lazily per parameter, with one step counter
shared by all parameters (a parameter first updated at step ``t`` behaves as if it had
received zero gradients before).

A learning rate is a float, or a mapping from parameter name to a float or tensor
(per-parameter and per-element learning rates, broadcast against the parameter).

Examples:
    >>> import torch
    >>> opt = SGD(lr=0.5)
    >>> params = {"w": torch.tensor([1.0, 2.0])}
    >>> new, state = opt.update(params, {"w": torch.tensor([2.0, 2.0])}, opt.init(params))
    >>> new["w"]
    tensor([0., 1.])
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, Union

import torch
from torch import Tensor

__all__ = ["SGD", "Adam", "AdamState", "InnerOptimizer", "LearningRate", "SGDState"]

LearningRate = Union[float, Mapping[str, Union[float, Tensor]]]  # noqa: UP007 (a runtime alias)
ParamDict = dict[str, Tensor]


class InnerOptimizer(Protocol):
    """What :func:`~torchcross.learners.functional.inner_loop` needs from an optimiser."""

    def init(self, params: Mapping[str, Tensor]) -> object:
        """The state before the first step."""
        ...

    def update(
        self, params: Mapping[str, Tensor], grads: Mapping[str, Tensor], state: object
    ) -> tuple[ParamDict, object]:
        """One step: new parameters (all of them) and the new state."""
        ...


def _check_lr(lr: LearningRate) -> None:
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


def _check_unit(name: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")


@dataclass(frozen=True)
class SGDState:
    """State of :class:`SGD`: the momentum buffers (empty without momentum)."""

    momentum_buffer: Mapping[str, Tensor] = field(default_factory=dict)


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
        _check_lr(self.lr)
        _check_unit("momentum", self.momentum)
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")

    def init(self, params: Mapping[str, Tensor]) -> SGDState:
        """Empty state (buffers are created on first use)."""
        return SGDState()

    def update(
        self, params: Mapping[str, Tensor], grads: Mapping[str, Tensor], state: SGDState
    ) -> tuple[ParamDict, SGDState]:
        """``p - lr * g`` (with momentum and weight decay if configured) for every ``p`` in ``grads``."""
        new = dict(params)
        buffers = dict(state.momentum_buffer)
        for name, g in grads.items():
            p = params[name]
            if self.weight_decay:
                g = g + self.weight_decay * p
            if self.momentum:
                buf = buffers.get(name)
                g = g if buf is None else buf * self.momentum + g
                buffers[name] = g
            new[name] = p - _lr_for(self.lr, name) * g
        return new, SGDState(buffers)


@dataclass(frozen=True)
class AdamState:
    """State of :class:`Adam`: the shared step count and the moment estimates."""

    step: int = 0
    exp_avg: Mapping[str, Tensor] = field(default_factory=dict)
    exp_avg_sq: Mapping[str, Tensor] = field(default_factory=dict)


def _safe_sqrt(x: Tensor) -> Tensor:
    # sqrt whose derivative at 0 is 0 instead of inf, so that parameters with a zero
    # gradient (e.g. a backbone under a zero-initialised head) do not turn second-order
    # gradients into NaN. The forward value equals torch.sqrt.
    if not x.requires_grad:
        return x.sqrt()
    positive = x > 0
    return torch.where(positive, torch.where(positive, x, torch.ones_like(x)).sqrt(), torch.zeros_like(x))


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
        _check_lr(self.lr)
        if len(self.betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {self.betas!r}")
        _check_unit("betas[0]", self.betas[0])
        _check_unit("betas[1]", self.betas[1])
        if self.eps <= 0:
            raise ValueError(f"eps must be > 0, got {self.eps!r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")

    def init(self, params: Mapping[str, Tensor]) -> AdamState:
        """Step 0 with no moments (they start at zero on first use)."""
        return AdamState()

    def update(
        self, params: Mapping[str, Tensor], grads: Mapping[str, Tensor], state: AdamState
    ) -> tuple[ParamDict, AdamState]:
        """One Adam step for every parameter in ``grads``."""
        beta1, beta2 = self.betas
        step = state.step + 1
        bias_correction1 = 1 - beta1**step
        bias_correction2_sqrt = math.sqrt(1 - beta2**step)
        new = dict(params)
        exp_avg, exp_avg_sq = dict(state.exp_avg), dict(state.exp_avg_sq)
        for name, g in grads.items():
            p = params[name]
            if self.weight_decay:
                g = g + self.weight_decay * p
            m, v = exp_avg.get(name), exp_avg_sq.get(name)
            m = g * (1 - beta1) if m is None else torch.lerp(m, g, 1 - beta1)
            v = g * g * (1 - beta2) if v is None else v * beta2 + g * g * (1 - beta2)
            exp_avg[name], exp_avg_sq[name] = m, v
            denom = _safe_sqrt(v) / bias_correction2_sqrt + self.eps
            new[name] = p - (_lr_for(self.lr, name) / bias_correction1) * (m / denom)
        return new, AdamState(step, exp_avg, exp_avg_sq)
