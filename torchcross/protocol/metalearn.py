"""Episodic source training: mm-MAML (second order), FOMAML, ANIL, Meta-SGD and ProtoNet.

Training episodes come from every source task (the paper: all splits of each source
dataset); with ``[maml] n_shot`` unset each episode has a random number of shots in
``[min_shot, max_shot]`` and a random subset of 2 to all classes (the paper: 1-10 shots),
``n_query`` query examples per class, from the classes with at least ``min_class_size``
examples; multi-label episodes by the rule ``multilabel_sampler`` (the authors': ``k`` positives
and negatives per label, trimmed). As the authors' ``cross_domain_maml.py`` (medimeta-experiments
at 83c2aad), a pool of ``episode_pool`` episodes is drawn per source task once (a pure function of
the seed) and every epoch visits all pools in a new seeded order (``episode_pool = 0``: a fresh
episode at every meta-update). Inputs are augmented as ``[augmentation]``. Every ``val_every`` meta-updates
(``"epoch"``: once per pass over the pools) the mean query AUROC of the learner's own adaptation,
with ``val_inner_steps`` inner steps, on ``val_episodes`` fixed episodes per source task (of the
``val_split`` splits, drawn with a seed of their own) is computed; after ``patience`` validations
without improvement training stops with the best weights.

Which learner is trained is the method's
[`MetaLearnVariant`][MetaLearnVariant] (``ctx.variant``, declared
when the method is registered), never its name. Evaluation: MAML and FOMAML fine-tune their
backbone as IM-PT (``[maml] evaluation = "finetune"``, the paper) or adapt with the MAML inner
loop (``"inner-loop"``); ANIL, Meta-SGD and ProtoNet always use their own adaptation (it is
what they learned).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from torchcross.distributed.seeds import derived_seed, rank_and_world_size
from torchcross.evaluation.metrics import auroc
from torchcross.protocol.augment import build_augmentation
from torchcross.protocol.baselines import finetuner
from torchcross.protocol.config import paper_lr
from torchcross.protocol.fingerprint import Reads
from torchcross.protocol.pretrain import validation_sources
from torchcross.protocol.registry import MethodContext, Trained
from torchcross.protocol.validation import EarlyStopping, epoch_updates
from torchcross.protocol.variants import MetaLearnVariant
from torchcross.tasks.task import Task

if TYPE_CHECKING:
    from torchcross.learners.maml import MAML
    from torchcross.learners.protonet import ProtoNet

__all__ = ["MetaLearnVariant", "maml_learner", "train_maml"]

_EPISODES_PER_SOURCE = 1_000_000  # episodes are a pure function of their index: any length costs nothing
_VALIDATION_SEED = 1  # derived_seed(seed, this): validation episodes are never training episodes
# what the checkpoint depends on: all that the training reads, less the step count (extending is resuming)
# and the evaluation's settings
_TRAINING_READS = Reads(
    ("backbone", "data.normalize", "data.source_split", "augmentation", "maml"),
    without=("maml.steps", "maml.evaluation", "maml.eval_inner_steps"),
)


def _variant(ctx: MethodContext) -> MetaLearnVariant:
    """The method's declared variant (``ctx.variant``); never guessed from its name."""
    if not isinstance(ctx.variant, MetaLearnVariant):
        raise TypeError(
            f"method {ctx.method!r} uses the episodic trainer, which needs a MetaLearnVariant, got "
            f"{ctx.variant!r}; register it like= an episodic method (e.g. like='mm-MAML') or pass "
            "variant=MetaLearnVariant(...)"
        )
    return ctx.variant


