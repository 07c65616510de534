"""Run by ``torchrun`` in ``test_hostile_distributed.py``: ranks that disagree, and a rank that dies saving.

``first OUT``: the documented recipe verbatim, the recipe without ``broadcast_parameters``, ranks
with different widths, then a ``train_steps`` run whose rank 1 dies in its last save (last, since
rank 1 then leaves). ``resume OUT``: that run again (it resumes), and an uninterrupted run.
Each rank writes what it saw to ``OUT/<scenario>-rank<r>.pt``.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from pathlib import Path
from typing import Any

import distributed_helpers as h
import torch
import torch.distributed as dist

from torchcross.learners.backbones import mlp
from torchcross.learners.maml import MAML
from torchcross.protocol import training

ROOT = Path(__file__).resolve().parents[2]
STEPS = 4


def recipe() -> str:
    """The first python block of the torchrun recipe in docs/scaling-out.md, as the reader sees it."""
    page = (ROOT / "docs" / "scaling-out.md").read_text(encoding="utf-8")
    section = page[page.index("## The torchrun recipe") :]
    match = re.search(r"^```python\n(.*?)^```", section, re.DOTALL | re.MULTILINE)
    if match is None:
        raise ValueError("docs/scaling-out.md has no python block under '## The torchrun recipe'")
    return match.group(1)


def message(fn: Any) -> str:
    try:
        fn()
    except ValueError as exc:
        return str(exc)
    return "did not raise"


class Position:
    """A resumable stream of the global meta-batches (what train_steps' ``sampler`` needs)."""

    def __init__(self, rank: int) -> None:
        self.rank, self.start, self.consumed = rank, 0, 0

    def state_dict(self) -> dict[str, int]:
        return {"position": self.start + self.consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.start, self.consumed = state["position"], 0

    def __iter__(self) -> Any:
        self.consumed = 0
        for k in range(self.start, 100):
            self.consumed += 1  # counted where the loop takes the batch
            yield h.local(h.global_batch(k), self.rank, 2)


def train(folder: Path, rank: int, log: list[str]) -> dict[str, Any]:
    maml = MAML(h.backbone(), 4, inner_lr=0.3, num_inner_steps=2, head_init="kaiming")
    optimizer = torch.optim.SGD(maml.parameters(), lr=0.1, momentum=0.9)
    position = Position(rank)
    losses = training.train_steps(
        maml,
        optimizer,
        maml.meta_backward,
        lambda: iter(position),
        STEPS,
        sampler=position,
        checkpoint=folder / (f"rank-{rank}" if rank else "") / "mm-MAML.pt",
        checkpoint_every=2,
        fingerprint="hostile",
        progress=False,
        log=log.append,
    )
    return {"model": maml.state_dict(), "losses": losses, "log": log}


class Died(Exception):
    """Stands for the rank's death: raised in the middle of its save."""


def first(out: Path, rank: int) -> None:
    namespace: dict[str, Any] = {"__name__": "recipe"}
    exec(compile(recipe(), "scaling-out.md recipe", "exec"), namespace)  # initialises the process group
    torch.save({"model": namespace["maml"].state_dict()}, out / f"recipe-rank{rank}.pt")

    unbroadcast = recipe().replace('dist.init_process_group("gloo")', "pass")
    unbroadcast = re.sub(r"^broadcast_parameters\(maml\).*$", "", unbroadcast, flags=re.MULTILINE)
    drifting = message(lambda: exec(compile(unbroadcast, "recipe without broadcast", "exec"), {}))

    width = 16 if rank == 0 else 32  # rank 1 built another hidden size
    maml = MAML(mlp(5, (width,), batch_norm=True).double(), width, inner_lr=0.3, num_inner_steps=1)
    widths = message(lambda: maml.meta_backward(h.local(h.global_batch(0), rank, 2)))
    torch.save({"drifting": drifting, "widths": widths}, out / f"refused-rank{rank}.pt")

    save_checkpoint = training.save_checkpoint

    def dying_save(path: Any, state: Any) -> None:
        if rank == 1 and state["step"] == STEPS:
            raise Died(path)
        save_checkpoint(path, state)

    training.save_checkpoint = dying_save
    with contextlib.suppress(Died):  # rank 1 "dies" while saving step 4; rank 0 saved it
        train(out / "killed", rank, [])


def resume(out: Path, rank: int) -> None:
    torch.save(train(out / "killed", rank, []), out / f"resumed-rank{rank}.pt")
    torch.save(train(out / "uninterrupted", rank, []), out / f"uninterrupted-rank{rank}.pt")


if __name__ == "__main__":
    torch.set_num_threads(1)
    mode, out = sys.argv[1], Path(sys.argv[2])
    if mode == "resume":
        dist.init_process_group("gloo")
    try:
        (first if mode == "first" else resume)(out, int(os.environ["RANK"]))
    finally:
        dist.destroy_process_group()
