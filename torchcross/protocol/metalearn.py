"""Episodic source training: mm-MAML (second order), FOMAML, ANIL, Meta-SGD and ProtoNet.

Training episodes come from every source task (the paper: all splits of each source
dataset); with ``[maml] n_shot`` unset each episode has a random number of shots in
``[min_shot, max_shot]`` and a random subset of 2 to all classes (the paper: 1-10 shots),
``n_query`` query examples per class. Inputs are augmented as ``[augmentation]``. Every
``val_every`` meta-updates the mean query AUROC of the learner's own adaptation on
``val_episodes`` fixed episodes of the sources' ``val`` splits is computed; after
``patience`` validations without improvement training stops with the best weights.

Evaluation: mm-MAML and FOMAML fine-tune their backbone as IM-PT (``[maml] evaluation
= "finetune"``, the paper) or adapt with the MAML inner loop (``"inner-loop"``); ANIL,
Meta-SGD and ProtoNet always use their own adaptation (it is what they learned).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from torchcross.evaluation.metrics import auroc
from torchcross.protocol.augment import build_augmentation
from torchcross.protocol.baselines import finetuner
from torchcross.protocol.pretrain import validation_sources
from torchcross.protocol.registry import MethodContext, Trained
from torchcross.protocol.validation import EarlyStopping
from torchcross.tasks.task import Task

__all__ = ["maml_learner", "maml_settings", "train_maml"]

_EPISODES_PER_SOURCE = 1_000_000  # episodes are a pure function of their index: any length costs nothing
_OWN_ADAPTATION = ("ANIL", "Meta-SGD", "ProtoNet")


def _evaluates_with_finetuning(method: str, config: Any) -> bool:
    return method not in _OWN_ADAPTATION and config.maml.evaluation == "finetune"


def maml_settings(config: Any) -> dict[str, Any]:
    """The settings an episodic method's results depend on (``[finetune]`` included, used or not)."""
    return {"maml": dataclasses.asdict(config.maml), "finetune": dataclasses.asdict(config.finetune)}


def _episode_datasets(ctx: MethodContext, sources: dict[str, Any], length: int) -> dict[str, Any]:
    from torchcross.data.metadataset import FewShotMetaDataset, SubTaskRandomFewShotMetaDataset

    mc = ctx.config.maml
    out = {}
    for name, source in sources.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                if mc.n_shot is None:
                    out[name] = SubTaskRandomFewShotMetaDataset(
                        source,
                        n_support_samples_per_class_min=mc.min_shot,
                        n_support_samples_per_class_max=mc.max_shot,
                        n_query_samples_per_class=mc.n_query,
                        filter_classes_min_samples=0,
                        length=length,
                        seed=ctx.seed,
                    )
                else:
                    out[name] = FewShotMetaDataset(
                        source, None, mc.n_shot, mc.n_query, 0, length=length, seed=ctx.seed
                    )
            except ValueError as exc:
                ctx.log(f"[{ctx.target.dataset_id}] {ctx.method}: source {name} skipped: {exc}")
        for w in caught:
            ctx.log(f"[{ctx.target.dataset_id}] {ctx.method}: source {name}: {w.message}")
    return out


def _model(ctx: MethodContext, backbone: nn.Module, width: int) -> nn.Module:
    mc = ctx.config.maml
    if ctx.method == "ProtoNet":
        from torchcross.learners.protonet import ProtoNet

        return ProtoNet(backbone)
    from torchcross.learners.maml import MAML

    return MAML(
        backbone,
        width,
        inner_lr=mc.inner_lr,
        num_inner_steps=mc.inner_steps,
        eval_num_inner_steps=mc.eval_inner_steps,
        first_order=mc.first_order or ctx.method == "FOMAML",
        anil=ctx.method == "ANIL",
        meta_sgd=ctx.method == "Meta-SGD",
    )


def _to_device(
    task: Task, device: torch.device, augment: Callable[[torch.Tensor], torch.Tensor] | None
) -> Task:
    def inputs(x: torch.Tensor) -> torch.Tensor:
        x = x.to(device)
        return augment(x) if augment is not None else x

    return Task(
        (inputs(task.support[0]), task.support[1].to(device)),
        (inputs(task.query[0]), task.query[1].to(device)),
        task.description,
    )


def _episode_auroc(
    model: nn.Module, episodes: dict[str, Any], n: int, ctx: MethodContext
) -> Callable[[], float]:
    names = list(episodes)

    def validate() -> float:
        scores = []
        for i in range(n):  # round-robin over the sources: episode i // len(names) of source i % len
            task = _to_device(episodes[names[i % len(names)]][i // len(names)], ctx.device, None)
            scores.append(auroc(model.predict(task), task.query[1], task.description))
        finite = [s for s in scores if not math.isnan(s)]
        return math.fsum(finite) / len(finite) if finite else math.nan

    return validate


def train_maml(ctx: MethodContext) -> Trained:
    """Train the episodic method ``ctx.method`` on ``ctx.target``'s sources (resuming from its checkpoint)."""
    from torchcross.data.multitask import MultiTaskEpisodeSampler

    cfg, mc = ctx.config, ctx.config.maml
    episodes = _episode_datasets(ctx, ctx.source_tasks(cfg.data.source_split or "all"), _EPISODES_PER_SOURCE)
    if not episodes:
        raise ValueError(
            f"no source task of target {ctx.target.dataset_id!r} has enough examples for episodes with "
            f"{mc.n_shot or mc.min_shot} shots and {mc.n_query} queries per class; lower [maml] n_query"
        )
    backbone, width = ctx.build_backbone()
    model = _model(ctx, backbone, width).to(ctx.device)
    sampler = MultiTaskEpisodeSampler(
        episodes, mc.meta_batch_size, mode="infinite", shuffle=False, seed=ctx.seed
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=mc.outer_lr)
    augment = build_augmentation(cfg.augmentation, ctx.image_size)

    def step(meta_batch: list[Task]) -> float:
        return model.meta_backward([_to_device(t, ctx.device, augment) for t in meta_batch])

    early = None
    if mc.patience > 0:
        val = _episode_datasets(
            ctx, validation_sources(ctx), math.ceil(mc.val_episodes / max(1, len(episodes)))
        )
        if val:
            n_val = min(mc.val_episodes, sum(len(d) for d in val.values()))
            early = EarlyStopping(_episode_auroc(model, val, n_val, ctx), mc.val_every, mc.patience)
    ctx.log(
        f"[{ctx.target.dataset_id}] {ctx.method}: up to {mc.steps} meta-steps, {len(episodes)} source tasks"
        + (f", validating every {mc.val_every} (patience {mc.patience})" if early else "")
    )
    training = {
        k: v
        for k, v in dataclasses.asdict(mc).items()
        if k not in ("steps", "evaluation", "eval_inner_steps")
    }
    losses = ctx.train_model(model, optimizer, step, sampler, mc.steps, training, early)
    return Trained(model.backbone, width, model, losses, list(early.history) if early else [])


def maml_learner(ctx: MethodContext, trained: Trained) -> Any:
    """Fine-tuning of the trained backbone (``evaluation = "finetune"``), or the method's own adaptation."""
    if _evaluates_with_finetuning(ctx.method, ctx.config):
        return finetuner(ctx, trained.backbone, trained.num_features)
    return trained.model
