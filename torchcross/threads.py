"""The thread policy: how many torch threads to use on the CPUs this process may actually run on.

`available_cpus()` (the affinity mask, capped by a cgroup CPU quota), `recommended_num_threads()` (the idle
ones among them, less one per DataLoader worker) and `configure_threads()` (applies the policy or a given
count, warning with `OversubscriptionWarning` when it oversubscribes the CPUs). ``torchcross run`` and
``torchcross demo`` apply it at start; see [Learners](../learners.md) for when to call it yourself.

Examples:
    >>> available_cpus() >= 1, recommended_num_threads(num_workers=64) >= 1
    (True, True)
"""

from __future__ import annotations

from torchcross._threads import (
    OversubscriptionWarning,
    available_cpus,
    configure_threads,
    recommended_num_threads,
)

__all__ = ["OversubscriptionWarning", "available_cpus", "configure_threads", "recommended_num_threads"]
