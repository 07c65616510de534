"""Configuration of the cross-domain few-shot protocol, read from TOML or YAML.

A config has sections ``[data]``, ``[evaluation]``, ``[backbone]``, ``[pretrain]``,
``[maml]``, ``[finetune]``, ``[augmentation]``, ``[supervised]`` and ``[run]``; only
``data.root``, ``data.targets`` and ``run.out_dir`` are required, and the defaults are the
MedIMeta paper's experiment (see ``docs/protocol.md``, "paper vs torchcross defaults").
Unknown sections and keys are errors that name them and
list what is allowed, so a typo never silently falls back to a default. Relative paths
are resolved against the config file's folder.

Examples:
    >>> cfg = config_from_dict(
    ...     {"data": {"root": "/data/medimeta", "targets": ["glaucoma"]}, "run": {"out_dir": "out"}}
    ... )
    >>> cfg.evaluation.methods, cfg.evaluation.n_shot, cfg.backbone.name, cfg.backbone.weights
    (('IM-PT', 'mm-PT', 'mm-MAML'), 5, 'resnet18', 'imagenet')
    >>> config_from_dict({"data": {"root": "/d", "targets": ["x"], "target": "y"}, "run": {"out_dir": "o"}})
    Traceback (most recent call last):
    ...
    ValueError: unknown key 'target' in section [data]; allowed keys: root, targets, sources, ...
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torchcross.protocol.plugins import import_plugin

__all__ = [
    "BACKBONES",
    "DEVICE_TYPES",
    "METHODS",
    "AugmentationConfig",
    "BackboneConfig",
    "DataConfig",
    "EvaluationConfig",
    "FinetuneConfig",
    "MAMLConfig",
    "PretrainConfig",
    "ProtocolConfig",
    "RunConfig",
    "SupervisedConfig",
    "config_from_dict",
    "config_to_dict",
    "import_plugin",
    "load_config",
    "normalize_method",
    "paper_lr",
]

METHODS: tuple[str, ...] = ("IM-PT", "mm-PT", "mm-MAML")
"""The paper's methods (the default): fine-tuning from ImageNet weights, from multi-task
pre-training, and from MAML. Every method of [`torchcross.protocol.registry`][torchcross.protocol.registry]
can be
listed in ``[evaluation] methods``."""

BACKBONES: tuple[str, ...] = ("conv4", "resnet18", "resnet34", "resnet50")
"""Backbone names: the library's Conv4, or a torchvision ResNet (``torchcross[vision]``)."""

DEVICE_TYPES: tuple[str, ...] = ("cpu", "cuda", "mps")
"""The torch device types ``[run] device`` accepts (``"cuda"`` and ``"mps"`` with an index or without):
the ones the protocol trains on. Others that ``torch.device`` parses (``"meta"`` holds no data) are
refused when the config is read."""

_SPLITS = ("train", "val", "test", "all")
_WEIGHT_KEYWORDS = ("imagenet", "random")
# upper bounds: beyond them a value is a typo that would exhaust memory or never finish
_MAX_THREADS = 1024
_MAX_SIZE = 4096
_MAX_COUNT = 100_000
_MAX_STEPS = 100_000_000


def normalize_method(name: str) -> str:
    """The canonical spelling of a method name (case-insensitive), built-in or registered.

    Raises:
        ValueError: for an unknown name, listing the known ones.

    Examples:
        >>> normalize_method("mm-maml")
        'mm-MAML'
    """
    from torchcross.protocol.registry import method_names

    known = method_names()
    for m in known:
        if isinstance(name, str) and name.strip().casefold() == m.casefold():
            return m
    raise ValueError(
        f"unknown method {name!r}; known methods: {', '.join(known)} "
        "(register your own with torchcross.protocol.register_method)"
    )


def paper_lr(backbone: str, lr: float | None) -> float:
    """``lr`` if set, else the paper's Adam learning rate: 1e-4 for ResNet-50, 1e-3 otherwise.

    Examples:
        >>> paper_lr("resnet18", None), paper_lr("resnet50", None), paper_lr("resnet50", 0.01)
        (0.001, 0.0001, 0.01)
    """
    if lr is not None:
        return lr
    return 1e-4 if backbone == "resnet50" else 1e-3


