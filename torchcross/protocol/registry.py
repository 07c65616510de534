"""The protocol's methods by name: the built-in baselines and learners, and your own.

A method is two functions: ``train(ctx)`` runs its source training (or ``None`` for none) and returns what it
trained; ``learner(ctx, trained)`` returns what [`evaluate()`][torchcross.evaluation.episodic.evaluate] calls
on each fixed target episode (an object with ``predict(task)`` returning query logits). ``ctx`` is a
[`MethodContext`][MethodContext]: the config, the target, the input shape, the device, the training seed,
where to checkpoint, and helpers to build the backbone and open source tasks. Every method is scored on the
same fixed episodes, so methods compare pairwise.

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

A method on a built-in trainer takes it ``like=`` a built-in method, with its own variant
(a value, never read from the name) and the built-in's declared reads:

    >>> from torchcross.protocol.variants import MetaLearnVariant
    >>> variant = MetaLearnVariant(first_order=True, anil=True)
    >>> spec = register_method("fo-ANIL", like="mm-MAML", variant=variant)
    >>> maml = get_method("mm-MAML")
    >>> spec.train is maml.train, spec.reads == maml.reads, spec.variant.anil
    (True, True, True)
    >>> unregister_method("fo-ANIL")
"""

from __future__ import annotations

import abc
import dataclasses
import importlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchcross.distributed.seeds import rank_and_world_size
from torchcross.protocol.backbone import backbone_preprocessing, build_backbone
from torchcross.protocol.data import TargetPlan
from torchcross.protocol.data_collections import open_data_task
from torchcross.protocol.fingerprint import (
    COMPUTE_READS,
    RESULT_READS,
    TRAINING_READS,
    Reads,
    fingerprint_settings,
)
from torchcross.protocol.training import train_steps
from torchcross.protocol.variants import MetaLearnVariant
from torchcross.protocol.zero_shot import ZeroShotConfig

__all__ = [
    "BUILTIN_METHODS",
    "AbstractMethod",
    "MethodContext",
    "MethodSpec",
    "get_method",
    "method_names",
    "register_method",
    "unregister_method",
]

