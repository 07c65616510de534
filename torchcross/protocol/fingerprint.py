"""One fingerprint for every artefact of a run: checkpoints, evaluations and episode sets.

An artefact declares the config values it reads as [`Reads`][Reads]:
sections (``"pretrain"``: every key of it) and keys (``"data.normalize"``), less some keys (a
checkpoint leaves out its step count, so a finished run can be extended).
[`fingerprint()`][fingerprint] hashes exactly those values, with what
names the artefact (its method, target, seed, ...). A run reuses an artefact only while its
fingerprint is unchanged: changing a setting it reads (``[augmentation]`` included) redoes it, and
changing one it does not read (``[run] out_dir``, ``num_threads``, ``plot``, ...) keeps it.

Examples:
    >>> from torchcross.protocol.config import config_from_dict
    >>> raw = {"data": {"root": "d", "targets": "t"}, "run": {"out_dir": "o"}}
    >>> config = config_from_dict(raw)
    >>> reads = Reads(("augmentation",), without=("augmentation.rotation",))
    >>> reads.resolve(config)
    ('augmentation.crop_fraction', 'augmentation.crop_p', 'augmentation.enabled', 'augmentation.flip_p')
    >>> off = config_from_dict({**raw, "augmentation": {"enabled": False}})
    >>> fingerprint(config, reads, seed=0) == fingerprint(off, reads, seed=0)
    False
    >>> elsewhere = config_from_dict({**raw, "run": {"out_dir": "elsewhere", "num_threads": 1}})
    >>> fingerprint(config, reads, seed=0) == fingerprint(elsewhere, reads, seed=0)
    True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torchcross.protocol.training import config_fingerprint

__all__ = [
    "COMPUTE_READS",
    "EPISODE_READS",
    "EVALUATION_READS",
    "RESULT_READS",
    "TRAINING_READS",
    "Reads",
    "fingerprint",
    "fingerprint_settings",
]


def _entries(value: Any, what: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise TypeError(f"Reads {what} must be a sequence of strings, got {value!r}")
    out = tuple(value)
    for entry in out:
        if not isinstance(entry, str) or not entry or entry.count(".") > 1 or "" in entry.split("."):
            raise ValueError(
                f"Reads {what}: {entry!r} is not a config section ('pretrain'), a key ('pretrain.lr') or '*'"
            )
    return out


@dataclass(frozen=True)
class Reads:
    """The config values an artefact depends on: sections and keys, less some of them.

    Attributes:
        keys: ``"section"`` (every key of it), ``"section.key"``, or ``"*"`` (every section).
        without: sections or keys left out of ``keys``.

    Raises:
        TypeError: ``keys`` or ``without`` is not a sequence of strings.
        ValueError: an entry that is neither a section nor a ``section.key``.
    """

    keys: tuple[str, ...]
    without: tuple[str, ...] = ()

    if TYPE_CHECKING:  # what __post_init__ accepts: any iterables of strings

        def __init__(self, keys: Iterable[str], without: Iterable[str] = ()) -> None: ...

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", _entries(self.keys, "keys"))
        object.__setattr__(self, "without", _entries(self.without, "without"))

    def resolve(self, config: Any) -> tuple[str, ...]:
        """Every ``"section.key"`` of ``config`` these reads name, sorted.

        Raises:
            ValueError: a section or key ``config`` does not have (listing the ones it has).
        """
        sections = config.sections()

        def expand(entry: str) -> set[str]:
            if entry == "*":
                return {key for name in sections for key in expand(name)}
            name, _, key = entry.partition(".")
            if name not in sections:
                raise ValueError(
                    f"reads {entry!r}: the config has no section [{name}]; sections: {', '.join(sections)}"
                )
            keys = [f.name for f in dataclasses.fields(sections[name])]
            if key and key not in keys:
                raise ValueError(
                    f"reads {entry!r}: section [{name}] has no key {key!r}; keys: {', '.join(keys)}"
                )
            return {f"{name}.{key}"} if key else {f"{name}.{k}" for k in keys}

        named = set().union(*(expand(e) for e in self.keys))
        left_out = set().union(*(expand(e) for e in self.without))
        return tuple(sorted(named - left_out))


EPISODE_READS = Reads(
    (
        "data.target_split",
        "data.min_class_size",
        "evaluation.n_shot",
        "evaluation.n_query",
        "evaluation.n_episodes",
        "evaluation.multilabel_sampler",
        "evaluation.n_way",
        "run.seed",
    )
)
"""What a target task's fixed episodes are drawn with (and so every episodic evaluation).

With ``[evaluation] shots`` each shot count's episodes are fingerprinted with
``ProtocolConfig.at_shot()``: ``n_shot`` is that count, so an episode set is a function of the seed and
its shot count alone."""

COMPUTE_READS = Reads(("run.precision", "run.channels_last"))
"""How the run computes where that changes results: ``[run] precision`` and ``channels_last``.

