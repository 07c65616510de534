"""MAML with 0.0.6's interface (``MAML``, ``CrossDomainMAML``), on
[`torchcross.learners.MAML`][torchcross.learners.maml.MAML].

0.0.6 arguments map to the learner's:

* ``inner_optimizer`` / ``eval_inner_optimizer`` (optimiser factories such as
  ``partial(torchopt.MetaSGD, lr=0.1)`` and ``partial(torch.optim.SGD, lr=0.1)``) become the inner
  optimisers of the training and the evaluation adaptation (`torchcross.models.optimizers`);
* ``transductive=True`` (default: query predictions use the query batch's BatchNorm statistics)
  is ``batch_norm="batch"``; ``False`` is ``batch_norm="frozen"``;
* [`CrossDomainMAML`][torchcross.learners.maml.CrossDomainMAML]'s ``head_init`` (``None``/``"zero"``,
  ``"kaiming"``/``"default"``) is
  the learner's; every task gets a fresh head;
* `MAML` (one task kind) meta-learns its head too, unless ``reset_head``
  gives every
  episode a fresh one (``"zero"``, ``"kaiming"``/``"default"``, or ``"adaptive normal"`` /
  ``"adaptive uniform"``: drawn with the mean and standard deviation of the meta-learned head).

Adaptation never changes the meta-parameters: evaluation (``model.eval()``) adapts copies.

Examples:
    >>> from functools import partial
    >>> import torch
    >>> from torchcross.learners.backbones import mlp
    >>> from torchcross.tasks.task import Task, TaskDescription
    >>> d = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"})
    >>> task = Task(
    ...     (torch.randn(4, 3), torch.tensor([0, 1, 0, 1])), (torch.randn(2, 3), torch.tensor([1, 0])), d
    ... )
    >>> sgd = partial(torch.optim.SGD, lr=0.1)
    >>> model = MAML(mlp(3, (5,)), 5, d, sgd, sgd, num_inner_steps=2)
    >>> [logits.shape for logits in model([task])]
    [torch.Size([2, 1])]
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import Tensor, nn

from torchcross._checks import check_int
from torchcross.compat.cd.heads import new_classification_head
from torchcross.compat.models.episodic import EpisodicModel
from torchcross.compat.models.expand import with_rgb_input
from torchcross.compat.models.optimizers import inner_optimizer_spec
from torchcross.learners.maml import MAML as _MAMLLearner
from torchcross.tasks.task import Task, TaskDescription

__all__ = ["MAML", "CrossDomainMAML", "head_init_t"]

head_init_t = Literal[
    "default", "kaiming", "zero", "adaptive", "adaptive normal", "adaptive uniform", "unicorn", "proto"
]
"""0.0.6's head initialisation names (``"unicorn"`` and ``"proto"`` were never implemented)."""

_FRESH: dict[str, Literal["zero", "kaiming"]] = {"zero": "zero", "kaiming": "kaiming", "default": "kaiming"}
_ADAPTIVE = ("adaptive", "adaptive normal", "adaptive uniform")


