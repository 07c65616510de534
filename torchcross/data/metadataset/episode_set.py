"""Fixed evaluation episodes: sample once, save as readable JSON, load and check against the data.

The paper's protocol evaluates every target task on the same 100 five-shot episodes (10
query examples per class). [`sample_episode_set()`][torchcross.data.metadataset.sample_episode_set] draws
them, [`EpisodeSet.save()`][torchcross.data.metadataset.EpisodeSet.save]
writes a JSON file (format version, task description, sampling parameters, a SHA-256
checksum of the source's canonical labels, and one line per episode with indices and
relabelled labels), and [`EpisodeSet.load()`][torchcross.data.metadataset.EpisodeSet.load] reads it back and,
given the source,
refuses a file whose checksum no longer matches the data. No pickle is involved.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from torchcross._checks import check_int
from torchcross._io import atomic_write
from torchcross.data.metadataset.base import EpisodeMetaDataset, MetaDataset, load_episode
from torchcross.data.metadataset.few_shot import FewShotMetaDataset
from torchcross.data.sources import canonical_labels
from torchcross.sampling.defaults import (
    DEFAULT_FILTER_CLASSES_MIN_SAMPLES,
    DEFAULT_QUERY_PER_CLASS,
    DEFAULT_SHOTS,
)
from torchcross.sampling.episodes import EpisodeIndices, episode_labels, relabel_description
from torchcross.tasks.task import Task, TaskDescription, TaskTarget

__all__ = [
    "EpisodeRecord",
    "EpisodeSet",
    "FixedEpisodeMetaDataset",
    "labels_checksum",
    "sample_episode_set",
]

FORMAT = "torchcross.episode_set"
VERSION = 1


def labels_checksum(labels: Any) -> str:
    """``"sha256:<hex>"`` of canonical labels: dtype, shape and little-endian bytes.

    Examples:
        >>> import numpy as np
        >>> labels_checksum(np.array([0, 1, 1])) == labels_checksum(np.array([0, 1, 1]))
        True
        >>> labels_checksum(np.array([0, 1, 1])) == labels_checksum(np.array([0, 1, 0]))
        False
    """
    arr = np.asarray(labels)
    arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
    digest = hashlib.sha256(f"{arr.dtype.str}|{arr.shape}|".encode())
    digest.update(arr.tobytes())
    return f"sha256:{digest.hexdigest()}"


@dataclass(frozen=True, eq=False)
class EpisodeRecord:
    """One stored episode: class keys in episode order, indices into the source, episode labels.

    Labels are relabelled to ``0..k-1``: ``(n,)`` for multi-class and ordinal,
    ``(n, 1)`` for binary, ``(n, k)`` for multi-label.
    """

    classes: tuple[int, ...]
    support: np.ndarray
    support_labels: np.ndarray
    query: np.ndarray
    query_labels: np.ndarray

    def indices(self) -> EpisodeIndices:
        """The episode as [`EpisodeIndices`][torchcross.sampling.episode_index.EpisodeIndices]."""
        return EpisodeIndices(self.support, self.query, self.classes)


def _labels_to_json(labels: np.ndarray) -> list:
    return (
        labels.reshape(len(labels)).tolist() if labels.ndim == 2 and labels.shape[1] == 1 else labels.tolist()
    )


@dataclass(frozen=True, eq=False)
class EpisodeSet:
    """A fixed list of episodes of one task, with what is needed to check and reload them.

    Attributes:
        description: the source task's description.
        episodes: the episodes.
        sampling: the parameters they were drawn with (rule, seed, shots, ...).
        labels_checksum: [`labels_checksum()`][torchcross.data.metadataset.labels_checksum] of the source's
            canonical labels.
        num_examples: the number of examples of the source.
    """

    description: TaskDescription
    episodes: tuple[EpisodeRecord, ...]
    sampling: Mapping[str, Any] = field(default_factory=dict)
    labels_checksum: str = ""
    num_examples: int = 0

    def __len__(self) -> int:
        return len(self.episodes)

    @classmethod
    def from_dataset(cls, dataset: EpisodeMetaDataset, n_episodes: int | None = None) -> EpisodeSet:
        """Record episodes ``0..n_episodes-1`` of a seeded episode dataset (its indices only).

        ``n_episodes`` defaults to the dataset's length.
        """
        if not isinstance(dataset, EpisodeMetaDataset):
            raise TypeError(f"dataset must be an EpisodeMetaDataset, got {type(dataset).__name__}")
        n = dataset.length if n_episodes is None else n_episodes
        if n is None:
            raise ValueError("n_episodes is required: the dataset is endless (length=None)")
        n = check_int(n, "n_episodes", 1)
        records = []
        for i in range(n):
            ep = dataset.sample_indices(i)
            sup_y, qry_y = episode_labels(dataset.label_index, ep)
            records.append(EpisodeRecord(ep.classes, ep.support, sup_y, ep.query, qry_y))
        labels = dataset.label_index.labels
        sampling = {**dataset.sampling_parameters(), "length": n}
        return cls(dataset.task_description, tuple(records), sampling, labels_checksum(labels), len(labels))

    def verify(self, task_source: Any, where: str = "episode set") -> None:
        """Raise ValueError if ``task_source``'s labels are not the ones the episodes were drawn from."""
        labels = canonical_labels(task_source)
        actual = labels_checksum(labels)
        if actual != self.labels_checksum:
            raise ValueError(
                f"{where}: the labels of task source {task_source.task_description.task_identifier!r} do not "
                f"match the ones the episodes were drawn from (stored {self.labels_checksum}, "
                f"{self.num_examples} examples; source {actual}, {len(labels)} examples); the data changed: "
                "re-sample the episodes"
            )

    def as_dataset(
        self, task_source: Any, collate_fn: Callable | None = None, output_indices: bool = False
    ) -> FixedEpisodeMetaDataset:
        """A map-style dataset of the stored episodes, reading inputs from ``task_source``."""
        return FixedEpisodeMetaDataset(self, task_source, collate_fn, output_indices)

    def to_json(self) -> str:
        """The file content: one header key per line, then one line per episode."""
        d = self.description
        header = {
            "format": FORMAT,
            "version": VERSION,
            "description": {
                "task_target": d.task_target.name,
                "classes": {str(k): v for k, v in d.classes.items()},
                "task_identifier": d.task_identifier,
                "domain_identifier": d.domain_identifier,
            },
            "sampling": dict(self.sampling),
            "labels": {"checksum": self.labels_checksum, "num_examples": self.num_examples},
            "n_episodes": len(self.episodes),
        }
        lines = ["{"] + [f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in header.items()]
        episodes = []
        for e in self.episodes:
            entry = {
                "classes": list(e.classes),
                "support": e.support.tolist(),
                "support_labels": _labels_to_json(e.support_labels),
                "query": e.query.tolist(),
                "query_labels": _labels_to_json(e.query_labels),
            }
            episodes.append("    " + json.dumps(entry))
        lines += ['  "episodes": [', ",\n".join(episodes), "  ]", "}"]
        return "\n".join(lines) + "\n"

    def save(self, path: str | os.PathLike) -> None:
        """Write the set as UTF-8 JSON (see [`to_json()`][torchcross.data.metadataset.EpisodeSet.to_json]),
        atomically: a kill or a full disk
        leaves the old file or the new one, never part of one."""
        atomic_write(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike, task_source: Any | None = None) -> EpisodeSet:
        """Read a file written by [`save()`][torchcross.data.metadataset.EpisodeSet.save]; with
        ``task_source``, check its labels' checksum.

        Raises:
            ValueError: a malformed file, or (given a source) labels that changed.
        """
        where = f"episode set file {os.fspath(path)!r}"
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where} is not valid JSON: {exc}") from None
        except UnicodeDecodeError as exc:
            raise ValueError(f"{where} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        except IsADirectoryError:
            raise ValueError(f"{where} is a directory, not an episode set file") from None
        episode_set = _from_json(data, where)
        if task_source is not None:
            episode_set.verify(task_source, where)
        return episode_set


def _from_json(data: Any, where: str) -> EpisodeSet:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{where} is not a torchcross episode set (format {FORMAT!r} expected)")
    if data.get("version") != VERSION:
        raise ValueError(
            f"{where} has format version {data.get('version')!r}; this torchcross reads version {VERSION}"
        )
    try:
        d = data["description"]
        description = TaskDescription(
            TaskTarget.parse(d["task_target"]),
            {int(k): v for k, v in d["classes"].items()},
            d.get("task_identifier", ""),
            d.get("domain_identifier", ""),
        )
        num_examples = int(data["labels"]["num_examples"])
        checksum = str(data["labels"]["checksum"])
        records = tuple(_record(e, description, num_examples) for e in data["episodes"])
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{where} is malformed: missing or wrong field ({exc!r})") from None
    except ValueError as exc:
        raise ValueError(f"{where} is malformed: {exc}") from None
    if data.get("n_episodes", len(records)) != len(records):
        raise ValueError(f"{where} says n_episodes={data['n_episodes']} but holds {len(records)} episodes")
    return EpisodeSet(description, records, data.get("sampling", {}), checksum, num_examples)


def _record(entry: Mapping[str, Any], description: TaskDescription, num_examples: int) -> EpisodeRecord:
    classes = tuple(int(c) for c in entry["classes"])
    parts = {}
    for name in ("support", "query"):
        idx = np.asarray(entry[name], dtype=np.int64).reshape(-1)
        labels = np.asarray(entry[f"{name}_labels"], dtype=np.int64)
        if description.task_target is TaskTarget.BINARY_CLASSIFICATION:
            labels = labels.reshape(-1, 1)
        if len(labels) != len(idx) or (idx.size and (idx.min() < 0 or idx.max() >= num_examples)):
            raise ValueError(
                f"episode {name} has {len(idx)} indices (0..{num_examples - 1}) and {len(labels)} labels"
            )
        parts[name], parts[f"{name}_labels"] = idx, labels
    if np.intersect1d(parts["support"], parts["query"]).size:
        raise ValueError("an episode's support and query share examples")
    return EpisodeRecord(classes, **parts)


def sample_episode_set(
    task_source: Any,
    n_episodes: int = 100,
    n_support_samples_per_class: int = DEFAULT_SHOTS,
    n_query_samples_per_class: int = DEFAULT_QUERY_PER_CLASS,
    *,
    seed: int = 0,
    filter_classes_min_samples: int = DEFAULT_FILTER_CLASSES_MIN_SAMPLES,
    n_way: int | None = None,
    permute_labels: bool = True,
) -> EpisodeSet:
    """Draw ``n_episodes`` fixed-shot episodes (the episodes ``0..n-1`` of the equivalent
    [`FewShotMetaDataset`][torchcross.data.metadataset.FewShotMetaDataset] with this ``seed``).

    ``n_way`` (multi-class and ordinal tasks) draws N-way episodes over ``n_way`` of the
    classes; each stored episode lists its class keys in episode order (``classes[i]`` is
    the class of label ``i``). Multi-class N-way episodes assign their labels in a random
    order per episode unless ``permute_labels=False`` (see
    [`FewShotMetaDataset`][torchcross.data.metadataset.FewShotMetaDataset]); the order is
    stored, so a loaded set gives the same labels.

    Examples:
        >>> import torch
        >>> from torchcross.data.sources import TensorTaskSource
        >>> d = TaskDescription("BINARY_CLASSIFICATION", {0: "healthy", 1: "sick"}, "toy")
        >>> src = TensorTaskSource(torch.randn(40, 2), torch.arange(40) % 2, d)
        >>> episodes = sample_episode_set(
        ...     src, n_episodes=3, n_support_samples_per_class=2, n_query_samples_per_class=3
        ... )
        >>> len(episodes), episodes.episodes[0].support_labels.ravel().tolist()
        (3, [0, 0, 1, 1])
    """
    dataset = FewShotMetaDataset(
        task_source,
        None,
        n_support_samples_per_class,
        n_query_samples_per_class,
        filter_classes_min_samples,
        length=n_episodes,
        output_indices=True,
        seed=seed,
        n_way=n_way,
        permute_labels=permute_labels,
    )
    return EpisodeSet.from_dataset(dataset)


class FixedEpisodeMetaDataset(MetaDataset):
    """A map-style dataset of the episodes of an [`EpisodeSet`][torchcross.data.metadataset.EpisodeSet], read
    from a task source.

    Checks the source's labels against the set's checksum on construction. Episodes load
    as in [`load_episode()`][torchcross.data.metadataset.load_episode].
    """

    def __init__(
        self,
        episode_set: EpisodeSet,
        task_source: Any,
        collate_fn: Callable | None = None,
        output_indices: bool = False,
    ) -> None:
        if not isinstance(episode_set, EpisodeSet):
            raise TypeError(f"episode_set must be an EpisodeSet, got {type(episode_set).__name__}")
        episode_set.verify(task_source)
        self.episode_set = episode_set
        self.task_source = task_source
        self.collate_fn = collate_fn
        self.output_indices = output_indices

    def __len__(self) -> int:
        return len(self.episode_set)

    def __getitem__(self, index: int) -> Task:
        record = self.episode_set.episodes[index]
        return load_episode(
            self.task_source,
            relabel_description(self.episode_set.description, record.classes),
            record.indices(),
            record.support_labels,
            record.query_labels,
            self.collate_fn,
            self.output_indices,
        )