Log = Callable[[str], None]


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
        variant: the method's variant (e.g. a
            [`MetaLearnVariant`][MetaLearnVariant]), as registered.
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
    variant: Any = None

    def build_backbone(self, weights: Any = "config") -> tuple[nn.Module, int]:
        """The run's initial backbone on ``device`` (channels-last with ``[run] channels_last``) and its
        feature width.

        A method declaring ``needs_text_tower`` gets a ``"hf:<CLIP folder>"`` with its text tower.

        Args:
            weights: ``"config"`` (``[backbone] weights``), ``"random"`` (seeded with
                ``seed``), ``"imagenet"`` or a ``state_dict`` file.
        """
        b = self.config.backbone
        w = b.weights if weights == "config" else weights
        spec = _REGISTRY.get(self.method)  # a text tower for a method that embeds prompts (hf: CLIP)
        text_tower = spec is not None and spec.needs_text_tower
        net, width = build_backbone(
            b.name,
            self.in_channels,
            self.image_size,
            seed=self.seed,
            weights=w,
            hidden=b.hidden,
            text_tower=text_tower,
        )
        net = net.to(self.device)
        if self.config.run.channels_last:  # [run] channels_last: every copy of it keeps the layout
            from torchcross.learners.precision import to_channels_last

            net = to_channels_last(net)
        return net, width

    @property
    def section(self) -> Any:
        """The config section of the method (its own ``[<name>]``, or the trainer's it declares)."""
        name = get_method(self.method).section
        return None if name is None else self.config.section(name)

    def identity(self) -> dict[str, Any]:
        """What names this method's artefacts beside the config values they read.

        The method and its variant, the target, the training seed and the input shape; for
        a method that trains on sources, the sources; for one that trains at all, under
        ``torchrun``, the number of ranks (a checkpoint is resumed only by as many ranks as
        wrote it).
        """
        spec = get_method(self.method)
        _, world = rank_and_world_size()
        trains = spec.trains
        return {
            "method": self.method,
            "variant": _as_settings(self.variant),
            "target": self.target.dataset_id,
            "sources": [list(s) for s in self.target.sources] if spec.train is not None else None,
            "seed": self.seed,
            "input": [self.in_channels, self.image_size],
            **({"world_size": world} if trains and world > 1 else {}),
            **({"text_tower": True} if spec.needs_text_tower else {}),  # an hf: CLIP loads as CLIPModel
        }

    def checkpoint_settings(self, reads: Reads | None = None, **values: Any) -> dict[str, Any]:
        """What a checkpoint of this method's training is fingerprinted by (``train_steps(settings=...)``).

        The config values ``reads`` names (``None``:
        [`TRAINING_READS`][TRAINING_READS]) and
        [`COMPUTE_READS`][COMPUTE_READS] (``[run] precision`` and ``channels_last``), this method's
        `identity()` and ``values`` (e.g. the target task of a per-task training). See
        [`fingerprint()`][torchcross.protocol.fingerprint.fingerprint].

        Raises:
            ValueError: ``reads`` names a setting the method's registered ``reads`` leave out
                (its finished evaluations would be reused after that setting changed).
        """
        reads = TRAINING_READS if reads is None else reads
        spec = get_method(self.method)
        undeclared = sorted(set(reads.resolve(self.config)) - set(spec.reads.resolve(self.config)))
        if undeclared:
            raise ValueError(
                f"method {self.method!r}: its training reads {', '.join(undeclared)}, which its registered "
                "reads leave out; add them to reads= of register_method (or leave reads= out: every setting)"
            )
        return fingerprint_settings(self.config, reads, COMPUTE_READS, **self.identity(), **values)

    def train_model(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        step: Callable[[Any], Any],
        sampler: Any,
        steps: int,
        training: Mapping[str, Any] | None = None,
        early_stopping: Any = None,
        *,
        reads: Reads | None = None,
        epochs: bool = False,
    ) -> list[float]:
        """`train_steps()` with this run's checkpoint file, resume setting, logger and progress bar.

        The checkpoint is resumed only while `checkpoint_settings()` are unchanged: the
        config values ``reads`` names (what this training reads, less its step count, so a
        finished run can be extended; ``None``: the backbone, inputs and augmentation) and
        ``training``, any further values it depends on. ``sampler`` is a multi-task sampler
        iterated through `stream()` (epoch after epoch with ``epochs``). Logs the best validation
        score when ``early_stopping`` ran. Returns the loss of every step.
        """
        losses = train_steps(
            model,
            optimizer,
            step,
            lambda: self.stream(sampler, epochs=epochs),
            steps,
            sampler=sampler,
            checkpoint=self.checkpoint_dir / f"{self.method}.pt",
            checkpoint_every=self.config.run.checkpoint_every,
            settings=self.checkpoint_settings(reads, **({"training": dict(training)} if training else {})),
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

    def stream(self, sampler: Any, *, epochs: bool = False) -> Iterator[Any]:
        """Iterate a multi-task sampler, through ``[run] num_workers`` DataLoader workers if set.

        A [`StreamLoader`][torchcross.data.stream.StreamLoader]: it counts the units the loop takes in the
        sampler's position, which the checkpoint saves. With ``epochs`` a finite sampler (``mode="epoch"``)
        is iterated from its position to the end of its epoch, then epoch after epoch (``set_epoch``), so
        a resumed loop continues mid-epoch; an epoch without units ends the stream.
        """
        from torchcross.data.stream import StreamLoader

        workers = self.config.run.num_workers
        options = {"pin_memory": self.device.type == "cuda"} if workers else {}
        loader = StreamLoader(sampler, num_workers=workers, **options)
        return _epoch_after_epoch(loader) if epochs else iter(loader)

    def open(self, dataset_id: str, task_name: str, split: str) -> Any:
        """One task of the data root as a task source (resized and normalised as configured)."""
        d = self.config.data
        return open_data_task(
            d,
            dataset_id,
            task_name,
            split,
            channels=self.in_channels,
            image_size=self.image_size,
            normalize=d.normalize,
            preprocessing=backbone_preprocessing(self.config.backbone.name, self.config.backbone.weights),
        )

    def source_tasks(self, split: str) -> dict[str, Any]:
        """``{"dataset/task": task source}`` of the target's source tasks on ``split``."""
        return {f"{ds}/{task}": self.open(ds, task, split) for ds, task in self.target.sources}


def _epoch_after_epoch(loader: Any) -> Iterator[Any]:
    """The units of ``loader`` from its position on, then those of each next epoch."""
    resumed = True  # a resumed position may stand at its epoch's end: that epoch may yield nothing
    while True:
        taken = 0
        for unit in loader:
            taken += 1
            yield unit
        if not taken and not resumed:
            return
        resumed = False
        loader.set_epoch(loader.stream.epoch + 1)


class AbstractMethod(abc.ABC):
    """What the protocol asks of a method: its declared properties, its training and its learner.

    The run reads only these, never the method's name: which source and target splits to open before
    any training (``source_split``, ``target_splits``), what to report it as under random weights
    (``under_random_weights``), which section configures it (``section``, of type ``config`` for a
    method's own), what its results depend on (``reads``) and its variant of a shared trainer
    (``variant``). [`MethodSpec`][MethodSpec] is the final implementation
    that [`register_method()`][register_method] makes.
    """

    name: str
    per_task: bool
    reads: Reads
    variant: Any
    config: type | None
    section: str | None
    source_split: str | None
    target_splits: tuple[str, ...]
    under_random_weights: str | None
    fixed_weights: str | None
    frozen_features: bool
    needs_text_tower: bool
    task_types: tuple[str, ...] | None

    @property
    @abc.abstractmethod
    def trains(self) -> bool:
        """Whether it trains before evaluation (on the sources, or per target task)."""

    @abc.abstractmethod
    def fit(self, ctx: MethodContext) -> Any:
        """Its training on ``ctx`` (``None`` if it has none); what it returns goes to `predictor()`."""

    @abc.abstractmethod
    def predictor(self, ctx: MethodContext, trained: Any) -> Any:
        """What [`evaluate()`][torchcross.evaluation.episodic.evaluate] calls on the target episodes."""


@dataclass(frozen=True)
class MethodSpec(AbstractMethod):
    """A registered method (final: register a new one, ``like=`` another, rather than subclass it).

    Attributes:
        name: its name in ``[evaluation] methods`` and in the results.
        train: ``ctx -> trained`` (``None``: no training; ``learner`` gets ``None``).
        learner: ``(ctx, trained) -> predictor`` evaluated on the target episodes.
        settings: ``config -> JSON-ready dict`` of further values its results depend on
            (beside ``reads``), or ``None``.
        summary: one line for ``torchcross run --help`` and the docs.
        per_task: trained and scored per target task without episodes (the supervised
            baseline); ``learner`` is not used.
        reads: the config values its results depend on, training and adaptation (its
            evaluations are reused only while they, the episodes' settings and
            ``[evaluation] confidence`` are unchanged; see
            [`fingerprint()`][torchcross.protocol.fingerprint.fingerprint]).
        variant: its variant of the trainer it uses (e.g. a
            [`MetaLearnVariant`][MetaLearnVariant]), handed to
            ``train`` and ``learner`` as ``ctx.variant``; part of every fingerprint of its results.
        config: the dataclass type of its own config section ``[<name>]`` (``None``: none).
        section: the section that configures it (``ctx.section``): its own, or a built-in
            trainer's (``"maml"``); ``None``: none.
        source_split: the split of the source tasks its training reads when ``[data]
            source_split`` is unset (opened before any training); ``None``: it reads no
            source task, or opens its own.
        target_splits: the splits of the target tasks it reads beside ``[data] target_split``
            (opened before any training).
        under_random_weights: the method it is reported as when ``[backbone] weights =
            "random"`` (IM-PT is then ``"scratch"``); ``None``: itself.
        fixed_weights: the backbone weights it starts from whatever ``[backbone] weights``
            says (``"random"`` for ``"scratch"``); ``None``: the configured ones.
        frozen_features: its learner takes the frozen backbone's features, not images: the run
            evaluates it on the target tasks' cached features
            ([`embedded_source()`][torchcross.protocol.frozen.embedded_source], ``[run]
            embedding_cache``), computed once and shared by its episodes, seeds and runs.
        needs_text_tower: its learner embeds text with the backbone's text tower (CLIP zero-shot):
            ``ctx.build_backbone()`` loads a ``"hf:<CLIP folder>"`` with its text tower, and
            [`check_protocol()`][torchcross.protocol.plan.check_protocol] refuses a backbone without
            one before anything trains.
        task_types: the target task types it evaluates (names of
            [`TaskTarget`][torchcross.tasks.task.TaskTarget]); ``None``: every type. A target task of
            another type is refused by ``check_protocol()`` before anything trains.
    """

    name: str
    train: Callable[[MethodContext], Any] | None
    learner: Callable[[MethodContext, Any], Any]
    settings: Callable[[Any], Mapping[str, Any]] | None = None
    summary: str = ""
    per_task: bool = False
    reads: Reads = RESULT_READS
    variant: Any = None
    config: type | None = None
    section: str | None = None
    source_split: str | None = None
    target_splits: tuple[str, ...] = ()
    under_random_weights: str | None = None
    fixed_weights: str | None = None
    frozen_features: bool = False
    needs_text_tower: bool = False
    task_types: tuple[str, ...] | None = None

    @property
    def trains(self) -> bool:
        """Whether it trains before evaluation (on the sources, or per target task)."""
        return self.train is not None or self.per_task

    def fit(self, ctx: MethodContext) -> Any:
        """``train(ctx)``, or ``None`` without training."""
        return None if self.train is None else self.train(ctx)

    def predictor(self, ctx: MethodContext, trained: Any) -> Any:
        """``learner(ctx, trained)``."""
        return self.learner(ctx, trained)


def _as_settings(value: Any) -> Any:
    """A variant as JSON-ready values: a dataclass as its class name and fields."""
    if value is None:
        return None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"kind": type(value).__name__, **dataclasses.asdict(value)}
    return repr(value)


