"""The data side: task vocabulary, task sources, episodes, interleaving and collation.

Names are imported lazily from their modules on first use (``from torchcross.data
import FewShotMetaDataset`` works and only imports what it needs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torchcross._lazy import lazy_exports

if TYPE_CHECKING:
    from torchcross.data.batched_source import BatchedTaskSource as BatchedTaskSource
    from torchcross.data.capabilities import BatchReadable as BatchReadable
    from torchcross.data.capabilities import SupportsSetEpoch as SupportsSetEpoch
    from torchcross.data.class_split import ClassSubsetTaskSource as ClassSubsetTaskSource
    from torchcross.data.class_split import split_classes as split_classes
    from torchcross.data.collate import collate_task as collate_task
    from torchcross.data.collate import collate_tasks as collate_tasks
    from torchcross.data.collate import identity as identity
    from torchcross.data.collate import stack as stack
    from torchcross.data.embeddings import EmbeddedSource as EmbeddedSource
    from torchcross.data.embeddings import EmbeddingCacheError as EmbeddingCacheError
    from torchcross.data.embeddings import EmbeddingKey as EmbeddingKey
    from torchcross.data.embeddings import Embeddings as Embeddings
    from torchcross.data.embeddings import data_identity as data_identity
    from torchcross.data.embeddings import embed as embed
    from torchcross.data.embeddings import load_embeddings as load_embeddings
    from torchcross.data.embeddings import weights_digest as weights_digest
    from torchcross.data.interleave import InterleaveDataset as InterleaveDataset
    from torchcross.data.interleave import RandomInterleaveDataset as RandomInterleaveDataset
    from torchcross.data.metadataset import EpisodeSet as EpisodeSet
    from torchcross.data.metadataset import MetaDataset as MetaDataset
    from torchcross.data.metadataset import VariableWayShotMetaDataset as VariableWayShotMetaDataset
    from torchcross.data.metadataset import sample_episode_set as sample_episode_set
    from torchcross.data.metadataset.fixed_shot import FewShotMetaDataset as FewShotMetaDataset
    from torchcross.data.metadataset.fixed_shot import (
        SubTaskRandomFewShotMetaDataset as SubTaskRandomFewShotMetaDataset,
    )
    from torchcross.data.multitask import MultiTaskBatchSampler as MultiTaskBatchSampler
    from torchcross.data.multitask import MultiTaskEpisodeSampler as MultiTaskEpisodeSampler
    from torchcross.data.sources import ConcatTaskSource as ConcatTaskSource
    from torchcross.data.sources import SubsetTaskSource as SubsetTaskSource
    from torchcross.data.sources import TaskSource as TaskSource
    from torchcross.data.sources import TensorTaskSource as TensorTaskSource
    from torchcross.data.sources import canonical_labels as canonical_labels
    from torchcross.data.stream import StreamLoader as StreamLoader
    from torchcross.data.task_batch import PaddedTaskBatch as PaddedTaskBatch
    from torchcross.data.task_batch import pad_tasks as pad_tasks
    from torchcross.data.task_batch import stack_tasks as stack_tasks
    from torchcross.data.wrap_source import WrapTaskSource as WrapTaskSource
    from torchcross.sampling.episodes import EpisodeIndices as EpisodeIndices
    from torchcross.sampling.episodes import sample_episode as sample_episode
    from torchcross.tasks.catalogue import Catalogue as Catalogue
    from torchcross.tasks.catalogue import DatasetEntry as DatasetEntry
    from torchcross.tasks.catalogue import TaskEntry as TaskEntry
    from torchcross.tasks.catalogue import leave_one_out_sources as leave_one_out_sources
    from torchcross.tasks.labels import count_samples_per_class as count_samples_per_class
    from torchcross.tasks.labels import keys_to_indices as keys_to_indices
    from torchcross.tasks.labels import normalize_labels as normalize_labels
    from torchcross.tasks.task import Task as Task
    from torchcross.tasks.task import TaskDescription as TaskDescription
    from torchcross.tasks.task import TaskTarget as TaskTarget

# public name -> submodule that defines it
_EXPORTS: dict[str, str] = {
    "Task": "torchcross.tasks.task",
    "TaskDescription": "torchcross.tasks.task",
    "TaskTarget": "torchcross.tasks.task",
    "normalize_labels": "torchcross.tasks.labels",
    "keys_to_indices": "torchcross.tasks.labels",
    "count_samples_per_class": "torchcross.tasks.labels",
    "BatchReadable": "capabilities",
    "SupportsSetEpoch": "capabilities",
    "TaskSource": "sources",
    "TensorTaskSource": "sources",
    "SubsetTaskSource": "sources",
    "ConcatTaskSource": "sources",
    "canonical_labels": "sources",
    "ClassSubsetTaskSource": "class_split",
    "split_classes": "class_split",
    "WrapTaskSource": "wrap_source",
    "BatchedTaskSource": "batched_source",
    "StreamLoader": "stream",
    "EmbeddedSource": "embeddings",
    "EmbeddingCacheError": "embeddings",
    "EmbeddingKey": "embeddings",
    "Embeddings": "embeddings",
    "data_identity": "embeddings",
    "embed": "embeddings",
    "load_embeddings": "embeddings",
    "weights_digest": "embeddings",
    "identity": "collate",
    "stack": "collate",
    "collate_task": "collate",
    "collate_tasks": "collate",
    "sample_episode": "torchcross.sampling.episodes",
    "EpisodeIndices": "torchcross.sampling.episodes",
    "MetaDataset": "metadataset",
    "FewShotMetaDataset": "metadataset.fixed_shot",
    "SubTaskRandomFewShotMetaDataset": "metadataset.fixed_shot",
    "VariableWayShotMetaDataset": "metadataset",
    "EpisodeSet": "metadataset",
    "sample_episode_set": "metadataset",
    "stack_tasks": "task_batch",
    "pad_tasks": "task_batch",
    "PaddedTaskBatch": "task_batch",
    "InterleaveDataset": "interleave",
    "RandomInterleaveDataset": "interleave",
    "MultiTaskBatchSampler": "multitask",
    "MultiTaskEpisodeSampler": "multitask",
    "Catalogue": "torchcross.tasks.catalogue",
    "DatasetEntry": "torchcross.tasks.catalogue",
    "TaskEntry": "torchcross.tasks.catalogue",
    "leave_one_out_sources": "torchcross.tasks.catalogue",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
