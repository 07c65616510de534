"""How many torch threads to use: the CPUs this process may actually run on, less what is taken.

torch starts one intra-op thread per CPU it sees, including CPUs the process may not
use (a container's CPU quota) and CPUs other processes keep busy. Every parallel
operation then waits for its slowest thread, and a thread sharing a core with another
busy process is slow: with two threads on two cores, one of them busy elsewhere, a small
MAML meta-step can take ten times longer than with one thread. The policy here:

* **available CPUs**: the CPUs in the process's affinity mask
  (``os.sched_getaffinity``), capped by a cgroup CPU quota (``cpu.max`` of cgroup v2,
  ``cpu.cfs_quota_us`` of v1) when one is set;
* **idle CPUs** (Linux): those of the available CPUs that ``/proc/stat`` shows idle over
  a tenth of a second, so cores other processes keep busy are left to them;
* **recommended threads**: ``max(1, min(available, idle) - num_workers)``, leaving one
  CPU to each DataLoader worker (workers run one torch thread each).

``configure_threads`` applies it (or an explicit count, warning when that
oversubscribes the CPUs). ``torchcross run`` and ``torchcross demo`` call it at start.
The choice depends on the machine's load when it is made; set an explicit count where
runs must use the same number of threads (float results can differ in the last bits
between thread counts).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from pathlib import Path

from torchcross._checks import check_int

__all__ = ["OversubscriptionWarning", "available_cpus", "configure_threads", "recommended_num_threads"]

_CGROUP_ROOT = Path("/sys/fs/cgroup")
_PROC_SELF_CGROUP = Path("/proc/self/cgroup")
_PROC_STAT = Path("/proc/stat")
_IDLE_INTERVAL_S = 0.1


class OversubscriptionWarning(UserWarning):
    """More compute threads and worker processes than CPUs available to the process."""


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        return None


def _cgroup_quota() -> float | None:
    """The CPU quota (in CPUs) of this process's cgroup and its ancestors, or None if unlimited."""
    own = _read(_PROC_SELF_CGROUP) or ""
    limits: list[float] = []
    for line in own.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, rel = parts
        rel = rel.strip().lstrip("/")
        if hierarchy == "0" and controllers == "":  # cgroup v2: cpu.max on the path and its parents
            folder = _CGROUP_ROOT / rel if rel else _CGROUP_ROOT
            while True:
                text = (_read(folder / "cpu.max") or "").split()
                if len(text) == 2 and text[0] != "max":
                    with contextlib.suppress(ValueError, ZeroDivisionError):
                        limits.append(int(text[0]) / int(text[1]))
                if folder == _CGROUP_ROOT or _CGROUP_ROOT not in folder.parents:
                    break
                folder = folder.parent
        elif "cpu" in controllers.split(","):  # cgroup v1
            for base in (_CGROUP_ROOT / "cpu,cpuacct", _CGROUP_ROOT / "cpu"):
                for folder in (base / rel, base):
                    quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
                    try:
                        q, p = int((quota or "").strip()), int((period or "").strip())
                    except ValueError:
                        continue
                    if q > 0 and p > 0:
                        limits.append(q / p)
    return min(limits) if limits else None


def _affinity() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return set(range(os.cpu_count() or 1))


def available_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup CPU quota.

    A fractional quota counts as its whole CPUs, and at least one.

    Examples:
        >>> available_cpus() >= 1
        True
    """
    cpus = len(_affinity())
    quota = _cgroup_quota()
    if quota is not None:
        cpus = min(cpus, max(1, math.floor(quota)))
    return max(1, cpus)


def _cpu_times() -> dict[int, tuple[int, int]] | None:
    """``{cpu: (idle ticks, total ticks)}`` from ``/proc/stat`` (None where it cannot be read)."""
    text = _read(_PROC_STAT)
    if text is None:
        return None
    out = {}
    for line in text.splitlines():
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu" or len(fields) < 4:
            continue
        try:
            ticks = [int(f) for f in fields[:8]]
            out[int(name[3:])] = (ticks[3] + (ticks[4] if len(ticks) > 4 else 0), sum(ticks))
        except ValueError:
            continue
    return out or None


def _idle_cpus(cpus: set[int]) -> float | None:
    """How many of ``cpus`` were idle over a short interval (None where unknown)."""
    before = _cpu_times()
    if before is None:
        return None
    time.sleep(_IDLE_INTERVAL_S)
    after = _cpu_times()
    if after is None:
        return None
    idle, seen = 0.0, False
    for cpu in cpus:
        if cpu not in before or cpu not in after:
            continue
        total = after[cpu][1] - before[cpu][1]
        if total <= 0:
            continue
        seen = True
        idle += min(1.0, max(0.0, (after[cpu][0] - before[cpu][0]) / total))
    return idle if seen else None


def recommended_num_threads(num_workers: int = 0) -> int:
    """Torch threads for this process: available CPUs that are idle, less the DataLoader workers.

    Takes about a tenth of a second on Linux (it watches ``/proc/stat``); see the module
    doc for the rule.

    Args:
        num_workers: DataLoader worker processes that will run beside the main process.

    Raises:
        ValueError: for a negative ``num_workers``.

    Examples:
        >>> 1 <= recommended_num_threads() <= available_cpus()
        True
    """
    num_workers = check_int(num_workers, "num_workers", 0)
    cpus = available_cpus()
    idle = _idle_cpus(_affinity())
    if idle is not None:
        cpus = min(cpus, max(1, round(idle)))
    return max(1, cpus - num_workers)


def configure_threads(
    num_threads: int | str | None = "auto", num_workers: int = 0, processes: int = 1
) -> int:
    """Set torch's intra-op thread count by the policy (``"auto"``) or to a number; return it.

    Args:
        num_threads: ``"auto"`` for ``recommended_num_threads``, a count, or ``None``
            to keep torch's current setting (only checked).
        num_workers: DataLoader worker processes beside each process.
        processes: processes on this machine using this many threads each (e.g. one per
            experiment run side by side); ``"auto"`` shares the recommendation among them.

    Returns:
        the thread count now in effect.

    Raises:
        ValueError: for a bad ``num_threads`` (not ``"auto"``, ``None`` or an int >= 1).

    Warns:
        OversubscriptionWarning: when ``threads * processes + num_workers`` exceeds
            ``available_cpus``.

    Examples:
        >>> import torch
        >>> before = torch.get_num_threads()
        >>> configure_threads(1)
        1
        >>> torch.get_num_threads()
        1
        >>> configure_threads("auto") >= 1
        True
        >>> torch.set_num_threads(before)
    """
    import torch

    num_workers = check_int(num_workers, "num_workers", 0)
    processes = check_int(processes, "processes", 1)
    if num_threads == "auto":
        threads = max(1, recommended_num_threads(num_workers) // processes)
        torch.set_num_threads(threads)
        return threads
    if isinstance(num_threads, str):
        raise ValueError(f"num_threads must be 'auto', None or an integer >= 1, got {num_threads!r}")
    if num_threads is not None:
        torch.set_num_threads(check_int(num_threads, "num_threads", 1))
    threads = torch.get_num_threads()
    cpus = available_cpus()
    if threads * processes + num_workers > cpus:
        warnings.warn(
            f"{threads} torch thread(s) x {processes} process(es) + {num_workers} DataLoader worker(s) "
            f"oversubscribe the {cpus} CPU(s) available to this process; threads then wait on each "
            "other (often several times slower). Use num_threads='auto' or fewer threads",
            OversubscriptionWarning,
            stacklevel=2,
        )
    return threads
