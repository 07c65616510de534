"""Configuration of the cross-domain few-shot protocol, read from TOML or YAML.

A config has sections ``[data]``, ``[evaluation]``, ``[backbone]``, ``[pretrain]``,
``[maml]``, ``[finetune]``, ``[selection]``, ``[augmentation]``, ``[supervised]`` and ``[run]``; only
``data.root`` (or ``[[data.collections]]``), ``data.targets`` and ``run.out_dir`` are required, and the
defaults are the MedIMeta paper's experiment (see ``docs/protocol.md``, "paper vs torchcross defaults").
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
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from torchcross._io import safe_file_name
from torchcross.protocol.collection import DataCollection
from torchcross.protocol.plugins import import_plugin
from torchcross.protocol.schema import section_from_dict, section_values

__all__ = [
    "BACKBONES",
    "BACKBONE_FAMILIES",
    "DEVICE_TYPES",
    "EVALUATION_PRESETS",
    "FINETUNE_PRESETS",
    "METHODS",
    "AugmentationConfig",
    "BackboneConfig",
    "DataCollection",
    "DataConfig",
    "EvaluationConfig",
    "FinetuneConfig",
    "MAMLConfig",
    "PretrainConfig",
    "ProtocolConfig",
    "RunConfig",
    "SelectionConfig",
    "SupervisedConfig",
    "config_from_dict",
    "config_to_dict",
    "config_to_toml",
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

BackboneName = Literal["conv4", "resnet18", "resnet34", "resnet50"]
"""The backbone names (`BACKBONES`), as the annotation of ``[backbone] name``."""
Split = Literal["train", "val", "test", "all"]
"""A split name, as the annotation of ``[data] target_split`` and ``source_split``."""

BACKBONES: tuple[str, ...] = get_args(BackboneName)
"""Backbone names: the library's Conv4, or a torchvision ResNet (``torchcross[vision]``). ``[backbone]
name`` also takes ``"<family>:<model>"`` with a family of `BACKBONE_FAMILIES`."""

BACKBONE_FAMILIES: tuple[str, ...] = ("timm", "hf", "open_clip", "torchvision")
"""The ``"<family>:<model>"`` prefixes ``[backbone] name`` takes: a backbone of
[`load_backbone()`][torchcross.backbones.load.load_backbone] (see ``docs/foundation.md``)."""

FINETUNE_PRESETS: dict[str, dict[str, Any]] = {
    "fsl-benchmark": {"steps": 150, "lr": 1e-4, "head_init": "zero", "batch_norm": "frozen"},
}
"""``[finetune] preset`` values and the keys each sets.

``"fsl-benchmark"``: the fixed setting of the MedIMeta authors' foundation-model benchmark
(``deploy_all_ft_test_fixedparams.py`` at 757d7d8: ``params_learning_rate`` 1e-4,
``params_finetuning_steps`` 150, ``params_optimizer`` Adam, ``params_head_init`` zero), with the
backbone in eval mode while it adapts (``batch_norm = "frozen"``: their Hugging Face models stay in
eval mode under Lightning's ``fit``, see ``docs/compatibility.md``)."""


EVALUATION_PRESETS: dict[str, dict[str, Any]] = {
    "bscd-fsl": {"n_way": 5, "shots": (5, 20, 50), "n_query": 15, "n_episodes": 600, "metric": "accuracy"},
}
"""``[evaluation] preset`` values and the keys each sets.

``"bscd-fsl"``: the BSCD-FSL benchmark's evaluation (Guo et al. 2020; the README of IBM/cdfsl-benchmark):
5-way episodes, 5, 20 and 50 shots, 15 query images per class, 600 fixed episodes per shot count, mean
accuracy with its interval as the headline (``torchcross.datasets.BSCD_FSL_PROTOCOL``)."""


def _backbone_name(where: str, value: Any) -> str:
    """``value`` if it is one of `BACKBONES` or ``"<family>:<model>"`` with a known family."""
    if not isinstance(value, str):
        raise TypeError(f"{where} must be a string, got {value!r}")
    if value in BACKBONES:
        return value
    family, sep, model = value.partition(":")
    if sep and family in BACKBONE_FAMILIES and model.strip():
        return value
    if sep:
        raise ValueError(
            f"{where} = {value!r}: unknown backbone family {family!r} (or no model after it); use "
            f"'<family>:<model>' with family one of {', '.join(BACKBONE_FAMILIES)}, e.g. 'timm:resnet18'"
        )
    raise ValueError(
        f"{where} = {value!r} is not one of {', '.join(BACKBONES)}, nor '<family>:<model>' with family one "
        f"of {', '.join(BACKBONE_FAMILIES)} (e.g. 'timm:{value}')"
    )


FEATURE_DTYPES: tuple[str, ...] = ("float32", "bfloat16")
"""The values of ``[backbone] feature_dtype``."""


def _feature_dtype(where: str, value: Any) -> str | None:
    """``"bfloat16"``, or ``None`` for ``"float32"`` (the default: saying it keeps the fingerprints)."""
    if not isinstance(value, str) or value not in FEATURE_DTYPES:
        raise ValueError(
            f"{where} = {value!r} is not one of {', '.join(repr(d) for d in FEATURE_DTYPES)} (the dtype of "
            "the frozen feature pass of linear-probe and zero-shot)"
        )
    return None if value == "float32" else value


DEVICE_TYPES: tuple[str, ...] = ("cpu", "cuda", "mps")
"""The torch device types ``[run] device`` accepts (``"cuda"`` and ``"mps"`` with an index or without):
the ones the protocol trains on. Others that ``torch.device`` parses (``"meta"`` holds no data) are
refused when the config is read."""

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


_COLLECTION_KEYS = ("root", "format", "prefix")


def _format_name(where: str, value: Any) -> str:
    from torchcross.datasets.formats import get_format

    if not isinstance(value, str):
        raise TypeError(f"{where} must be a format name (a string), got {value!r}")
    try:
        return get_format(value).name
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _option_value(where: str, value: Any) -> Any:
    """A format option as a hashable value: lists become tuples; tables are refused."""
    if isinstance(value, (list, tuple)):
        return tuple(_option_value(where, v) for v in value)
    if isinstance(value, Mapping) or value is None:
        raise TypeError(f"{where} must be a string, number, boolean or a list of them, got {value!r}")
    return value


def _check_options(at: str, fmt: str, keys: Any) -> None:
    from torchcross.datasets.formats import get_format

    options = get_format(fmt).options
    unknown = [k for k in keys if k not in (*_COLLECTION_KEYS, *options)]
    if unknown:
        raise ValueError(
            f"unknown key {unknown[0]!r} in {at} (format {fmt!r}); allowed keys: "
            f"{', '.join(_COLLECTION_KEYS)} and the format's own options: {', '.join(options) or 'none'}"
        )


def _collections(where: str, value: Any) -> tuple[DataCollection, ...]:
    """``[[data.collections]]``: roots as written (resolved by the caller), format unset -> ``""``."""
    if isinstance(value, Mapping) or not isinstance(value, (list, tuple)):
        raise TypeError(
            f"{where} must be a list of tables (in TOML: one [[data.collections]] section per folder, each "
            f"with root and format), got {value!r}"
        )
    out = []
    for i, entry in enumerate(value):
        at = f"[[data.collections]] #{i + 1}"
        if isinstance(entry, DataCollection):
            entry = entry.to_dict()
        if not isinstance(entry, Mapping):
            raise TypeError(f"{at} must be a table with root and format, got {entry!r}")
        if "root" not in entry:
            raise ValueError(f"{at} needs the key 'root' (the folder of this collection)")
        fmt = _format_name(f"{at} format", entry["format"]) if "format" in entry else ""
        if fmt:  # else checked against [data] format's options once it is known
            _check_options(at, fmt, entry)
        root = entry["root"]
        if not isinstance(root, (str, Path)) or str(root) == "":
            raise TypeError(f"{at} root must be a path string, got {root!r}")
        prefix = entry.get("prefix", "")
        if not isinstance(prefix, str) or "/" in prefix:
            raise TypeError(f"{at} prefix must be a string without '/', got {prefix!r}")
        options = tuple((k, _option_value(f"{at} {k}", entry[k])) for k in entry if k not in _COLLECTION_KEYS)
        out.append(DataCollection(Path(root).expanduser(), fmt, prefix, options))
    return tuple(out)


def _overlaps(where: str, value: Any) -> tuple[tuple[str, ...], ...]:
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(g, (list, tuple)) and len(g) >= 2 and all(isinstance(i, str) and i for i in g)
        for g in value
    ):
        raise TypeError(
            f'{where} must be a list of lists of two or more dataset ids (e.g. [["a", "b"]]), got {value!r}'
        )
    return tuple(tuple(g) for g in value)


