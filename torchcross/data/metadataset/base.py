"""Bases of the episode datasets: a map-style [`MetaDataset`][torchcross.data.metadataset.MetaDataset] and
seeded episode datasets.

`MetaDataset` (defined in `torchcross.data.metadataset.meta`) is
what torchcross 0.0.6 called it: a map-style dataset of [`Task`][Task]; the medimeta
package subclasses it.

[`EpisodeMetaDataset`][torchcross.data.metadataset.EpisodeMetaDataset] is the base of the sampled episode
datasets. Episode ``i`` is
a pure function of ``(seed, epoch, i)``: ``dataset[i]`` draws it from a counter-based
Philox generator keyed by ``(seed, epoch)`` with counter ``i`` (`episode_generator()`).
The class is also an `IterableDataset`: iterating yields episodes ``0..length-1``
(forever with ``length=None``), split across DataLoader workers and
``torch.distributed`` ranks with `shard_position()`, so
no episode is produced twice. Shards are strided, so a ``DataLoader(batch_size=None)``
yields the same episodes in the same order with 0, 1 or 4 workers.
"""

from __future__ import annotations

import abc
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import numpy as np
import torch

from torchcross._checks import check_int
from torchcross.data.capabilities import BatchReadable
from torchcross.data.metadataset.meta import (
    IterableMetaDataset,
    MetaChainDataset,
    MetaConcatDataset,
    MetaDataset,
)
from torchcross.data.sources import canonical_labels
from torchcross.data.workers.position import StreamPosition
from torchcross.data.workers.sharding import ResumableStream, Shardable, ShardPosition, remember_ranks
from torchcross.data.workers.shm_pool import shared_lease, worker_empty
from torchcross.distributed.seeds import shared_seed
from torchcross.sampling.episodes import (
    EpisodeIndices,
    LabelIndex,
    episode_labels,
    get_episode_kind,
    index_labels,
    relabel_description,
)
from torchcross.tasks.task import Task, TaskDescription, TaskTarget

__all__ = [
    "EpisodeMetaDataset",
    "IterableMetaDataset",
    "MetaChainDataset",
    "MetaConcatDataset",
    "MetaDataset",
    "episode_generator",
    "episode_key",
    "load_episode",
    "share_equal_labels",
    "usable_classes",
]


class _NoLength(TypeError, ValueError):
    """``len()`` of an endless episode dataset (a ValueError in torchcross 0.0.6)."""


def _gather_inputs(source: Any, indices: np.ndarray) -> Any:
    if isinstance(source, BatchReadable):
        return source.get_batch(indices)[0]
    items = [source[int(i)][0] for i in indices]
    if items and isinstance(items[0], torch.Tensor):
        return torch.stack(items)
    return torch.utils.data.default_collate(items)


