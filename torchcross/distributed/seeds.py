"""Seeds that hold across ranks and restarts.

Examples:
    >>> rank_and_world_size()  # no process group here
    (0, 1)
    >>> shared_seed(7)
    7
    >>> derived_seed(0, 3, 1) == derived_seed(0, 3, 1) != derived_seed(0, 3, 2)
    True
"""

from __future__ import annotations

import numpy as np
import torch.distributed as dist

from torchcross._checks import check_int

__all__ = ["derived_seed", "is_distributed", "rank_and_world_size", "shared_seed"]


def is_distributed(process_group: dist.ProcessGroup | None = None) -> bool:
    """Whether a process group with more than one rank is initialised."""
    return rank_and_world_size(process_group)[1] > 1


def rank_and_world_size(process_group: dist.ProcessGroup | None = None) -> tuple[int, int]:
    """``(rank, world_size)`` in ``process_group`` (default group), or ``(0, 1)`` without one."""
    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(process_group), dist.get_world_size(process_group)


def shared_seed(seed: int | None, process_group: dist.ProcessGroup | None = None) -> int:
    """``seed``, or (for ``None``) a fresh seed that every rank of the process group agrees on.

    Without a process group, ``None`` draws a seed from the operating system's entropy. With
    one, rank 0 draws it and broadcasts it (a collective call: every rank must call this
    function at the same point, as it constructs the same datasets). An explicit seed is
    returned unchanged and costs no communication.

    Raises:
        TypeError: ``seed`` is not an int or ``None``.
        ValueError: ``seed`` is negative.
    """
    if seed is not None:
        return check_int(seed, "seed", 0)
    drawn = int(np.random.SeedSequence().generate_state(1, np.uint64)[0] >> np.uint64(1))
    if not is_distributed(process_group):
        return drawn
    box = [drawn]
    dist.broadcast_object_list(box, src=_global_rank_of_first(process_group), group=process_group)
    return int(box[0])


def _global_rank_of_first(process_group: dist.ProcessGroup | None) -> int:
    return 0 if process_group is None else dist.get_global_rank(process_group, 0)


def derived_seed(*keys: int) -> int:
    """A 63-bit seed that is a pure function of the integer ``keys`` (``numpy.random.SeedSequence``).

    Negative keys are allowed (they are mapped to distinct non-negative entropy words).

    Examples:
        >>> import torch
        >>> torch.Generator().manual_seed(derived_seed(0, 5)).initial_seed() == derived_seed(0, 5)
        True
    """
    words = [2 * k if k >= 0 else -2 * k - 1 for k in (int(k) for k in keys)]
    return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0] >> np.uint64(1))