@dataclass(frozen=True)
class DataConfig:
    """Where the meta-dataset is and which tasks to evaluate.

    Attributes:
        root: folder holding one sub-folder per dataset, of ``format`` (MedIMeta by default); unset when
            ``collections`` is given.
        targets: dataset ids or task ids ``"dataset/task name"``; a dataset id stands for
            the tasks ``target_tasks`` names.
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
        target_tasks: which tasks a target given as a dataset id stands for: ``"primary"``
            (its first task, task 0 of its ``info.yaml``: the one Tables 3 and 4 of the paper
            report, as the authors' ``finetune_and_test.py`` and ``fully_supervised.py`` at
            83c2aad default to ``--target_task_id 0``) or ``"all"`` (every task of it). A
            ``"dataset/task name"`` target is always that task. The supervised baseline
            follows it.
        format: the format of ``root`` (a registered name, see
            `torchcross.datasets.formats.FORMATS`), and of every ``[[data.collections]]``
            entry that does not name its own.
        collections: ``[[data.collections]]``: several folders, each of its own format, read as one
            catalogue (instead of ``root``: exactly one of the two is set).
        overlaps: groups of dataset ids declared to overlap (their images or subjects): none of a group is
            a source of a target in it. Datasets whose ``info["upstream"]`` share a name overlap anyway.
    """

    root: Path | None
    targets: tuple[str, ...]
    sources: tuple[str, ...] | None = None
    source_tasks: Literal["all", "first"] = "all"
    target_split: Split = "all"
    min_class_size: int = field(default=50, metadata={"min": 0, "max": _MAX_COUNT})
    source_split: Split | None = None
    image_size: int | None = field(default=None, metadata={"min": 8, "max": _MAX_SIZE})
    normalize: Literal["none", "half", "imagenet"] = "imagenet"
    target_tasks: Literal["primary", "all"] = "primary"
    format: str = field(default="medimeta", metadata={"parse": _format_name})
    collections: tuple[DataCollection, ...] = field(default=(), metadata={"parse": _collections})
    overlaps: tuple[tuple[str, ...], ...] = field(default=(), metadata={"parse": _overlaps})


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
            (every fine-tuning method: a linear probe shares backbone passes, full fine-tuning
            stacks the episodes' backbones, off the CPU and, on it, for backbones of
            ``GROUPED_LAYERS`` such as Conv4, and halves a chunk that runs out of memory); results
            are the same as one at a time up to float rounding.
        multilabel_sampler: how multi-label target episodes are drawn: ``"medimeta"`` (the
            authors': ``k`` random positives and ``k`` random negatives per label, then a greedy
            trim, as 0.0.6 ``torchcross/data/metadataset/few_shot.py`` with which MedIMeta
            presampled the test episodes) or ``"cover"`` (ours: a greedy near-minimal cover,
            torchcross before this key); see ``torchcross.sampling.medimeta_multilabel``.
        diverged: how an episode whose logits are not finite is scored: ``"chance"`` (a
            failure at chance level: AUROC 0.5, accuracy 1/C, ...; kept in the mean and in
            ``paired.csv``) or ``"drop"`` (left out of both, torchcross before this key). Ours
            (the paper does not say); either way the episodes are counted (``n_diverged``)
            and a warning says so. See ``torchcross.evaluation.diverged``.
        n_way: classes per episode of multi-class and ordinal target tasks (a random subset of
            ``n_way`` classes, drawn anew per episode; the same classes in every method's episode);
            binary and multi-label tasks keep all their labels. Unset: all usable classes of the task.
        metric: the headline metric: the first column of ``results.md`` and the metric of the plots;
            ``"auroc"`` (the paper's; unset) or ``"accuracy"``.
        preset: ``None``, or a name of `EVALUATION_PRESETS` (``"bscd-fsl"``: ``n_way = 5``, ``shots = [5,
            20, 50]``, ``n_query = 15``, ``n_episodes = 600``, ``metric = "accuracy"``) that sets the keys it
            names; giving one of them another value as well is an error. Fingerprints see the values it
            sets, not its name.
        shots: a shot curve: every method is evaluated at each of these shot counts, on one fixed
            episode set per shot count (drawn from ``[run] seed`` and the shot count alone); source
            training happens once. The MedIMeta authors' benchmark uses ``[1, 2, 3, 5, 7, 10, 15, 20,
            25, 30]`` (``finetune_and_test.py`` of medimeta-fsl-benchmark at 757d7d8). Unset: ``n_shot``
            alone, with the files of a run without this key. See ``ProtocolConfig.shot_counts``.
    """

    methods: tuple[str, ...] = METHODS
    n_shot: int = field(default=5, metadata={"min": 1, "max": _MAX_COUNT})
    n_query: int = field(default=10, metadata={"min": 1, "max": _MAX_COUNT})
    n_episodes: int = field(default=100, metadata={"min": 1, "max": _MAX_COUNT})
    confidence: float = field(default=0.95, metadata={"min": 0.5, "max": 0.999999})
    batch_size: int = field(default=20, metadata={"min": 1, "max": _MAX_COUNT})
    multilabel_sampler: Literal["medimeta", "cover"] = "medimeta"
    diverged: Literal["chance", "drop"] = "chance"
    shots: tuple[int, ...] | None = field(
        default=None, metadata={"min": 1, "distinct": True, "omit_unset": True}
    )
    n_way: int | None = field(default=None, metadata={"min": 2, "max": _MAX_COUNT, "omit_unset": True})
    metric: Literal["auroc", "accuracy"] | None = field(default=None, metadata={"omit_unset": True})
    preset: Literal["bscd-fsl"] | None = field(default=None, metadata={"omit_unset": True})


@dataclass(frozen=True)
class BackboneConfig:
    """The feature extractor every method starts from.

    Attributes:
        name: one of `BACKBONES`, or a backbone from the ecosystem, ``"<family>:<model>"``
            (`BACKBONE_FAMILIES`: ``"timm:<model>"``, ``"hf:<folder or model id>"``,
            ``"open_clip:<model>"`` or ``"open_clip:local-dir:<folder>"``, ``"torchvision:<resnet>"``),
            loaded by [`load_backbone()`][torchcross.backbones.load.load_backbone] from local files only.
            Such a backbone brings its own preprocessing (input size, mean and std, interpolation,
            channels), which replaces ``[data] image_size`` and ``[data] normalize``: setting
            ``image_size``, or ``normalize`` to anything but its default, is then an error.
        weights: for ``"<family>:<model>"``: ``"default"`` or ``"imagenet"`` (the model's own
            pretrained weights, from the local cache; for ``hf:`` and OpenCLIP folders, the folder's),
            ``"random"`` (seeded with the training seed) or a local weights file or folder. For the
            others: ``"imagenet"`` (torchvision's ``DEFAULT`` ImageNet weights of the ResNet, as the
            authors' ``backbones.py`` at 83c2aad: ``IMAGENET1K_V1`` for ResNet-18 and -34,
            ``IMAGENET1K_V2`` for ResNet-50; read from torch's cache, where torchvision downloads
            them once if they are not there), ``"imagenet-v1"`` (``IMAGENET1K_V1`` for every
            ResNet: the earlier default for ResNet-50), ``"random"`` (a seeded random
            initialisation: IM-PT is then reported as ``"scratch"``), or a local ``state_dict`` file.
        hidden: filters per layer of ``conv4``.
        feature_dtype: the dtype of the frozen feature pass of the methods on cached features
            (``linear-probe``, ``zero-shot``): ``"float32"`` (the default; unset) or ``"bfloat16"`` (the
            backbone and its inputs cast to bf16 for that pass, on a GPU or on the CPU; the features are
            stored as float32). It enters the embedding cache's key, so bf16 features never replace
            float32 ones. ``[run] precision = "bf16"`` runs this pass in bf16 too (the same pass,
            the same cache key) and autocasts training and fine-tuning.
    """

    name: str = field(default="resnet18", metadata={"parse": _backbone_name})
    weights: Literal["imagenet", "imagenet-v1", "random", "default"] | Path = "imagenet"
    hidden: int = field(default=64, metadata={"min": 1, "max": _MAX_SIZE})
    feature_dtype: Literal["float32", "bfloat16"] | None = field(
        default=None, metadata={"parse": _feature_dtype, "omit_unset": True}
    )


@dataclass(frozen=True)
class PretrainConfig:
    """mm-PT: multi-task pre-training, one source task per update, a head per task.

    Attributes:
        steps: the most parameter updates (each: one batch of one source task).
        batch_size: examples per batch (of each rank: under ``torchrun``, ``R`` ranks share every
            batch of ``R * batch_size`` examples, as one process with that batch size).
        lr: Adam learning rate; ``None``: 1e-3, or 1e-4 for ResNet-50 (see
            [`paper_lr()`][paper_lr]).
        weight_decay: Adam L2 penalty.
        weighting: how the task of each update is drawn: ``"proportional"`` to the
            tasks' sizes, or ``"uniform"`` over tasks.
        head_init: the task heads' initialisation, ``"zero"`` (as the authors' mm-PT heads,
            0.0.6 ``CrossDomainModel.add_head``) or ``"kaiming"``.
        val_every: updates between validations: ``"epoch"`` (the authors' cadence:
            ``val_check_interval`` is commented out in ``cross_domain_pft.py`` at 83c2aad, so
            Lightning validates once per epoch) or a count. An epoch is one pass over every
            training batch of every source task, as medimeta's ``MultiMedIMetaBatchTaskSource``
            iterates them (``drop_last=False``): ``sum(ceil(n_t / batch_size))`` updates over the
            source tasks ``t`` (divided among ``torchrun`` ranks, rounded up).
        val_batches: ``"all"`` (every batch of the sources' ``val`` splits, as the authors:
            ``limit_val_batches`` commented out) or that many batches drawn from them (always
            the same ones). Either way the score is the AUROC of each source task over all its
            validation predictions together, averaged over the tasks (the authors' metric
            wrappers, 0.0.6 ``CrossDomainMeanWrapper``).
        scale_task_loss: multiply each task's loss by ``max_count / count``, ``count`` being
            the task's batches per epoch and ``max_count`` the largest one, so every task
            weighs the same (the authors' ``--scale_loss_by_batch_count``, with which the
            paper's runs were made: 0.0.6 ``lightning/cross_domain.py``); ``false``: every
            batch's loss as it is.
        patience: stop after this many validations without a better validation AUROC,
            then restore the best weights (0: no validation, run all ``steps``).
    """

    steps: int = field(default=500_000, metadata={"min": 0, "max": _MAX_STEPS})
    batch_size: int = field(default=64, metadata={"min": 1, "max": _MAX_COUNT})
    lr: float | None = field(default=None, metadata={"min": 0.0})
    weight_decay: float = field(default=0.0, metadata={"min": 0.0})
    weighting: Literal["uniform", "proportional"] = "proportional"
    head_init: Literal["zero", "kaiming"] = "zero"
    val_every: int | Literal["epoch"] = field(default="epoch", metadata={"min": 1, "max": _MAX_STEPS})
    val_batches: int | Literal["all"] = field(default="all", metadata={"min": 1, "max": _MAX_COUNT})
    scale_task_loss: bool = True
    patience: int = field(default=10, metadata={"min": 0, "max": _MAX_COUNT})


@dataclass(frozen=True)
class MAMLConfig:
    """mm-MAML (and the other episodic learners): training on source episodes of mixed kinds.

    The authors' code cited below is medimeta-experiments at its final commit 83c2aad
    (``cross_domain_maml.py`` unless named).

    Attributes:
        steps: the most meta-updates (each: ``meta_batch_size`` source episodes).
        inner_lr, inner_steps: the inner loop (SGD); ``eval_inner_steps`` for
            ``evaluation = "inner-loop"`` (default: ``inner_steps``).
        outer_lr: Adam learning rate of the meta-update; ``None``: as
            [`paper_lr()`][paper_lr], 1e-3, or 1e-4 for ResNet-50 (the rates ``collect_all_5shot.py`` at
            83c2aad reports: ``--learning_rate`` 0.001 for ResNet-18, 0.0001 for ResNet-50).
        first_order: first-order MAML (cheaper; no second derivatives).
        n_shot: ``None``: episodes with a random number of shots in
            ``[min_shot, max_shot]`` and a random subset of 2 to all classes (the paper);
            an integer: that many shots and all classes in every episode.
        n_query: query examples per class of the training episodes.
        min_class_size: source classes (binary and multi-label: labels whose positives or
            negatives) with fewer examples are left out of the training and validation episodes;
            40 as the authors' presampled episodes (0.0.6 ``SubTaskRandomFewShotMetaDataset``,
            ``filter_classes_min_samples=40``, which medimeta's ``task_presampling.py`` leaves at its
            default); 0 keeps every class (the earlier default).
        episode_pool: training episodes drawn once per source task (a pure function of the seed), then
            visited in a new seeded order every epoch (the authors' 1000 presampled episodes per task,
            ``MultiPickledMedIMetaTaskDataset(length=1000)`` under a shuffling DataLoader); 0: a fresh
            episode at every meta-update, no epochs (the earlier default).
        multilabel_sampler: how the training and validation episodes of multi-label source tasks are
            drawn: ``"medimeta"`` (the authors': ``k`` random positives and ``k`` random negatives per
            label, then a greedy trim, as 0.0.6 ``torchcross/data/metadataset/few_shot.py``
            ``SubTaskRandomFewShotMetaDataset``, with which medimeta 0.0.6 ``task_presampling.py``
            presampled the episodes that ``cross_domain_maml.py`` loads) or ``"cover"`` (ours: a greedy
            near-minimal cover, the earlier behaviour); see ``torchcross.sampling.medimeta_multilabel``.
        evaluation: how the trained MAML adapts to target episodes: ``"finetune"`` (a
            new head and the backbone fine-tuned as IM-PT, ``[finetune]``; the paper)
            or ``"inner-loop"`` (its own inner loop).
        val_every: meta-updates between validations, or ``"epoch"``: one pass over the episode pools
            (the sum of the pool sizes divided by ``meta_batch_size``, rounded up; under ``torchrun``
            divided by the ranks), as the authors' Lightning default; needs ``episode_pool > 0``
            (the earlier default: 2000).
        val_episodes: validation episodes per source task (the authors' 100; the earlier default
            drew this many in total, round-robin over the source tasks), drawn like the training
            episodes (random shots and classes) with a seed of their own, the same at every validation.
        val_split: which split of each source task the validation episodes come from: ``"all"``
            (every split, as the authors, whose validation set names no split) or ``"val"`` (the
            sources' ``val`` splits, the earlier default; tasks without one are left out).
        val_inner_steps: inner steps of the adaptation scored in validation (the authors'
            ``eval_num_inner_steps = 32``, SGD at ``inner_lr``); set it to ``inner_steps`` for
            the earlier behaviour. ProtoNet has no inner loop and ignores it.
        patience: stop after this many validations without a better validation AUROC,
            then restore the best weights (0: no validation, run all ``steps``).
    """

    steps: int = field(default=500_000, metadata={"min": 0, "max": _MAX_STEPS})
    meta_batch_size: int = field(default=1, metadata={"min": 1, "max": _MAX_COUNT})
    inner_lr: float = field(default=0.1, metadata={"min": 0.0})
    inner_steps: int = field(default=4, metadata={"min": 1, "max": _MAX_COUNT})
    outer_lr: float | None = field(default=None, metadata={"min": 0.0})
    first_order: bool = False
    eval_inner_steps: int | None = field(default=None, metadata={"min": 1, "max": _MAX_COUNT})
    n_shot: int | None = field(default=None, metadata={"min": 1, "max": _MAX_COUNT})
    min_shot: int = field(default=1, metadata={"min": 1, "max": _MAX_COUNT})
    max_shot: int = field(default=10, metadata={"min": 1, "max": _MAX_COUNT})
    n_query: int = field(default=10, metadata={"min": 1, "max": _MAX_COUNT})
    min_class_size: int = field(default=40, metadata={"min": 0, "max": _MAX_COUNT})
    episode_pool: int = field(default=1000, metadata={"min": 0, "max": _MAX_COUNT})
    multilabel_sampler: Literal["medimeta", "cover"] = "medimeta"
    evaluation: Literal["finetune", "inner-loop"] = "finetune"
    val_every: int | Literal["epoch"] = field(default="epoch", metadata={"min": 1, "max": _MAX_COUNT})
    val_episodes: int = field(default=100, metadata={"min": 1, "max": _MAX_COUNT})
    val_split: Literal["all", "val"] = "all"
    val_inner_steps: int = field(default=32, metadata={"min": 1, "max": _MAX_COUNT})
    patience: int = field(default=5, metadata={"min": 0, "max": _MAX_COUNT})


@dataclass(frozen=True)
class FinetuneConfig:
    """How IM-PT, mm-PT and mm-MAML adapt to a target episode: fine-tune the backbone and a new head.

    Attributes:
        steps: optimisation steps on the support set per episode.
        lr: Adam learning rate.
        freeze_backbone: train only the head (a linear probe).
        batch_norm: ``"support"`` (train mode on the support set, running statistics updated on a copy, eval
            mode on the query: the paper; with ``freeze_backbone`` support and query features alike are
            normalised with the support set's statistics), ``"frozen"`` (the backbone's running statistics,
            never updated) or ``"batch"`` (each batch's own statistics).
        head_init: each episode's new head: ``"kaiming"`` (PyTorch's ``nn.Linear`` default, as the
            authors' ``SimpleClassifier`` heads in ``finetune_and_test.py`` at 83c2aad: 0.0.6
            ``models/simple.py``, ``init="kaiming"``) or ``"zero"``. A kaiming head is drawn from a
            generator seeded with the training seed and a digest of the episode's support set, so
            an episode gets the same head in any order, batch or rank.
        preset: ``None``, or a name of `FINETUNE_PRESETS` (``"fsl-benchmark"``: Adam lr 1e-4, 150
            steps, zero head, ``batch_norm = "frozen"``) that sets the keys it names; giving one of
            them another value as well is an error. Fingerprints see the values it sets, not its name.
    """

    steps: int = field(default=50, metadata={"min": 0, "max": _MAX_STEPS})
    lr: float = field(default=1e-3, metadata={"min": 0.0})
    freeze_backbone: bool = False
    batch_norm: Literal["support", "frozen", "batch"] = "support"
    head_init: Literal["kaiming", "zero"] = "kaiming"
    preset: Literal["fsl-benchmark"] | None = None


def _learning_rates(where: str, value: Any) -> tuple[float, ...]:
    """``value`` as a non-empty list of distinct positive finite numbers (one number: a list of one)."""
    items = [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    if (
        not isinstance(items, (list, tuple))
        or not items
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items)
        or not all(math.isfinite(v) and v > 0 for v in items)
        or len(set(items)) != len(items)
    ):
        raise TypeError(
            f"{where} must be a non-empty list of distinct positive learning rates, e.g. [1e-3, 1e-2], "
            f"got {value!r}"
        )
    return tuple(float(v) for v in items)


@dataclass(frozen=True)
class SelectionConfig:
    """Choosing ``[finetune] lr`` and ``steps`` on episodes disjoint from the test episodes (ours).

    The authors chose the fine-tuning learning rate and step count on the test episodes they
    report (``deploy_all_ft_test.py`` and ``collect_all_5shot.py`` at 83c2aad try lr 1e-3, 1e-2
    x 50, 100 steps on the 100 test episodes). ``mode = "target"`` or ``"sources"`` tries the
    grid ``lrs`` x ``steps`` on ``n_episodes`` selection episodes and evaluates the test
    episodes with the grid point of the best mean selection AUROC (see
    [`torchcross.protocol.selection`][torchcross.protocol.selection]); it applies to the methods
    that fine-tune (IM-PT, mm-PT, mm-MAML with ``[maml] evaluation = "finetune"``, ...).

    Attributes:
        mode: ``"none"`` (the ``[finetune]`` values: lr 1e-3, 50 steps, the authors' and the
            default), ``"target"`` (episodes of each target task, drawn from ``split`` with a
            seed of their own) or ``"sources"`` (episodes of the target's source tasks on ``split``).
        lrs: the learning rates tried (the authors' grid, ``deploy_all_ft_test.py`` at 83c2aad).
        steps: the fine-tuning step counts tried (the authors' grid, same file).
        n_episodes: selection episodes per target task (``"target"``) or per target
            (``"sources"``); ours.
        split: the split the selection episodes are drawn from (ours: ``"val"``); with
            ``[data] target_split = "test"`` target-mode selection and test episodes share no image.
    """

    mode: Literal["none", "target", "sources"] = "none"
    lrs: tuple[float, ...] = field(default=(1e-3, 1e-2), metadata={"parse": _learning_rates})
    steps: tuple[int, ...] = field(default=(50, 100), metadata={"min": 0, "distinct": True})
    n_episodes: int = field(default=20, metadata={"min": 1, "max": _MAX_COUNT})
    split: Split = "val"


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

    enabled: bool = True
    flip_p: float = field(default=0.25, metadata={"min": 0.0, "max": 1.0})
    rotation: float = field(default=10.0, metadata={"min": 0.0, "max": 180.0})
    crop_p: float = field(default=0.25, metadata={"min": 0.0, "max": 1.0})
    crop_fraction: float = field(default=200 / 224, metadata={"min": 0.05, "max": 1.0})


@dataclass(frozen=True)
class SupervisedConfig:
    """The fully supervised baseline: a backbone and head trained on each target task's train split.

    Attributes:
        steps: the most updates.
        batch_size: examples per batch (of each rank: under ``torchrun``, ``R`` ranks share every
            batch of ``R * batch_size`` examples, as one process with that batch size).
        lr: Adam learning rate; ``None``: as [`paper_lr()`][paper_lr].
        val_every: updates between validations on the task's ``val`` split: ``"epoch"``
            (once per pass over the train split, ``ceil(len(train) / batch_size)`` updates, as the
            authors' DataLoader with ``drop_last=False``: ``val_check_interval`` is commented
            out in ``fully_supervised.py`` at 83c2aad) or a count.
        val_batches: ``"all"`` (the whole ``val`` split, as the authors) or that many batches
            of it; their predictions are pooled into one AUROC.
        head_init: the head's initialisation: ``"kaiming"`` (PyTorch's ``nn.Linear`` default,
            as the authors' ``SimpleClassifier``: 0.0.6 ``models/simple.py``, ``init="kaiming"``),
            drawn from a generator seeded with the training seed, or ``"zero"``.
        patience: validations without a better AUROC before stopping (0: run all steps).
        bootstrap: bootstrap resamples of the test split for the confidence interval.
    """

    steps: int = field(default=500_000, metadata={"min": 0, "max": _MAX_STEPS})
    batch_size: int = field(default=64, metadata={"min": 1, "max": _MAX_COUNT})
    lr: float | None = field(default=None, metadata={"min": 0.0})
    val_every: int | Literal["epoch"] = field(default="epoch", metadata={"min": 1, "max": _MAX_STEPS})
    val_batches: int | Literal["all"] = field(default="all", metadata={"min": 1, "max": _MAX_COUNT})
    head_init: Literal["kaiming", "zero"] = "kaiming"
    patience: int = field(default=10, metadata={"min": 0, "max": _MAX_COUNT})
    bootstrap: int = field(default=1000, metadata={"min": 10, "max": _MAX_COUNT})


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
        embedding_cache: the folder where methods on frozen features (``linear-probe``) keep the
            backbone's features of every target image (`torchcross.data.embeddings`); ``None``:
            ``<out_dir>/embeddings``. Point several runs at one folder to share the features: a file
            is keyed by the backbone (weights digest), the preprocessing and the data, and a file of
            another key is never used.
        precision: ``"fp32"`` (the default, the reference) or ``"bf16"``: every method's training
            and fine-tuning forward passes autocast to bfloat16 (mm-PT, supervised, mm-MAML
            meta-training and inner loops, fine-tuning, and the frozen feature pass of
            ``linear-probe`` as with ``[backbone] feature_dtype = "bfloat16"``); losses, gradients and
            optimiser states stay float32
            ([`mixed_precision()`][torchcross.learners.precision.mixed_precision]). A device without
            bf16 support is refused by ``--check``. Part of every checkpoint's and evaluation's
            fingerprint.
        image_cache: a folder where the images of formats that decode files (``meta-album``,
            ``bscd-fsl``, ``meta-dataset``, ``hf-datasets``) are decoded once, at the run's image size,
            into memory-mapped files (`torchcross.datasets.image_cache`), so that later reads are a copy
            as MedIMeta's; ``None`` (the default): decode on every read. The same pixels either way;
            a file built from other images or settings is refused, naming the difference.
        channels_last: keep the models in channels-last memory format
            ([`to_channels_last()`][torchcross.learners.precision.to_channels_last]): faster
            convolutions on many GPUs, the same results within float rounding. Part of every
            checkpoint's and evaluation's fingerprint.
    """

    out_dir: Path
    seed: int = field(default=0, metadata={"min": 0, "max": 2**63 - 1})
    seeds: tuple[int, ...] | None = field(default=None, metadata={"min": 0, "distinct": True})
    device: str = field(default="cpu", metadata={"parse": _device_string})
    resume: bool = True
    checkpoint_every: int = field(default=200, metadata={"min": 0, "max": _MAX_STEPS})
    plot: bool = True
    num_threads: int | Literal["auto"] | None = field(
        default="auto", metadata={"min": 1, "max": _MAX_THREADS}
    )
    logger: Literal["csv", "tensorboard", "none"] = "csv"
    num_workers: int = field(default=0, metadata={"min": 0, "max": 1024})
    plugins: tuple[str, ...] | None = None
    allow_existing_out_dir: bool = False
    embedding_cache: Path | None = None
    image_cache: Path | None = None
    precision: Literal["fp32", "bf16"] = field(default="fp32", metadata={"omit_default": True})
    channels_last: bool = field(default=False, metadata={"omit_default": True})


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
    selection: SelectionConfig = SelectionConfig()
    augmentation: AugmentationConfig = AugmentationConfig()
    supervised: SupervisedConfig = SupervisedConfig()
    method_sections: tuple[tuple[str, Any], ...] = ()
    backbones: tuple[BackboneConfig, ...] = ()
    """``[[backbones]]``: a model comparison, every method run with each of these backbones (each table
    takes the keys it leaves out from ``[backbone]``); empty: ``[backbone]`` alone. See `backbone_runs()`."""

    def sections(self) -> dict[str, Any]:
        """Every section by name: the built-in ones, then the own sections of registered methods.

        A method registered with ``config=`` (a dataclass type) reads its section ``[<method name>]``
        ([`register_method()`][torchcross.protocol.registry.register_method]); the config holds it when
        the method is listed in ``[evaluation] methods`` or its section is in the file.
        """
        return {**{name: getattr(self, name) for name in _SECTIONS}, **dict(self.method_sections)}

    def section(self, name: str) -> Any:
        """The section ``[name]`` (see `sections()`).

        Raises:
            ValueError: a section the config does not hold, listing the ones it holds.
        """
        sections = self.sections()
        if name not in sections:
            raise ValueError(f"the config has no section [{name}]; sections: {', '.join(sections)}")
        return sections[name]

    @property
    def training_seeds(self) -> tuple[int, ...]:
        """The seeds methods are trained with (``[run] seeds``, else ``[run] seed``)."""
        return self.run.seeds if self.run.seeds is not None else (self.run.seed,)

    @property
    def shot_counts(self) -> tuple[int, ...]:
        """The shot counts methods are evaluated at (``[evaluation] shots``, else ``n_shot``), ascending.

        Examples:
            >>> raw = {"data": {"root": "d", "targets": "t"}, "run": {"out_dir": "o"}}
            >>> config_from_dict(raw).shot_counts
            (5,)
            >>> config_from_dict({**raw, "evaluation": {"shots": [10, 1, 5]}}).shot_counts
            (1, 5, 10)
        """
        ev = self.evaluation
        return ev.shots if ev.shots is not None else (ev.n_shot,)

    def backbone_runs(self) -> tuple[tuple[str | None, ProtocolConfig], ...]:
        """``(label, config)`` per backbone of ``[[backbones]]``: the config of a run with that backbone as
        ``[backbone]``, its files in ``<out_dir>/backbones/<label>``; without ``[[backbones]]``:
        ``((None, self),)``.

        The label is the backbone's name (a local model folder by its last part: ``"hf:/models/vit"`` is
        ``"hf:vit"``), with its weights where two share a name, else its position.

        Examples:
            >>> raw = {"data": {"root": "d", "targets": "t"}, "run": {"out_dir": "o"}}
            >>> two = [{"name": "conv4"}, {"name": "resnet18", "weights": "imagenet"}]
            >>> cfg = config_from_dict({**raw, "backbone": {"weights": "random"}, "backbones": two})
            >>> [(label, c.backbone.name, c.backbone.weights) for label, c in cfg.backbone_runs()]
            [('conv4', 'conv4', 'random'), ('resnet18', 'resnet18', 'imagenet')]
        """
        if not self.backbones:
            return ((None, self),)
        names = [_short_backbone_name(b.name) for b in self.backbones]
        if len(set(names)) < len(names) and len({b.name for b in self.backbones}) > len(set(names)):
            names = [b.name for b in self.backbones]  # shortened names collide: the whole names
        tagged = [f"{n} ({b.weights})" for n, b in zip(names, self.backbones)]
        labels = [
            n if names.count(n) == 1 else t if tagged.count(t) == 1 else f"{n} #{i + 1}"
            for i, (n, t) in enumerate(zip(names, tagged))
        ]
        out = []
        for label, b in zip(labels, self.backbones):
            folder = Path(self.run.out_dir) / "backbones" / safe_file_name(label)
            run = dataclasses.replace(self.run, out_dir=folder)
            out.append((label, dataclasses.replace(self, backbone=b, backbones=(), run=run)))
        return tuple(out)

    def at_shot(self, n_shot: int) -> ProtocolConfig:
        """This config evaluated at ``n_shot`` shots alone: ``[evaluation] n_shot = n_shot``, ``shots`` unset.

        Every artefact of one shot count of a shot curve (its episodes, its evaluations) is fingerprinted
        with it, so it is the artefact a run with ``n_shot = n_shot`` and no ``shots`` makes.

        Examples:
            >>> raw = {"data": {"root": "d", "targets": "t"}, "run": {"out_dir": "o"}}
            >>> one = config_from_dict({**raw, "evaluation": {"shots": [1, 5]}}).at_shot(1).evaluation
            >>> one.n_shot, one.shots
            (1, None)
        """
        evaluation = dataclasses.replace(self.evaluation, n_shot=n_shot, shots=None)
        return dataclasses.replace(self, evaluation=evaluation)


_SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "evaluation": EvaluationConfig,
    "backbone": BackboneConfig,
    "pretrain": PretrainConfig,
    "maml": MAMLConfig,
    "finetune": FinetuneConfig,
    "selection": SelectionConfig,
    "augmentation": AugmentationConfig,
    "supervised": SupervisedConfig,
    "run": RunConfig,
}


def _data_section(raw: Any, base_dir: Path | None) -> DataConfig:
    """``[data]``: exactly one of ``root`` and ``collections``; each collection's root resolved, its
    format defaulting to ``[data] format``."""
    given = dict(raw) if isinstance(raw, Mapping) else raw
    if isinstance(given, dict):
        has_root = given.get("root") is not None
        has_collections = bool(given.get("collections"))
        if has_root and has_collections:
            raise ValueError(
                "[data] sets both root and [[data.collections]]; give root (one folder, of [data] format) "
                "or collections (several folders), not both"
            )
        if not has_root and not has_collections:
            raise ValueError(
                "section [data] needs the key 'root' (the folder of the datasets) or [[data.collections]] "
                "(several folders, each with root and format)"
            )
        given.setdefault("root", None)
    kwargs = section_values("data", DataConfig, given, base_dir)
    fmt = kwargs.get("format", "medimeta")
    kwargs["collections"] = tuple(
        dataclasses.replace(
            c,
            root=c.root if c.root.is_absolute() or base_dir is None else base_dir / c.root,
            format=c.format or fmt,
        )
        for c in kwargs.get("collections", ())
    )
    for i, c in enumerate(kwargs["collections"]):
        _check_options(f"[[data.collections]] #{i + 1}", c.format, dict(c.options))
    return DataConfig(**kwargs)


def _section(name: str, raw: Any, base_dir: Path | None) -> Any:
    if name == "data":
        return _data_section(raw, base_dir)
    cls = _SECTIONS[name]
    kwargs = section_values(name, cls, raw, base_dir)
    if name == "evaluation" and "methods" in kwargs:
        methods = tuple(normalize_method(m) for m in kwargs["methods"])
        if len(set(methods)) != len(methods):
            raise ValueError(f"[evaluation] methods repeats a method: {list(kwargs['methods'])}")
        kwargs["methods"] = methods
    if name == "evaluation" and kwargs.get("shots") is not None:
        too_many = [k for k in kwargs["shots"] if k > _MAX_COUNT]
        if too_many:
            raise ValueError(f"[evaluation] shots: {too_many} exceed {_MAX_COUNT} shots per class")
        kwargs["shots"] = tuple(sorted(kwargs["shots"]))
    if name == "maml" and kwargs.get("min_shot", 1) > kwargs.get("max_shot", 10):
        low, high = kwargs.get("min_shot", 1), kwargs.get("max_shot", 10)
        raise ValueError(f"[maml] min_shot = {low} is larger than max_shot = {high}")
    if name in ("finetune", "evaluation") and kwargs.get("preset") is not None:
        preset = (FINETUNE_PRESETS if name == "finetune" else EVALUATION_PRESETS)[kwargs["preset"]]
        both = [f"{k} = {kwargs[k]!r}" for k in preset if k in kwargs and kwargs[k] != preset[k]]
        if both:  # the same values are allowed: a config written out with the preset reads back
            sets = ", ".join(f"{k} = {v!r}" for k, v in preset.items())
            raise ValueError(
                f"[{name}] preset = {kwargs['preset']!r} sets {sets}; remove {', '.join(both)} from "
                f"[{name}] (or the preset)"
            )
        kwargs.update(preset)
    section = cls(**kwargs)
    if name == "maml" and section.val_every == "epoch" and section.episode_pool == 0 and section.patience:
        raise ValueError(
            "[maml] val_every = 'epoch' needs episode pools to make an epoch, but [maml] episode_pool = 0 "
            "(fresh episodes at every meta-update); set val_every to a number of meta-updates (e.g. 2000, "
            "the earlier default) or episode_pool > 0 (the authors' 1000)"
        )
    return section


def config_from_dict(raw: Mapping[str, Any], base_dir: str | Path | None = None) -> ProtocolConfig:
    """Build a [`ProtocolConfig`][ProtocolConfig] from nested mappings (a parsed
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
    raw_backbones = raw.get("backbones")
    raw = {k: v for k, v in raw.items() if k != "backbones"}
    run_raw = raw.get("run")
    if not (isinstance(run_raw, Mapping) and run_raw.get("plugins")):  # else once plugins registered theirs
        _check_sections(raw)
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
    own = _check_sections(raw)
    parts = {name: _section(name, raw.get(name), base) for name in _SECTIONS if name in raw and name != "run"}
    listed = parts["evaluation"].methods if "evaluation" in parts else METHODS
    given = {own[k]: raw[k] for k in raw if k in own}
    method_sections = tuple(
        (name, section_from_dict(name, cls, given.get(name), base))
        for name, cls in _method_section_types().items()
        if name in listed or name in given
    )
    if "backbone" in parts:
        parts["backbone"] = _with_local_model(parts["backbone"], base)
    _check_preprocessing(parts, raw)
    backbones = _backbones(raw_backbones, raw.get("backbone"), base)
    backbones = tuple(_with_local_model(b, base) for b in backbones)
    for b in backbones:  # each [[backbones]] table, as the [backbone] of its run
        _check_preprocessing({**parts, "backbone": b}, raw)
    return ProtocolConfig(run=run, **parts, method_sections=method_sections, backbones=backbones)


_LOCAL_MODEL_PREFIXES = ("hf:", "open_clip:local-dir:")


def _with_local_model(backbone: BackboneConfig, base: Path | None) -> BackboneConfig:
    """``[backbone] name = "hf:<folder>"`` (or ``"open_clip:local-dir:<folder>"``) with a relative folder
    that exists beside the config file names that folder, as every other relative path of a config does;
    a name with no such folder (a hub id such as ``"hf:facebook/dinov2-small"``) is kept as it is."""
    if base is None:
        return backbone
    for prefix in _LOCAL_MODEL_PREFIXES:
        if backbone.name.startswith(prefix):
            folder = Path(backbone.name[len(prefix) :])
            if str(folder) and not folder.is_absolute() and (base / folder).is_dir():
                return dataclasses.replace(backbone, name=prefix + str((base / folder).resolve()))
    return backbone


def _short_backbone_name(name: str) -> str:
    """``"<family>:<folder>"`` for a model in a local folder (``"hf:/models/vit"`` -> ``"hf:vit"``)."""
    family, sep, model = name.partition(":")
    if not sep or ("/" not in model and "\\" not in model):
        return name
    return f"{family}:{Path(model.rpartition(':')[2]).name or model}"


def _backbones(value: Any, shared: Any, base: Path | None) -> tuple[BackboneConfig, ...]:
    """The ``[[backbones]]`` tables, each completed by the keys of ``[backbone]`` (``shared``)."""
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(t, Mapping) for t in value):
        raise TypeError(
            "backbones must be a non-empty list of tables, each with keys of [backbone] (in TOML: one "
            f"[[backbones]] section per backbone), got {value!r}"
        )
    shared = shared if isinstance(shared, Mapping) else {}
    out = tuple(
        section_from_dict(f"backbones #{i + 1}", BackboneConfig, {**shared, **t}, base)
        for i, t in enumerate(value)
    )
    repeated = [i + 1 for i, b in enumerate(out) if b in out[:i]]
    if repeated:
        raise ValueError(f"[[backbones]] #{repeated[0]} repeats an earlier backbone: {out[repeated[0] - 1]}")
    return out


def _check_preprocessing(parts: Mapping[str, Any], raw: Mapping[str, Any]) -> None:
    """A ``"<family>:<model>"`` backbone brings its preprocessing: ``[data]`` must not set another one."""
    backbone = parts.get("backbone")
    if backbone is not None and ":" not in backbone.name and backbone.weights == "default":
        raise ValueError(
            f"[backbone] weights = 'default' is for '<family>:<model>' backbones; with {backbone.name!r} use "
            "'imagenet', 'imagenet-v1', 'random' or a local state_dict file"
        )
    if backbone is None or ":" not in backbone.name:
        return
    data = parts["data"]
    given = raw.get("data") or {}
    if data.image_size is not None:
        raise ValueError(
            f"[data] image_size = {data.image_size} with [backbone] name = {backbone.name!r}: the backbone "
            "resizes the images to its own input size (its preprocessing); remove [data] image_size"
        )
    if "normalize" in given and data.normalize != "imagenet":
        raise ValueError(
            f"[data] normalize = {data.normalize!r} with [backbone] name = {backbone.name!r}: the backbone "
            "normalises the images with its own mean and std (its preprocessing); remove [data] normalize"
        )
    if backbone.weights == "imagenet-v1":
        raise ValueError(
            f"[backbone] weights = 'imagenet-v1' is for the built-in ResNets; with {backbone.name!r} use "
            "'default' (the model's own weights), 'random' or a local file or folder"
        )


def _method_section_types() -> dict[str, type]:
    """``{method name: its config type}`` of the registered methods that declare their own section."""
    from torchcross.protocol.registry import get_method, method_names

    types = {name: get_method(name).config for name in method_names()}
    own = {name: t for name, t in types.items() if t is not None}
    for name in own:
        if name.casefold() in _SECTIONS:
            raise ValueError(
                f"method {name!r} is registered with its own config section, but [{name}] is a built-in "
                "section; register it under another name"
            )
    return own


def _check_sections(raw: Mapping[str, Any]) -> dict[str, str]:
    """``{section as written: method}`` of the methods' own sections in ``raw``.

    Raises:
        ValueError: a section that is neither built-in nor a registered method's own (named, with the
            allowed ones), or a method's section given twice (in two spellings).
    """
    own_types = _method_section_types()
    by_fold = {name.casefold(): name for name in own_types}
    own = {k: by_fold[k.casefold()] for k in raw if k not in _SECTIONS and k.casefold() in by_fold}
    unknown = [k for k in raw if k not in _SECTIONS and k not in own]
    if unknown:
        raise ValueError(
            f"unknown config section(s) {', '.join(repr(k) for k in unknown)}; allowed sections: "
            f"{', '.join([*_SECTIONS, *own_types])}"
        )
    if len(set(own.values())) != len(own):
        twice = sorted(k for k in own if list(own.values()).count(own[k]) > 1)
        raise ValueError(f"the sections {', '.join(repr(k) for k in twice)} are one method's; keep one")
    return own


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
    text = _read_text(path)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path} is not valid TOML: {exc}") from exc


def _read_text(path: Path) -> str:
    """The UTF-8 text of config file ``path``, read only if it is a regular file when opened."""
    from torchcross._io import read_regular_file

    try:
        return read_regular_file(path, "config file").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8"
        ) from None


def _read_yaml(path: Path) -> Any:
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("reading YAML configs needs PyYAML: `pip install torchcross[medimeta]`") from exc
    from torchcross.datasets.medimeta.folder import load_yaml  # aliases bounded: no "billion laughs"

    text = _read_text(path)
    try:
        return load_yaml(text, str(path))
    except yaml.YAMLError as exc:  # pragma: no cover - load_yaml names the file itself
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

    A key whose field says ``metadata={"omit_unset": True}`` is left out while unset (``None``), so that a
    key added later (``[evaluation] shots``) leaves the ``results.json`` of runs without it as it was.

    Examples:
        >>> cfg = config_from_dict({"data": {"root": "d", "targets": "t"}, "run": {"out_dir": "o"}})
        >>> config_to_dict(cfg)["data"]["targets"]
        ['t']
    """
    out: dict[str, dict[str, Any]] = {}
    for name, section in config.sections().items():
        values = {}
        for f in dataclasses.fields(section):
            v = getattr(section, f.name)
            if v is None and f.metadata.get("omit_unset"):
                continue
            values[f.name] = str(v) if isinstance(v, Path) else _plain(v) if isinstance(v, tuple) else v
        out[name] = values
    if config.backbones:  # [[backbones]]: a list of tables (left out while empty)
        out["backbones"] = [  # type: ignore[assignment]
            {
                f.name: str(getattr(b, f.name))
                if isinstance(getattr(b, f.name), Path)
                else getattr(b, f.name)
                for f in dataclasses.fields(b)
                if not (getattr(b, f.name) is None and f.metadata.get("omit_unset"))
            }
            for b in config.backbones
        ]
    return out


def _plain(value: tuple[Any, ...]) -> list[Any]:
    """A tuple as a JSON-ready list: ``[[data.collections]]`` entries as tables, nested tuples as lists."""
    return [
        v.to_dict() if isinstance(v, DataCollection) else _plain(v) if isinstance(v, tuple) else v
        for v in value
    ]


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _toml_string(where: str, text: str) -> str:
    """``text`` as a TOML basic string: quotes, backslashes and control characters escaped."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[ch])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04X}")
        elif 0xD800 <= code <= 0xDFFF:  # a lone surrogate (an undecodable file name) has no TOML spelling
            raise ValueError(
                f"{where} = {text!r} holds the lone surrogate U+{code:04X}, which TOML cannot store; "
                "rename the file or folder to valid UTF-8"
            )
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_key(name: str) -> str:
    return name if _BARE_KEY.fullmatch(name) else _toml_string(f"key {name!r}", name)


def _toml_value(where: str, value: Any) -> str:
    """One value of a config section in TOML: bool, int, float, str, Path, or a list of them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)  # the shortest spelling that reads back as the same float
    if isinstance(value, (str, Path)):
        return _toml_string(where, str(value))
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml_value(where, v) for v in value) + "]"
    raise TypeError(f"{where} = {value!r}: a {type(value).__name__} cannot be written as TOML")


def config_to_toml(config: ProtocolConfig) -> str:
    """The fully resolved config as TOML: every section and key, defaults included (``--show-config``).

    Loading the text (`config_from_dict()` of the parsed TOML, or `load_config()` of a saved file) gives an
    equal config. TOML has no null: a key whose value is ``None`` (unset: the default chosen at run time,
    such as ``[pretrain] lr``) is written commented out, ``# lr = (unset)``, and reads back unset. The one
    exception is a key that is ``None`` while its default is not (``[run] num_threads`` set to ``null`` in a
    YAML config): its comment says that TOML cannot store it and that reloading gives the default.
    Relative paths stay relative (a config read by `load_config()` holds absolute ones); ``[run] plugins``
    files stay as written, relative to the config file's folder.

    Raises:
        ValueError: a string that TOML cannot store (a lone surrogate of an undecodable file name).

    Examples:
        >>> cfg = config_from_dict({"data": {"root": "d", "targets": "glaucoma"}, "run": {"out_dir": "o"}})
        >>> print("\\n".join(config_to_toml(cfg).splitlines()[2:6]))
        [data]
        root = "d"
        targets = ["glaucoma"]
        # sources = (unset)
    """
    lines = ["# the resolved torchcross protocol config: every key, defaults included", ""]
    for name, section in config.sections().items():
        lines.append(f"[{_toml_key(name)}]")
        tables: list[str] = []
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            key = _toml_key(f.name)
            if isinstance(section, DataConfig) and f.name == "collections" and value:
                for i, c in enumerate(value):  # [[data.collections]]: after the keys of [data]
                    tables += ["", "[[data.collections]]"] + [
                        f"{_toml_key(k)} = {_toml_value(f'[[data.collections]] #{i + 1} {k}', v)}"
                        for k, v in c.to_dict().items()
                    ]
                continue
            if value is None:
                if f.default is None or f.default is dataclasses.MISSING:
                    lines.append(f"# {key} = (unset)")
                else:
                    default = _toml_value(f"[{name}] {f.name}", f.default)
                    lines.append(
                        f"# {key} = (unset; TOML has no null: reloading this file gives the default "
                        f"{default}; write {f.name}: null in a YAML config)"
                    )
                continue
            lines.append(f"{key} = {_toml_value(f'[{name}] {f.name}', value)}")
        lines += [*tables, ""]
    for i, b in enumerate(config.backbones):
        lines.append("[[backbones]]")
        for f in dataclasses.fields(b):
            value = getattr(b, f.name)
            if value is not None:
                lines.append(
                    f"{_toml_key(f.name)} = {_toml_value(f'[[backbones]] #{i + 1} {f.name}', value)}"
                )
        lines.append("")
    return "\n".join(lines)
