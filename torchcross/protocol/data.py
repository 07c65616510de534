"""The data side of the protocol: the catalogue on disk, target resolution and task sources.

A folder of MedIMeta-format datasets (downloaded MedIMeta, the demo's digits, or a
user's own) is read into a [`Catalogue`][Catalogue] from the
``info.yaml`` files, including their declared domain and subject overlaps. Targets are
dataset ids (the dataset's primary task, or every task of it) or task ids ``"dataset/task name"``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from torchcross.data.capabilities import BatchReadable
from torchcross.data.sources import TaskSource
from torchcross.tasks.catalogue import Catalogue, leave_one_out_sources

__all__ = [
    "NORMALIZATIONS",
    "PreprocessedTaskSource",
    "ResizedTaskSource",
    "TargetPlan",
    "draw_episodes",
    "load_catalogue",
    "open_task",
    "plan_targets",
]


def draw_episodes(
    config: Any, source: Any, n_episodes: int, seed: int, log: Callable[[str], None], what: str
) -> Any:
    """``n_episodes`` episodes of ``source`` shaped as the protocol's test episodes, drawn from ``seed``.

    The shape is ``config``'s: ``[evaluation] n_shot``, ``n_query``, ``multilabel_sampler`` and ``n_way``
    (multi-class and ordinal tasks; the others keep all their labels), and
    ``[data] min_class_size``; the sampler's warnings (classes left out, ...) become ``log`` lines that
    start with ``what``. The test episodes of a run and the episodes that choose its fine-tuning
    settings (`torchcross.protocol.selection`) are drawn here, so they cannot differ in shape.
    """
    from torchcross.data.metadataset import sample_episode_set
    from torchcross.sampling.episodes import get_episode_kind

    ev = config.evaluation
    # [evaluation] n_way applies to the tasks whose episodes can leave classes out (multi-class, ordinal)
    n_way = getattr(ev, "n_way", None)
    if n_way is not None and not get_episode_kind(source.task_description.task_target).n_way:
        n_way = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            episodes = sample_episode_set(
                source,
                n_episodes,
                ev.n_shot,
                ev.n_query,
                seed=seed,
                filter_classes_min_samples=config.data.min_class_size,
                multilabel_sampler=ev.multilabel_sampler,
                n_way=n_way,
            )
        except ValueError as exc:  # name the config keys behind the sampler's arguments
            raise ValueError(
                f"{what}: {exc} (in the config: filter_classes_min_samples is [data] min_class_size = "
                f"{config.data.min_class_size}, n_way is [evaluation] n_way, shots and query sizes are "
                "[evaluation] n_shot / shots and n_query)"
            ) from None
    for w in caught:
        log(f"{what}: {w.message}")
    return episodes


NORMALIZATIONS: dict[str, tuple[Any, Any]] = {
    "none": (None, None),
    "half": (0.5, 0.5),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
"""Input normalisations after scaling to ``[0, 1]``: none, to ``[-1, 1]``, or ImageNet statistics."""


@dataclass(frozen=True)
class TargetPlan:
    """One target dataset: the tasks evaluated on it and the source tasks trained for it.

    Attributes:
        dataset_id: the target dataset.
        tasks: names of the target tasks evaluated.
        sources: ``(dataset id, task name)`` of the source tasks (leave-one-out or given).
        excluded: ids of datasets left out because they overlap the target.
        reasons: why each of ``excluded`` is left out (``"domain"``, ``"subject"``, ``"upstream
            'name'"``, ``"declared in [data] overlaps"``, ...), in the same order (empty: not given).
    """

    dataset_id: str
    tasks: tuple[str, ...]
    sources: tuple[tuple[str, str], ...]
    excluded: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()


def load_catalogue(
    root: str | os.PathLike[str], format: str = "medimeta", **options: Any
) -> tuple[Catalogue, dict[str, str]]:
    """The catalogue of the datasets under ``root`` and the problems of unreadable folders.

    Args:
        root: the folder ``format`` scans.
        format: a registered format (see `torchcross.datasets.formats.FORMATS`).
        **options: the format's own options (passed to its ``scan``).

    Raises:
        FileNotFoundError: if ``root`` is not a directory.
        ValueError: an unknown format, or no readable dataset there (listing the problems found).
    """
    from torchcross.datasets.formats import get_format

    fmt = get_format(format)
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"data root {str(root)!r} is not a directory; point [data] root at the folder that holds "
            f"the datasets of format {fmt.name!r} ({fmt.description or 'see docs/protocol.md'})"
        )
    entries, problems = fmt.scan(root, **options)
    if not entries:
        none = " (no folder with an info.yaml)" if fmt.name == "medimeta" else f" (no {fmt.name} dataset)"
        detail = "".join(f"\n  {k}: {v}" for k, v in problems.items()) or none
        raise ValueError(f"no readable dataset under {str(root)!r}{detail}")
    return Catalogue(entries), dict(problems)


def _task_names(catalogue: Catalogue, dataset_id: str) -> list[str]:
    return [t.task_name for t in catalogue.tasks(dataset_id)]


def plan_targets(
    catalogue: Catalogue,
    targets: Sequence[str],
    sources: Sequence[str] | None = None,
    source_tasks: str = "all",
    target_tasks: str = "all",
) -> list[TargetPlan]:
    """Resolve targets and pick each target dataset's source tasks.

    Args:
        catalogue: the datasets available.
        targets: dataset ids or ``"dataset/task name"`` ids; tasks of one dataset are grouped.
            A dataset id stands for the tasks ``target_tasks`` names.
        sources: ``None`` for leave-one-out selection (no domain or subject overlap with
            the target dataset), else explicit ``"dataset/task name"`` (or dataset) ids.
        source_tasks: with leave-one-out selection, ``"all"`` tasks of each source
            dataset or only its ``"first"``.
        target_tasks: what a dataset id among ``targets`` stands for: ``"all"`` its tasks or
            only its ``"primary"`` task (its first, task 0 of its ``info.yaml``: what the
            paper's Tables 3 and 4 report). A ``"dataset/task name"`` target is always that task.

    Raises:
        ValueError: an unknown dataset or task (listing what exists), a target without
            any source task, an explicit source from the target's own dataset, or an
            unknown ``target_tasks``.
    """
    if target_tasks not in ("primary", "all"):
        raise ValueError(f"target_tasks must be 'primary' or 'all', got {target_tasks!r}")
    grouped: dict[str, list[str]] = {}
    for target in targets:
        ds, _, task = target.partition("/")
        if ds not in catalogue:
            raise ValueError(
                f"unknown target dataset {ds!r}; datasets under the data root: {list(catalogue.ids)}"
            )
        names = _task_names(catalogue, ds)
        if task and task not in names:
            raise ValueError(f"dataset {ds!r} has no task {task!r}; its tasks are {names}")
        chosen = grouped.setdefault(ds, [])
        wanted = [task] if task else names[:1] if target_tasks == "primary" else names
        for name in wanted:
            if name not in chosen:
                chosen.append(name)
    explicit: list[tuple[str, str]] | None = None
    if sources is not None:
        explicit = []
        for s in sources:
            ds, _, task = s.partition("/")
            if ds not in catalogue:
                raise ValueError(
                    f"unknown source dataset {ds!r}; datasets under the data root: {list(catalogue.ids)}"
                )
            names = _task_names(catalogue, ds)
            if task and task not in names:
                raise ValueError(f"source dataset {ds!r} has no task {task!r}; its tasks are {names}")
            explicit += [(ds, n) for n in ([task] if task else names) if (ds, n) not in explicit]
    plans = []
    for ds, tasks in grouped.items():
        if explicit is None:
            chosen_sources = tuple((t.dataset_id, t.task_name) for t in leave_one_out_sources(catalogue, ds))
            if source_tasks == "first":
                firsts: dict[str, tuple[str, str]] = {}
                for pair in chosen_sources:
                    firsts.setdefault(pair[0], pair)
                chosen_sources = tuple(firsts.values())
        else:
            own = [s for s in explicit if s[0] == ds]
            if own:
                raise ValueError(f"source tasks {own} belong to the target dataset {ds!r}; leave them out")
            chosen_sources = tuple(explicit)
        used = {s[0] for s in chosen_sources}
        excluded = tuple(d for d in catalogue.ids if d != ds and d not in used)
        reasons = tuple(_exclusion_reason(catalogue, ds, d, explicit is not None) for d in excluded)
        if not chosen_sources:
            raise ValueError(
                f"target {ds!r} has no source task: every other dataset ({list(excluded)}) overlaps it in "
                "domain or subjects; add datasets from other domains or give [data] sources explicitly"
            )
        plans.append(TargetPlan(ds, tuple(tasks), chosen_sources, excluded, reasons))
    return plans


def _exclusion_reason(catalogue: Catalogue, target: str, other: str, explicit: bool) -> str:
    """Why ``other`` gives no source task to ``target``: the overlap that leaves it out."""
    if explicit:
        return "not in [data] sources"
    noted = catalogue.dataset(target).info.get("overlap_reasons", {}).get(other)
    if noted:  # upstream or declared in [data] overlaps (recorded when the collections were read)
        return str(noted)
    if catalogue.overlaps(target, other, ("subject",)):
        return "subject"
    if catalogue.overlaps(target, other, ("domain",)):
        return "domain"
    domain = catalogue.dataset(target).domain
    if catalogue.dataset(other).domain.strip().casefold() == domain.strip().casefold():
        return f"domain ({domain})"
    return "no task of the kinds used"


class ResizedTaskSource(TaskSource):
    """A task source whose images are resized to ``size x size`` (bilinear, antialiased) in batches.

    Args:
        source: the wrapped source (its ``get_batch`` is used when present).
        size: output height and width; ``None`` passes images through unchanged.

    Examples:
        >>> from torchcross.tasks.task import TaskDescription
        >>> from torchcross.data.sources import TensorTaskSource
        >>> d = TaskDescription("BINARY_CLASSIFICATION", {0: "n", 1: "y"})
        >>> src = ResizedTaskSource(TensorTaskSource(torch.rand(4, 1, 8, 8), [0, 1, 0, 1], d), 16)
        >>> src.get_batch([0, 1])[0].shape, src[2][0].shape
        (torch.Size([2, 1, 16, 16]), torch.Size([1, 16, 16]))
    """

    def __init__(self, source: Any, size: int | None) -> None:
        self.source = source
        self.size = size
        self.task_description = source.task_description
        self.labels = source.labels

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        if self.size is None or tuple(x.shape[-2:]) == (self.size, self.size):
            return x
        dtype = x.dtype
        out = F.interpolate(x.float(), size=(self.size, self.size), mode="bilinear", antialias=True)
        return out.round().clamp(0, 255).to(dtype) if dtype == torch.uint8 else out.to(dtype)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.source[index]
        return self._resize(x.unsqueeze(0))[0], y

    def get_batch(self, indices: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Read ``indices`` in one batch and resize them together."""
        if isinstance(self.source, BatchReadable):
            x, y = self.source.get_batch(indices)
        else:
            items = [self.source[int(i)] for i in np.asarray(indices)]
            x, y = torch.stack([it[0] for it in items]), torch.stack([torch.as_tensor(it[1]) for it in items])
        return self._resize(x), y


class PreprocessedTaskSource(ResizedTaskSource):
    """A task source whose images go through a backbone's own preprocessing, in batches.

    Args:
        source: the wrapped source, images in ``[0, 1]`` (or ``uint8``).
        preprocessing: a [`Preprocessing`][torchcross.backbones.preprocessing.Preprocessing]
            (resize, centre crop, channels, mean and std).

    Examples:
        >>> from torchcross.backbones import Preprocessing
        >>> from torchcross.tasks.task import TaskDescription
        >>> from torchcross.data.sources import TensorTaskSource
        >>> d = TaskDescription("BINARY_CLASSIFICATION", {0: "n", 1: "y"})
        >>> p = Preprocessing((4, 4), (0.5,) * 3, (0.5,) * 3)
        >>> src = PreprocessedTaskSource(TensorTaskSource(torch.rand(4, 1, 8, 8), [0, 1, 0, 1], d), p)
        >>> src.get_batch([0, 1])[0].shape, src[2][0].shape
        (torch.Size([2, 3, 4, 4]), torch.Size([3, 4, 4]))
    """

    def __init__(self, source: Any, preprocessing: Any) -> None:
        super().__init__(source, None)
        self.preprocessing = preprocessing

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        return self.preprocessing.apply(x)


def open_task(
    root: str | os.PathLike[str],
    dataset_id: str,
    task_name: str,
    split: str,
    *,
    channels: int,
    image_size: int | None,
    normalize: str = "none",
    preprocessing: Any = None,
    format: str = "medimeta",
    options: Mapping[str, Any] | None = None,
    image_cache: str | os.PathLike[str] | None = None,
) -> ResizedTaskSource:
    """Open one task of a dataset of ``format`` (MedIMeta by default) as a resized task source.

    ``split`` is ``"train"``, ``"val"``, ``"test"`` or ``"all"`` (the whole dataset).
    One-channel images under ``"imagenet"`` normalisation use the mean of the three
    channels' statistics. With ``preprocessing`` (a backbone's
    [`Preprocessing`][torchcross.backbones.preprocessing.Preprocessing]) the images are read in
    ``[0, 1]`` and go through it instead (a [`PreprocessedTaskSource`][PreprocessedTaskSource]):
    ``image_size`` and ``normalize`` are not used.

    ``format``'s ``open`` reads the images (with ``options``, the format's own): a format of
    varying-size images decodes them at ``image_size`` (with ``preprocessing``: at the size its resize
    step makes), fixed-size ones are resized in batches.

    With ``image_cache`` (a folder), a source that decodes image files (it has ``cached``) is read
    through a decoded-image cache file there (`torchcross.datasets.image_cache`), built on first use.

    Raises:
        ValueError: an unknown format, normalisation, dataset, task or split (the reader names it), or
            a cache file built from other images or settings.
    """
    from torchcross.datasets.formats import get_format

    reader = get_format(format)
    part = None if split == "all" else split
    if preprocessing is not None:
        decode = round(max(preprocessing.input_size) / getattr(preprocessing, "crop_pct", 1.0))
        images = reader.open(
            root, dataset_id, task_name, part, channels=channels, image_size=decode, **(options or {})
        )
        images = _cached(images, image_cache, format, dataset_id, task_name, split, channels, decode)
        return PreprocessedTaskSource(images, preprocessing)
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"unknown normalisation {normalize!r}; known: {', '.join(NORMALIZATIONS)}")
    mean, std = NORMALIZATIONS[normalize]
    if channels == 1 and isinstance(mean, tuple):  # grey inputs: the mean of the channel statistics
        mean, std = sum(mean) / len(mean), sum(std) / len(std)
    source = reader.open(
        root,
        dataset_id,
        task_name,
        part,
        channels=channels,
        mean=mean,
        std=std,
        image_size=image_size,
        **(options or {}),
    )
    source = _cached(source, image_cache, format, dataset_id, task_name, split, channels, image_size)
    return ResizedTaskSource(source, image_size)


def _cached(
    source: Any,
    folder: str | os.PathLike[str] | None,
    format: str,
    dataset_id: str,
    task_name: str,
    split: str,
    channels: int,
    size: int | None,
) -> Any:
    """``source`` read through a decoded-image cache file in ``folder`` (if it decodes image files)."""
    if folder is None or not hasattr(source, "cached"):
        return source
    from torchcross._io import safe_file_name

    safe = safe_file_name(f"{dataset_id}-{task_name}")
    path = Path(folder) / format / f"{safe}-{split}-{channels}ch-{size or 'native'}px.tcimg"
    path.parent.mkdir(parents=True, exist_ok=True)
    return source.cached(path)