def _opt(kind: Any, **checks: Any) -> dict[str, Any]:
    return {"kind": kind, **checks}


@dataclass(frozen=True)
class DataConfig:
    """Where the meta-dataset is and which tasks to evaluate.

    Attributes:
        root: folder holding one sub-folder per dataset (MedIMeta format).
        targets: dataset ids (every task of the dataset) or task ids ``"dataset/task name"``.
        sources: ``None`` for leave-one-out selection, or explicit source task ids.
        source_tasks: with leave-one-out selection, ``"all"`` tasks of every source
            dataset, or only its ``"first"`` task (as the authors' experiment code did).
        target_split: the split target episodes are drawn from (``"all"``: the whole
            dataset, as in the paper).
        min_class_size: target classes with fewer examples are dropped from the
            episodes (the paper: 50).
        source_split: the split source training reads; ``None``: each method's paper
            default (mm-PT ``"train"``, mm-MAML ``"all"``).
        image_size: resize images to ``image_size x image_size`` (``None`` keeps them).
        normalize: after scaling to ``[0, 1]``: ``"none"``, ``"half"`` (to ``[-1, 1]``) or
            ``"imagenet"`` (ImageNet mean and std, what ImageNet weights expect).
    """

    root: Path = field(metadata=_opt("path"))
    targets: tuple[str, ...] = field(metadata=_opt("str_list"))
    sources: tuple[str, ...] | None = field(default=None, metadata=_opt("str_list?"))
    source_tasks: str = field(default="all", metadata=_opt("str", choices=("all", "first")))
    target_split: str = field(default="all", metadata=_opt("str", choices=_SPLITS))
    min_class_size: int = field(default=50, metadata=_opt("int", min=0, max=_MAX_COUNT))
    source_split: str | None = field(default=None, metadata=_opt("str?", choices=_SPLITS))
    image_size: int | None = field(default=None, metadata=_opt("int?", min=8, max=_MAX_SIZE))
    normalize: str = field(default="imagenet", metadata=_opt("str", choices=("none", "half", "imagenet")))


@dataclass(frozen=True)
class EvaluationConfig:
    """The few-shot evaluation: methods, episode shape and count, confidence level.

    Attributes:
        methods: names of [`torchcross.protocol.registry`][torchcross.protocol.registry] (default: `METHODS`).
        n_shot: support examples per class.
        n_query: query examples per class.
        n_episodes: fixed episodes per target task.
        confidence: level of the confidence intervals.
        batch_size: episodes per ``predict_many`` call of learners that batch episodes
            (a linear-probe fine-tuner); results are the same as one at a time.
    """

    methods: tuple[str, ...] = field(default=METHODS, metadata=_opt("str_list"))
    n_shot: int = field(default=5, metadata=_opt("int", min=1, max=_MAX_COUNT))
    n_query: int = field(default=10, metadata=_opt("int", min=1, max=_MAX_COUNT))
    n_episodes: int = field(default=100, metadata=_opt("int", min=1, max=_MAX_COUNT))
    confidence: float = field(default=0.95, metadata=_opt("float", min=0.5, max=0.999999))
    batch_size: int = field(default=20, metadata=_opt("int", min=1, max=_MAX_COUNT))


@dataclass(frozen=True)
class BackboneConfig:
    """The feature extractor every method starts from.

    Attributes:
        name: one of `BACKBONES`.
        weights: ``"imagenet"`` (torchvision's ImageNet weights of the ResNet, read from
            torch's cache; torchvision downloads them once if they are not there),
            ``"random"`` (a seeded random initialisation: IM-PT is then reported as
            ``"scratch"``), or a local ``state_dict`` file.
        hidden: filters per layer of ``conv4``.
    """

    name: str = field(default="resnet18", metadata=_opt("str", choices=BACKBONES))
    weights: str | Path = field(default="imagenet", metadata=_opt("weights"))
    hidden: int = field(default=64, metadata=_opt("int", min=1, max=_MAX_SIZE))


