"""When a run has diverged: one rule for training loops and for adaptation at evaluation.

A loss *diverged* when it is not finite, or when it is finite but far above where the run
started ([`DivergenceRule`][DivergenceRule]): above

    limit(start) = min(bound, factor * max(|start|, 1))

with ``start`` the loss the run started from (a training run's first loss; the support
loss before an adaptation's first step). The defaults (``factor = 1000``, ``bound =
1e6``) stop nothing that trains: a classification loss starts near ``ln C`` (``ln 2 =
0.69`` under a zero head), so the limit is 1000, a mean cross-entropy for which the
model would put a probability of ``e^-1000`` on the true class; and no loss, whatever
its start, may reach a million. An inner learning rate of ``1e30`` crosses it at once.

A step that large can also land on a support set it separates perfectly, with a support
loss of 0 and logits of ``1e28``; so an adaptation has also diverged when a support logit
is above ``logit_bound`` (``1e6``) in magnitude. (Probabilities are already exactly 0 or 1
in float32 beyond about 17 for a sigmoid; trained heads give logits of tens.)

* Training: the protocol's ``train_steps`` (``torchcross.protocol.training``) checks every
  step's loss and stops with a ``DivergedLossError`` (a ``NonFiniteLossError``).
* Adaptation at evaluation (``MAML.predict`` / ``adapt``, ``FineTuner.predict`` /
  ``predict_many``): the support loss and logits after the last step are checked against
  the support loss before the first; a diverged episode gets NaN parameters, hence NaN
  logits, with a [`DivergenceWarning`][DivergenceWarning], so
  evaluation marks it ``non-finite`` instead of scoring its logits (``torchcross run`` then scores
  it at chance level or leaves it out, as ``[evaluation] diverged`` says, and counts it).

Examples:
    >>> rule = DivergenceRule()
    >>> rule.limit(0.69), rule.limit(5000.0)
    (1000.0, 1000000.0)
    >>> rule.diverged(40.0, start=0.69), rule.diverged(2e3, start=0.69), rule.diverged(float("nan"), 1.0)
    (False, True, True)
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

from torchcross.tasks.task import TaskDescription

__all__ = ["DIVERGENCE", "DivergenceRule", "DivergenceWarning", "nan_if_diverged"]


class DivergenceWarning(RuntimeWarning):
    """An adaptation diverged; its predictions are NaN (the message names the task and the losses)."""


@dataclass(frozen=True)
class DivergenceRule:
    """A loss diverged when it is not finite or above ``min(bound, factor * max(|start|, 1))``; an
    adaptation also when a support logit is above ``logit_bound`` in magnitude.

    Attributes:
        factor: how far above its start (at least 1) a loss may go.
        bound: the largest loss allowed whatever the start (``math.inf``: no absolute bound).
        logit_bound: the largest logit magnitude an adaptation may end with.

    Raises:
        ValueError: ``factor < 1``, ``bound <= 0`` or ``logit_bound <= 0`` (or any of them NaN).
    """

    factor: float = 1000.0
    bound: float = 1e6
    logit_bound: float = 1e6

    def __post_init__(self) -> None:
        if not self.factor >= 1:
            raise ValueError(f"DivergenceRule factor must be >= 1, got {self.factor!r}")
        if not self.bound > 0:
            raise ValueError(f"DivergenceRule bound must be > 0, got {self.bound!r}")
        if not self.logit_bound > 0:
            raise ValueError(f"DivergenceRule logit_bound must be > 0, got {self.logit_bound!r}")

    def limit(self, start: float) -> float:
        """The largest loss of a run that started at ``start`` that is not divergence."""
        scale = abs(start) if math.isfinite(start) else 1.0
        return min(self.bound, self.factor * max(scale, 1.0))

    def diverged(self, loss: float, start: float) -> bool:
        """Whether ``loss`` (of a run that started at ``start``) is non-finite or above the limit."""
        return not loss <= self.limit(start)

    def describe(self) -> str:
        """The loss limit in words, for messages."""
        return f"min({self.bound:g}, {self.factor:g} x max(|first loss|, 1))"


DIVERGENCE = DivergenceRule()
"""The default rule (``factor = 1000``, ``bound = 1e6``, ``logit_bound = 1e6``)."""


def nan_if_diverged(
    params: dict[str, Tensor],
    start: float,
    final: Tensor | float,
    logits: Tensor,
    description: TaskDescription,
    what: str,
    rule: DivergenceRule = DIVERGENCE,
) -> dict[str, Tensor]:
    """``params``, or NaN copies and a ``DivergenceWarning`` if the adaptation that made them diverged.

    Args:
        params: the adapted parameters.
        start: the support loss before the first step.
        final: the support loss after the last step.
        logits: the support logits after the last step.
        description: the task (named in the warning).
        what: what adapted (``"the inner loop"``), named in the warning.
        rule: the divergence rule.

    Examples:
        >>> d = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"}, "toy")
        >>> nan_if_diverged({"w": torch.ones(1)}, 0.69, 0.2, torch.tensor([[1.5]]), d, "a test")["w"]
        tensor([1.])
    """
    final = float(final)
    largest = float(logits.detach().abs().max()) if logits.numel() else 0.0
    tid = description.task_identifier
    if not math.isfinite(start):
        problem = f"{what} on task {tid!r} started from a support loss of {start}"
        fix = "check the support inputs for NaN/inf"
    elif rule.diverged(final, start):
        problem = (
            f"{what} diverged on task {tid!r}: the support loss went from {start:.4g} to {final:.4g} (the "
            f"limit is {rule.limit(start):.4g} = {rule.describe()}, and the loss must be finite)"
        )
        fix = "lower the learning rate or the number of steps"
    elif not largest <= rule.logit_bound:
        problem = (
            f"{what} diverged on task {tid!r}: its support logits reach {largest:.4g} in magnitude (above "
            f"{rule.logit_bound:g}; the support loss went from {start:.4g} to {final:.4g})"
        )
        fix = "lower the learning rate or the number of steps"
    else:
        return params
    warnings.warn(
        f"{problem}; its predictions are NaN (an evaluation marks the episode non-finite): {fix}",
        DivergenceWarning,
        stacklevel=3,
    )
    return {k: torch.full_like(v, math.nan) if v.is_floating_point() else v for k, v in params.items()}
