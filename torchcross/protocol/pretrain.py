"""mm-PT: multi-domain multi-task pre-training on the target's source tasks, with early stopping.

Each update is one batch (``[pretrain] batch_size``, the paper: 64) of one source task,
drawn in proportion to the tasks' sizes, through that task's own zero-initialised head
(under ``torchrun``, ``R`` ranks share each global batch of ``R * batch_size`` examples of one
task, so they train as one process with ``R`` times the batch size: docs/scaling-out.md);
Adam (the paper: 1e-3 for ResNet-18, 1e-4 for ResNet-50), augmentation as
``[augmentation]``. With ``scale_task_loss`` (the default, as the authors' final runs) a
task's loss is multiplied by ``max_count / count``, its batches per epoch against the
largest task's, so that every task weighs the same in an epoch.

Every ``val_every`` updates (default: once per epoch, ``sum(ceil(n_t / batch_size))``
updates over the source tasks ``t``, the length of one pass of the authors' data loader)
the model is scored on ``val_batches`` batches of the sources' ``val`` splits (default:
all of them): each task's AUROC over all its validation predictions together, averaged
over the tasks (the authors' per-task metric wrappers). After ``patience`` validations
without improvement training stops and the best weights are kept
([`EarlyStopping`][EarlyStopping]).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import torch

from torchcross.distributed.gradients import all_reduce_gradients
from torchcross.distributed.seeds import rank_and_world_size
from torchcross.evaluation.metrics import auroc
from torchcross.protocol.augment import build_augmentation
from torchcross.protocol.config import paper_lr
from torchcross.protocol.fingerprint import Reads
from torchcross.protocol.registry import MethodContext, Trained
from torchcross.protocol.validation import EarlyStopping, epoch_updates

__all__ = ["pooled_task_auroc", "task_loss_scales", "train_pretrain", "validation_sources"]

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


def pooled_task_auroc(
    model: Any,
    sources: dict[str, Any],
    batch_size: int,
    n_batches: int | str = "all",
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> Callable[[], float]:
    """``() -> score``: each task's AUROC over its validation predictions pooled, averaged over the tasks.

    As the authors' per-task metric wrappers (0.0.6 ``CrossDomainMeanWrapper``) over a validation
    epoch: not the mean of per-batch AUROCs. ``n_batches = "all"`` predicts every batch of every
    source once; a count, that many batches of a stream over the sources seeded with ``seed`` (the
    same ones at every validation). Tasks whose AUROC is undefined (one class among their labels)
    are left out of the mean (NaN if every task is).

    Examples:
        >>> from torchcross.data import TensorTaskSource
        >>> from torchcross.tasks.task import TaskDescription
        >>> d = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"}, "t")
        >>> x = torch.tensor([[0.1], [0.2], [0.9], [1.0]])  # the inputs are the logits
        >>> source = TensorTaskSource(x, torch.tensor([0, 1, 0, 1]), d)
        >>> pooled_task_auroc(lambda x, d: x, {"t": source}, batch_size=2)()  # each batch alone: 1.0
        0.75
    """
    from torchcross.data.multitask import MultiTaskBatchSampler

    def batches() -> Any:
        every = n_batches == "all"
        sampler = MultiTaskBatchSampler(
            sources,
            batch_size,
            mode="epoch" if every else "infinite",
            shuffle=not every,
            drop_last=False,
            seed=seed,
            rank=0,  # all of them on the rank that validates (rank 0 under torchrun)
            world_size=1,
        )
        return sampler if every else itertools.islice(sampler, int(n_batches))

    def validate() -> float:
        logits: dict[Any, list[torch.Tensor]] = {}
        labels: dict[Any, list[torch.Tensor]] = {}
        for (x, y), description in batches():
            logits.setdefault(description, []).append(model(x.to(device), description).cpu())
            labels.setdefault(description, []).append(y)
        scores = [auroc(torch.cat(logits[d]), torch.cat(labels[d]), d) for d in logits]
        finite = [s for s in scores if not math.isnan(s)]
        return math.fsum(finite) / len(finite) if finite else math.nan

    return validate


def task_loss_scales(sampler: Any) -> dict[Any, float]:
    """``{task description: max_count / count}`` of a multi-task batch sampler's tasks.

    ``count`` is a task's batches per epoch (``sampler.sizes``) and ``max_count`` the largest one: the
    factor of the authors' ``scale_loss_by_batch_count`` (0.0.6 ``lightning/cross_domain.py``), which
    counted the batches of each task in the previous epoch (one pass over every batch: the same
    counts). Ours knows them from the start, so the first epoch is scaled too.

    Examples:
        >>> from types import SimpleNamespace
        >>> task_loss_scales(SimpleNamespace(descriptions=["a", "b"], sizes=[4, 1]))
        {'a': 1.0, 'b': 4.0}
    """
    top = max(sampler.sizes)
    return {d: top / n for d, n in zip(sampler.descriptions, sampler.sizes)}


def train_pretrain(ctx: MethodContext) -> Trained:
    """Train mm-PT for ``ctx.target`` (resuming from its checkpoint) and return the best backbone."""
    from torchcross.data.multitask import MultiTaskBatchSampler
    from torchcross.learners.multitask import MultiTaskPretrainer

    cfg, pt = ctx.config, ctx.config.pretrain
    sources = ctx.source_tasks(cfg.data.source_split or "train")
    backbone, width = ctx.build_backbone()
    _, world = rank_and_world_size()
    # one stream of global batches (world x batch_size), each split over the ranks: R ranks train
    # as one process with R times the batch size
    sampler = MultiTaskBatchSampler(
        sources,
        pt.batch_size * world,
        weighting=pt.weighting,
        mode="infinite",
        shuffle=True,
        drop_last=False,
        seed=ctx.seed,
        shard_by="example",
    )
    model = MultiTaskPretrainer(
        backbone, width, [s.task_description for s in sources.values()], head_init=pt.head_init, seed=ctx.seed
    ).to(ctx.device)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=paper_lr(cfg.backbone.name, pt.lr), weight_decay=pt.weight_decay
    )
    augment = build_augmentation(cfg.augmentation, ctx.image_size)

    scale = task_loss_scales(sampler) if pt.scale_task_loss else {}

    def step(unit: Any) -> torch.Tensor | float:
        (x, y), description, weight = unit  # weight: this rank's share of the global batch (1.0 alone)
        if weight == 0.0:  # fewer examples than ranks: nothing here (BatchNorm would see an empty batch)
            all_reduce_gradients(model)
            return 0.0
        x = x.to(ctx.device)
        value = model.loss((augment(x) if augment else x, y.to(ctx.device)), description) * weight
        (value * scale[description] if scale else value).backward()
        all_reduce_gradients(model)  # under torchrun: the gradient of the global batch's mean loss
        # the loss logged and checked is the task's own, unscaled (as the authors log it); its mean over
        # the ranks (train_steps) is the global batch's mean loss
        return value

    early = None
    if pt.patience > 0:
        val = validation_sources(ctx)
        if val:  # every rank takes every (global) batch: an epoch is every batch once
            every = epoch_updates(sum(sampler.sizes)) if pt.val_every == "epoch" else pt.val_every
            early = EarlyStopping(
                pooled_task_auroc(
                    model, val, pt.batch_size * world, pt.val_batches, seed=ctx.seed, device=ctx.device
                ),
                every,
                pt.patience,
            )
    ctx.log(
        f"[{ctx.target.dataset_id}] {ctx.method}: up to {pt.steps} steps over {len(sources)} source tasks"
        + (f", validating every {early.every} steps (patience {pt.patience})" if early else "")
    )
    losses = ctx.train_model(
        model,
        optimizer,
        step,
        sampler,
        pt.steps,
        # under torchrun: checkpoints of the older sharding (whole batches per rank) are not resumed
        {"shard_by": "example"} if world > 1 else None,
        early_stopping=early,
        reads=_TRAINING_READS,
    )
    return Trained(model.backbone, width, model, losses, list(early.history) if early else [])