def _episode_labels(support_labels: Any, query_labels: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Support and query labels as views of ONE tensor (like the inputs, which are one batch).

    Out of a DataLoader worker, each storage costs its own shared-memory hand-off; views of
    one storage share one. In a worker the labels live in a pooled shared-memory block
    (`torchcross.data.workers.shm_pool`), like the images a MedIMeta reader returns.
    """
    sup, qry = np.asarray(support_labels), np.asarray(query_labels)
    if sup.dtype != qry.dtype or sup.shape[1:] != qry.shape[1:]:
        return torch.from_numpy(np.array(sup)), torch.from_numpy(np.array(qry))
    both = np.concatenate([sup, qry])
    out = worker_empty(both.shape, torch.from_numpy(both[:0]).dtype)
    out.numpy()[...] = both
    return out[: len(sup)], out[len(sup) :]


def load_episode(
    source: Any,
    description: TaskDescription,
    episode: EpisodeIndices,
    support_labels: np.ndarray,
    query_labels: np.ndarray,
    collate_fn: Callable[[list[tuple[Any, torch.Tensor]]], Any] | None = None,
    output_indices: bool = False,
) -> Task:
    """Build the [`Task`][Task] of one episode from its indices and (relabelled) labels.

    * ``output_indices=True``: support and query are lists of ``(index, label)`` pairs
      (passed through ``collate_fn`` when given), as in torchcross 0.0.6;
    * no ``collate_fn``: ``(inputs, labels)`` tensors; inputs come from one
      ``source.get_batch`` call when the source has it, else ``source[i]`` stacked;
    * a ``collate_fn``: it receives the list of ``(input, label)`` pairs.

    Without a ``collate_fn``, support and query inputs are views of one tensor, and so are
    their labels; in a DataLoader worker both usually share one pooled shared-memory block,
    which the worker reuses once the receiving process has dropped the episode.

    Labels are the episode's (``0..k-1``), never the source's raw labels. Exceptions
    raised while reading the source (e.g. in a user transform) propagate.

    Examples:
        >>> import numpy as np, torch
        >>> from torchcross.data.sources import TensorTaskSource
        >>> from torchcross.sampling.episodes import EpisodeIndices
        >>> d = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b"})
        >>> src = TensorTaskSource(torch.arange(4.0)[:, None], [0, 1, 0, 1], d)
        >>> ep = EpisodeIndices(np.array([0, 1]), np.array([2, 3]), (0, 1))
        >>> task = load_episode(src, d, ep, np.array([0, 1]), np.array([0, 1]))
        >>> task.support[0].flatten().tolist(), task.query[1].tolist()
        ([0.0, 1.0], [0, 1])
    """
    if output_indices:
        # one small tensor per distinct label, shared by its pairs (as in 0.0.6): a pickled
        # episode stores each distinct label once
        labels = share_equal_labels(np.concatenate([support_labels, query_labels]))
        n_sup = len(episode.support)
        sup = list(zip(episode.support.tolist(), labels[:n_sup]))
        qry = list(zip(episode.query.tolist(), labels[n_sup:]))
        if collate_fn is not None:
            sup, qry = collate_fn(sup), collate_fn(qry)
        return Task(sup, qry, description)
    n_sup = len(episode.support)
    with shared_lease():  # in a worker: images and labels in one shared-memory block
        inputs = _gather_inputs(source, np.concatenate([episode.support, episode.query]))
        sup_y, qry_y = _episode_labels(support_labels, query_labels)
    if collate_fn is None:
        return Task((inputs[:n_sup], sup_y), (inputs[n_sup:], qry_y), description)
    sup = collate_fn([(inputs[j], sup_y[j]) for j in range(n_sup)])
    qry = collate_fn([(inputs[n_sup + j], qry_y[j]) for j in range(len(episode.query))])
    return Task(sup, qry, description)


def share_equal_labels(labels: np.ndarray) -> list[torch.Tensor]:
    """One tensor per row of ``labels``; equal rows share one tensor object of their own.

    Examples:
        >>> out = share_equal_labels(np.array([1, 0, 1]))
        >>> [int(t) for t in out], out[0] is out[2], out[0].untyped_storage().nbytes()
        ([1, 0, 1], True, 8)
    """
    shared: dict[bytes, torch.Tensor] = {}
    out = []
    for row in np.asarray(labels):
        key = np.ascontiguousarray(row).tobytes()
        if key not in shared:
            shared[key] = torch.from_numpy(np.array(row))
        out.append(shared[key])
    return out


_THREAD = threading.local()
_WORD = (1 << 64) - 1


def episode_key(seed: int, epoch: int = 0) -> np.ndarray:
    """The 128-bit Philox key of ``(seed, epoch)``.

    That is ``numpy.random.SeedSequence([seed, epoch]).generate_state(2, numpy.uint64)``.
    """
    return np.random.SeedSequence([seed, epoch]).generate_state(2, np.uint64)


def episode_generator(key: np.ndarray, index: int, reuse: bool = False) -> np.random.Generator:
    """The generator of episode ``index``: Philox with ``key`` and counter ``[0, index, 0, 0]``.

    Counter-based, so episode streams never overlap (each may draw ``2**66`` numbers).
    ``reuse=True`` resets this thread's bit generator instead of building one (8x
    cheaper); the returned generator is then only valid until the next such call.

    Examples:
        >>> key = episode_key(seed=0)
        >>> a = episode_generator(key, 3).random()
        >>> a == episode_generator(key, 3, reuse=True).random() != episode_generator(key, 4).random()
        True
    """
    if not reuse:
        counter = np.array([0, index & _WORD, (index >> 64) & _WORD, 0], dtype=np.uint64)
        return np.random.Generator(np.random.Philox(key=key, counter=counter))
    cached = getattr(_THREAD, "philox", None)
    if cached is None:
        counter = np.zeros(4, dtype=np.uint64)
        state: dict[str, Any] = {
            "bit_generator": "Philox",
            "state": {"counter": counter, "key": key},
            "buffer": np.zeros(4, dtype=np.uint64),
            "buffer_pos": 4,
            "has_uint32": 0,
            "uinteger": 0,
        }
        cached = _THREAD.philox = (np.random.Philox(key=key), state, counter)
    bitgen, state, counter = cached
    counter[1], counter[2] = index & _WORD, (index >> 64) & _WORD
    state["state"]["key"] = key
    bitgen.state = state  # copied into the bit generator
    return np.random.Generator(bitgen)


def _user_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside this package."""
    package = os.path.dirname(os.path.abspath(__file__))
    frame: FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def _names(description: TaskDescription, counts: dict[int, str]) -> str:
    return ", ".join(f"{description.classes[k]!r} (key {k}: {v})" for k, v in counts.items())