def _lazy(path: str) -> Callable[..., Any]:
    module, _, attr = path.partition(":")

    def call(*args: Any) -> Any:
        return getattr(importlib.import_module(f"torchcross.protocol.{module}"), attr)(*args)

    call.__name__ = attr
    return call


# What the built-in methods read (their training reads the same, less its step count: see the trainers).
_ON_BACKBONE = ("backbone", "data.normalize")  # every method starts from the run's backbone on its inputs
_FINETUNE_READS = Reads((*_ON_BACKBONE, "finetune"))
_PRETRAIN_READS = Reads((*_ON_BACKBONE, "data.source_split", "augmentation", "pretrain", "finetune"))
_METALEARN_READS = Reads((*_ON_BACKBONE, "data.source_split", "augmentation", "maml", "finetune"))
_SUPERVISED_READS = Reads((*_ON_BACKBONE, "augmentation", "supervised"))


def _builtin(
    name: str,
    train: str | None,
    learner: str,
    reads: Reads,
    summary: str,
    variant: Any = None,
    **declared: Any,
) -> MethodSpec:
    return MethodSpec(
        name,
        _lazy(train) if train else None,
        _lazy(learner),
        None,
        summary,
        reads=reads,
        variant=variant,
        **declared,
    )


_EPISODIC = {"section": "maml", "source_split": "all"}


