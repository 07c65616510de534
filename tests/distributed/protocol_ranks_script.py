"""Run by ``torchrun`` in tests: one process group (initialised here, as a library user would), then
``run_protocol`` on each config file given, in order; each rank saves what it returned."""

from __future__ import annotations

import json
import sys

import torch
import torch.distributed as dist

from torchcross.protocol.config import load_config
from torchcross.protocol.run import run_protocol

if __name__ == "__main__":
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    try:
        for path in sys.argv[1:]:
            result = run_protocol(load_config(path), progress=False, log=None)
            returned = {"rank": result.rank, "episodes": result.episodes.to_records()}
            with open(f"{path}.rank{dist.get_rank()}.json", "w", encoding="utf-8") as f:
                json.dump(returned, f)
    finally:
        dist.destroy_process_group()
