"""Episode datasets: few-shot tasks sampled from task sources, and fixed episode sets.

* [`MetaDataset`][torchcross.data.metadataset.MetaDataset]: a map-style dataset of tasks (the 0.0.6 base the
  medimeta package
  subclasses), [`IterableMetaDataset`][torchcross.data.metadataset.IterableMetaDataset], their sums
  [`MetaConcatDataset`][torchcross.data.metadataset.MetaConcatDataset] and
  [`MetaChainDataset`][torchcross.data.metadataset.MetaChainDataset], and
  [`CollectionMetaDataset`][torchcross.data.metadataset.CollectionMetaDataset] (a list of tasks);
* [`FewShotMetaDataset`][torchcross.data.metadataset.fixed_shot.FewShotMetaDataset],
  [`SubTaskRandomFewShotMetaDataset`][torchcross.data.metadataset.fixed_shot.SubTaskRandomFewShotMetaDataset],
  [`VariableWayShotMetaDataset`][torchcross.data.metadataset.VariableWayShotMetaDataset]: seeded episode
  datasets (episode ``i`` is a pure
  function of ``(seed, epoch, i)``; random access and sharded iteration agree);
* [`EpisodeSet`][torchcross.data.metadataset.EpisodeSet],
  [`sample_episode_set()`][torchcross.data.metadataset.sample_episode_set],
  [`FixedEpisodeMetaDataset`][torchcross.data.metadataset.FixedEpisodeMetaDataset]:
  pre-sampled evaluation episodes saved as JSON with a checksum of the source labels.

This package is also torchcross 0.0.6's import path: its names ``FewShotMetaDataset``,
``SubTaskRandomFewShotMetaDataset`` and ``TakeFirstFewShotMetaDataset`` are the former signatures of
``torchcross.compat.data.metadataset`` (positional ``collate_fn``, ``n_support_samples_per_class``, ...),
served lazily so that importing the core never imports ``torchcross.compat``. New code imports the core
classes from `torchcross.data` (or the modules
[`fixed_shot`][torchcross.data.metadataset.fixed_shot] and
[`take_first`][torchcross.data.metadataset.take_first]): keyword-only ``n_shot``, ``n_query``, ``n_way``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torchcross._lazy import lazy_exports

if TYPE_CHECKING:
    from torchcross.compat.data.metadataset.few_shot import FewShotMetaDataset as FewShotMetaDataset
    from torchcross.compat.data.metadataset.few_shot import (
        SubTaskRandomFewShotMetaDataset as SubTaskRandomFewShotMetaDataset,
    )
    from torchcross.compat.data.metadataset.few_shot_dummies import (
        TakeFirstFewShotMetaDataset as TakeFirstFewShotMetaDataset,
    )
    from torchcross.data.metadataset.base import EpisodeMetaDataset as EpisodeMetaDataset
    from torchcross.data.metadataset.base import load_episode as load_episode
    from torchcross.data.metadataset.collection import CollectionMetaDataset as CollectionMetaDataset
    from torchcross.data.metadataset.episode_set import EpisodeRecord as EpisodeRecord
    from torchcross.data.metadataset.episode_set import EpisodeSet as EpisodeSet
    from torchcross.data.metadataset.episode_set import FixedEpisodeMetaDataset as FixedEpisodeMetaDataset
    from torchcross.data.metadataset.episode_set import labels_checksum as labels_checksum
    from torchcross.data.metadataset.episode_set import sample_episode_set as sample_episode_set
    from torchcross.data.metadataset.meta import IterableMetaDataset as IterableMetaDataset
    from torchcross.data.metadataset.meta import MetaChainDataset as MetaChainDataset
    from torchcross.data.metadataset.meta import MetaConcatDataset as MetaConcatDataset
    from torchcross.data.metadataset.meta import MetaDataset as MetaDataset
    from torchcross.data.metadataset.variable import VariableWayShotMetaDataset as VariableWayShotMetaDataset

# public name -> submodule that defines it; the three episode datasets of the former signatures are the
# compat classes, imported on first use so that importing the core never imports torchcross.compat
_EXPORTS: dict[str, str] = {
    "EpisodeMetaDataset": "base",
    "load_episode": "base",
    "CollectionMetaDataset": "collection",
    "EpisodeRecord": "episode_set",
    "EpisodeSet": "episode_set",
    "FixedEpisodeMetaDataset": "episode_set",
    "labels_checksum": "episode_set",
    "sample_episode_set": "episode_set",
    "IterableMetaDataset": "meta",
    "MetaChainDataset": "meta",
    "MetaConcatDataset": "meta",
    "MetaDataset": "meta",
    "VariableWayShotMetaDataset": "variable",
    "FewShotMetaDataset": "torchcross.compat.data.metadataset.few_shot",
    "SubTaskRandomFewShotMetaDataset": "torchcross.compat.data.metadataset.few_shot",
    "TakeFirstFewShotMetaDataset": "torchcross.compat.data.metadataset.few_shot_dummies",
}

__all__ = [
    "CollectionMetaDataset",
    "EpisodeMetaDataset",
    "EpisodeRecord",
    "EpisodeSet",
    "FewShotMetaDataset",
    "FixedEpisodeMetaDataset",
    "IterableMetaDataset",
    "MetaChainDataset",
    "MetaConcatDataset",
    "MetaDataset",
    "SubTaskRandomFewShotMetaDataset",
    "TakeFirstFewShotMetaDataset",
    "VariableWayShotMetaDataset",
    "labels_checksum",
    "load_episode",
    "sample_episode_set",
]

__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
