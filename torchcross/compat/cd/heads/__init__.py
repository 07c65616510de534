"""torchcross 0.0.6's ``torchcross.cd.heads``: `new_classification_head()`."""

from __future__ import annotations

from torchcross.compat.cd.heads.classification import new_classification_head

__all__ = ["new_classification_head"]