def _episode_datasets(
    ctx: MethodContext, sources: dict[str, Any], length: int, stage: str = "training", *, seed: int
) -> dict[str, Any]:
    """Episode datasets (drawn with ``seed``) of the sources that can fill an episode.

    ``stage`` (``"training"`` or ``"validation"``) names, in the log line of a source left out, what
    it is left out of.
    """
    from torchcross.data.metadataset.fixed_shot import FewShotMetaDataset, SubTaskRandomFewShotMetaDataset

    mc = ctx.config.maml
    out: dict[str, FewShotMetaDataset] = {}
    for name, source in sources.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                if mc.n_shot is None:
                    out[name] = SubTaskRandomFewShotMetaDataset(
                        source,
                        n_shot_min=mc.min_shot,
                        n_shot_max=mc.max_shot,
                        n_query=mc.n_query,
                        filter_classes_min_samples=mc.min_class_size,
                        length=length,
                        seed=seed,
                        multilabel_sampler=mc.multilabel_sampler,
                    )
                else:
                    out[name] = FewShotMetaDataset(
                        source,
                        n_shot=mc.n_shot,
                        n_query=mc.n_query,
                        filter_classes_min_samples=mc.min_class_size,
                        length=length,
                        seed=seed,
                        multilabel_sampler=mc.multilabel_sampler,
                    )
            except ValueError as exc:
                what = (
                    "no training episodes: this source task is not trained on"
                    if stage == "training"
                    else "no validation episodes: early stopping does not score this source task "
                    "(its training episodes are not affected)"
                )
                ctx.log(f"[{ctx.target.dataset_id}] {ctx.method}: source {name}, {what}: {exc}")
        for w in caught:
            ctx.log(f"[{ctx.target.dataset_id}] {ctx.method}: source {name} ({stage} episodes): {w.message}")
    return out


class _Pool:
    """Episodes ``0..len-1`` of an episode dataset's first epoch: the same episodes in every epoch.

    Map-style and without ``set_epoch``, so a sampler iterating it epoch after epoch reorders
    these episodes rather than drawing new ones.
    """

    def __init__(self, episodes: Any) -> None:
        self.episodes = episodes

    def __len__(self) -> int:
        return len(self.episodes)

    def __getitem__(self, index: int) -> Task:
        return self.episodes.item(0, index)


def _sampler(ctx: MethodContext, episodes: dict[str, Any]) -> Any:
    """The meta-batches: the pools in a new seeded order each epoch, or fresh episodes without end."""
    from torchcross.data.multitask import MultiTaskEpisodeSampler

    mc = ctx.config.maml
    if mc.episode_pool:  # a uniformly random order of all pooled episodes (a shuffling DataLoader)
        pools = {name: _Pool(ds) for name, ds in episodes.items()}
        return MultiTaskEpisodeSampler(
            pools, mc.meta_batch_size, weighting="proportional", mode="epoch", shuffle=True, seed=ctx.seed
        )
    return MultiTaskEpisodeSampler(
        episodes, mc.meta_batch_size, mode="infinite", shuffle=False, seed=ctx.seed
    )


