"""`run_protocol()` on many processes (``torchrun``): who does what, and how the ranks agree.

Launched by ``torchrun --nproc_per_node N`` (or inside a process group you initialised),
the protocol runs on every rank: all ranks train together (the samplers shard the
training stream, the learners average gradients once per step), target episodes are
split over the ranks, and rank 0 alone locks and writes ``out_dir`` (episode sets,
curves, evaluations, results). Decisions rank 0 takes from files reach every rank
through [`Team.leader()`][Team.leader], errors included, so no
rank waits for ever in a collective call.

Examples:
    >>> with joined(torch.device("cpu")) as (team, device):  # no torchrun here: one process
    ...     team.rank, team.world_size, team.leader(lambda: "rank 0 decides"), team.share(4)
    (0, 1, 'rank 0 decides', 4)
    >>> Team(1, 2).mine(5)  # episodes this rank evaluates
    [1, 3]
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from torchcross.distributed.seeds import rank_and_world_size

__all__ = ["EpisodeShare", "Team", "joined", "mean_over_ranks"]

T = TypeVar("T")
_TORCHRUN = ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Team:
    """This process's place among the ranks of a run (``Team(0, 1)``: a single process)."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_leader(self) -> bool:
        """Whether this is rank 0, the rank that reads and writes ``out_dir``."""
        return self.rank == 0

    def leader(self, fn: Callable[[], T]) -> T:
        """``fn()`` run on rank 0 only; every rank gets its result, or raises its exception.

        A collective call: every rank calls it at the same point of the run.
        """
        result: Any = None
        error: BaseException | None = None
        if self.is_leader:
            try:
                result = fn()
            except Exception as exc:
                error = exc
        if self.world_size > 1:
            sent = error
            if error is not None:
                try:
                    pickle.dumps(error)
                except Exception:
                    sent = RuntimeError(f"rank 0 failed: {type(error).__name__}: {error}")
            box = [(result, sent)]
            dist.broadcast_object_list(box, src=0)
            if not self.is_leader:
                result, error = box[0]
        if error is not None:
            raise error
        return result

    def share(self, value: T) -> T:
        """Rank 0's ``value`` on every rank (a collective call)."""
        return self.leader(lambda: value)

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order, on every rank (a collective call)."""
        if self.world_size == 1:
            return [value]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out

    def mine(self, n: int, block: int = 1) -> list[int]:
        """The indices of ``range(n)`` this rank takes: blocks of ``block`` dealt round-robin.

        With ``block`` equal to the evaluation batch size every batch of episodes a rank
        predicts at once is a batch the single process predicts at once, so the scores
        do not depend on the number of ranks.
        """
        return [i for i in range(n) if (i // block) % self.world_size == self.rank]


class EpisodeShare(Sequence[Any]):
    """The episodes ``indices`` of ``dataset``, loaded one at a time when read."""

    def __init__(self, dataset: Any, indices: list[int]) -> None:
        self.dataset, self.indices = dataset, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self.dataset[j] for j in self.indices[i]]
        return self.dataset[self.indices[i]]

    def __iter__(self) -> Iterator[Any]:
        return (self.dataset[j] for j in self.indices)


def _launched_world_size() -> int:
    text = os.environ.get("WORLD_SIZE", "1")
    try:
        world = int(text)
    except ValueError:
        raise ValueError(f"the environment variable WORLD_SIZE={text!r} is not an integer") from None
    if world > 1:
        missing = [k for k in _TORCHRUN if k not in os.environ]
        if missing:
            raise ValueError(
                f"WORLD_SIZE={world} but {', '.join(missing)} is not set; launch the ranks with torchrun "
                "(python -m torch.distributed.run --nproc_per_node N ...) or unset WORLD_SIZE"
            )
    return world


@contextmanager
def joined(device: torch.device) -> Iterator[tuple[Team, torch.device]]:
    """This process's team and device, initialising the process group ``torchrun`` asks for.

    An initialised process group is used as it is; otherwise, when the environment says
    ``torchrun`` started more than one rank, a group is initialised (``gloo`` on CPU,
    ``nccl`` for CUDA, each rank then on ``cuda:LOCAL_RANK``) and destroyed at the end.
    A single process gets ``Team(0, 1)`` and ``device`` unchanged.

    Raises:
        ValueError: ``WORLD_SIZE`` is above 1 but the other ``torchrun`` variables are missing.
    """
    created = False
    if not (dist.is_available() and dist.is_initialized()) and _launched_world_size() > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method="env://")
        created = True
    rank, world = rank_and_world_size()
    if world > 1 and device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank % torch.cuda.device_count())))
    if world > 1 and device.type == "cuda":
        torch.cuda.set_device(device)
    try:
        yield Team(rank, world), device
    finally:
        if created:
            dist.destroy_process_group()


def mean_over_ranks(value: float) -> float:
    """``value`` averaged over the ranks of the process group (itself without one); collective."""
    _, world = rank_and_world_size()
    if world == 1:
        return value
    backend = dist.get_backend()
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / world
