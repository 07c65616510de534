"""torchcross 0.0.6's helpers: ``to_numpy``, the collate functions and ``Expand`` at their 0.0.6 paths.

`torchcross.utils.collate_fn` re-exports the collate functions of
[`torchcross.data.collate`][torchcross.data.collate] (``identity``, ``stack``) for code written for 0.0.6,
such as the ``medimeta`` package.

The thread policy (``available_cpus``, ``recommended_num_threads``, ``configure_threads``,
``OversubscriptionWarning``) is served here too, for code that imports it from ``torchcross.utils``;
its home is [`torchcross.threads`][torchcross.threads].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from torchcross.compat.utils import collate_fn
from torchcross.threads import (
    OversubscriptionWarning,
    available_cpus,
    configure_threads,
    recommended_num_threads,
)


def to_numpy(arg: Any, /) -> np.ndarray:
    """``arg`` as a NumPy array (torchcross 0.0.6's helper): tensors are detached and copied to
    the CPU, sequences and sets (sorted) converted element by element, arrays returned as they are.

    Examples:
        >>> import torch
        >>> to_numpy([torch.tensor([1, 2]), (3, 4)]).tolist()
        [[1, 2], [3, 4]]
        >>> to_numpy({3, 1}).tolist()
        [1, 3]
    """
    if isinstance(arg, np.ndarray):
        return arg
    if isinstance(arg, torch.Tensor):
        return arg.detach().cpu().numpy()
    if isinstance(arg, (set, frozenset)):
        return np.array([to_numpy(item) for item in sorted(arg)])
    if isinstance(arg, Sequence) and not isinstance(arg, (str, bytes)):
        return np.array([to_numpy(item) for item in arg])
    return np.array(arg)


__all__ = [
    "OversubscriptionWarning",
    "available_cpus",
    "collate_fn",
    "configure_threads",
    "recommended_num_threads",
    "to_numpy",
]