def _validation_every(ctx: MethodContext, episodes: dict[str, Any]) -> int:
    """``[maml] val_every`` in meta-updates: ``"epoch"`` is one pass over the pools (per rank)."""
    mc = ctx.config.maml
    if mc.val_every != "epoch":
        return int(mc.val_every)
    units = -(-sum(len(ds) for ds in episodes.values()) // mc.meta_batch_size)
    return epoch_updates(units, rank_and_world_size()[1])


def _model(ctx: MethodContext, backbone: nn.Module, width: int) -> MAML | ProtoNet:
    mc, variant = ctx.config.maml, _variant(ctx)
    if variant.protonet:
        from torchcross.learners.protonet import ProtoNet

        return ProtoNet(backbone)
    from torchcross.learners.maml import MAML
    from torchcross.learners.policies import InnerLoop

    inner = InnerLoop(
        lr=mc.inner_lr,
        steps=mc.inner_steps,
        eval_steps=mc.eval_inner_steps,
        first_order=bool(mc.first_order or variant.first_order),
        anil=variant.anil,
        meta_sgd=variant.meta_sgd,
    )
    return MAML(backbone, width, inner=inner)


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


@contextlib.contextmanager
def _inner_steps(model: MAML | ProtoNet, steps: int) -> Iterator[None]:
    """``model.predict`` adapts with ``steps`` inner steps meanwhile (ProtoNet has no inner loop)."""
    if not hasattr(model, "eval_num_inner_steps"):
        yield
        return
    saved = model.eval_num_inner_steps
    model.eval_num_inner_steps = steps
    try:
        yield
    finally:
        model.eval_num_inner_steps = saved


def _episode_auroc(
    model: MAML | ProtoNet, episodes: dict[str, Any], ctx: MethodContext
) -> Callable[[], float]:
    steps = ctx.config.maml.val_inner_steps

    def validate() -> float:
        scores = []
        with _inner_steps(model, steps):
            for dataset in episodes.values():  # every episode of every source task
                for i in range(len(dataset)):
                    task = _to_device(dataset.item(0, i), ctx.device, None)
                    scores.append(auroc(model.predict(task), task.query[1], task.description))
        finite = [s for s in scores if not math.isnan(s)]
        return math.fsum(finite) / len(finite) if finite else math.nan

    return validate


def _validation(ctx: MethodContext, model: MAML | ProtoNet, every: int) -> EarlyStopping | None:
    mc = ctx.config.maml
    if mc.val_split == "val":  # the sources' val splits hold no training example: the training seed
        sources, seed = validation_sources(ctx), ctx.seed
    else:  # the training splits: a seed of their own, so no validation episode is a training episode
        sources, seed = ctx.source_tasks("all"), derived_seed(ctx.seed, _VALIDATION_SEED)
    val = _episode_datasets(ctx, sources, mc.val_episodes, "validation", seed=seed)
    return EarlyStopping(_episode_auroc(model, val, ctx), every, mc.patience) if val else None


def train_maml(ctx: MethodContext) -> Trained:
    """Train the episodic method ``ctx.method`` (its ``ctx.variant``) on ``ctx.target``'s sources.

    Resumes from its checkpoint.
    """
    cfg, mc = ctx.config, ctx.config.maml
    _variant(ctx)  # before any data is read
    episodes = _episode_datasets(
        ctx,
        ctx.source_tasks(cfg.data.source_split or "all"),
        mc.episode_pool or _EPISODES_PER_SOURCE,
        seed=ctx.seed,
    )
    if not episodes:
        raise ValueError(
            f"no source task of target {ctx.target.dataset_id!r} has enough examples for episodes with "
            f"{mc.n_shot or mc.min_shot} shots and {mc.n_query} queries per class from classes of at least "
            f"{mc.min_class_size} examples; lower [maml] n_query or min_class_size"
        )
    backbone, width = ctx.build_backbone()
    model = _model(ctx, backbone, width).to(ctx.device)
    sampler = _sampler(ctx, episodes)
    optimizer = torch.optim.Adam(model.parameters(), lr=paper_lr(cfg.backbone.name, mc.outer_lr))
    augment = build_augmentation(cfg.augmentation, ctx.image_size)

    def step(meta_batch: list[Task]) -> float:
        return model.meta_backward([_to_device(t, ctx.device, augment) for t in meta_batch])

    early = _validation(ctx, model, _validation_every(ctx, episodes)) if mc.patience > 0 else None
    ctx.log(
        f"[{ctx.target.dataset_id}] {ctx.method}: up to {mc.steps} meta-steps, {len(episodes)} source tasks"
        + (f", {mc.episode_pool} episodes each" if mc.episode_pool else "")
        + (f", validating every {early.every} (patience {mc.patience})" if early else "")
    )
    losses = ctx.train_model(
        model,
        optimizer,
        step,
        sampler,
        mc.steps,
        early_stopping=early,
        reads=_TRAINING_READS,
        epochs=bool(mc.episode_pool),
    )
    return Trained(model.backbone, width, model, losses, list(early.history) if early else [])


def maml_learner(ctx: MethodContext, trained: Trained) -> Any:
    """Fine-tuning of the trained backbone (``evaluation = "finetune"``), or the method's own adaptation."""
    if not _variant(ctx).own_adaptation and ctx.config.maml.evaluation == "finetune":
        return finetuner(ctx, trained.backbone, trained.num_features)
    return trained.model