class _HeadMAML(_MAMLLearner):
    """The learner with 0.0.6 ``MAML``'s head: the meta-learned one, or one drawn from its statistics."""

    def __init__(self, head: nn.Linear, reset: str | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._head = (head,)  # a tuple: the owner registers the head, not this learner
        self.reset = reset
        self._generator = torch.Generator().manual_seed(kwargs.get("seed", 0))

    def new_head(self, description: TaskDescription, like: Tensor, slot: int = -1) -> dict[str, Tensor]:
        head = self._head[0]
        if self.reset is None:  # the meta-learned initial head (detached when evaluating)
            if slot < 0:
                return {"head.weight": head.weight.detach(), "head.bias": head.bias.detach()}
            return {"head.weight": head.weight, "head.bias": head.bias}
        out = {}
        for name, p in (("head.weight", head.weight), ("head.bias", head.bias)):
            p = p.detach()
            mean, std = float(p.mean()), float(p.std()) if p.numel() > 1 else 0.0
            noise = torch.randn(p.shape, generator=self._generator, dtype=p.dtype)
            if self.reset == "adaptive uniform":
                noise = (torch.rand(p.shape, generator=self._generator, dtype=p.dtype) * 2 - 1) * math.sqrt(3)
            out[name] = (mean + std * noise).to(like.device)
        return out


def _learner_options(
    inner_optimizer: Any,
    eval_inner_optimizer: Any,
    num_inner_steps: int,
    eval_num_inner_steps: int | None,
    transductive: bool,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Keyword arguments of the training and of the evaluation learner."""
    lr, make = inner_optimizer_spec(inner_optimizer, "inner_optimizer")
    eval_lr, eval_make = inner_optimizer_spec(eval_inner_optimizer, "eval_inner_optimizer")
    steps = check_int(num_inner_steps, "num_inner_steps", 0)
    eval_steps = (
        steps if eval_num_inner_steps is None else check_int(eval_num_inner_steps, "eval_num_inner_steps", 0)
    )
    common = {"batch_norm": "batch" if transductive else "frozen", "batching": "loop"}
    train = {"inner_lr": lr, "inner_optimizer": make, "num_inner_steps": steps, **common}
    evaluate = {"inner_lr": eval_lr, "inner_optimizer": eval_make, "num_inner_steps": eval_steps, **common}
    return train, evaluate


class _EpisodicMAML(EpisodicModel):
    """Shared by [`MAML`][torchcross.learners.maml.MAML] and
    [`CrossDomainMAML`][torchcross.learners.maml.CrossDomainMAML]: a training and an evaluation learner."""

    learner: _MAMLLearner
    eval_learner: _MAMLLearner  # set in _set_learners(), unregistered

    def _set_learners(self, train: _MAMLLearner, evaluate: _MAMLLearner) -> None:
        self.learner = train
        # unregistered: it shares the backbone (and head) with the training learner
        object.__setattr__(self, "eval_learner", evaluate)

    def outputs(self, task: Task, slot: int = -1) -> tuple[Tensor, Tensor]:
        """Support logits (detached) and query logits after adapting on the support set.

        In training mode the query logits carry the meta-gradient (``inner_optimizer``,
        ``num_inner_steps``); in evaluation mode both are detached and the adaptation uses
        ``eval_inner_optimizer`` and ``eval_num_inner_steps``. The meta-parameters never change.
        """
        if self.training:
            return self.learner.adapted_logits(task, training=True, slot=max(slot, 0))
        return self.eval_learner.adapted_logits(task, training=False)

    def episode(self, task: Task, with_support_output: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Query logits of one task (and the support logits first, with ``with_support_output``)."""
        support, query = self.outputs(task)
        return (support, query) if with_support_output else query


class MAML(_EpisodicMAML):
    """MAML for tasks of one kind and class count, with a meta-learned head (0.0.6's ``models.MAML``).

    Args:
        backbone, num_backbone_features: the network before the head and its output width.
        task_description: the task kind and classes (size the head).
        inner_optimizer, eval_inner_optimizer: optimiser factories (see module doc).
        num_inner_steps, eval_num_inner_steps: inner steps in training and in evaluation.
        transductive: query predictions with batch statistics (see module doc).
        reset_head: ``None`` (meta-learn the head) or a fresh head per episode (see module doc).

    Raises:
        ValueError: an unknown ``reset_head`` (``"unicorn"`` and ``"proto"`` included), or an
            optimiser the inner loops do not have.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_backbone_features: int,
        task_description: TaskDescription,
        inner_optimizer: Any,
        eval_inner_optimizer: Any,
        num_inner_steps: int,
        eval_num_inner_steps: int | None = None,
        transductive: bool = True,
        reset_head: head_init_t | None = None,
    ) -> None:
        super().__init__()
        if reset_head is not None and reset_head not in _FRESH and reset_head not in _ADAPTIVE:
            raise ValueError(
                f"reset_head must be None or one of {sorted([*_FRESH, *_ADAPTIVE])}, got {reset_head!r}"
            )
        self.backbone = backbone
        self.num_backbone_features = check_int(num_backbone_features, "num_backbone_features", 1)
        self.task_description = task_description
        self.head = new_classification_head(
            task_description.task_target, task_description.classes, self.num_backbone_features, init="kaiming"
        )
        train, evaluate = _learner_options(
            inner_optimizer, eval_inner_optimizer, num_inner_steps, eval_num_inner_steps, transductive
        )
        self.reset_head_strategy = reset_head
        fresh = _FRESH.get(reset_head or "")
        reset = None if reset_head is None or fresh else reset_head

        def make(options: dict[str, Any]) -> _MAMLLearner:
            if fresh is not None:
                return _MAMLLearner(backbone, self.num_backbone_features, head_init=fresh, **options)
            return _HeadMAML(
                self.head,
                reset,
                backbone=backbone,
                num_backbone_features=self.num_backbone_features,
                head_init="kaiming",  # a head that is not zero: no first-step shortcut
                **options,
            )

        self._set_learners(make(train), make(evaluate))


class CrossDomainMAML(_EpisodicMAML):
    """MAML across task kinds with a fresh head per task (0.0.6's ``models.CrossDomainMAML``).

    Grey images are expanded to three channels before the backbone.

    Args:
        backbone, num_backbone_features: the network before the head and its output width.
        inner_optimizer, eval_inner_optimizer: optimiser factories (see module doc).
        num_inner_steps, eval_num_inner_steps: inner steps in training and in evaluation.
        transductive: query predictions with batch statistics (see module doc).
        head_init: ``None`` or ``"zero"`` (default), ``"kaiming"`` or ``"default"``.

    Raises:
        ValueError: an unknown ``head_init``, or an optimiser the inner loops do not have.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_backbone_features: int,
        inner_optimizer: Any,
        eval_inner_optimizer: Any,
        num_inner_steps: int,
        eval_num_inner_steps: int | None = None,
        transductive: bool = True,
        head_init: head_init_t | None = None,
    ) -> None:
        super().__init__()
        head_init = head_init or "zero"
        if head_init not in _FRESH:
            raise ValueError(f"head_init must be None or one of {sorted(_FRESH)}, got {head_init!r}")
        self.backbone = backbone
        self.num_backbone_features = check_int(num_backbone_features, "num_backbone_features", 1)
        self.head_init = head_init
        train, evaluate = _learner_options(
            inner_optimizer, eval_inner_optimizer, num_inner_steps, eval_num_inner_steps, transductive
        )
        network = with_rgb_input(backbone)
        nbf = self.num_backbone_features
        self._set_learners(
            _MAMLLearner(network, nbf, head_init=_FRESH[head_init], **train),
            _MAMLLearner(network, nbf, head_init=_FRESH[head_init], **evaluate),
        )