@dataclass(frozen=True)
class PretrainConfig:
    """mm-PT: multi-task pre-training, one source task per update, a head per task.

    Attributes:
        steps: the most parameter updates (each: one batch of one source task).
        batch_size: examples per batch.
        lr: Adam learning rate; ``None``: 1e-3, or 1e-4 for ResNet-50 (see
            [`paper_lr()`][torchcross.protocol.config.paper_lr]).
        weight_decay: Adam L2 penalty.
        weighting: how the task of each update is drawn: ``"proportional"`` to the
            tasks' sizes, or ``"uniform"`` over tasks.
        head_init: the task heads' initialisation, ``"zero"`` or ``"kaiming"``.
        val_every: updates between validations (one validation "epoch").
        val_batches: validation batches (of the sources' ``val`` splits) per validation.
        patience: stop after this many validations without a better validation AUROC,
            then restore the best weights (0: no validation, run all ``steps``).
    """

    steps: int = field(default=500_000, metadata=_opt("int", min=0, max=_MAX_STEPS))
    batch_size: int = field(default=64, metadata=_opt("int", min=1, max=_MAX_COUNT))
    lr: float | None = field(default=None, metadata=_opt("float?", min=0.0))
    weight_decay: float = field(default=0.0, metadata=_opt("float", min=0.0))
    weighting: str = field(default="proportional", metadata=_opt("str", choices=("uniform", "proportional")))
    head_init: str = field(default="zero", metadata=_opt("str", choices=("zero", "kaiming")))
    val_every: int = field(default=2000, metadata=_opt("int", min=1, max=_MAX_STEPS))
    val_batches: int = field(default=200, metadata=_opt("int", min=1, max=_MAX_COUNT))
    patience: int = field(default=10, metadata=_opt("int", min=0, max=_MAX_COUNT))


@dataclass(frozen=True)
class MAMLConfig:
    """mm-MAML (and the other episodic learners): training on source episodes of mixed kinds.

    Attributes:
        steps: the most meta-updates (each: ``meta_batch_size`` source episodes).
        inner_lr, inner_steps: the inner loop (SGD); ``eval_inner_steps`` for
            ``evaluation = "inner-loop"`` (default: ``inner_steps``).
        outer_lr: Adam learning rate of the meta-update.
        first_order: first-order MAML (cheaper; no second derivatives).
        n_shot: ``None``: episodes with a random number of shots in
            ``[min_shot, max_shot]`` and a random subset of 2 to all classes (the paper);
            an integer: that many shots and all classes in every episode.
        n_query: query examples per class of the training episodes.
        evaluation: how the trained MAML adapts to target episodes: ``"finetune"`` (a
            new head and the backbone fine-tuned as IM-PT, ``[finetune]``; the paper)
            or ``"inner-loop"`` (its own inner loop).
        val_every: meta-updates between validations.
        val_episodes: validation episodes (from the sources' ``val`` splits) per validation.
        patience: stop after this many validations without a better validation AUROC,
            then restore the best weights (0: no validation, run all ``steps``).
    """

    steps: int = field(default=500_000, metadata=_opt("int", min=0, max=_MAX_STEPS))
    meta_batch_size: int = field(default=1, metadata=_opt("int", min=1, max=_MAX_COUNT))
    inner_lr: float = field(default=0.1, metadata=_opt("float", min=0.0))
    inner_steps: int = field(default=4, metadata=_opt("int", min=1, max=_MAX_COUNT))
    outer_lr: float = field(default=1e-3, metadata=_opt("float", min=0.0))
    first_order: bool = field(default=False, metadata=_opt("bool"))
    eval_inner_steps: int | None = field(default=None, metadata=_opt("int?", min=1, max=_MAX_COUNT))
    n_shot: int | None = field(default=None, metadata=_opt("int?", min=1, max=_MAX_COUNT))
    min_shot: int = field(default=1, metadata=_opt("int", min=1, max=_MAX_COUNT))
    max_shot: int = field(default=10, metadata=_opt("int", min=1, max=_MAX_COUNT))
    n_query: int = field(default=10, metadata=_opt("int", min=1, max=_MAX_COUNT))
    evaluation: str = field(default="finetune", metadata=_opt("str", choices=("finetune", "inner-loop")))
    val_every: int = field(default=2000, metadata=_opt("int", min=1, max=_MAX_COUNT))
    val_episodes: int = field(default=100, metadata=_opt("int", min=1, max=_MAX_COUNT))
    patience: int = field(default=5, metadata=_opt("int", min=0, max=_MAX_COUNT))


