"""mm-PT: multi-domain multi-task pre-training on the target's source tasks, with early stopping.

Each update is one batch (``[pretrain] batch_size``, the paper: 64) of one source task,
drawn in proportion to the tasks' sizes, through that task's own zero-initialised head;
Adam (the paper: 1e-3 for ResNet-18, 1e-4 for ResNet-50), augmentation as
``[augmentation]``. Every ``val_every`` updates the mean AUROC over ``val_batches``
batches of the sources' ``val`` splits is computed (always the same batches); after
``patience`` validations without improvement training stops and the best weights are
kept ([`EarlyStopping`][EarlyStopping]).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from torchcross.distributed.gradients import all_reduce_gradients
from torchcross.evaluation.metrics import auroc
from torchcross.protocol.augment import build_augmentation
from torchcross.protocol.config import paper_lr
from torchcross.protocol.fingerprint import Reads
from torchcross.protocol.registry import MethodContext, Trained
from torchcross.protocol.validation import EarlyStopping

__all__ = ["train_pretrain", "validation_sources"]

# what the checkpoint depends on: all that mm-PT's training reads, less the step count (extending is resuming)
_TRAINING_READS = Reads(
    ("backbone", "data.normalize", "data.source_split", "augmentation", "pretrain"),
    without=("pretrain.steps",),
)


def validation_sources(ctx: MethodContext) -> dict[str, Any]:
    """The source tasks' ``val`` splits that open (tasks without one are left out, with a log line)."""
    out = {}
    for ds, task in ctx.target.sources:
        try:
            out[f"{ds}/{task}"] = ctx.open(ds, task, "val")
        except (ValueError, OSError) as exc:
            ctx.log(f"[{ctx.target.dataset_id}] {ctx.method}: no validation split for {ds}/{task}: {exc}")
    return out


def _batch_auroc(
    model: Any, sources: dict[str, Any], batch_size: int, n_batches: int, ctx: MethodContext
) -> Callable[[], float]:
    from torchcross.data.multitask import MultiTaskBatchSampler

    def validate() -> float:
        sampler = MultiTaskBatchSampler(
            sources,
            batch_size,
            mode="infinite",
            shuffle=True,
            drop_last=False,
            seed=ctx.seed,
            rank=0,  # all of them on the rank that validates (rank 0 under torchrun)
            world_size=1,
        )  # the same batches at every validation
        scores = []
        for _, ((x, y), description) in zip(range(n_batches), sampler):
            logits = model(x.to(ctx.device), description)
            scores.append(auroc(logits, y.to(ctx.device), description))
        finite = [s for s in scores if not math.isnan(s)]
        return math.fsum(finite) / len(finite) if finite else math.nan

    return validate


def train_pretrain(ctx: MethodContext) -> Trained:
    """Train mm-PT for ``ctx.target`` (resuming from its checkpoint) and return the best backbone."""
    from torchcross.data.multitask import MultiTaskBatchSampler
    from torchcross.learners.multitask import MultiTaskPretrainer

    cfg, pt = ctx.config, ctx.config.pretrain
    sources = ctx.source_tasks(cfg.data.source_split or "train")
    backbone, width = ctx.build_backbone()
    sampler = MultiTaskBatchSampler(
        sources,
        pt.batch_size,
        weighting=pt.weighting,
        mode="infinite",
        shuffle=True,
        drop_last=False,
        seed=ctx.seed,
    )
    model = MultiTaskPretrainer(
        backbone, width, [s.task_description for s in sources.values()], head_init=pt.head_init, seed=ctx.seed
    ).to(ctx.device)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=paper_lr(cfg.backbone.name, pt.lr), weight_decay=pt.weight_decay
    )
    augment = build_augmentation(cfg.augmentation, ctx.image_size)

    def step(unit: Any) -> torch.Tensor:
        (x, y), description = unit
        x = x.to(ctx.device)
        value = model.loss((augment(x) if augment else x, y.to(ctx.device)), description)
        value.backward()
        all_reduce_gradients(model)  # under torchrun: the mean over the ranks' batches
        return value

    early = None
    if pt.patience > 0:
        val = validation_sources(ctx)
        if val:
            early = EarlyStopping(
                _batch_auroc(model, val, pt.batch_size, pt.val_batches, ctx), pt.val_every, pt.patience
            )
    ctx.log(
        f"[{ctx.target.dataset_id}] {ctx.method}: up to {pt.steps} steps over {len(sources)} source tasks"
        + (f", validating every {pt.val_every} (patience {pt.patience})" if early else "")
    )
    losses = ctx.train_model(
        model, optimizer, step, sampler, pt.steps, early_stopping=early, reads=_TRAINING_READS
    )
    return Trained(model.backbone, width, model, losses, list(early.history) if early else [])
