"""The torchcross 0.0.6 import path of the interleaving datasets ; see
[`torchcross.data.interleave`][torchcross.data.interleave].

Examples:
    >>> from torchcross.data.dataset import RandomInterleaveDataset
    >>> from torchcross.data import RandomInterleaveDataset as Same
    >>> RandomInterleaveDataset is Same
    True
"""

from __future__ import annotations

from torchcross.data.interleave import InterleaveDataset, RandomInterleaveDataset

__all__ = ["InterleaveDataset", "RandomInterleaveDataset"]
