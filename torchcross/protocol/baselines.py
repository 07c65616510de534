"""Fine-tuning baselines of the protocol: IM-PT, scratch, linear probe, and fine-tuning a trained backbone.

Each target episode gets a new head (``[finetune] head_init``: PyTorch's ``nn.Linear``
default, as the authors' ``SimpleClassifier``, drawn from the training seed and a digest of the
episode's support set, or zero); the backbone (a copy) is fine-tuned with it on the support set
for ``[finetune] steps`` Adam steps (the paper: 50, lr 1e-3), BatchNorm as ``[finetune]
batch_norm`` (the paper: ``"support"``). The linear probe trains the head alone on the backbone's
frozen features, cached once per image (`torchcross.protocol.frozen`).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from torchcross.learners.finetuner import FineTuner
from torchcross.learners.policies import HeadPolicy, InnerLoop
from torchcross.protocol.registry import MethodContext, Trained

__all__ = [
    "finetuner",
    "finetuner_from_random",
    "finetuner_from_trained",
    "finetuner_from_weights",
    "linear_probe",
]


def finetuner(
    ctx: MethodContext, backbone: nn.Module, width: int, *, freeze: bool | None = None
) -> FineTuner:
    """A [`FineTuner`][FineTuner] of ``backbone`` with the ``[finetune]``
    settings."""
    ft = ctx.config.finetune
    return FineTuner(
        backbone,
        width,
        inner=InnerLoop(lr=ft.lr, steps=ft.steps, optimizer="adam"),
        finetune_backbone=not (ft.freeze_backbone if freeze is None else freeze),
        # key="episode": an episode's head whatever the order, batching, ranks or resumed tasks
        head=HeadPolicy(init=ft.head_init, seed=ctx.seed, key="episode"),
        batch_norm=ft.batch_norm,
    )


def finetuner_from_weights(ctx: MethodContext, trained: Any) -> FineTuner:
    """IM-PT: fine-tune ``[backbone] weights`` (which must not be ``"random"``)."""
    if ctx.config.backbone.weights == "random":
        raise ValueError(
            "IM-PT needs pre-trained weights, but [backbone] weights = 'random'; list 'scratch' instead"
        )
    return finetuner(ctx, *ctx.build_backbone())


def finetuner_from_random(ctx: MethodContext, trained: Any) -> FineTuner:
    """scratch: fine-tune a seeded random initialisation."""
    return finetuner(ctx, *ctx.build_backbone("random"))


def linear_probe(ctx: MethodContext, trained: Any) -> FineTuner:
    """linear-probe: train only a new head on the frozen features of ``[backbone] weights``.

    The learner takes features, not images (``nn.Identity`` as its backbone): the method is registered
    with ``frozen_features``, so the run hands it the target tasks' cached features
    ([`embedded_source()`][torchcross.protocol.frozen.embedded_source]), computed once in eval mode
    (BatchNorm with its running statistics, dropout off: the authors' ``linear_probe=True``).
    """
    _, width = ctx.build_backbone()
    return finetuner(ctx, nn.Identity(), width, freeze=True)


def finetuner_from_trained(ctx: MethodContext, trained: Trained) -> FineTuner:
    """Fine-tune the backbone that source training produced (mm-PT, mm-MAML)."""
    return finetuner(ctx, trained.backbone, trained.num_features)
