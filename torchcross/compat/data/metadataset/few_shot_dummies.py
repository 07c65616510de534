"""torchcross 0.0.6's ``TakeFirstFewShotMetaDataset(dataset, collate_fn, n_shot_per_class)`` over the core
[`TakeFirstFewShotMetaDataset`][take_first.TakeFirstFewShotMetaDataset].

Examples:
    >>> import torch
    >>> from torchcross.data.sources import TensorTaskSource
    >>> from torchcross.tasks.task import TaskDescription
    >>> d = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b"})
    >>> src = TensorTaskSource(torch.arange(8.0)[:, None], [0, 1, 0, 1, 0, 1, 0, 1], d)
    >>> task = TakeFirstFewShotMetaDataset(src, None, 2)[0]
    >>> [float(x) for x, _ in task.support]
    [0.0, 2.0, 1.0, 3.0]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from torchcross.data.metadataset import take_first

__all__ = ["TakeFirstFewShotMetaDataset"]


class TakeFirstFewShotMetaDataset(take_first.TakeFirstFewShotMetaDataset):
    """0.0.6's positional signature; ``dataset`` reads the core attribute ``task_source``."""

    shot_name: ClassVar[str] = "n_shot_per_class"

    def __init__(self, dataset: Any, collate_fn: Callable | None = None, n_shot_per_class: int = 5) -> None:
        super().__init__(dataset, n_shot=n_shot_per_class, collate_fn=collate_fn)

    @property
    def dataset(self) -> Any:
        """The task source, under its 0.0.6 name."""
        return self.task_source
