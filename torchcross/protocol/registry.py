"""The protocol's methods by name: the built-in baselines and learners, and your own.

A method is two functions: ``train(ctx)`` runs its source training (or ``None`` for
none) and returns what it trained; ``learner(ctx, trained)`` returns what
[`evaluate()`][torchcross.evaluation.episodic.evaluate] calls on each fixed target episode (an object
with ``predict(task)`` returning query logits). ``ctx`` is a
[`MethodContext`][torchcross.protocol.registry.MethodContext]:
the config, the target, the input shape, the device, the training seed, where to
checkpoint, and helpers to build the backbone and open source tasks. Every method is
scored on the same fixed episodes, so methods compare pairwise.

Register your own before calling [`run_protocol()`][torchcross.protocol.run.run_protocol] (or in a
module that a script imports before ``torchcross run``), then list its name in
``[evaluation] methods``.

Examples:
    >>> from torchcross.learners.protonet import ProtoNet
    >>> def prototypes_on_initial_features(ctx, trained):
    ...     backbone, _ = ctx.build_backbone()
    ...     return ProtoNet(backbone, batch_norm="frozen")
    >>> spec = register_method("my-protonet", None, prototypes_on_initial_features, replace=True)
    >>> "my-protonet" in method_names()
    True
    >>> unregister_method("my-protonet")
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchcross.distributed.seeds import rank_and_world_size
from torchcross.protocol.backbone import build_backbone
from torchcross.protocol.data import TargetPlan, open_task
from torchcross.protocol.training import config_fingerprint, train_steps

__all__ = [
    "BUILTIN_METHODS",
    "MethodContext",
    "MethodSpec",
    "get_method",
    "method_names",
    "register_method",
    "unregister_method",
]

Log = Callable[[str], None]


def _as_is(unit: Any) -> Any:
    """DataLoader collate function: the samplers already batch (picklable, unlike a lambda)."""
    return unit


@dataclass
class MethodContext:
    """What a method's functions get: the config, the target and the run's resources.

    Attributes:
        method: the method's name.
        config: the whole [`ProtocolConfig`][torchcross.protocol.config.ProtocolConfig].
        target: the target dataset, its tasks and its source tasks.
        in_channels, image_size: the input shape every task source delivers.
        device: where to train and evaluate.
        seed: the training seed (one of ``config.training_seeds``).
        checkpoint_dir: a folder for this method's checkpoints on this target and seed.
        log: receives progress lines.
        progress: tqdm progress bars (``None``: only on a terminal).
        logger: a ``MetricsLogger`` for the training curve (``None``: none).
    """

    method: str
    config: Any  # a ProtocolConfig (the config module checks method names against this registry)
    target: TargetPlan
    in_channels: int
    image_size: int
    device: torch.device
    seed: int
    checkpoint_dir: Path
    log: Log = print
    progress: bool | None = None
    logger: Any = None

    def build_backbone(self, weights: Any = "config") -> tuple[nn.Module, int]:
        """The run's initial backbone on ``device`` and its feature width.

        Args:
            weights: ``"config"`` (``[backbone] weights``), ``"random"`` (seeded with
                ``seed``), ``"imagenet"`` or a ``state_dict`` file.
        """
        b = self.config.backbone
        w = b.weights if weights == "config" else weights
        net, width = build_backbone(
            b.name, self.in_channels, self.image_size, seed=self.seed, weights=w, hidden=b.hidden
        )
        return net.to(self.device), width

    def fingerprint(self, training: Mapping[str, Any]) -> str:
        """A hash of what the method's training depends on (checkpoints are resumed only if equal).

        Leave the step count out of ``training``, so a finished run can be extended.
        """
        return config_fingerprint(self.training_settings(training))

    def training_settings(self, training: Mapping[str, Any]) -> dict[str, Any]:
        """What the method's training depends on (``train_steps(settings=...)`` records it).

        Under ``torchrun`` the number of ranks too, so a checkpoint is resumed only by as
        many ranks as wrote it.
        """
        c = self.config
        _, world = rank_and_world_size()
        return {
            **({"world_size": world} if world > 1 else {}),
            "method": self.method,
            "target": self.target.dataset_id,
            "sources": [list(s) for s in self.target.sources],
            "seed": self.seed,
            "backbone": [c.backbone.name, str(c.backbone.weights), c.backbone.hidden],
            "input": [self.in_channels, self.image_size, c.data.normalize, c.data.source_split],
            "augmentation": dataclasses.asdict(c.augmentation),
            "training": dict(training),
        }

    def train_model(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        step: Callable[[Any], Any],
        sampler: Any,
        steps: int,
        training: Mapping[str, Any],
        early_stopping: Any = None,
    ) -> list[float]:
        """`train_steps()` with this run's checkpoint file, resume setting, logger and progress bar.

        ``training`` holds the method's settings (see `training_settings()`), ``sampler`` a
        multi-task sampler iterated through `stream()`. Logs the best validation score
        when ``early_stopping`` ran. Returns the loss of every step.
        """
        losses = train_steps(
            model,
            optimizer,
            step,
            lambda: self.stream(sampler),
            steps,
            sampler=sampler,
            checkpoint=self.checkpoint_dir / f"{self.method}.pt",
            checkpoint_every=self.config.run.checkpoint_every,
            settings=self.training_settings(training),
            resume=self.config.run.resume,
            progress=self.progress,
            description=f"{self.method} on {self.target.dataset_id}",
            early_stopping=early_stopping,
            logger=self.logger,
            log=self.log,
        )
        if early_stopping is not None and early_stopping.history:
            self.log(
                f"[{self.target.dataset_id}] {self.method}: best validation AUROC "
                f"{early_stopping.best_score:.4f} at step {early_stopping.best_step} "
                f"({len(losses)} steps run)"
            )
        return losses

    def stream(self, sampler: Any) -> Iterator[Any]:
        """Iterate a multi-task sampler, through ``[run] num_workers`` DataLoader workers if set."""
        workers = self.config.run.num_workers
        if workers == 0:
            return iter(sampler)
        from torch.utils.data import DataLoader

        loader = DataLoader(
            sampler,
            batch_size=None,
            num_workers=workers,
            collate_fn=_as_is,
            pin_memory=self.device.type == "cuda",
        )
        return iter(loader)

    def open(self, dataset_id: str, task_name: str, split: str) -> Any:
        """One task of the data root as a task source (resized and normalised as configured)."""
        d = self.config.data
        return open_task(
            d.root,
            dataset_id,
            task_name,
            split,
            channels=self.in_channels,
            image_size=self.image_size,
            normalize=d.normalize,
        )

    def source_tasks(self, split: str) -> dict[str, Any]:
        """``{"dataset/task": task source}`` of the target's source tasks on ``split``."""
        return {f"{ds}/{task}": self.open(ds, task, split) for ds, task in self.target.sources}


