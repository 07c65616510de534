"""Run by test_lightning_ddp.py: ``python lightning_ddp_script.py OUT_DIR`` (Lightning starts rank 1 itself).

Trains each Lightning module with ``Trainer(strategy="ddp", accelerator="cpu", devices=2)``,
uninterrupted and stopped-then-resumed from a Lightning checkpoint, evaluates under Lightning's
default inference mode, and lets rank 0 save the learners' states and the logged metrics.
"""

from __future__ import annotations

import functools
import sys
import warnings
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "distributed"))
import distributed_helpers as h
import lightning_helpers as lh

from torchcross.distributed import rank_and_world_size
from torchcross.learners import MAML, FineTuner, ProtoNet
from torchcross.lightning import FineTuningEvaluation, MetaLearningModule, MultiTaskModule

MAML_OPTIONS = {"meta_sgd": True, "head_init": "kaiming"}
EVAL_TASKS = [h.make_task(h.DESCS[i % 4], 5000 + i) for i in range(4)]


def keep(batch: object) -> object:
    return batch


def eval_loader() -> DataLoader:
    return DataLoader(EVAL_TASKS, batch_size=None, collate_fn=keep)  # Lightning shards it over ranks


def maml_batches(step: int) -> list:
    rank, world = rank_and_world_size()
    return h.local(h.global_batch(step), rank, world)


def pretrain_batches(step: int) -> tuple:
    return h.pretrain_batch(step, rank_and_world_size()[0])


def modules() -> dict:
    sgd = functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9)
    adam = functools.partial(torch.optim.Adam, lr=0.01)
    return {
        "maml": lambda: MetaLearningModule(
            MAML(h.backbone(), 4, inner_lr=0.3, num_inner_steps=2, **MAML_OPTIONS), sgd, maml_batches
        ),
        "protonet": lambda: MetaLearningModule(
            ProtoNet(h.backbone()), functools.partial(torch.optim.SGD, lr=0.1), maml_batches
        ),
        "pretrainer": lambda: MultiTaskModule(h.new_pretrainer()[0], adam, pretrain_batches),
    }


def main(out: Path) -> None:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    results: dict = {}
    for name, make in modules().items():
        module = make()
        t = lh.ddp_trainer(h.STEPS)
        t.fit(module)
        results[f"{name}/uninterrupted"] = module.state_dict()
        if name == "protonet":  # resuming is the same code for every module: check it on two
            metrics = lh.ddp_trainer(1, limit_val_batches=None).validate(
                module, dataloaders=eval_loader(), verbose=False
            )
            results[f"{name}/val_loss"] = metrics[0]["val_loss"]
            continue
        first = make()
        t = lh.ddp_trainer(2)
        t.fit(first)
        t.save_checkpoint(out / f"{name}.ckpt")
        resumed = make()
        t = lh.ddp_trainer(h.STEPS)
        t.fit(resumed, ckpt_path=out / f"{name}.ckpt")
        results[f"{name}/resumed"] = resumed.state_dict()
        results[f"{name}/consumed"] = resumed.consumed_batches
        if name == "maml":
            metrics = lh.ddp_trainer(1, limit_val_batches=None).validate(
                resumed, dataloaders=eval_loader(), verbose=False
            )
            results[f"{name}/val_loss"] = metrics[0]["val_loss"]
            results[f"{name}/val_scores"] = metrics[0]
    tuner = FineTuningEvaluation(FineTuner(h.backbone(), 4, num_steps=3, lr=0.1))
    results["finetuner/test_scores"] = lh.ddp_trainer(1, limit_val_batches=None).test(
        tuner, dataloaders=eval_loader(), verbose=False
    )[0]
    results["finetuner/test_loss"] = results["finetuner/test_scores"]["test_loss"]
    if t.global_rank == 0:
        torch.save(results, out / "results.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