@dataclass(frozen=True)
class FinetuneConfig:
    """How IM-PT and mm-PT adapt to a target episode: fine-tune backbone and a new zero head.

    Attributes:
        steps: optimisation steps on the support set per episode.
        lr: Adam learning rate.
        freeze_backbone: train only the head (a linear probe).
        batch_norm: ``"support"`` (train mode on the support set, running statistics updated on a copy, eval
            mode on the query: the paper; with ``freeze_backbone`` support and query features alike are
            normalised with the support set's statistics), ``"frozen"`` (the backbone's running statistics,
            never updated) or ``"batch"`` (each batch's own statistics).
    """

    steps: int = field(default=50, metadata=_opt("int", min=0, max=_MAX_STEPS))
    lr: float = field(default=1e-3, metadata=_opt("float", min=0.0))
    freeze_backbone: bool = field(default=False, metadata=_opt("bool"))
    batch_norm: str = field(default="support", metadata=_opt("str", choices=("support", "frozen", "batch")))


@dataclass(frozen=True)
class AugmentationConfig:
    """Training-time augmentation of mm-PT, mm-MAML and the supervised baseline (torchvision v2).

    Per image: horizontal and vertical flips, each with probability ``flip_p``; a
    rotation by a uniform angle in ``[-rotation, rotation]`` degrees (bilinear); with
    probability ``crop_p`` a random square crop of ``crop_fraction`` of the side, resized
    back (the paper: 200 of 224 pixels). Drawn from the training's seeded torch RNG.

    Attributes:
        enabled: augment the training inputs (needs torchvision).
        flip_p, rotation, crop_p, crop_fraction: see above.
    """

    enabled: bool = field(default=True, metadata=_opt("bool"))
    flip_p: float = field(default=0.25, metadata=_opt("float", min=0.0, max=1.0))
    rotation: float = field(default=10.0, metadata=_opt("float", min=0.0, max=180.0))
    crop_p: float = field(default=0.25, metadata=_opt("float", min=0.0, max=1.0))
    crop_fraction: float = field(default=200 / 224, metadata=_opt("float", min=0.05, max=1.0))


@dataclass(frozen=True)
class SupervisedConfig:
    """The fully supervised baseline: a backbone and head trained on each target task's train split.

    Attributes:
        steps: the most updates.
        batch_size: examples per batch.
        lr: Adam learning rate; ``None``: as [`paper_lr()`][torchcross.protocol.config.paper_lr].
        val_every: updates between validations on the task's ``val`` split.
        val_batches: validation batches per validation.
        patience: validations without a better AUROC before stopping (0: run all steps).
        bootstrap: bootstrap resamples of the test split for the confidence interval.
    """

    steps: int = field(default=500_000, metadata=_opt("int", min=0, max=_MAX_STEPS))
    batch_size: int = field(default=64, metadata=_opt("int", min=1, max=_MAX_COUNT))
    lr: float | None = field(default=None, metadata=_opt("float?", min=0.0))
    val_every: int = field(default=2000, metadata=_opt("int", min=1, max=_MAX_STEPS))
    val_batches: int = field(default=200, metadata=_opt("int", min=1, max=_MAX_COUNT))
    patience: int = field(default=10, metadata=_opt("int", min=0, max=_MAX_COUNT))
    bootstrap: int = field(default=1000, metadata=_opt("int", min=10, max=_MAX_COUNT))


