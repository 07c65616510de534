"""Fixed evaluation episodes: sample once, save as readable JSON, load and check against the data.

The paper's protocol evaluates every target task on the same 100 five-shot episodes (10 query examples per
class). [`sample_episode_set()`][torchcross.data.metadataset.sample_episode_set] draws them,
[`EpisodeSet.save()`][torchcross.data.metadataset.EpisodeSet.save] writes a JSON file (format version, task
description, sampling parameters, a SHA-256 checksum of the source's canonical labels, and one line per
episode with indices and relabelled labels), and
[`EpisodeSet.load()`][torchcross.data.metadataset.EpisodeSet.load] reads it back and, given the source,
refuses a file whose checksum no longer matches the data. Every episode is checked on load (indices within the
source, none repeated, support and query disjoint, labels in range) and, given the source, its stored labels
against the source's labels at its indices, so an edited or damaged file is refused, naming the episode. Only
regular files are read (a FIFO in its place is an error, never a hang). No pickle is involved.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from torchcross._checks import check_int, renamed_keywords
from torchcross._io import atomic_write, read_regular_file
from torchcross.data.metadataset.base import EpisodeMetaDataset, MetaDataset, load_episode
from torchcross.data.metadataset.fixed_shot import FewShotMetaDataset
from torchcross.data.sources import canonical_labels
from torchcross.sampling.defaults import (
    DEFAULT_FILTER_CLASSES_MIN_SAMPLES,
    DEFAULT_QUERY_PER_CLASS,
    DEFAULT_SHOTS,
)
from torchcross.sampling.episodes import EpisodeIndices, episode_labels, index_labels, relabel_description
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


def _entry(e: EpisodeRecord) -> dict[str, Any]:
    """An episode as its JSON object in the file."""
    return {
        "classes": list(e.classes),
        "support": e.support.tolist(),
        "support_labels": _labels_to_json(e.support_labels),
        "query": e.query.tolist(),
        "query_labels": _labels_to_json(e.query_labels),
    }


def _labels_problem(index: Any, record: EpisodeRecord) -> str | None:
    """What is wrong with ``record``'s classes or labels given the source's label index (``None``: fine)."""
    unknown = [c for c in record.classes if c not in index.keys]
    if unknown:
        return f"classes {unknown} are not class keys of the source ({list(index.keys)})"
    try:
        expected = episode_labels(index, EpisodeIndices(record.support, record.query, record.classes))
    except ValueError as exc:
        return str(exc)
    for name, want in zip(("support", "query"), expected):
        got = getattr(record, f"{name}_labels")
        want = want.reshape(got.shape)  # the same size: both have one row per index
        bad = np.flatnonzero((got != want).reshape(len(got), -1).any(axis=1))
        if bad.size:
            j = int(bad[0])
            return (
                f"its {name} labels do not match the source's labels at its indices: example "
                f"{int(getattr(record, name)[j])} (position {j}) is stored as {got[j].tolist()}, "
                f"the source says {want[j].tolist()}"
            )
    return None


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
        index = index_labels(labels, self.description.task_target)
        for i, record in enumerate(self.episodes):
            problem = _labels_problem(index, record)
            if problem is not None:
                raise ValueError(
                    f"{where}: episode {i}: {problem}; the file was edited or damaged: re-sample the episodes"
                )

    def first_difference(self, other: EpisodeSet) -> str | None:
        """Where ``other`` differs from this set as saved (``None``: the files would be the same).

        Examples:
            >>> import torch
            >>> from torchcross.data.sources import TensorTaskSource
            >>> d = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"}, "toy")
            >>> src = TensorTaskSource(torch.randn(40, 2), torch.arange(40) % 2, d)
            >>> a, b = (sample_episode_set(src, 3, 2, 2, seed=s) for s in (0, 0))
            >>> a.first_difference(b) is None, a.first_difference(sample_episode_set(src, 3, 2, 2, seed=1))
            (True, "its 'sampling' (the settings the episodes were drawn with)")
        """
        mine, theirs = self._header(), other._header()
        for key in mine:
            if mine[key] != theirs.get(key):
                what = {"sampling": " (the settings the episodes were drawn with)"}.get(key, "")
                return f"its {key!r}{what}"
        for i, (a, b) in enumerate(zip(self.episodes, other.episodes)):
            if _entry(a) != _entry(b):
                return f"episode {i}"
        return None

    def as_dataset(
        self, task_source: Any, collate_fn: Callable | None = None, output_indices: bool = False
    ) -> FixedEpisodeMetaDataset:
        """A map-style dataset of the stored episodes, reading inputs from ``task_source``."""
        return FixedEpisodeMetaDataset(self, task_source, collate_fn, output_indices)

    def _header(self) -> dict[str, Any]:
        """The file's header fields, as JSON values (a JSON round trip of the set gives the same)."""
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
        return json.loads(json.dumps(header))

    def to_json(self) -> str:
        """The file content: one header key per line, then one line per episode."""
        lines = ["{"] + [f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in self._header().items()]
        episodes = ["    " + json.dumps(_entry(e)) for e in self.episodes]
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
            ValueError: a malformed file (naming the episode: an index out of range or
                repeated, support and query sharing an example, a label out of range), a
                FIFO, device or directory in place of the file, or (given a source) labels
                that changed or episode labels that differ from the source's.
            OSError: the file cannot be read (e.g. ``FileNotFoundError``).
        """
        where = f"episode set file {os.fspath(path)!r}"
        raw = read_regular_file(path, "episode set file")
        try:
            data = json.loads(raw.decode("utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where} is not valid JSON: {exc}") from None
        except UnicodeDecodeError as exc:
            raise ValueError(f"{where} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
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
        episodes = data["episodes"]
        if not isinstance(episodes, list):
            raise TypeError(f"'episodes' must be a list, got {type(episodes).__name__}")
        records = tuple(_record(i, e, description, num_examples) for i, e in enumerate(episodes))
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{where} is malformed: missing or wrong field ({exc!r})") from None
    except ValueError as exc:
        raise ValueError(f"{where} is malformed: {exc}; re-sample the episodes") from None
    if data.get("n_episodes", len(records)) != len(records):
        raise ValueError(f"{where} says n_episodes={data['n_episodes']} but holds {len(records)} episodes")
    return EpisodeSet(description, records, data.get("sampling", {}), checksum, num_examples)


def _int_array(values: Any, what: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.size == 0:
        return np.zeros(arr.shape, dtype=np.int64)
    if arr.dtype.kind not in "iu":  # floats, booleans, strings, numbers beyond int64
        raise ValueError(f"{what} must be whole numbers, got {np.asarray(values).ravel()[:5].tolist()}")
    return arr.astype(np.int64)


def _record(
    number: int, entry: Mapping[str, Any], description: TaskDescription, num_examples: int
) -> EpisodeRecord:
    """One episode of a file, checked on its own (``number``: its position, for messages)."""
    where = f"episode {number}"
    classes = tuple(int(c) for c in entry["classes"])
    kind = description.task_target
    if len(set(classes)) != len(classes):
        raise ValueError(f"{where} lists a class twice: {list(classes)}")
    parts = {}
    for name in ("support", "query"):
        idx = _int_array(entry[name], f"{where}: {name} indices").reshape(-1)
        labels = _int_array(entry[f"{name}_labels"], f"{where}: {name} labels")
        if kind is TaskTarget.BINARY_CLASSIFICATION:
            labels = labels.reshape(-1, 1)
        if len(labels) != len(idx) or (idx.size and (idx.min() < 0 or idx.max() >= num_examples)):
            raise ValueError(
                f"{where}: {name} has {len(idx)} indices (0..{num_examples - 1}) and {len(labels)} labels"
            )
        values, counts = np.unique(idx, return_counts=True)
        if (counts > 1).any():
            raise ValueError(f"{where}: {name} lists example {int(values[counts > 1][0])} more than once")
        width = len(classes)
        if kind is TaskTarget.MULTILABEL_CLASSIFICATION:  # one 0/1 column per class
            ok, want, high = labels.size == 0 or labels.shape[1:] == (width,), f"{width} columns", 1
        else:
            ok, want, high = (
                labels.ndim == (2 if kind is TaskTarget.BINARY_CLASSIFICATION else 1),
                "one each",
                width - 1,
            )
        if not ok or (labels.size and (labels.min() < 0 or labels.max() > high)):
            raise ValueError(
                f"{where}: {name} labels must be {want} in 0..{high} (the episode has {width} classes), "
                f"got values {np.unique(labels).tolist()[:10]} with shape {labels.shape}"
            )
        parts[name], parts[f"{name}_labels"] = idx, labels
    shared = np.intersect1d(parts["support"], parts["query"])
    if shared.size:
        raise ValueError(f"{where}: support and query share examples {shared[:5].tolist()}")
    return EpisodeRecord(classes, **parts)


@renamed_keywords(n_support_samples_per_class="n_shot", n_query_samples_per_class="n_query")
def sample_episode_set(
    task_source: Any,
    n_episodes: int = 100,
    n_shot: int = DEFAULT_SHOTS,
    n_query: int = DEFAULT_QUERY_PER_CLASS,
    *,
    seed: int = 0,
    filter_classes_min_samples: int = DEFAULT_FILTER_CLASSES_MIN_SAMPLES,
    n_way: int | None = None,
    permute_labels: bool = True,
    multilabel_sampler: str = "cover",
) -> EpisodeSet:
    """Draw ``n_episodes`` fixed-shot episodes (the episodes ``0..n-1`` of the equivalent
    [`FewShotMetaDataset`][FewShotMetaDataset] with this ``seed``).

    ``n_way`` (multi-class and ordinal tasks) draws N-way episodes over ``n_way`` of the
    classes; each stored episode lists its class keys in episode order (``classes[i]`` is
    the class of label ``i``). Multi-class N-way episodes assign their labels in a random
    order per episode unless ``permute_labels=False`` (see
    `FewShotMetaDataset`); the order is
    stored, so a loaded set gives the same labels. ``multilabel_sampler`` picks the rule of
    multi-label episodes (``"cover"`` or the MedIMeta authors' ``"medimeta"``, see
    `FewShotMetaDataset`); a set drawn with ``"medimeta"`` records it in its ``sampling``.

    The former keywords ``n_support_samples_per_class`` and ``n_query_samples_per_class`` still work,
    with a ``DeprecationWarning``.

    Examples:
        >>> import torch
        >>> from torchcross.data.sources import TensorTaskSource
        >>> d = TaskDescription("BINARY_CLASSIFICATION", {0: "healthy", 1: "sick"}, "toy")
        >>> src = TensorTaskSource(torch.randn(40, 2), torch.arange(40) % 2, d)
        >>> episodes = sample_episode_set(src, n_episodes=3, n_shot=2, n_query=3)
        >>> len(episodes), episodes.episodes[0].support_labels.ravel().tolist()
        (3, [0, 0, 1, 1])
    """
    dataset = FewShotMetaDataset(
        task_source,
        n_shot=n_shot,
        n_query=n_query,
        filter_classes_min_samples=filter_classes_min_samples,
        length=n_episodes,
        output_indices=True,
        seed=seed,
        n_way=n_way,
        permute_labels=permute_labels,
        multilabel_sampler=multilabel_sampler,
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
