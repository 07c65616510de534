"""torchcross 0.0.6's episode datasets with their 0.0.6 signatures:
`torchcross.compat.data.metadataset.few_shot` and `torchcross.compat.data.metadataset.few_shot_dummies`.

Their 0.0.6 paths serve them: the modules ``torchcross.data.metadataset.few_shot`` and
``torchcross.data.metadataset.few_shot_dummies`` are aliases of these, and the names
``FewShotMetaDataset``, ``SubTaskRandomFewShotMetaDataset`` and ``TakeFirstFewShotMetaDataset`` of
``torchcross.data.metadataset`` are these classes (``torchcross.data`` serves the core ones).
"""

from __future__ import annotations

from torchcross.compat.data.metadataset.few_shot import FewShotMetaDataset, SubTaskRandomFewShotMetaDataset
from torchcross.compat.data.metadataset.few_shot_dummies import TakeFirstFewShotMetaDataset

__all__ = ["FewShotMetaDataset", "SubTaskRandomFewShotMetaDataset", "TakeFirstFewShotMetaDataset"]