@dataclass(frozen=True)
class RunConfig:
    """Where results go and how the run behaves.

    Attributes:
        out_dir: results, episodes, checkpoints and the plot are written here. A folder
            that torchcross did not create (one that exists, is not empty and lacks the
            ``.torchcross-run`` file a run writes into its folder) is refused.
        seed: seeds weights, episodes and samplers.
        seeds: train and evaluate every method once per seed (on the same episodes,
            drawn with ``seed``) and report the between-seed spread; ``None``: ``[seed]``.
        device: a torch device string for training and evaluation: ``"cpu"``, ``"cuda"``,
            ``"cuda:N"`` or ``"mps"`` (see `DEVICE_TYPES`; whether it is available is checked
            by [`check_protocol()`][torchcross.protocol.plan.check_protocol]).
        resume: reuse checkpoints and finished evaluations found in ``out_dir``.
        checkpoint_every: save training state every this many steps (0: only at the end).
        plot: draw the AUROC figure (needs ``torchcross[plot]``).
        num_threads: torch threads for the run: ``"auto"`` (the CPUs available to the
            process and idle, see ``torchcross.utils.recommended_num_threads``), a
            count, or ``None`` to leave torch's setting.
        logger: training curves (the loss of every step of mm-PT and mm-MAML):
            ``"csv"`` (``out_dir/curves/<target>/<method>.csv``), ``"tensorboard"``
            (event files in ``out_dir/curves/<target>/<method>/``, needs
            ``torchcross[tensorboard]``) or ``"none"``.
        num_workers: DataLoader worker processes that read the training batches and
            episodes (0: the main process); the stream and its resume point are the same
            for any number.
        plugins: Python modules imported before the config's methods are checked, so
            that they can register methods
            ([`register_method()`][torchcross.protocol.registry.register_method]):
            ``.py`` files (relative to the config file), or module names, never looked up
            in the current directory. They run code when the config is read, ``--check``
            included; each is announced on stderr first (`torchcross.protocol.plugins`).
        allow_existing_out_dir: write into an ``out_dir`` that torchcross did not create
            (it is then marked as torchcross's); files and folders named like the ones a
            run writes (``results.csv``, ``checkpoints/``, ...) are never replaced: such a
            folder is refused all the same.
    """

    out_dir: Path = field(metadata=_opt("path"))
    seed: int = field(default=0, metadata=_opt("int", min=0, max=2**63 - 1))
    seeds: tuple[int, ...] | None = field(default=None, metadata=_opt("int_list?"))
    device: str = field(default="cpu", metadata=_opt("device"))
    resume: bool = field(default=True, metadata=_opt("bool"))
    checkpoint_every: int = field(default=200, metadata=_opt("int", min=0, max=_MAX_STEPS))
    plot: bool = field(default=True, metadata=_opt("bool"))
    num_threads: int | str | None = field(default="auto", metadata=_opt("threads?", min=1, max=_MAX_THREADS))
    logger: str = field(default="csv", metadata=_opt("str", choices=("csv", "tensorboard", "none")))
    num_workers: int = field(default=0, metadata=_opt("int", min=0, max=1024))
    plugins: tuple[str, ...] | None = field(default=None, metadata=_opt("str_list?"))
    allow_existing_out_dir: bool = field(default=False, metadata=_opt("bool"))


@dataclass(frozen=True)
class ProtocolConfig:
    """The whole protocol configuration (see the module doc for the file layout)."""

    data: DataConfig
    run: RunConfig
    evaluation: EvaluationConfig = EvaluationConfig()
    backbone: BackboneConfig = BackboneConfig()
    pretrain: PretrainConfig = PretrainConfig()
    maml: MAMLConfig = MAMLConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    augmentation: AugmentationConfig = AugmentationConfig()
    supervised: SupervisedConfig = SupervisedConfig()

    @property
    def training_seeds(self) -> tuple[int, ...]:
        """The seeds methods are trained with (``[run] seeds``, else ``[run] seed``)."""
        return self.run.seeds if self.run.seeds is not None else (self.run.seed,)


_SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "evaluation": EvaluationConfig,
    "backbone": BackboneConfig,
    "pretrain": PretrainConfig,
    "maml": MAMLConfig,
    "finetune": FinetuneConfig,
    "augmentation": AugmentationConfig,
    "supervised": SupervisedConfig,
    "run": RunConfig,
}