def usable_classes(
    owner: str,
    index: LabelIndex,
    description: TaskDescription,
    min_samples: int,
    required: int,
    required_why: str,
    min_classes: int = 2,
    min_classes_param: str = "",
) -> tuple[int, ...]:
    """Class keys (multi-label: columns) with ``>= max(min_samples, required)`` examples.

    Counts examples per class; for kinds whose classes need positives and negatives
    (binary, multi-label; see [`EpisodeKind`][torchcross.sampling.episodes.EpisodeKind]), the
    smaller of the two. Warns about the classes it drops, naming what dropped them: the
    user's filter (``filter_classes_min_samples``) or what one episode needs.

    Args:
        owner: who asks (named in the messages).
        index: the task's label index.
        description: the task (identifier and class names for the messages).
        min_samples: the user's ``filter_classes_min_samples``.
        required: what one episode needs of a class; ``required_why`` says why.
        min_classes: the fewest usable classes an episode can use;
            ``min_classes_param`` names the parameter that asks for it (e.g. ``"n_way"``).

    Raises:
        ValueError: fewer than ``min_classes`` usable classes (binary: too few positives or
            negatives); the message names the filter or the episode size that removed them.

    Examples:
        >>> from torchcross.sampling.episode_index import index_labels
        >>> d = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b", 2: "c"})
        >>> index = index_labels([0, 0, 1, 1, 2], d)
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     usable_classes("demo", index, d, 2, 1, "")
        (0, 1)
        >>> "filter_classes_min_samples=2 removed 1 of 3 classes" in str(caught[0].message)
        True
    """
    tid = description.task_identifier
    pos, neg = index.counts(), index.counts(negatives=True)
    kind = get_episode_kind(description.task_target)
    filter_name = f"filter_classes_min_samples={min_samples}"
    filter_fix = "lower filter_classes_min_samples (the default, 0, filters nothing)"
    if kind.fixed_classes is not None:  # binary: the positives and negatives of its one label
        smaller = min(pos[1], neg[1])
        if smaller < max(min_samples, required):
            by_filter = smaller >= required
            why = f"{filter_name} asks for >= {min_samples}" if by_filter else f"{required_why} of each"
            raise ValueError(
                f"{owner}: binary task {tid!r} has {pos[1]} positives and {neg[1]} negatives; {why}; "
                + (filter_fix if by_filter else "lower the shots or queries")
            )
        return kind.fixed_classes
    count = {k: min(pos[k], neg[k]) if kind.two_sided else pos[k] for k in index.keys}
    shown = {
        k: f"{pos[k]} positives, {neg[k]} negatives" if kind.two_sided else f"{pos[k]} examples"
        for k in index.keys
    }
    too_small = {k: shown[k] for k in index.keys if count[k] < required}
    filtered = {k: shown[k] for k in index.keys if required <= count[k] < min_samples}
    usable = tuple(k for k in index.keys if k not in too_small and k not in filtered)
    what = "labels" if kind.two_sided else "classes"
    reasons, fixes = [], []
    if filtered:
        reasons.append(
            f"{filter_name} removed {len(filtered)} of {len(index.keys)} {what} with fewer than "
            f"{min_samples} examples: {_names(description, filtered)}"
        )
        fixes.append(filter_fix)
    if too_small:
        reasons.append(
            f"{len(too_small)} of {len(index.keys)} {what} have fewer than {required} examples "
            f"({required_why}): {_names(description, too_small)}"
        )
        fixes.append("lower the shots or queries")
    if len(usable) < min_classes:
        needs = f"needs >= {min_classes}"
        if min_classes_param:
            needs = f"{min_classes_param}={min_classes} {needs}"
            fixes.append(f"lower {min_classes_param}")
        if not reasons:
            reasons.append(f"the task has {len(index.keys)} {what}")
        if not fixes:
            fixes.append(f"use a task with more {what}")
        raise ValueError(
            f"{owner}: task {tid!r} has {len(usable)} usable {what} ({needs}): "
            + "; ".join(reasons)
            + "; "
            + " or ".join(fixes)
        )
    if reasons:
        warnings.warn(
            f"{owner}: task {tid!r}: " + "; ".join(reasons), UserWarning, stacklevel=_user_stacklevel()
        )
    return usable


