"""The protocol's methods, run through the registry: context, training, evaluation learner, fingerprint.

Every method starts from the same backbone weights (``[backbone] weights``, built with
the training seed). Source training is checkpointed (see
`torchcross.protocol.training.train_steps()`) under
``<out_dir>/checkpoints/[seed-<s>/]<target dataset>/<method>.pt``. Methods are looked up
in [`torchcross.protocol.registry`][torchcross.protocol.registry], built-in and user-registered alike.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from torchcross.distributed.seeds import rank_and_world_size
from torchcross.protocol.config import ProtocolConfig
from torchcross.protocol.data import TargetPlan
from torchcross.protocol.fingerprint import EPISODE_READS, EVALUATION_READS, fingerprint
from torchcross.protocol.registry import MethodContext, get_method
from torchcross.protocol.selection import selection_settings

__all__ = ["evaluation_learner", "method_context", "method_fingerprint", "resolve_methods", "train_method"]

Log = Callable[[str], None]


def resolve_methods(config: ProtocolConfig) -> tuple[str, ...]:
    """The methods a run reports: ``[evaluation] methods``, each as its declared ``under_random_weights``
    under random weights (IM-PT is then ``"scratch"``).

    Examples:
        >>> from torchcross.protocol.config import config_from_dict
        >>> raw = {"data": {"root": "d", "targets": "t"}, "run": {"out_dir": "o"}}
        >>> resolve_methods(config_from_dict({**raw, "backbone": {"weights": "random"}}))
        ('scratch', 'mm-PT', 'mm-MAML')
    """
    out: list[str] = []
    for m in config.evaluation.methods:
        alias = get_method(m).under_random_weights
        name = alias if alias is not None and config.backbone.weights == "random" else m
        if name not in out:
            out.append(name)
    return tuple(out)


def method_context(
    config: ProtocolConfig,
    target: TargetPlan,
    method: str,
    seed: int,
    *,
    in_channels: int,
    image_size: int,
    device: torch.device,
    log: Log,
    progress: bool | None = None,
) -> MethodContext:
    """The [`MethodContext`][MethodContext] of ``method`` on ``target`` with
    ``seed``.

    Under ``torchrun`` rank ``r > 0`` checkpoints into ``checkpoints/rank-<r>/`` (each rank
    resumes its own sampler position and RNG state).
    """
    folder = Path(config.run.out_dir) / "checkpoints"
    rank, _ = rank_and_world_size()
    if rank > 0:
        folder = folder / f"rank-{rank}"
    if config.run.seeds is not None:
        folder = folder / f"seed-{seed}"
    return MethodContext(
        method,
        config,
        target,
        in_channels,
        image_size,
        device,
        seed,
        folder / target.dataset_id,
        log,
        progress,
        variant=get_method(method).variant,
    )


def method_fingerprint(ctx: MethodContext) -> str:
    """The fingerprint of the method's evaluation on the target (a finished one is reused while it is equal).

    Built by [`fingerprint()`][fingerprint] from what the
    evaluation reads: the method's registered ``reads``, the episodes' settings
    ([`EPISODE_READS`][EPISODE_READS], unless it is scored per
    task) and ``[evaluation] confidence``; with the method's identity (variant, target and
    its tasks, sources, seed, input shape) and its ``settings(config)``, if registered; and
    ``[selection]`` where it chooses the method's fine-tuning
    ([`selection_settings()`][selection_settings]).
    """
    spec = get_method(ctx.method)
    reads = (spec.reads, EVALUATION_READS) if spec.per_task else (spec.reads, EVALUATION_READS, EPISODE_READS)
    extra = {"settings": dict(spec.settings(ctx.config))} if spec.settings is not None else {}
    extra.update(selection_settings(ctx.config, spec.reads, spec.per_task))
    return fingerprint(ctx.config, *reads, **ctx.identity(), tasks=list(ctx.target.tasks), **extra)


def train_method(ctx: MethodContext) -> Any:
    """Run the method's training under a torch RNG seeded with ``ctx.seed`` (``None``: it has none)."""
    spec = get_method(ctx.method)
    if spec.train is None:
        return None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(ctx.seed)
        return spec.fit(ctx)


def evaluation_learner(ctx: MethodContext, trained: Any) -> Any:
    """What [`evaluate()`][torchcross.evaluation.episodic.evaluate] calls on the target episodes."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(ctx.seed)
        return get_method(ctx.method).predictor(ctx, trained)