_BUILTINS: tuple[MethodSpec, ...] = (
    _builtin(
        "IM-PT",
        None,
        "baselines:finetuner_from_weights",
        _FINETUNE_READS,
        "fine-tune the backbone's weights (ImageNet by default) with a new head per episode",
        section="finetune",
        under_random_weights="scratch",
    ),
    _builtin(
        "scratch",
        None,
        "baselines:finetuner_from_random",
        _FINETUNE_READS,
        "fine-tune a seeded random initialisation (IM-PT without weights)",
        section="finetune",
        fixed_weights="random",
    ),
    _builtin(
        "linear-probe",
        None,
        "baselines:linear_probe",
        _FINETUNE_READS,
        "train only a new head on the backbone's frozen features (eval mode), cached once per image",
        section="finetune",
        frozen_features=True,
    ),
    _builtin(
        "mm-PT",
        "pretrain:train_pretrain",
        "baselines:finetuner_from_trained",
        _PRETRAIN_READS,
        "multi-domain multi-task pre-training, then fine-tuning as IM-PT",
        section="pretrain",
        source_split="train",
    ),
    _builtin(
        "mm-MAML",
        "metalearn:train_maml",
        "metalearn:maml_learner",
        _METALEARN_READS,
        "second-order MAML on source episodes, then fine-tuning as IM-PT ([maml] evaluation)",
        MetaLearnVariant(),
        **_EPISODIC,
    ),
    _builtin(
        "FOMAML",
        "metalearn:train_maml",
        "metalearn:maml_learner",
        _METALEARN_READS,
        "first-order MAML, evaluated as mm-MAML",
        MetaLearnVariant(first_order=True),
        **_EPISODIC,
    ),
    _builtin(
        "ANIL",
        "metalearn:train_maml",
        "metalearn:maml_learner",
        _METALEARN_READS,
        "MAML adapting only the head in the inner loop; evaluated with its inner loop",
        MetaLearnVariant(anil=True),
        **_EPISODIC,
    ),
    _builtin(
        "Meta-SGD",
        "metalearn:train_maml",
        "metalearn:maml_learner",
        _METALEARN_READS,
        "MAML with learned per-parameter inner learning rates; evaluated with its inner loop",
        MetaLearnVariant(meta_sgd=True),
        **_EPISODIC,
    ),
    _builtin(
        "ProtoNet",
        "metalearn:train_maml",
        "metalearn:maml_learner",
        _METALEARN_READS,
        "prototypical networks trained on source episodes",
        MetaLearnVariant(protonet=True),
        **_EPISODIC,
    ),
    _builtin(
        "supervised",
        None,
        "supervised:unused_learner",
        _SUPERVISED_READS,
        "fully supervised per target task: train split, val early stopping, test AUROC with bootstrap CI",
        per_task=True,
        section="supervised",
        target_splits=("train", "val", "test"),
    ),
    _builtin(
        "zero-shot",
        None,
        "zero_shot:zero_shot_learner",
        Reads((*_ON_BACKBONE, "zero-shot")),
        "CLIP zero-shot: query images against prompts of the class names ([zero-shot]; a CLIP backbone)",
        section="zero-shot",
        config=ZeroShotConfig,
        frozen_features=True,
        needs_text_tower=True,
        task_types=("BINARY_CLASSIFICATION", "MULTICLASS_CLASSIFICATION", "MULTILABEL_CLASSIFICATION"),
    ),
)