Part of every training checkpoint's fingerprint (read beside the method's own training reads, whatever
it declares) and of every evaluation's ([`EVALUATION_READS`][EVALUATION_READS]). Their defaults are left
out of what is hashed, so a run at ``"fp32"`` and the default layout keeps the fingerprints of earlier
releases; the rest of ``[run]`` (``device``, threads, workers, ...) is never read."""

EVALUATION_READS = Reads(("evaluation.confidence", *COMPUTE_READS.keys))
"""What an evaluation reads beside its method's settings (and its episodes, if it has them): ``[evaluation]
confidence`` and [`COMPUTE_READS`][COMPUTE_READS]."""

TRAINING_READS = Reads(("backbone", "data.normalize", "data.source_split", "augmentation"))
"""What source training reads unless it declares its own: the backbone, the inputs, augmentation."""

RESULT_READS = Reads(
    ("*",),
    without=(
        "run",  # where and how a run works: out_dir, resume, device, threads, workers, plot, logger, ...
        # (precision and channels_last change results: COMPUTE_READS, read by every training and evaluation)
        "data.root",  # where the data is (episode files check the labels they were drawn from)
        "data.targets",  # the target and its sources name every artefact instead
        "data.target_tasks",  # so do its tasks (an evaluation's fingerprint lists them)
        "data.sources",
        "data.source_tasks",
        "evaluation.methods",
        "evaluation.batch_size",  # episodes per call: the same results
        "selection",  # read by the evaluations it applies to (torchcross.protocol.selection)
        "evaluation.diverged",  # applied to the stored records whenever the results are written
        "evaluation.shots",  # a shot curve's artefacts are fingerprinted per shot count (`at_shot()`)
        "evaluation.metric",  # which metric results.md and the plots show first
    ),
)
"""Every setting a result may depend on: what a registered method reads unless it declares less."""


def fingerprint_settings(config: Any, *reads: Reads, **identity: Any) -> dict[str, Any]:
    """What [`fingerprint()`][fingerprint] hashes.

    ``{section: {key: value}}`` of every key the ``reads`` name (together), and
    ``identity`` (what names the artefact: method, target, seed, ...) under ``"artefact"``.
    """
    out: dict[str, Any] = {}
    for name in sorted(set().union(*(r.resolve(config) for r in reads))):
        section, key = name.split(".")
        value = getattr(config.section(section), key)
        if name in ("finetune.preset", "evaluation.preset"):  # expanded into the keys it sets, hashed
            continue
        if name in _DATA_SOURCE_KEYS:  # every artefact reads the data: hashed below, whatever it reads
            continue
        if _omitted(config.section(section), key, value):
            continue  # a key added later ([backbone] feature_dtype) leaves earlier fingerprints as they were
        out.setdefault(section, {})[key] = _resolved_value(config, name, value)
    source = _data_source(config)
    if source:
        out.setdefault("data", {}).update(source)
    return {**out, "artefact": identity}


_DATA_SOURCE_KEYS = frozenset({"data.format", "data.collections", "data.overlaps"})


def _data_source(config: Any) -> dict[str, Any]:
    """What the data is read as: ``[data] format`` and each collection's format, prefix and options.

    Empty for a MedIMeta ``[data] root`` (the fingerprints of earlier runs stay as they were). Where
    the data lies is not hashed (as ``[data] root`` is not: a moved copy is the same data); which format
    reads it is, so an artefact is never reused by a run that reads its datasets in another format.
    ``[data] overlaps`` is not hashed: it changes the sources, which name every artefact.
    """
    data = config.section("data")
    if data.collections:
        return {
            "collections": [
                {"format": c.format, "prefix": c.prefix, "options": [list(o) for o in c.options]}
                for c in data.collections
            ]
        }
    return {} if data.format == "medimeta" else {"format": data.format}


def _omitted(section: Any, key: str, value: Any) -> bool:
    """Whether ``value`` of the field ``key`` of ``section`` is left out of the fingerprint: ``None`` where
    the field says ``metadata={"omit_unset": True}``, its default where it says ``{"omit_default": True}``."""
    fields = {f.name: f for f in dataclasses.fields(section)} if dataclasses.is_dataclass(section) else {}
    if key not in fields:
        return False
    meta = fields[key].metadata
    unset = value is None and meta.get("omit_unset")
    return bool(unset or (meta.get("omit_default") and value == fields[key].default))


def _resolved_value(config: Any, name: str, value: Any) -> Any:
    """``value``, or what it resolves to where that changed between releases.

    ``[backbone] weights = "imagenet"`` loads torchvision's ``DEFAULT`` weights, which for ResNet-50 are
    ``IMAGENET1K_V2`` (earlier releases loaded V1): the resolved weights name is hashed for the ResNets
    whose ImageNet weights are not V1, so an artefact made from the other weights is never reused. The
    other ResNets keep the plain value (and the fingerprints they always had).

    For a ``"<family>:<model>"`` backbone the weights are hashed with the backbone's identity (the
    digest of its weight files) and preprocessing
    ([`backbone_fingerprint()`][torchcross.protocol.backbone.backbone_fingerprint]): changing the file
    behind the same path redoes what was made with it.
    """
    if name != "backbone.weights":
        return value
    backbone = config.section("backbone").name
    if ":" in backbone:
        from torchcross.protocol.backbone import backbone_fingerprint

        return {"weights": str(value), **backbone_fingerprint(backbone, value)}
    if not isinstance(value, str):
        return value
    from torchcross.protocol.backbone import IMAGENET_WEIGHTS

    tag = IMAGENET_WEIGHTS.get(value, {}).get(config.section("backbone").name, "IMAGENET1K_V1")
    return value if tag == "IMAGENET1K_V1" else f"{value} ({tag})"


def fingerprint(config: Any, *reads: Reads, **identity: Any) -> str:
    """The fingerprint of an artefact that reads ``reads`` of ``config`` and is named by ``identity``.

    A short hash of [`fingerprint_settings()`][fingerprint_settings]:
    equal exactly when every value read and every identity value are equal.
    """
    return config_fingerprint(fingerprint_settings(config, *reads, **identity))