@dataclass(frozen=True)
class MethodSpec:
    """A registered method.

    Attributes:
        name: its name in ``[evaluation] methods`` and in the results.
        train: ``ctx -> trained`` (``None``: no training; ``learner`` gets ``None``).
        learner: ``(ctx, trained) -> predictor`` evaluated on the target episodes.
        settings: ``config -> JSON-ready dict`` of everything that changes its results
            (resumed evaluations are reused only while these are unchanged).
        summary: one line for ``torchcross run --help`` and the docs.
        per_task: trained and scored per target task without episodes (the supervised
            baseline); ``learner`` is not used.
    """

    name: str
    train: Callable[[MethodContext], Any] | None
    learner: Callable[[MethodContext, Any], Any]
    settings: Callable[[Any], Mapping[str, Any]] | None = None
    summary: str = ""
    per_task: bool = False


def _lazy(path: str) -> Callable[..., Any]:
    module, _, attr = path.partition(":")

    def call(*args: Any) -> Any:
        return getattr(importlib.import_module(f"torchcross.protocol.{module}"), attr)(*args)

    call.__name__ = attr
    return call


def _builtin(name: str, train: str | None, learner: str, settings: str, summary: str) -> MethodSpec:
    return MethodSpec(
        name,
        _lazy(train) if train else None,
        _lazy(learner),
        _lazy(settings),
        summary,
        per_task=name == "supervised",
    )


