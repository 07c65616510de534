"""Run by test_lightning_example_sharding.py: ``python lightning_example_sharding_script.py OUT_DIR``.

Trains ``MultiTaskModule`` on the parts of an example-sharded stream with
``Trainer(strategy="ddp", accelerator="cpu", devices=2)`` (Lightning starts rank 1 itself by rerunning
this script); each rank saves its pretrainer's state, its parts' weights and the batches it consumed.
"""

from __future__ import annotations

import functools
import sys
import warnings
from pathlib import Path

import lightning_helpers as lh
import torch

from torchcross.lightning import MultiTaskModule


def main(out: Path) -> None:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    sampler = lh.sharded_sampler()  # reads the rank from torch.distributed when an item is drawn
    sgd = functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9)
    module = MultiTaskModule(lh.sharded_pretrainer(), sgd, functools.partial(sampler.item, 0))
    trainer = lh.ddp_trainer(lh.SHARDED_STEPS)
    trainer.fit(module)
    rank = trainer.global_rank
    mine = lh.sharded_sampler(rank, trainer.world_size)
    torch.save(
        {
            "state": module.pretrainer.state_dict(),
            "weights": [mine.item(0, k)[2] for k in range(lh.SHARDED_STEPS)],
            "consumed": module.consumed_batches,
        },
        out / f"rank{rank}.pt",
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
