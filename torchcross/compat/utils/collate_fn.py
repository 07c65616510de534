"""The torchcross 0.0.6 import path of the collate functions.

New code imports them from [`torchcross.data.collate`][torchcross.data.collate]; this module keeps
``from torchcross.compat.utils.collate_fn import identity`` working.

Examples:
    >>> from torchcross.compat.utils.collate_fn import identity, stack
    >>> from torchcross.data.collate import stack as data_stack
    >>> stack is data_stack, identity([1, 2])
    (True, [1, 2])
"""

from __future__ import annotations

from torchcross.data.collate import collate_task, identity, stack

__all__ = ["collate_task", "identity", "stack"]