def _frozen_feature_settings(config: Any) -> Mapping[str, Any]:
    """Marks linear-probe evaluations on cached eval-mode features (earlier ones adapted in train mode)."""
    return {"features": "frozen, eval mode, cached"}


_BUILTINS = tuple(
    dataclasses.replace(spec, settings=_frozen_feature_settings) if spec.frozen_features else spec
    for spec in _BUILTINS
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
    train: Callable[[MethodContext], Any] | None = None,
    learner: Callable[[MethodContext, Any], Any] | None = None,
    *,
    like: str | None = None,
    variant: Any = None,
    reads: Reads | Iterable[str] | None = None,
    settings: Callable[[Any], Mapping[str, Any]] | None = None,
    config: type | None = None,
    source_split: str | None = None,
    target_splits: Iterable[str] | None = None,
    summary: str = "",
    replace: bool = False,
) -> MethodSpec:
    """Add a method to the protocol: your own functions, or a registered method with another variant.

    Args:
        name: its name in ``[evaluation] methods`` and the results (case-insensitive
            in configs, unique).
        train: ``ctx -> trained`` on the target's sources, or ``None``.
        learner: ``(ctx, trained) -> predictor`` with ``predict(task)``.
        like: instead of ``train`` and ``learner``: a registered method (e.g. ``"mm-MAML"``)
            whose functions, reads, settings and variant this one takes; the arguments
            given here replace them.
        variant: the method's variant of its trainer, handed to it as ``ctx.variant`` (e.g.
            ``MetaLearnVariant(anil=True)`` for the episodic trainer of ``like="mm-MAML"``).
        reads: the config sections (``"maml"``) and keys (``"data.normalize"``) its results
            depend on, or a [`Reads`][Reads]; ``None``: every
            setting a result may depend on
            ([`RESULT_READS`][RESULT_READS]), so a changed
            setting never reuses a stale evaluation.
        settings: ``config -> dict`` of further values its results depend on.
        config: the dataclass type of its own config section ``[<name>]``: each field a key,
            checked as its annotation says (`torchcross.protocol.schema`), unknown keys refused
            with the allowed ones. The method reads it as ``ctx.section``; its results depend on it.
        source_split: the split of the source tasks its training reads when ``[data]
            source_split`` is unset; the run opens every source task on it before any training
            (``like=`` takes the other method's).
        target_splits: splits of the target tasks it reads beside ``[data] target_split``, opened
            before any training (``like=`` takes the other method's).
        summary: one line describing it.
        replace: allow replacing a registered method of the same name (not a built-in).

    Raises:
        ValueError: an empty or taken name, an attempt to replace a built-in, an unknown
            ``like``, or ``like`` with ``train`` or ``learner`` (a method with ``config`` named
            like a built-in section, ``"maml"``, is refused when a config is read).
        TypeError: ``train`` or ``learner`` not callable, ``reads`` not a ``Reads`` or
            strings, or ``config`` not a dataclass type with supported annotations.

    Examples:
        >>> from dataclasses import dataclass, field
        >>> @dataclass(frozen=True)
        ... class MyConfig:
        ...     alpha: float = field(default=0.1, metadata={"min": 0.0})
        >>> spec = register_method("my-method", like="IM-PT", config=MyConfig)
        >>> spec.section, spec.reads.keys[-1]
        ('my-method', 'my-method')
        >>> unregister_method("my-method")
    """
    if not isinstance(name, str) or not name.strip() or "/" in name:
        raise ValueError(f"a method name must be a non-empty string without '/', got {name!r}")
    declared: dict[str, Any] = {"section": None, "source_split": None, "target_splits": ()}
    per_task = False
    if like is not None:
        if train is not None or learner is not None:
            raise ValueError(f"method {name!r}: pass like= or train and learner, not both")
        base = get_method(like)
        train, learner = base.train, base.learner
        variant = base.variant if variant is None else variant
        reads = base.reads if reads is None else reads
        settings = base.settings if settings is None else settings
        summary = summary or base.summary
        per_task = base.per_task
        declared = {k: getattr(base, k) for k in declared}
        declared["fixed_weights"] = base.fixed_weights
        declared["frozen_features"] = base.frozen_features
        declared["needs_text_tower"] = base.needs_text_tower
        declared["task_types"] = base.task_types
    if source_split is not None:
        declared["source_split"] = source_split
    if target_splits is not None:
        declared["target_splits"] = tuple(target_splits)
    if config is not None:
        from torchcross.protocol.schema import check_section_type

        check_section_type(config, name)
        declared["section"] = name
    if train is not None and not callable(train):
        raise TypeError(f"train must be callable or None, got {type(train).__name__}")
    if not callable(learner):
        raise TypeError(f"learner must be callable, got {type(learner).__name__}")
    if reads is None:
        reads = RESULT_READS
    elif not isinstance(reads, Reads):
        reads = Reads(reads)
    if config is not None and "*" not in reads.keys and name not in reads.keys:
        reads = Reads((*reads.keys, name), reads.without)  # its results depend on its own section
    taken = [n for n in _REGISTRY if n.casefold() == name.casefold()]
    if taken and (taken[0] in BUILTIN_METHODS or not replace):
        what = "a built-in method" if taken[0] in BUILTIN_METHODS else "taken (pass replace=True)"
        raise ValueError(f"method name {name!r} is {what}; choose another name")
    for n in taken:
        del _REGISTRY[n]
    spec = MethodSpec(name, train, learner, settings, summary, per_task, reads, variant, config, **declared)
    _REGISTRY[name] = spec
    return spec


def unregister_method(name: str) -> None:
    """Remove a method added with [`register_method()`][register_method].

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
