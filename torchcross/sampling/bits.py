"""Label rows as bit masks: the representation the multi-label cover works on.

One Python int per example, bit ``j`` set when label ``j`` is positive, so set
operations over labels cost a few integer operations.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["column_mask", "row_bits"]


def row_bits(matrix: np.ndarray) -> list[int]:
    """Each row of a 0/1 matrix as a Python int with bit ``j`` set where column ``j`` is 1.

    Examples:
        >>> import numpy as np
        >>> row_bits(np.array([[1, 0, 1], [0, 1, 0]]))
        [5, 2]
    """
    n, width = matrix.shape
    out = [0] * n
    for start in range(0, width, 62):
        block = matrix[:, start : start + 62].astype(np.uint64)
        weights = np.left_shift(np.uint64(1), np.arange(block.shape[1], dtype=np.uint64))
        part = (block * weights).sum(axis=1, dtype=np.uint64).tolist()
        out = part if start == 0 else [o | (p << start) for o, p in zip(out, part)]
    return out


def column_mask(columns: Iterable[int]) -> int:
    """The bit mask with bit ``c`` set for each column ``c``.

    Examples:
        >>> column_mask([0, 2])
        5
    """
    m = 0
    for c in columns:
        m |= 1 << c
    return m
