"""What MAML and FineTuner share: how to adapt (`InnerLoop`) and which head to use (`HeadPolicy`).

Both are frozen dataclasses: values that say what a learner does, checked when they are made, and passed
whole to [`MAML`][torchcross.learners.maml.MAML] (``inner=``, ``head=``) and
[`FineTuner`][torchcross.learners.finetuner.FineTuner] (``inner=``, ``head=``). The learners' older keyword
arguments (``inner_lr=``, ``num_inner_steps=``, ``num_outputs=``, ``head_init=``, ``seed=``, ...) still work
and are turned into these objects (`inner_loop_from_keywords()`, `head_policy_from_keywords()`).

Examples:
    >>> InnerLoop(lr=0.4, steps=5, first_order=True)
    InnerLoop(lr=0.4, steps=5, eval_steps=None, first_order=True, anil=False, meta_sgd=False, optimizer='sgd')
    >>> HeadPolicy.learned(5).kind, HeadPolicy.none().kind, HeadPolicy(init="kaiming", seed=3).init
    ('learned', 'none', 'kaiming')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

from torchcross._checks import check_int

__all__ = [
    "HEAD_KEYWORDS",
    "INNER_LOOP_KEYWORDS",
    "HeadPolicy",
    "InnerLoop",
    "head_keywords",
    "head_policy_from_keywords",
    "inner_loop_from_keywords",
    "split_keywords",
]

OptimizerSpec = Any  # "sgd", "adam", or a callable lr -> inner optimiser

INNER_LOOP_KEYWORDS: Mapping[str, str] = {
    "inner_lr": "lr",
    "num_inner_steps": "steps",
    "eval_num_inner_steps": "eval_steps",
    "first_order": "first_order",
    "anil": "anil",
    "meta_sgd": "meta_sgd",
    "inner_optimizer": "optimizer",
}
"""MAML's older keyword arguments and the [`InnerLoop`][torchcross.learners.policies.InnerLoop] field each
one sets."""

HEAD_KEYWORDS = ("num_outputs", "head_init", "seed")
"""The older keyword arguments that [`HeadPolicy`][torchcross.learners.policies.HeadPolicy] replaces (with
``head=`` given as a string, an ``nn.Linear`` or ``None``)."""


def _check_lr(lr: object, name: str) -> float:
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or lr < 0:
        raise ValueError(f"{name} must be a non-negative float, got {lr!r}")
    return float(lr)


def _check_optimizer(optimizer: object, name: str) -> None:
    if isinstance(optimizer, str):
        if optimizer not in ("sgd", "adam"):
            raise ValueError(f"{name} must be 'sgd', 'adam' or callable(lr), got {optimizer!r}")
    elif not callable(optimizer):
        raise TypeError(f"{name} must be 'sgd', 'adam' or a callable, got {type(optimizer).__name__}")


def _check_flag(value: object, name: str) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")


def _check_inner_fields(fields: Mapping[str, Any], names: Mapping[str, str]) -> None:
    _check_lr(fields["lr"], names["lr"])
    check_int(fields["steps"], names["steps"], 0)
    if fields.get("eval_steps") is not None:
        check_int(fields["eval_steps"], names["eval_steps"], 0)
    for flag in ("first_order", "anil", "meta_sgd"):
        _check_flag(fields.get(flag, False), names[flag])
    _check_optimizer(fields.get("optimizer", "sgd"), names["optimizer"])


@dataclass(frozen=True)
class InnerLoop:
    """How a learner adapts to a task's support set.

    Args:
        lr: the inner learning rate (with ``meta_sgd``, the starting value of the learned ones).
        steps: inner steps during meta-training ([`MAML`][torchcross.learners.maml.MAML]) or per episode
            ([`FineTuner`][torchcross.learners.finetuner.FineTuner]).
        eval_steps: MAML's inner steps in ``predict()`` / ``adapt()`` (``None``: ``steps``).
        first_order: detach the inner gradients (FOMAML).
        anil: adapt only the head in the inner loop (the backbone still gets meta-gradients).
        meta_sgd: learn per-element inner learning rates (parameters of the learner).
        optimizer: ``"sgd"``, ``"adam"``, or a callable ``lr -> optimiser`` (e.g. ``functools.partial(sgd,
            momentum=0.9)``, returning a ``GradientTransformation`` or one of the older ``SGD`` / ``Adam``).

    Raises:
        ValueError: a negative ``lr`` or step count, an unknown optimiser name.
        TypeError: a flag that is not a bool, an optimiser that is neither a name nor callable.

    Examples:
        >>> InnerLoop(0.1, 3).eval_steps is None
        True
        >>> InnerLoop(-1.0, 3)
        Traceback (most recent call last):
        ...
        ValueError: InnerLoop lr must be a non-negative float, got -1.0
    """

    lr: float
    steps: int
    eval_steps: int | None = None
    first_order: bool = False
    anil: bool = False
    meta_sgd: bool = False
    optimizer: OptimizerSpec = "sgd"

    def __post_init__(self) -> None:
        _check_inner_fields(vars(self), {f: f"InnerLoop {f}" for f in INNER_LOOP_KEYWORDS.values()})
        object.__setattr__(self, "lr", float(self.lr))

    @property
    def num_eval_steps(self) -> int:
        """``eval_steps``, or ``steps`` when it is ``None``."""
        return self.steps if self.eval_steps is None else self.eval_steps


def inner_loop_from_keywords(keywords: Mapping[str, Any]) -> InnerLoop:
    """The [`InnerLoop`][InnerLoop] of MAML's older keyword arguments.

    Errors name the older keywords (``inner_lr must be ...``). Flags are turned into bools as MAML always
    did.

    Raises:
        TypeError: ``inner_lr`` or ``num_inner_steps`` missing.

    Examples:
        >>> inner_loop_from_keywords({"inner_lr": 0.5, "num_inner_steps": 3, "anil": True}).anil
        True
    """
    values = dict(keywords)
    missing = [k for k in ("inner_lr", "num_inner_steps") if k not in values]
    if missing:
        raise TypeError(
            f"missing the inner loop: pass inner=InnerLoop(lr=..., steps=...) (or the older keywords "
            f"{', '.join(missing)}=)"
        )
    fields = {INNER_LOOP_KEYWORDS[k]: v for k, v in values.items()}
    for flag in ("first_order", "anil", "meta_sgd"):
        fields[flag] = bool(fields.get(flag, False))
    # checked with the keywords' names first, so that errors name what the caller passed
    _check_inner_fields(fields, {field: keyword for keyword, field in INNER_LOOP_KEYWORDS.items()})
    return InnerLoop(**fields)


HeadKind = Literal["per_task", "learned", "none"]


@dataclass(frozen=True)
class HeadPolicy:
    """Which head a learner puts on its backbone (see [`task_heads`][torchcross.learners.task_heads]).

    * ``HeadPolicy()`` / ``HeadPolicy.per_task(init, seed)``: a new linear head for every task, sized from its
      description, ``"zero"`` (the default) or ``"kaiming"`` initialised (kaiming heads drawn from ``seed``);
    * ``HeadPolicy.learned(width)`` (MAML only): one meta-learned head of ``width`` outputs, drawn once from
      ``seed``; ``HeadPolicy.learned(module=nn.Linear(...))``: that module as the head (MAML: meta-learned;
      FineTuner: every episode starts from a copy of it);
    * ``HeadPolicy.none()``: no head; the backbone outputs the logits.

    Args:
        kind: ``"per_task"``, ``"learned"`` or ``"none"``.
        init: ``"zero"`` or ``"kaiming"``, for the heads the learner makes.
        seed: seed of the ``"kaiming"`` draws.
        width: the width of a ``"learned"`` head the learner makes.
        module: a given ``nn.Linear`` head (``kind="learned"``).
        key: how [`FineTuner`][torchcross.learners.finetuner.FineTuner] keys per-task ``"kaiming"`` heads:
            ``"count"`` (by its ``head_step`` counter: episode ``n`` gets the key ``(seed, n, -1)``) or
            ``"episode"`` (by the episode itself: ``(seed, digest, -1)``, ``digest`` a 63-bit number of
            the SHA-256 of the support inputs and labels, so an episode gets the same head whatever was
            fine-tuned before it, in any order, batch or rank).

    Raises:
        ValueError: a bad combination, naming the fix.

    Examples:
        >>> HeadPolicy.learned(5, init="kaiming", seed=1)
        HeadPolicy(kind='learned', init='kaiming', seed=1, width=5, module=None, key='count')
        >>> HeadPolicy.none(init="kaiming")
        Traceback (most recent call last):
        ...
        ValueError: HeadPolicy.none() has no head to initialise: leave init and seed out
    """

    kind: HeadKind = "per_task"
    init: Literal["zero", "kaiming"] = "zero"
    seed: int = 0
    width: int | None = None
    module: nn.Linear | None = None
    key: Literal["count", "episode"] = "count"

    def __post_init__(self) -> None:
        if self.kind not in ("per_task", "learned", "none"):
            raise ValueError(f"HeadPolicy kind must be 'per_task', 'learned' or 'none', got {self.kind!r}")
        if self.init not in ("zero", "kaiming"):
            raise ValueError(f"head_init must be 'zero' or 'kaiming', got {self.init!r}")
        if self.key not in ("count", "episode"):
            raise ValueError(f"HeadPolicy key must be 'count' or 'episode', got {self.key!r}")
        if self.key != "count" and self.kind != "per_task":
            raise ValueError(f"key={self.key!r} keys the heads a learner makes per task: use kind='per_task'")
        check_int(self.seed, "HeadPolicy seed", 0)
        if self.kind != "learned" and (self.width is not None or self.module is not None):
            raise ValueError(
                f"a {self.kind!r} HeadPolicy takes no width or module; use HeadPolicy.learned(width) or "
                "HeadPolicy.learned(module=nn.Linear(...))"
            )
        if self.kind == "learned" and (self.width is None) == (self.module is None):
            raise ValueError(
                "HeadPolicy.learned takes a width (a head the learner makes) or a module (a given "
                "nn.Linear), exactly one of them"
            )
        if (self.kind == "none" or self.module is not None) and (self.init, self.seed) != ("zero", 0):
            what = "HeadPolicy.none()" if self.kind == "none" else "a given module"
            raise ValueError(f"{what} has no head to initialise: leave init and seed out")

    @classmethod
    def per_task(
        cls,
        init: Literal["zero", "kaiming"] = "zero",
        seed: int = 0,
        key: Literal["count", "episode"] = "count",
    ) -> HeadPolicy:
        """A new head per task, ``init``-initialised (``key``: see the class)."""
        return cls("per_task", init, seed, key=key)

    @classmethod
    def learned(
        cls,
        width: int | None = None,
        *,
        init: Literal["zero", "kaiming"] = "zero",
        seed: int = 0,
        module: nn.Linear | None = None,
    ) -> HeadPolicy:
        """One learned head of ``width`` outputs (drawn from ``seed``), or the given ``module``."""
        return cls("learned", init, seed, width, module)

    @classmethod
    def none(cls, init: Literal["zero", "kaiming"] = "zero", seed: int = 0) -> HeadPolicy:
        """No head: the backbone outputs the logits."""
        return cls("none", init, seed)

    def keywords(self) -> tuple[object, int | None, str | None, int]:
        """``(head, num_outputs, head_init, seed)``: the older keyword arguments of this policy."""
        if self.kind == "none":
            return None, None, None, self.seed
        if self.module is not None:
            return self.module, None, None, self.seed
        return self.kind, self.width, self.init, self.seed


def head_policy_from_keywords(
    head: object, num_outputs: int | None, head_init: str | None, seed: int, module: nn.Linear | None
) -> HeadPolicy:
    """The [`HeadPolicy`][HeadPolicy] of checked older head arguments.

    ``module`` is the learned head the learner resolved (a given ``nn.Linear``, or the one it made).

    Examples:
        >>> head_policy_from_keywords("per_task", None, None, 0, None)
        HeadPolicy(kind='per_task', init='zero', seed=0, width=None, module=None, key='count')
    """
    if head is None:
        return HeadPolicy.none()
    if isinstance(head, nn.Module):
        return HeadPolicy.learned(module=module)
    init: Any = head_init or "zero"
    if head == "learned":
        return HeadPolicy.learned(num_outputs, init=init, seed=seed)
    return HeadPolicy.per_task(init, seed)


def head_keywords(
    head: object, legacy: Mapping[str, Any], *, fields: str
) -> tuple[object, int | None, str | None, int]:
    """``(head, num_outputs, head_init, seed)`` from ``head=`` and the older head keywords in ``legacy``.

    A [`HeadPolicy`][HeadPolicy] gives its own (`HeadPolicy.keywords()`); older keywords beside one are
    refused, naming ``fields``, the policy fields that replace them (the learners share this rule).

    Examples:
        >>> head_keywords("per_task", {"head_init": "kaiming"}, fields="init=, seed=")
        ('per_task', None, 'kaiming', 0)
    """
    given = {k: v for k, v in legacy.items() if k in HEAD_KEYWORDS}
    if isinstance(head, HeadPolicy):
        if given:
            raise TypeError(
                f"head=HeadPolicy(...) replaces {', '.join(sorted(given))}=: put them in the "
                f"HeadPolicy ({fields})"
            )
        return head.keywords()
    return head, given.get("num_outputs"), given.get("head_init"), given.get("seed", 0)


def split_keywords(
    legacy: Mapping[str, Any], allowed: Mapping[str, Any] | tuple[str, ...], learner: str
) -> dict[str, Any]:
    """``legacy`` checked against ``allowed`` keyword names.

    Raises:
        TypeError: an unknown keyword, naming it and the known ones.
    """
    unknown = sorted(set(legacy) - set(allowed))
    if unknown:
        raise TypeError(
            f"{learner}() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; it takes "
            f"inner=, head= and the older keywords {', '.join(sorted(allowed))}"
        )
    return dict(legacy)
