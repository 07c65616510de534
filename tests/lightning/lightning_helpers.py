"""Shared by the Lightning DDP tests and the scripts they start: running a script, the 2-rank CPU
``Trainer``, and the example-sharded multi-task stream (float64, no BatchNorm)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from lightning.pytorch import Trainer

from torchcross.data import TensorTaskSource
from torchcross.data.multitask import MultiTaskBatchSampler
from torchcross.learners.backbones import mlp
from torchcross.learners.multitask import MultiTaskPretrainer
from torchcross.tasks.task import TaskDescription

ROOT = Path(__file__).resolve().parents[2]
SHARDED_GLOBAL = 6  # examples per global batch: 3 per rank
SHARDED_STEPS = 8  # seed 1 draws an empty part (weight 0.0) and an uneven one (0.8) on rank 1 in 8 steps
SHARDED_TASKS = {
    TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b", 2: "c"}, "mc"): 23,
    TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"}, "bin"): 10,
    TaskDescription("MULTILABEL_CLASSIFICATION", {0: "x", 1: "y", 2: "z"}, "ml"): 7,
}


def run_script(script: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python script *args`` in ``cwd`` with the repository importable, one thread; asserts success."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.update(OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    done = subprocess.run(
        [sys.executable, str(script), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return done


def ddp_trainer(max_steps: int, **options: object) -> Trainer:
    """``Trainer(strategy="ddp", accelerator="cpu", devices=2)``, quiet, without validation by default."""
    return Trainer(
        strategy="ddp",
        accelerator="cpu",
        devices=2,
        max_steps=max_steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **{"limit_val_batches": 0, **options},
    )


def sharded_sampler(rank: int | None = None, world_size: int | None = None) -> MultiTaskBatchSampler:
    """Global batches of ``SHARDED_GLOBAL`` examples split by example over the ranks (endless).

    Tasks of 23, 10 and 7 examples: their last batches of 5, 4 and 1 split 3 + 2, 2 + 2 and 1 + 0.
    """
    g = torch.Generator().manual_seed(0)
    sources = []
    for desc, n in SHARDED_TASKS.items():
        if desc.task_target.name == "MULTILABEL_CLASSIFICATION":
            y = torch.randint(0, 2, (n, desc.num_classes), generator=g)
        elif desc.task_target.name == "BINARY_CLASSIFICATION":
            y = (torch.arange(n) % 2)[:, None]
        else:
            y = torch.arange(n) % desc.num_classes
        sources.append(TensorTaskSource(torch.randn(n, 5, generator=g, dtype=torch.float64), y, desc))
    return MultiTaskBatchSampler(
        sources, SHARDED_GLOBAL, mode="infinite", seed=1, shard_by="example", rank=rank, world_size=world_size
    )


def sharded_pretrainer() -> MultiTaskPretrainer:
    """A float64 MLP without BatchNorm and a head per task of ``SHARDED_TASKS``, the same on every rank."""
    torch.manual_seed(0)
    backbone = mlp(5, (8,)).double()
    return MultiTaskPretrainer(backbone, 8, list(SHARDED_TASKS), head_init="kaiming", seed=0).double()
