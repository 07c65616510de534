"""Episode datasets: few-shot tasks sampled from task sources, and fixed episode sets.

* :class:`MetaDataset`: a map-style dataset of tasks (the 0.0.6 base the medimeta package
  subclasses);
* :class:`FewShotMetaDataset`, :class:`SubTaskRandomFewShotMetaDataset`,
  :class:`VariableWayShotMetaDataset`: seeded episode datasets (episode ``i`` is a pure
  function of ``(seed, epoch, i)``; random access and sharded iteration agree);
* :class:`EpisodeSet`, :func:`sample_episode_set`, :class:`FixedEpisodeMetaDataset`:
  pre-sampled evaluation episodes saved as JSON with a checksum of the source labels.
"""

from torchcross.data.metadataset.base import EpisodeMetaDataset, MetaDataset, load_episode
from torchcross.data.metadataset.episode_set import (
    EpisodeRecord,
    EpisodeSet,
    FixedEpisodeMetaDataset,
    labels_checksum,
    sample_episode_set,
)
from torchcross.data.metadataset.few_shot import FewShotMetaDataset, SubTaskRandomFewShotMetaDataset
from torchcross.data.metadataset.variable import VariableWayShotMetaDataset

__all__ = [
    "EpisodeMetaDataset",
    "EpisodeRecord",
    "EpisodeSet",
    "FewShotMetaDataset",
    "FixedEpisodeMetaDataset",
    "MetaDataset",
    "SubTaskRandomFewShotMetaDataset",
    "VariableWayShotMetaDataset",
    "labels_checksum",
    "load_episode",
    "sample_episode_set",
]
