"""The data side: task vocabulary, task sources, episodes, interleaving and collation.

Names are imported lazily from their modules on first use (``from torchcross.data
import FewShotMetaDataset`` works and only imports what it needs).
"""

from __future__ import annotations

from torchcross._lazy import lazy_exports

# public name -> submodule that defines it
_EXPORTS: dict[str, str] = {
    "Task": "task",
    "TaskDescription": "task",
    "TaskTarget": "task",
    "normalize_labels": "labels",
    "keys_to_indices": "labels",
    "count_samples_per_class": "labels",
    "TaskSource": "task_source",
    "TensorTaskSource": "task_source",
    "SubsetTaskSource": "task_source",
    "ConcatTaskSource": "task_source",
    "canonical_labels": "task_source",
    "WrapTaskSource": "wrap_task_source",
    "BatchedTaskSource": "batched_task_source",
    "identity": "collate",
    "stack": "collate",
    "collate_task": "collate",
    "sample_episode": "sampling",
    "EpisodeIndices": "sampling",
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
    "Catalogue": "catalogue",
    "DatasetEntry": "catalogue",
    "TaskEntry": "catalogue",
    "leave_one_out_sources": "catalogue",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