def _convert(section: str, key: str, value: Any, spec: Mapping[str, Any], base_dir: Path | None) -> Any:
    kind: str = spec["kind"]
    where = f"[{section}] {key}"
    optional = kind.endswith("?")
    kind = kind.rstrip("?")
    if value is None:
        if optional:
            return None
        raise ValueError(f"{where} must be set (got nothing)")
    if kind == "weights":
        if isinstance(value, str) and value.strip().casefold() in _WEIGHT_KEYWORDS:
            return value.strip().casefold()
        kind = "path"
    if kind == "int_list":
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value]
        if (
            not isinstance(value, (list, tuple))
            or not value
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
            or len(set(value)) != len(value)
        ):
            raise TypeError(f"{where} must be a non-empty list of distinct integers >= 0, got {value!r}")
        return tuple(value)
    if kind == "path":
        if not isinstance(value, (str, Path)) or str(value) == "":
            raise TypeError(f"{where} must be a path string, got {value!r}")
        path = Path(value).expanduser()
        return path if path.is_absolute() or base_dir is None else (base_dir / path)
    if kind == "str_list":
        if isinstance(value, str):
            value = [value]
        if (
            not isinstance(value, (list, tuple))
            or not value
            or not all(isinstance(v, str) and v for v in value)
        ):
            raise TypeError(f"{where} must be a non-empty list of strings, got {value!r}")
        return tuple(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise TypeError(f"{where} must be true or false, got {value!r}")
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise TypeError(f"{where} must be a string, got {value!r}")
        choices = spec.get("choices")
        if choices is not None and value not in choices:
            raise ValueError(f"{where} = {value!r} is not one of {', '.join(choices)}")
        return value
    if kind == "device":
        return _device_string(where, value)
    if kind == "threads":
        if value == "auto":
            return value
        if isinstance(value, (str, bool)) or not isinstance(value, int):
            raise TypeError(f'{where} must be "auto" or an integer, got {value!r}')
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{where} must be an integer, got {value!r}")
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise TypeError(f"{where} must be a number, got {value!r}")
        value = float(value)
    if "min" in spec and value < spec["min"]:
        raise ValueError(f"{where} must be >= {spec['min']}, got {value!r}")
    if "max" in spec and value > spec["max"]:
        raise ValueError(f"{where} must be <= {spec['max']}, got {value!r}")
    return value


def _device_string(where: str, value: Any) -> str:
    """``value`` if it names a torch device the protocol can train on (`DEVICE_TYPES`)."""
    if not isinstance(value, str):
        raise TypeError(f"{where} must be a device string such as 'cpu' or 'cuda:0', got {value!r}")
    import torch

    accepted = "'cpu', 'cuda', 'cuda:N' or 'mps'"
    try:
        device = torch.device(value)
    except (RuntimeError, ValueError):
        raise ValueError(f"{where} = {value!r} is not a torch device; use {accepted}") from None
    if device.type not in DEVICE_TYPES:
        raise ValueError(
            f"{where} = {value!r} is a {device.type!r} device, which the protocol cannot train on; "
            f"use {accepted}"
        )
    return value


def _section(name: str, raw: Any, base_dir: Path | None) -> Any:
    cls = _SECTIONS[name]
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise TypeError(f"section [{name}] must be a table of key = value, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in raw if k not in fields]
    if unknown:
        keys = (
            "unknown keys " + ", ".join(repr(k) for k in unknown)
            if len(unknown) > 1
            else f"unknown key {unknown[0]!r}"
        )
        raise ValueError(f"{keys} in section [{name}]; allowed keys: {', '.join(fields)}")
    kwargs = {}
    for key, f in fields.items():
        if key in raw:
            kwargs[key] = _convert(name, key, raw[key], f.metadata, base_dir)
        elif f.default is dataclasses.MISSING:
            raise ValueError(f"section [{name}] needs the key {key!r} (see `torchcross run --help`)")
    if name == "evaluation" and "methods" in kwargs:
        methods = tuple(normalize_method(m) for m in kwargs["methods"])
        if len(set(methods)) != len(methods):
            raise ValueError(f"[evaluation] methods repeats a method: {list(kwargs['methods'])}")
        kwargs["methods"] = methods
    if name == "maml" and kwargs.get("min_shot", 1) > kwargs.get("max_shot", 10):
        low, high = kwargs.get("min_shot", 1), kwargs.get("max_shot", 10)
        raise ValueError(f"[maml] min_shot = {low} is larger than max_shot = {high}")
    return cls(**kwargs)


def config_from_dict(raw: Mapping[str, Any], base_dir: str | Path | None = None) -> ProtocolConfig:
    """Build a [`ProtocolConfig`][torchcross.protocol.config.ProtocolConfig] from nested mappings (a parsed
    TOML/YAML file).

    Args:
        raw: ``{section: {key: value}}``.
        base_dir: relative paths are resolved against it (``None`` leaves them relative).

    Raises:
        ValueError: for an unknown section or key (named, with the allowed ones), a
            missing required key, or a value out of range.
        TypeError: for a value of the wrong type.
    """
    if not isinstance(raw, Mapping):
        raise TypeError(f"a protocol config must be a mapping of sections, got {type(raw).__name__}")
    unknown = [k for k in raw if k not in _SECTIONS]
    if unknown:
        raise ValueError(
            f"unknown config section(s) {', '.join(repr(k) for k in unknown)}; allowed sections: "
            f"{', '.join(_SECTIONS)}"
        )
    base = Path(base_dir) if base_dir is not None else None
    for required in ("data", "run"):
        if required not in raw:
            raise ValueError(
                f"the config needs a [{required}] section "
                + ("with root and targets" if required == "data" else "with out_dir")
            )
    run = _section("run", raw.get("run"), base)
    for plugin in run.plugins or ():
        import_plugin(plugin, base)
    parts = {name: _section(name, raw.get(name), base) for name in _SECTIONS if name in raw and name != "run"}
    return ProtocolConfig(run=run, **parts)


def _read_toml(path: Path) -> Any:
    try:
        import tomllib  # Python >= 3.11
    except ImportError:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef, unused-ignore]
        except ImportError as exc:
            raise ImportError(
                "reading TOML configs on Python 3.10 needs `pip install tomli` (or use a YAML config)"
            ) from exc
    with open(path, "rb") as fh:
        try:
            return tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path} is not valid TOML: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise ValueError(
                f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8"
            ) from None


