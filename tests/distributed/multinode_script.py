"""Run by two ``torchrun`` "nodes" in tests: the library's distributed training, then ``torchcross run``.

``multinode_script.py PORT OUT CONFIG``: first the library's training (`library_training`, DataLoader
workers included) in a process group of the ranks ``torchrun`` assigned, initialised here on a TCP store
of its own at ``PORT`` (torchrun's own store cannot host a second group after the first is destroyed);
each rank saves its states to ``OUT.rank<r>.pt``. Then the ``torchcross run CONFIG`` command
(``torchcross.cli``'s ``main``), which creates and destroys its own process group from torchrun's
environment.
"""

from __future__ import annotations

import os
import sys

import distributed_helpers as h
import torch
import torch.distributed as dist

from torchcross.cli.app import main

if __name__ == "__main__":
    port, out, config = sys.argv[1:]
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        torch.save(h.library_training(rank, world, workers=2), f"{out}.rank{rank}.pt")
    finally:
        dist.destroy_process_group()
    sys.exit(main(["run", config]))
