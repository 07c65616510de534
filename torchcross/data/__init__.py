"""The data side: task vocabulary, task sources, episodes, interleaving and collation.

Names are imported lazily from their modules on first use (``from torchcross.data
import FewShotMetaDataset`` works and only imports what it needs).
"""

from __future__ import annotations

from torchcross._lazy import lazy_exports

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
    "identity": "collate",
    "stack": "collate",
    "collate_task": "collate",
    "collate_tasks": "collate",
    "sample_episode": "torchcross.sampling.episodes",
    "EpisodeIndices": "torchcross.sampling.episodes",
    "MetaDataset": "metadataset",
    "FewShotMetaDataset": "metadataset",
    "SubTaskRandomFewShotMetaDataset": "metadataset",
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
