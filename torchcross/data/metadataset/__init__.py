"""Episode datasets: few-shot tasks sampled from task sources, and fixed episode sets.

* [`MetaDataset`][torchcross.data.metadataset.MetaDataset]: a map-style dataset of tasks (the 0.0.6 base the
  medimeta package
  subclasses), [`IterableMetaDataset`][torchcross.data.metadataset.IterableMetaDataset], their sums
  [`MetaConcatDataset`][torchcross.data.metadataset.MetaConcatDataset] and
  [`MetaChainDataset`][torchcross.data.metadataset.MetaChainDataset], and
  [`CollectionMetaDataset`][torchcross.data.metadataset.CollectionMetaDataset] (a list of tasks);
* [`FewShotMetaDataset`][torchcross.data.metadataset.FewShotMetaDataset],
  [`SubTaskRandomFewShotMetaDataset`][torchcross.data.metadataset.SubTaskRandomFewShotMetaDataset],
  [`VariableWayShotMetaDataset`][torchcross.data.metadataset.VariableWayShotMetaDataset]: seeded episode
  datasets (episode ``i`` is a pure
  function of ``(seed, epoch, i)``; random access and sharded iteration agree);
* [`EpisodeSet`][torchcross.data.metadataset.EpisodeSet],
  [`sample_episode_set()`][torchcross.data.metadataset.sample_episode_set],
  [`FixedEpisodeMetaDataset`][torchcross.data.metadataset.FixedEpisodeMetaDataset]:
  pre-sampled evaluation episodes saved as JSON with a checksum of the source labels.
"""

import torchcross.data.collate  # noqa: F401  (registers Task with default_collate: DataLoader batches)
from torchcross.data.metadataset.base import EpisodeMetaDataset, load_episode
from torchcross.data.metadataset.collection import CollectionMetaDataset
from torchcross.data.metadataset.episode_set import (
    EpisodeRecord,
    EpisodeSet,
    FixedEpisodeMetaDataset,
    labels_checksum,
    sample_episode_set,
)
from torchcross.data.metadataset.few_shot import FewShotMetaDataset, SubTaskRandomFewShotMetaDataset
from torchcross.data.metadataset.few_shot_dummies import TakeFirstFewShotMetaDataset
from torchcross.data.metadataset.meta import (
    IterableMetaDataset,
    MetaChainDataset,
    MetaConcatDataset,
    MetaDataset,
)
from torchcross.data.metadataset.variable import VariableWayShotMetaDataset

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
