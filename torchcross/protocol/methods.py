"""The protocol's methods: source training (mm-PT, mm-MAML) and the learner evaluated on targets.

Every method starts from the same backbone weights (built with the run's seed, or read
from ``[backbone] weights``). Source training is checkpointed (see
:func:`torchcross.protocol.training.train_steps`) under
``<out_dir>/checkpoints/<target dataset>/<method>.pt``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchcross.evaluation.loggers import MetricsLogger
from torchcross.protocol.backbone import build_backbone
from torchcross.protocol.data import TargetPlan, open_task
from torchcross.protocol.plan import ProtocolPlan
from torchcross.protocol.training import config_fingerprint, train_steps
from torchcross.tasks.task import Task

__all__ = ["TrainedMethod", "evaluation_learner", "method_fingerprint", "train_method"]

Log = Callable[[str], None]
_EPISODES_PER_SOURCE = (
    1_000_000  # source episodes are a pure function of their index: any length costs nothing
)


@dataclass
class TrainedMethod:
    """A method after source training: its backbone (and MAML learner), with the training losses."""

    method: str
    backbone: nn.Module
    num_features: int
    learner: nn.Module | None = None
    losses: list[float] = field(default_factory=list)


def _settings(plan: ProtocolPlan, target: TargetPlan, method: str, evaluation: bool) -> dict[str, Any]:
    cfg = plan.config
    out: dict[str, Any] = {
        "method": method,
        "target": target.dataset_id,
        "backbone": [cfg.backbone.name, str(cfg.backbone.weights), cfg.backbone.hidden],
        "input": [plan.in_channels, plan.image_size, cfg.data.normalize],
        "seed": cfg.run.seed,
    }
    if method != "IM-PT":
        out["sources"] = [list(s) for s in target.sources]
        out["source_split"] = cfg.data.source_split
        section = cfg.pretrain if method == "mm-PT" else cfg.maml
        out["training"] = {k: getattr(section, k) for k in section.__dataclass_fields__ if k != "steps"}
        if evaluation:
            out["steps"] = section.steps
        if method == "mm-MAML":
            out["n_shot"] = cfg.maml.n_shot or cfg.evaluation.n_shot
    if evaluation:
        ev = cfg.evaluation
        out["episodes"] = [list(target.tasks), cfg.data.target_split, ev.n_shot, ev.n_query, ev.n_episodes]
        out["confidence"] = ev.confidence
        if method != "mm-MAML":
            out["finetune"] = {k: getattr(cfg.finetune, k) for k in cfg.finetune.__dataclass_fields__}
    return out


def method_fingerprint(plan: ProtocolPlan, target: TargetPlan, method: str) -> str:
    """A hash of every setting that affects a method's evaluation on ``target`` (for resuming)."""
    return config_fingerprint(_settings(plan, target, method, evaluation=True))


def _to_device(task: Task, device: torch.device) -> Task:
    return Task(
        tuple(t.to(device) for t in task.support),
        tuple(t.to(device) for t in task.query),
        task.description,
    )


def _source_sources(plan: ProtocolPlan, target: TargetPlan) -> dict[str, Any]:
    cfg = plan.config
    return {
        f"{ds}/{task}": open_task(
            cfg.data.root,
            ds,
            task,
            cfg.data.source_split,
            channels=plan.in_channels,
            image_size=plan.image_size,
            normalize=cfg.data.normalize,
        )
        for ds, task in target.sources
    }


def _train_pt(
    plan: ProtocolPlan,
    target: TargetPlan,
    tm: TrainedMethod,
    ckpt: Path,
    log: Log,
    progress: bool | None,
    logger: MetricsLogger | None,
) -> None:
    from torchcross.data.multitask import MultiTaskBatchSampler
    from torchcross.learners.multitask import MultiTaskPretrainer

    cfg, pt = plan.config, plan.config.pretrain
    sources = _source_sources(plan, target)
    sampler = MultiTaskBatchSampler(
        sources,
        pt.batch_size,
        weighting=pt.weighting,
        mode="infinite",
        shuffle=True,
        drop_last=False,
        seed=cfg.run.seed,
    )
    model = MultiTaskPretrainer(
        tm.backbone, tm.num_features, [s.task_description for s in sources.values()], seed=cfg.run.seed
    ).to(plan.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=pt.lr, weight_decay=pt.weight_decay)
    device = plan.device

    def step(unit: Any) -> torch.Tensor:
        (x, y), description = unit
        value = model.loss((x.to(device), y.to(device)), description)
        value.backward()
        return value

    log(f"[{target.dataset_id}] mm-PT: {pt.steps} steps over {len(sources)} source tasks")
    tm.losses = train_steps(
        model,
        optimizer,
        step,
        lambda: iter(sampler),
        pt.steps,
        sampler=sampler,
        checkpoint=ckpt,
        checkpoint_every=cfg.run.checkpoint_every,
        settings=_settings(plan, target, "mm-PT", evaluation=False),
        resume=cfg.run.resume,
        progress=progress,
        description=f"mm-PT on {target.dataset_id}",
        logger=logger,
        log=log,
    )
    tm.learner = model


