"""Small helpers: the thread policy, and collate functions kept at their torchcross 0.0.6 import paths.

``recommended_num_threads`` and ``configure_threads`` choose torch's thread
count from the CPUs the process may actually use (see ``torchcross._threads``).
:mod:`torchcross.utils.collate_fn` re-exports the collate functions of
:mod:`torchcross.data.collate` (``identity``, ``stack``) for code written for 0.0.6,
such as the ``medimeta`` package.
"""

from __future__ import annotations

from torchcross._threads import (
    OversubscriptionWarning,
    available_cpus,
    configure_threads,
    recommended_num_threads,
)
from torchcross.utils import collate_fn

__all__ = [
    "OversubscriptionWarning",
    "available_cpus",
    "collate_fn",
    "configure_threads",
    "recommended_num_threads",
]
