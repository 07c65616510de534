"""The torchcross 0.0.6 import path of `Expand`; defined in `torchcross.models.expand`.

Examples:
    >>> import torch
    >>> Expand(-1, 3, -1, -1)(torch.zeros(1, 1, 2, 2)).shape
    torch.Size([1, 3, 2, 2])
"""

from __future__ import annotations

from torchcross.compat.models.expand import Expand

__all__ = ["Expand"]