class EpisodeMetaDataset(Shardable, ResumableStream, MetaDataset, IterableMetaDataset):
    """Base of seeded episode datasets over one task source (see the module doc).

    Subclasses implement [`sample_indices()`][torchcross.data.metadataset.EpisodeMetaDataset.sample_indices];
    everything else (labels, relabelling,
    loading, iteration, sharding and resuming) is here. ``a + b`` chains two episode datasets
    (a [`MetaChainDataset`][torchcross.data.metadataset.MetaChainDataset]), as in torchcross 0.0.6.

    Examples:
        A loop stopped after two episodes resumes from
        [`state_dict()`][ResumableStream.state_dict]:

        >>> import torch
        >>> from torchcross.data.sources import TensorTaskSource
        >>> from torchcross.data import FewShotMetaDataset
        >>> d = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"})
        >>> src = TensorTaskSource(torch.arange(8.0)[:, None], torch.arange(8) % 2, d)
        >>> episodes = FewShotMetaDataset(src, n_shot=1, n_query=1, length=6, seed=0)
        >>> it = iter(episodes)
        >>> _ = next(it), next(it)
        >>> state = episodes.state_dict()
        >>> state["position"]
        2
        >>> resumed = FewShotMetaDataset(src, n_shot=1, n_query=1, length=6, seed=0)
        >>> resumed.load_state_dict(state)
        >>> rest = [t.support[0].flatten().tolist() for t in it]
        >>> [t.support[0].flatten().tolist() for t in resumed] == rest
        True
    """

    __add__ = IterableMetaDataset.__add__  # type: ignore[assignment]

    _STATE_MISMATCH = "state dict comes from episodes with other sampling parameters"
    _ITEMS = "episodes"

    def __init__(
        self,
        task_source: Any,
        collate_fn: Callable | None = None,
        length: int | None = None,
        output_indices: bool = False,
        seed: int | None = None,
    ) -> None:
        description = getattr(task_source, "task_description", None)
        if not isinstance(description, TaskDescription):
            raise TypeError(
                "task_source must be a TaskSource (with task_description and labels), got "
                f"{type(task_source).__name__}"
            )
        if collate_fn is not None and not callable(collate_fn):
            raise TypeError(f"collate_fn must be callable or None, got {collate_fn!r}")
        if not isinstance(output_indices, bool):
            raise TypeError(f"output_indices must be a bool, got {output_indices!r}")
        self.task_source = task_source
        self.task_description = description
        self.collate_fn = collate_fn
        self.length = check_int(length, "length", 1, allow_none=True)
        self.output_indices = output_indices
        self.seed = shared_seed(seed)  # None: rank 0 draws one and broadcasts it
        self.position = StreamPosition()  # the epoch and where iteration stands (main process)
        self.label_index = index_labels(canonical_labels(task_source), description)

    @property
    def task_target(self) -> TaskTarget:
        """The kind of the source task (and of every episode)."""
        return self.task_description.task_target

    @abc.abstractmethod
    def sample_indices(self, index: int) -> EpisodeIndices:
        """The indices of episode ``index`` (a pure function of ``(seed, epoch, index)``)."""

    def sampling_parameters(self) -> dict[str, Any]:
        """The parameters that determine the episodes (recorded in episode set files)."""
        return {"rule": type(self).__name__, "seed": self.seed, "epoch": self.epoch, "length": self.length}

    def __getstate__(self) -> dict[str, Any]:
        return remember_ranks(self.__dict__.copy())

    def set_epoch(self, epoch: int) -> None:
        """Draw a different (but again reproducible) set of episodes, e.g. once per training epoch.

        A new epoch is iterated from its first episode; setting the current epoch again keeps a position
        restored by [`load_state_dict()`][ResumableStream.load_state_dict].
        Call it in the main process; DataLoader workers follow it through
        [`StreamLoader`][torchcross.data.stream.StreamLoader] (or workers started after the call).
        """
        super().set_epoch(epoch)

    def _state_config(self) -> dict[str, Any]:
        return {k: v for k, v in self.sampling_parameters().items() if k != "epoch"}

    def _num_positions(self) -> int | None:
        return self.length

    def generator(self, index: int) -> np.random.Generator:
        """The generator of episode ``index`` (see `episode_generator()`)."""
        return episode_generator(self._episode_key(), index)

    def _episode_rng(self, index: int) -> np.random.Generator:
        # the same stream as generator(index), on this thread's reused bit generator
        return episode_generator(self._episode_key(), index, reuse=True)

    def _episode_key(self) -> np.ndarray:
        epoch = self.drawn_epoch()
        cached = self.__dict__.get("_key")
        if cached is None or cached[0] != (self.seed, epoch):
            cached = ((self.seed, epoch), episode_key(self.seed, epoch))
            self.__dict__["_key"] = cached
        return cached[1]

    def _check_index(self, index: Any) -> int:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"episode index must be an int, got {type(index).__name__}: {index!r}")
        index = int(index)
        if self.length is None:
            if index < 0:
                raise IndexError(f"episode index {index} must be >= 0 for an endless episode dataset")
            return index
        if not -self.length <= index < self.length:
            raise IndexError(f"episode index {index} out of range for {self.length} episodes")
        return index % self.length

    def episode_description(self, episode: EpisodeIndices) -> TaskDescription:
        """The description of an episode: the source's, with ``classes`` relabelled to ``0..k-1``."""
        cache = self.__dict__.setdefault("_descriptions", {})
        description = cache.get(episode.classes)
        if description is None:
            if len(cache) > 4096:
                cache.clear()
            description = cache[episode.classes] = relabel_description(self.task_description, episode.classes)
        return description

    def _item(self, index: int) -> Task:
        return self[index]

    def __getitem__(self, index: int) -> Task:
        """Episode ``index`` of the current epoch (`item()` draws one of any epoch)."""
        episode = self.sample_indices(self._check_index(index))
        support_labels, query_labels = episode_labels(self.label_index, episode)
        return load_episode(
            self.task_source,
            self.episode_description(episode),
            episode,
            support_labels,
            query_labels,
            self.collate_fn,
            self.output_indices,
        )

    def __len__(self) -> int:
        if self.length is None:
            raise _NoLength(
                f"{type(self).__name__} with length=None is endless; pass length=... for a length"
            )
        return self.length

    def iter_shard(self, position: ShardPosition) -> Iterator[Task]:
        """Yield the episodes of shard ``position``: ``position.index``, then every ``position.count``-th.

        Iterating the dataset yields the shard of this process and DataLoader worker
        (`shard_position()`); wrappers told their rank
        explicitly pass their own position.

        Examples:
            >>> import torch
            >>> from torchcross.data.sources import TensorTaskSource
            >>> from torchcross.data.workers.sharding import ShardPosition
            >>> from torchcross.data import FewShotMetaDataset
            >>> d = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"})
            >>> src = TensorTaskSource(torch.zeros(8, 1), torch.arange(8) % 2, d)
            >>> episodes = FewShotMetaDataset(src, n_shot=1, n_query=1, length=5, seed=0)
            >>> len(list(episodes.iter_shard(ShardPosition(1, 2))))  # episodes 1 and 3
            2
        """
        return super().iter_shard(position)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.sampling_parameters().items() if k != "rule")
        return f"{type(self).__name__}(task={self.task_description.task_identifier!r}, {params})"
