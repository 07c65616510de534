"""The fully supervised baseline (the paper's Table 3): per target task, train, validate, test.

For each target task: the backbone (``[backbone] weights``) with a new head
(``[supervised] head_init``: PyTorch's ``nn.Linear`` default drawn from the training seed, as
the authors' ``SimpleClassifier``, or zero) is trained on the task's ``train`` split (Adam,
batches of ``[supervised] batch_size``, augmentation as ``[augmentation]``), validated every
``val_every`` updates (default: once per pass over the train split) on ``val_batches``
batches of its ``val`` split (default: all of it; the predictions pooled into one AUROC, as
the authors' epoch-level metric) with early stopping, and the best weights are scored on the
whole ``test`` split. The confidence interval is a percentile bootstrap over test examples
(``[supervised] bootstrap`` resamples, seeded).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from torchcross.distributed.gradients import all_reduce_gradients
from torchcross.distributed.seeds import rank_and_world_size
from torchcross.evaluation.metrics import accuracy, auroc
from torchcross.protocol.augment import build_augmentation
from torchcross.protocol.config import paper_lr
from torchcross.protocol.fingerprint import Reads
from torchcross.protocol.registry import MethodContext
from torchcross.protocol.training import train_steps
from torchcross.protocol.validation import EarlyStopping, epoch_updates

__all__ = ["bootstrap_interval", "train_and_test", "unused_learner"]

# what a task's checkpoint depends on: all that its training reads, less the step count and the bootstrap
_TRAINING_READS = Reads(
    ("backbone", "data.normalize", "augmentation", "supervised"),
    without=("supervised.steps", "supervised.bootstrap"),
)


def unused_learner(ctx: MethodContext, trained: Any) -> Any:
    """The supervised baseline has no episode learner (it is scored per task by `train_and_test()`)."""
    raise ValueError("the supervised baseline is trained and scored per target task, not on episodes")


@torch.no_grad()
def _predict(
    model: Any, source: Any, description: Any, batch_size: int, limit: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    n = min(len(source), limit)
    logits, labels = [], []
    for start in range(0, n, batch_size):
        x, y = source.get_batch(np.arange(start, min(n, start + batch_size)))
        logits.append(model(x.to(device), description).cpu())
        labels.append(y)
    return torch.cat(logits), torch.cat(labels)


def bootstrap_interval(
    logits: torch.Tensor,
    labels: torch.Tensor,
    description: Any,
    metric: Any,
    resamples: int,
    confidence: float,
    seed: int,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``metric(logits, labels, description)`` over examples.

    Resamples where the metric is undefined (NaN: a class missing) are left out.

    Examples:
        >>> from torchcross.tasks.task import TaskDescription
        >>> d = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"})
        >>> y = torch.tensor([[0], [1]] * 20)
        >>> lo, hi = bootstrap_interval(y.float() * 2 - 1, y, d, auroc, 50, 0.95, seed=0)
        >>> lo, hi
        (1.0, 1.0)
    """
    rng = np.random.default_rng(seed)
    n = len(labels)
    values = []
    for _ in range(resamples):
        idx = torch.from_numpy(rng.integers(0, n, n))
        v = float(metric(logits[idx], labels[idx], description))
        if not math.isnan(v):
            values.append(v)
    if not values:
        return math.nan, math.nan
    lo, hi = np.quantile(values, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(lo), float(hi)


def train_and_test(ctx: MethodContext, task: str) -> dict[str, Any]:
    """Train the supervised baseline on target task ``task`` and score it on its test split (one record)."""
    from torchcross.data.multitask import MultiTaskBatchSampler
    from torchcross.learners.multitask import MultiTaskPretrainer

    cfg, sv = ctx.config, ctx.config.supervised
    ds = ctx.target.dataset_id
    start = time.perf_counter()
    train, val, test = (ctx.open(ds, task, split) for split in ("train", "val", "test"))
    description = train.task_description
    backbone, width = ctx.build_backbone()
    model = MultiTaskPretrainer(backbone, width, [description], head_init=sv.head_init, seed=ctx.seed).to(
        ctx.device
    )
    _, world = rank_and_world_size()
    # global batches of world x batch_size, each split over the ranks (as mm-PT's)
    sampler = MultiTaskBatchSampler(
        {task: train}, sv.batch_size * world, mode="infinite", shuffle=True, seed=ctx.seed, shard_by="example"
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=paper_lr(cfg.backbone.name, sv.lr))
    augment = build_augmentation(cfg.augmentation, ctx.image_size)

    def step(unit: Any) -> torch.Tensor | float:
        (x, y), _, weight = unit  # weight: this rank's share of the global batch (1.0 alone)
        if weight == 0.0:  # fewer examples than ranks: nothing on this rank
            all_reduce_gradients(model)
            return 0.0
        x = x.to(ctx.device)
        value = model.loss((augment(x) if augment else x, y.to(ctx.device)), description) * weight
        value.backward()
        all_reduce_gradients(model)  # under torchrun: the gradient of the global batch's mean loss
        return value

    limit = len(val) if sv.val_batches == "all" else sv.val_batches * sv.batch_size * world

    def validate() -> float:
        logits, labels = _predict(model, val, description, sv.batch_size, limit, ctx.device)
        return auroc(logits, labels, description)

    every = epoch_updates(sampler.sizes[0]) if sv.val_every == "epoch" else sv.val_every
    early = EarlyStopping(validate, every, sv.patience) if sv.patience > 0 and len(val) else None
    ctx.log(f"[{ds}] supervised on {task!r}: up to {sv.steps} steps on {len(train)} training examples")
    train_steps(
        model,
        optimizer,
        step,
        lambda: ctx.stream(sampler),
        sv.steps,
        sampler=sampler,
        checkpoint=ctx.checkpoint_dir
        / "supervised"
        / f"{''.join(c if c.isalnum() else '_' for c in task)}.pt",
        checkpoint_every=cfg.run.checkpoint_every,
        settings=ctx.checkpoint_settings(
            _TRAINING_READS, task=task, **({"shard_by": "example"} if world > 1 else {})
        ),
        resume=cfg.run.resume,
        progress=ctx.progress,
        description=f"supervised {ds}/{task}",
        early_stopping=early,
        log=ctx.log,
    )
    train_seconds = time.perf_counter() - start
    model.eval()
    logits, labels = _predict(model, test, description, sv.batch_size, len(test), ctx.device)
    confidence = cfg.evaluation.confidence
    record: dict[str, Any] = {
        "method": ctx.method,
        "target": f"{ds}/{task}",
        "task_target": description.task_target.name,
        "dataset": ds,
        "seed": ctx.seed,
        "n_test": len(labels),
        "best_step": early.best_step if early is not None and early.history else None,
        "train_seconds": round(train_seconds, 3),
    }
    for name, metric in (("auroc", auroc), ("accuracy", accuracy)):
        record[name] = float(metric(logits, labels, description))
        lo, hi = bootstrap_interval(logits, labels, description, metric, sv.bootstrap, confidence, ctx.seed)
        record[f"{name}_ci_low"], record[f"{name}_ci_high"] = lo, hi
    ctx.log(
        f"[{ds}] supervised on {task!r}: test AUROC {record['auroc']:.4f} "
        f"[{record['auroc_ci_low']:.4f}, {record['auroc_ci_high']:.4f}]"
    )
    return record