_BUILTINS: tuple[MethodSpec, ...] = (
    _builtin(
        "IM-PT",
        None,
        "baselines:finetuner_from_weights",
        "baselines:finetune_settings",
        "fine-tune the backbone's weights (ImageNet by default) with a new head per episode",
    ),
    _builtin(
        "scratch",
        None,
        "baselines:finetuner_from_random",
        "baselines:finetune_settings",
        "fine-tune a seeded random initialisation (IM-PT without weights)",
    ),
    _builtin(
        "linear-probe",
        None,
        "baselines:linear_probe",
        "baselines:finetune_settings",
        "train only a new head on the backbone's frozen features",
    ),
    _builtin(
        "mm-PT",
        "pretrain:train_pretrain",
        "baselines:finetuner_from_trained",
        "pretrain:pretrain_settings",
        "multi-domain multi-task pre-training, then fine-tuning as IM-PT",
    ),
    _builtin(
        "mm-MAML",
        "metalearn:train_maml",
        "metalearn:maml_learner",
        "metalearn:maml_settings",
        "second-order MAML on source episodes, then fine-tuning as IM-PT ([maml] evaluation)",
    ),
    _builtin(
        "FOMAML",
        "metalearn:train_maml",
        "metalearn:maml_learner",
        "metalearn:maml_settings",
        "first-order MAML, evaluated as mm-MAML",
    ),
    _builtin(
        "ANIL",
        "metalearn:train_maml",
        "metalearn:maml_learner",
        "metalearn:maml_settings",
        "MAML adapting only the head in the inner loop; evaluated with its inner loop",
    ),
    _builtin(
        "Meta-SGD",
        "metalearn:train_maml",
        "metalearn:maml_learner",
        "metalearn:maml_settings",
        "MAML with learned per-parameter inner learning rates; evaluated with its inner loop",
    ),
    _builtin(
        "ProtoNet",
        "metalearn:train_maml",
        "metalearn:maml_learner",
        "metalearn:maml_settings",
        "prototypical networks trained on source episodes",
    ),
    _builtin(
        "supervised",
        None,
        "supervised:unused_learner",
        "supervised:supervised_settings",
        "fully supervised per target task: train split, val early stopping, test AUROC with bootstrap CI",
    ),
)

BUILTIN_METHODS: tuple[str, ...] = tuple(spec.name for spec in _BUILTINS)
"""Names of the built-in methods."""

_REGISTRY: dict[str, MethodSpec] = {spec.name: spec for spec in _BUILTINS}


def method_names() -> tuple[str, ...]:
    """Every method name that ``[evaluation] methods`` accepts, built-in ones first."""
    return tuple(_REGISTRY)


def get_method(name: str) -> MethodSpec:
    """The registered method ``name`` (exact spelling).

    Raises:
        ValueError: an unknown name, listing the known ones.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(_REGISTRY)}") from None


def register_method(
    name: str,
    train: Callable[[MethodContext], Any] | None,
    learner: Callable[[MethodContext, Any], Any],
    *,
    settings: Callable[[Any], Mapping[str, Any]] | None = None,
    summary: str = "",
    replace: bool = False,
) -> MethodSpec:
    """Add a method to the protocol.

    Args:
        name: its name in ``[evaluation] methods`` and the results (case-insensitive
            in configs, unique).
        train: ``ctx -> trained`` on the target's sources, or ``None``.
        learner: ``(ctx, trained) -> predictor`` with ``predict(task)``.
        settings: ``config -> dict`` of the settings its results depend on (for resuming).
        summary: one line describing it.
        replace: allow replacing a registered method of the same name (not a built-in).

    Raises:
        ValueError: an empty or taken name, or an attempt to replace a built-in.
        TypeError: ``train`` or ``learner`` not callable.
    """
    if not isinstance(name, str) or not name.strip() or "/" in name:
        raise ValueError(f"a method name must be a non-empty string without '/', got {name!r}")
    if train is not None and not callable(train):
        raise TypeError(f"train must be callable or None, got {type(train).__name__}")
    if not callable(learner):
        raise TypeError(f"learner must be callable, got {type(learner).__name__}")
    taken = [n for n in _REGISTRY if n.casefold() == name.casefold()]
    if taken and (taken[0] in BUILTIN_METHODS or not replace):
        what = "a built-in method" if taken[0] in BUILTIN_METHODS else "taken (pass replace=True)"
        raise ValueError(f"method name {name!r} is {what}; choose another name")
    for n in taken:
        del _REGISTRY[n]
    spec = MethodSpec(name, train, learner, settings, summary)
    _REGISTRY[name] = spec
    return spec


def unregister_method(name: str) -> None:
    """Remove a method added with [`register_method()`][torchcross.protocol.registry.register_method].

    Raises:
        ValueError: an unknown or built-in name.
    """
    if name in BUILTIN_METHODS:
        raise ValueError(f"{name!r} is a built-in method and cannot be removed")
    if name not in _REGISTRY:
        raise ValueError(f"no registered method {name!r}; registered: {', '.join(_REGISTRY)}")
    del _REGISTRY[name]


@dataclass
class Trained:
    """What a built-in training returns: the backbone (and the trained model), with its history."""

    backbone: nn.Module
    num_features: int
    model: nn.Module | None = None
    losses: list[float] = field(default_factory=list)
    validation: list[tuple[int, float]] = field(default_factory=list)
