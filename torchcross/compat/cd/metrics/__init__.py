"""torchcross 0.0.6's ``torchcross.cd.metrics`` (needs torchmetrics, part of the ``lightning`` extra)."""

from __future__ import annotations

from torchcross.compat.cd.metrics.classification import (
    AUROC,
    Accuracy,
    IndexedMulticlassAccuracy,
    IndexedMulticlassAUROC,
    get_accuracy_func,
    get_auroc_func,
)
from torchcross.compat.cd.metrics.wrappers import CrossDomainMeanWrapper, CrossDomainWrapper

__all__ = [
    "AUROC",
    "Accuracy",
    "CrossDomainMeanWrapper",
    "CrossDomainWrapper",
    "IndexedMulticlassAUROC",
    "IndexedMulticlassAccuracy",
    "get_accuracy_func",
    "get_auroc_func",
]
