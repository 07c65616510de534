"""Epochs and resume positions set in the main process reach DataLoader workers, persistent ones too."""

from __future__ import annotations

import copy
import multiprocessing as mp
import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import torchcross.data.workers.shared_ints as shared_ints
from torchcross.data import TensorTaskSource
from torchcross.data.batched_source import BatchedTaskSource
from torchcross.data.interleave import RandomInterleaveDataset
from torchcross.data.metadataset import FewShotMetaDataset
from torchcross.data.multitask import MultiTaskBatchSampler
from torchcross.data.workers.shared_ints import SharedInts
from torchcross.datasets.generic import ImageArrayTaskSource
from torchcross.tasks.task import TaskDescription

MC = TaskDescription("MULTICLASS_CLASSIFICATION", {i: str(i) for i in range(4)}, "mc")


def source(n: int = 40, offset: float = 0.0) -> TensorTaskSource:
    return TensorTaskSource(
        torch.arange(n, dtype=torch.float64)[:, None] + offset, [i % 4 for i in range(n)], MC
    )


def first(x):
    return x


def support_ids(tasks) -> list[list[int]]:
    return [[i for i, _ in t.support] for t in tasks]


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_persistent_workers_follow_set_epoch_of_episode_datasets(context: str) -> None:
    meta = FewShotMetaDataset(source(), None, 2, 2, 0, length=6, seed=0, output_indices=True)
    loader = DataLoader(
        meta,
        batch_size=None,
        num_workers=2,
        persistent_workers=True,
        collate_fn=first,
        multiprocessing_context=context,
    )
    seen = []
    for epoch in range(3):
        meta.set_epoch(epoch)
        seen.append(support_ids(loader))
        assert seen[-1] == support_ids(meta[i] for i in range(6))  # the epoch's own episodes
    assert seen[0] != seen[1] != seen[2]


def test_persistent_workers_pool_image_episodes_across_epochs_without_corrupting_held_ones() -> None:
    d = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b", 2: "c"}, "toy")
    images = np.random.default_rng(1).integers(0, 256, (30, 6, 6, 3), dtype=np.uint8)
    src = ImageArrayTaskSource(images, [i % 3 for i in range(30)], d, output="uint8")
    meta = FewShotMetaDataset(src, None, 2, 2, 0, length=5, seed=0)
    loader = DataLoader(meta, batch_size=None, num_workers=2, persistent_workers=True, collate_fn=first)
    held = []
    for epoch in range(3):
        meta.set_epoch(epoch)
        for i, task in enumerate(loader):
            want = meta[i]
            assert torch.equal(task.support[0], want.support[0])
            assert torch.equal(task.query[1], want.query[1])
            assert type(task.support[0]) is torch.Tensor  # pooled in the worker, plain here
            if epoch == 0:
                held.append((task, want))  # kept while later epochs reuse the workers' blocks
    for task, want in held:
        assert torch.equal(task.query[0], want.query[0])
        assert torch.equal(task.support[1], want.support[1])


def test_persistent_workers_follow_set_epoch_of_batched_sources() -> None:
    batched = BatchedTaskSource(source(), batch_size=4, shuffle=True, seed=3)
    loader = DataLoader(batched, batch_size=None, num_workers=2, persistent_workers=True, collate_fn=first)

    def batch_firsts(batches) -> list[float]:
        return sorted(float(batch[0][0][0]) for batch in batches)

    epochs = []
    for epoch in range(2):
        batched.set_epoch(epoch)
        epochs.append(batch_firsts(loader))
        assert epochs[-1] == batch_firsts(batched)  # the same batches as in this process
    assert epochs[0] != epochs[1]


def test_persistent_workers_follow_epochs_and_resume_of_multitask_streams() -> None:
    sources = {"a": source(24), "b": source(16, offset=100.0)}
    sampler = MultiTaskBatchSampler(sources, batch_size=4, seed=1)
    loader = DataLoader(sampler, batch_size=None, num_workers=2, persistent_workers=True)

    def rows(batches) -> list[float]:
        return [float(x[0, 0]) for (x, _), _ in batches]

    sampler.set_epoch(1)
    reference = rows(iter(sampler))  # epoch 1 in this process
    sampler.set_epoch(0)
    rows(loader)  # epoch 0 through the workers
    sampler.set_epoch(1)
    assert sorted(rows(loader)) == sorted(reference)
    sampler.load_state_dict(sampler.state_dict(consumed=4))  # resume epoch 1 after 4 batches
    resumed = rows(loader)
    assert len(resumed) == len(reference) - 4
    assert sorted(resumed) == sorted(reference[4:])


def test_persistent_workers_follow_set_epoch_of_random_interleaving() -> None:
    data = RandomInterleaveDataset([list(range(10)), list(range(100, 105))], seed=0)
    loader = DataLoader(data, batch_size=None, num_workers=1, persistent_workers=True)
    orders = []
    for epoch in range(2):
        data.set_epoch(epoch)
        orders.append([int(x) for x in loader])
        assert orders[-1] == list(data)  # the same order as in this process
    assert orders[0] != orders[1]


def test_shared_ints_copies_and_pickles_are_independent() -> None:
    a = SharedInts(4, 5)
    b = pickle.loads(pickle.dumps(a))
    c = copy.deepcopy(a)
    b[0] = 40
    c[1] = 50
    assert (a[0], a[1], b[0], c[1]) == (4, 5, 40, 50)
    assert repr(a) == "SharedInts(4, 5)"
    with pytest.raises(ValueError, match="at least one value"):
        SharedInts()


def _child_reads(values: SharedInts, ready, go, out) -> None:
    ready.set()
    go.wait(10)
    out.put(values[0])


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_a_child_process_sees_later_writes(context: str) -> None:
    ctx = mp.get_context(context)
    values = SharedInts(1)
    ready, go, out = ctx.Event(), ctx.Event(), ctx.Queue()
    child = ctx.Process(target=_child_reads, args=(values, ready, go, out))
    child.start()
    assert ready.wait(30)
    values[0] = 99  # written after the child started
    go.set()
    assert out.get(timeout=30) == 99
    child.join(10)


def test_slots_are_reused_and_slabs_grow() -> None:
    import gc

    gc.collect()  # free the slots of earlier tests' garbage first: only ours may be freed below
    owner = shared_ints._allocator()
    before = len(owner.slabs)
    many = [SharedInts(i) for i in range(shared_ints._SLAB + 1)]  # needs one more slab
    assert len(owner.slabs) >= before + 1
    assert [m[0] for m in many[:3]] == [0, 1, 2]
    free_before = sum(u.count(0) for u in owner.used)
    del many
    gc.collect()
    assert sum(u.count(0) for u in owner.used) == free_before + shared_ints._SLAB + 1
    assert SharedInts(7)[0] == 7
