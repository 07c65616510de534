"""Real ``torch.distributed`` ranks (gloo, two processes): every episode and batch exactly once.

A DataLoader worker started with ``spawn`` has no process group; the dataset remembers the
rank of the process that pickled it for the worker (``torchcross.data.workers.sharding``).
"""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.utils.data
from torch.utils.data import DataLoader

from torchcross.data import TensorTaskSource
from torchcross.data.batched_source import BatchedTaskSource
from torchcross.data.metadataset import FewShotMetaDataset
from torchcross.data.workers.sharding import remember_ranks, shard_position
from torchcross.tasks.task import TaskDescription

MC = TaskDescription("MULTICLASS_CLASSIFICATION", {i: str(i) for i in range(4)}, "mc")
WORLD = 2
KINDS = ("episodes", "batches")


def keep(x):  # the DataLoader's collate: items as they are
    return x


def build(kind: str):
    src = TensorTaskSource(torch.arange(48.0)[:, None], [i % 4 for i in range(48)], MC)
    if kind == "episodes":
        return FewShotMetaDataset(src, None, 2, 2, 0, length=12, seed=0, output_indices=True)
    return BatchedTaskSource(src, batch_size=4, shuffle=True, seed=0)


def items(kind: str, data) -> list[tuple[float, ...]]:
    if kind == "episodes":
        return [tuple(float(i) for i, _ in t.support + t.query) for t in data]
    return [tuple(float(x[0]) for x, _ in batch) for batch in data]


def _rank(rank: int, context: str, init: str, out) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=WORLD)
    try:
        got = {}
        for kind in KINDS:
            data = build(kind)  # no rank or world_size given: read from torch.distributed
            loader = DataLoader(
                data, batch_size=None, num_workers=2, collate_fn=keep, multiprocessing_context=context
            )
            got[kind] = items(kind, loader)
        out.put((rank, got))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_each_item_once_across_real_ranks_and_workers(tmp_path: Path, context: str) -> None:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    init = f"file://{tmp_path / 'rendezvous'}"
    ranks = [ctx.Process(target=_rank, args=(r, context, init, out)) for r in range(WORLD)]
    for p in ranks:
        p.start()
    got = dict(out.get(timeout=180) for _ in ranks)
    for p in ranks:
        p.join(60)
        assert p.exitcode == 0
    for kind in KINDS:
        per_rank = [got[r][kind] for r in range(WORLD)]
        assert all(per_rank), per_rank
        assert sorted(per_rank[0] + per_rank[1]) == sorted(items(kind, build(kind)))  # each exactly once


def test_a_worker_without_a_process_group_uses_the_remembered_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    owner = SimpleNamespace(_torchcross_rank_world=(1, 2))
    assert shard_position(owner=owner) == (0, 1)  # not in a worker: the remembered ranks are ignored
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: SimpleNamespace(id=1, num_workers=2))
    assert shard_position(owner=owner) == (3, 4)  # rank 1 of 2, worker 1 of 2
    assert shard_position(0, 2, owner) == (2, 4)  # explicit ranks win (rank 0 + 2 ranks x worker 1)
    assert shard_position(owner=SimpleNamespace()) == (1, 2)  # nothing remembered: one process
    assert remember_ranks({"a": 1}) == {"a": 1}  # no process group in this process