def _read_yaml(path: Path) -> Any:
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("reading YAML configs needs PyYAML: `pip install torchcross[medimeta]`") from exc
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8"
        ) from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path} is not valid YAML: {exc}") from exc


def load_config(path: str | Path) -> ProtocolConfig:
    """Read a protocol config from a ``.toml``, ``.yaml`` or ``.yml`` file.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        IsADirectoryError: if ``path`` is a folder.
        ValueError: for a path that is not a regular file (a FIFO, a device), another
            suffix, a parse error, or an invalid config.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(
            f"config file {str(path)!r} is a directory; give the .toml or .yaml file itself"
        )
    if not path.exists():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    if not path.is_file():  # never opened: reading a FIFO or a device could block or never end
        raise ValueError(f"config file {str(path)!r} is not a regular file; give a .toml or .yaml file")
    suffix = path.suffix.lower()
    if suffix == ".toml":
        raw = _read_toml(path)
    elif suffix in (".yaml", ".yml"):
        raw = _read_yaml(path)
    else:
        raise ValueError(f"config file {str(path)!r} must end in .toml, .yaml or .yml")
    if raw is None:
        raise ValueError(f"config file {str(path)!r} is empty")
    if not isinstance(raw, Mapping):
        raise TypeError(
            f"config file {str(path)!r} must hold sections ([data], [run], ...), not a {type(raw).__name__}"
        )
    return config_from_dict(raw, base_dir=path.parent.resolve())


def config_to_dict(config: ProtocolConfig) -> dict[str, dict[str, Any]]:
    """The config as plain JSON-ready nested dicts (paths as strings, tuples as lists).

    Examples:
        >>> cfg = config_from_dict({"data": {"root": "d", "targets": "t"}, "run": {"out_dir": "o"}})
        >>> config_to_dict(cfg)["data"]["targets"]
        ['t']
    """
    out: dict[str, dict[str, Any]] = {}
    for name in _SECTIONS:
        section = getattr(config, name)
        values = {}
        for f in dataclasses.fields(section):
            v = getattr(section, f.name)
            values[f.name] = str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v
        out[name] = values
    return out
