"""Early stopping on a validation score, with the best weights kept: for mm-PT, mm-MAML, supervised.

Training validates every ``every`` updates. The authors' final code (``cross_domain_pft.py``,
``cross_domain_maml.py``, ``fully_supervised.py`` at 83c2aad) leaves Lightning's ``val_check_interval``
and ``limit_val_batches`` commented out, so it validates once per training epoch on the whole
validation set; the trainers turn ``val_every = "epoch"`` into the updates of one epoch
(`epoch_updates()`), and take any count as well. After ``patience`` validations in a row
without a higher score training stops and the weights of the best validation are restored.
[`EarlyStopping`][EarlyStopping] holds that state as tensors and plain Python
values, so it is saved in (and resumed from) the training checkpoint.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from torchcross.distributed.seeds import rank_and_world_size
from torchcross.protocol.ranks import Team

__all__ = ["EarlyStopping", "epoch_updates"]


def epoch_updates(batches: int, world_size: int = 1) -> int:
    """The updates of one epoch of ``batches`` training units when each update takes one per rank.

    Raises:
        ValueError: ``batches`` or ``world_size`` below 1.

    Examples:
        >>> epoch_updates(7), epoch_updates(7, world_size=2)
        (7, 4)
    """
    if batches < 1 or world_size < 1:
        raise ValueError(f"an epoch needs batches >= 1 and world_size >= 1, got {batches=}, {world_size=}")
    return -(-batches // world_size)


class EarlyStopping:
    """Track validation scores (higher is better), the best weights, and when to stop.

    Args:
        validate: ``() -> score`` (e.g. the mean validation AUROC); NaN never improves.
        every: updates between validations.
        patience: validations without improvement before stopping (>= 1).

    Examples:
        >>> model = nn.Linear(1, 1)
        >>> scores = iter([0.6, 0.7, 0.65, 0.64])
        >>> es = EarlyStopping(lambda: next(scores), every=10, patience=2)
        >>> [es.due(s) for s in (5, 10)]
        [False, True]
        >>> [es.check(step, model) for step in (10, 20, 30, 40)]
        [False, False, False, True]
        >>> es.best_step, es.best_score
        (20, 0.7)
    """

    def __init__(self, validate: Callable[[], float], every: int, patience: int) -> None:
        if every < 1 or patience < 1:
            raise ValueError(f"every and patience must be >= 1, got every={every}, patience={patience}")
        self.validate, self.every, self.patience = validate, every, patience
        self.best_score = -math.inf
        self.best_step = 0
        self.bad_checks = 0
        self.stopped = False
        self.history: list[tuple[int, float]] = []
        self.best_state: dict[str, torch.Tensor] | None = None

    def due(self, step: int) -> bool:
        """Whether to validate after update ``step``."""
        return step % self.every == 0

    def check(self, step: int, model: nn.Module) -> bool:
        """Validate (``model`` in eval mode, no gradients), update the best weights; ``True`` = stop.

        Under ``torchrun`` rank 0 validates and every rank takes its score (a collective
        call), so all ranks stop at the same step.
        """
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                score = float(Team(*rank_and_world_size()).leader(self.validate))
        finally:
            model.train(was_training)
        self.history.append((step, score))
        if score > self.best_score:
            self.best_score, self.best_step, self.bad_checks = score, step, 0
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        else:
            self.bad_checks += 1
        self.stopped = self.bad_checks >= self.patience
        return self.stopped

    def restore_best(self, model: nn.Module) -> None:
        """Load the best validated weights into ``model`` (nothing if no validation ran)."""
        if self.best_state is not None:
            model.load_state_dict(self.best_state)

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain Python values only (safe for ``torch.load(weights_only=True)``)."""
        return {
            "best_score": self.best_score,
            "best_step": self.best_step,
            "bad_checks": self.bad_checks,
            "stopped": self.stopped,
            "history": [[s, v] for s, v in self.history],
            "best_state": self.best_state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore [`state_dict()`][EarlyStopping.state_dict]."""
        self.best_score = float(state["best_score"])
        self.best_step = int(state["best_step"])
        self.bad_checks = int(state["bad_checks"])
        self.stopped = bool(state["stopped"])
        self.history = [(int(s), float(v)) for s, v in state["history"]]
        self.best_state = state["best_state"]