def _train_maml(
    plan: ProtocolPlan,
    target: TargetPlan,
    tm: TrainedMethod,
    ckpt: Path,
    log: Log,
    progress: bool | None,
    logger: MetricsLogger | None,
) -> None:
    from torchcross.data.metadataset import FewShotMetaDataset
    from torchcross.data.multitask import MultiTaskEpisodeSampler
    from torchcross.learners.maml import MAML

    cfg, mc = plan.config, plan.config.maml
    n_shot = mc.n_shot or cfg.evaluation.n_shot
    episodes = {}
    for name, source in _source_sources(plan, target).items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                episodes[name] = FewShotMetaDataset(
                    source, None, n_shot, mc.n_query, 0, length=_EPISODES_PER_SOURCE, seed=cfg.run.seed
                )
            except ValueError as exc:
                log(f"[{target.dataset_id}] mm-MAML: source {name} skipped: {exc}")
        for w in caught:
            log(f"[{target.dataset_id}] mm-MAML: source {name}: {w.message}")
    if not episodes:
        raise ValueError(
            f"no source task of target {target.dataset_id!r} has enough examples for {n_shot}-shot "
            f"{mc.n_query}-query episodes; lower [maml] n_shot / n_query"
        )
    sampler = MultiTaskEpisodeSampler(
        episodes, mc.meta_batch_size, mode="infinite", shuffle=False, seed=cfg.run.seed
    )
    maml = MAML(
        tm.backbone,
        tm.num_features,
        inner_lr=mc.inner_lr,
        num_inner_steps=mc.inner_steps,
        eval_num_inner_steps=mc.eval_inner_steps,
        first_order=mc.first_order,
    ).to(plan.device)
    optimizer = torch.optim.Adam(maml.parameters(), lr=mc.outer_lr)
    device = plan.device

    def step(meta_batch: list[Task]) -> float:
        return maml.meta_backward([_to_device(t, device) for t in meta_batch])

    log(f"[{target.dataset_id}] mm-MAML: {mc.steps} meta-steps over {len(episodes)} source tasks")
    tm.losses = train_steps(
        maml,
        optimizer,
        step,
        lambda: iter(sampler),
        mc.steps,
        sampler=sampler,
        checkpoint=ckpt,
        checkpoint_every=cfg.run.checkpoint_every,
        settings=_settings(plan, target, "mm-MAML", evaluation=False),
        resume=cfg.run.resume,
        progress=progress,
        description=f"mm-MAML on {target.dataset_id}",
        logger=logger,
        log=log,
    )
    tm.learner = maml


def train_method(
    plan: ProtocolPlan,
    target: TargetPlan,
    method: str,
    log: Log,
    progress: bool | None = None,
    logger: MetricsLogger | None = None,
) -> TrainedMethod:
    """Build the initial backbone and, for mm-PT and mm-MAML, train it on ``target``'s sources.

    ``logger`` (a ``MetricsLogger``) receives the
    loss of every training step.

    Training runs under a forked torch RNG seeded with the run's seed, so it does not
    disturb the caller's random state.
    """
    cfg = plan.config
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.run.seed)
        backbone, width = build_backbone(
            cfg.backbone.name,
            plan.in_channels,
            plan.image_size,
            seed=cfg.run.seed,
            weights=cfg.backbone.weights,
            hidden=cfg.backbone.hidden,
        )
        tm = TrainedMethod(method, backbone.to(plan.device), width)
        ckpt = Path(cfg.run.out_dir) / "checkpoints" / target.dataset_id / f"{method}.pt"
        if method == "mm-PT":
            _train_pt(plan, target, tm, ckpt, log, progress, logger)
        elif method == "mm-MAML":
            _train_maml(plan, target, tm, ckpt, log, progress, logger)
        elif method != "IM-PT":
            raise ValueError(f"unknown method {method!r}; known methods: IM-PT, mm-PT, mm-MAML")
    return tm


def evaluation_learner(plan: ProtocolPlan, method: str, trained: TrainedMethod) -> Any:
    """What :func:`~torchcross.evaluation.evaluate` calls: MAML itself, or a fine-tuner of the backbone."""
    if method == "mm-MAML":
        return trained.learner
    from torchcross.learners.finetuner import FineTuner

    ft = plan.config.finetune
    return FineTuner(
        trained.backbone,
        trained.num_features,
        num_steps=ft.steps,
        lr=ft.lr,
        optimizer="adam",
        finetune_backbone=not ft.freeze_backbone,
        batch_norm=ft.batch_norm,
        seed=plan.config.run.seed,
    )
