"""Tests of InterleaveDataset and RandomInterleaveDataset (torchcross 0.0.6 names)."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset

from torchcross.data import TensorTaskSource
from torchcross.data.batched_source import BatchedTaskSource
from torchcross.data.collate import stack
from torchcross.data.interleave import InterleaveDataset, RandomInterleaveDataset
from torchcross.tasks.task import TaskDescription


def make_source(name: str, n: int, offset: int) -> TensorTaskSource:
    desc = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b", 2: "c"}, name)
    return TensorTaskSource(torch.arange(offset, offset + n), torch.arange(n) % 3, desc)


def batched(sizes=(9, 4, 13), batch_size=3, seed=0, **kwargs) -> list[BatchedTaskSource]:
    return [
        BatchedTaskSource(
            make_source(f"t{i}", n, 1000 * i),
            batch_size,
            collate_fn=stack,
            with_task_description=True,
            seed=seed + i,
            **kwargs,
        )
        for i, n in enumerate(sizes)
    ]


def examples(sizes=(9, 4, 13)) -> list[int]:
    return sorted(1000 * i + j for i, n in enumerate(sizes) for j in range(n))


def flat(stream) -> list[int]:
    return [i for (x, _), _ in stream for i in x.tolist()]


def loader(dataset, workers: int) -> list:
    kwargs = {"multiprocessing_context": multiprocessing.get_context("fork")} if workers else {}
    return list(DataLoader(dataset, batch_size=None, num_workers=workers, **kwargs))


class LyingLength:
    """An iterable whose len() is wrong (too large or too small)."""

    def __init__(self, items, reported):
        self.items, self.reported = list(items), reported

    def __iter__(self):
        return iter(self.items)

    def __len__(self):
        return self.reported


class SelfSharding(IterableDataset):
    """A BatchedTaskSource hidden behind a plain IterableDataset: it shards itself."""

    def __init__(self, inner: BatchedTaskSource) -> None:
        self.inner = inner

    def __iter__(self):
        return iter(self.inner)

    def __len__(self) -> int:
        return len(self.inner)

    def set_epoch(self, epoch: int) -> None:
        self.inner.set_epoch(epoch)


# -- round robin --------------------------------------------------------------------------


def test_round_robin_over_unequal_sources():
    ds = InterleaveDataset([[1, 2, 3], ["a"], [10, 20]])
    assert list(ds) == [1, "a", 10, 2, 20, 3]
    assert len(ds) == 6
    assert list(ds) == list(ds)


def test_round_robin_over_planned_sources_is_round_robin_by_task():
    ds = InterleaveDataset(batched())
    stream = list(ds)
    names = [d.task_identifier for _, d in stream]
    assert names[:6] == ["t0", "t1", "t2", "t0", "t1", "t2"]
    assert names[6:] == ["t0", "t2", "t2", "t2"]
    assert sorted(flat(stream)) == examples()
    assert len(ds) == len(stream) == 3 + 2 + 5


# -- random interleaving ------------------------------------------------------------------


def test_random_interleave_visits_every_item_once_and_ends_cleanly():
    sources = [list(range(5)), list(range(100, 103)), list(range(200, 211))]
    ds = RandomInterleaveDataset(sources, seed=0)
    for epoch in range(20):  # 0.0.6 raised ValueError at the end of every epoch
        ds.set_epoch(epoch)
        out = list(ds)
        assert sorted(out) == sorted(x for s in sources for x in s)
        for s in sources:  # each source's own order is kept
            assert [x for x in out if x in s] == s


@pytest.mark.parametrize("reported", [0, 2, 50])
def test_random_interleave_survives_wrong_lengths(reported):
    sources = [LyingLength(range(6), reported), LyingLength(range(10, 14), 4), iter(range(20, 23))]
    out = list(RandomInterleaveDataset(sources, seed=1))
    assert sorted(out) == [0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 20, 21, 22]


def test_random_interleave_is_seeded():
    sources = [list(range(20)), list(range(100, 120))]
    a = list(RandomInterleaveDataset(sources, seed=3))
    assert a == list(RandomInterleaveDataset(sources, seed=3))
    assert a != list(RandomInterleaveDataset(sources, seed=4))
    ds = RandomInterleaveDataset(sources, seed=3)
    ds.set_epoch(1)
    assert list(ds) != a
    unseeded = RandomInterleaveDataset(sources)
    assert isinstance(unseeded.seed, int)
    assert list(unseeded) == list(unseeded)


def test_random_interleave_weights_by_what_remains():
    # a uniformly random interleaving: the big source's share is the same early and late
    sources = [list(range(100)), list(range(1000, 1300))]
    early = []
    for seed in range(40):
        out = list(RandomInterleaveDataset(sources, seed=seed))
        early.append(sum(x < 1000 for x in out[:100]))
    assert abs(np.mean(early) - 25.0) < 2.5


def test_planned_sources_yield_pairs_exactly_once_and_are_deterministic():
    ds = RandomInterleaveDataset(batched(), seed=5)
    stream = list(ds)
    assert all(isinstance(d, TaskDescription) for _, d in stream)
    assert sorted(flat(stream)) == examples()
    assert len(ds) == len(stream)
    assert flat(RandomInterleaveDataset(batched(), seed=5)) == flat(stream)
    ds.set_epoch(1)
    assert all(s.epoch == 1 for s in ds.datasets)  # set_epoch reaches the sources
    assert flat(ds) != flat(stream)


@pytest.mark.parametrize("cls", [InterleaveDataset, RandomInterleaveDataset])
@pytest.mark.parametrize("world_size", [1, 2])
def test_planned_sources_exactly_once_across_ranks_and_workers(cls, world_size):
    kwargs = {"seed": 2} if cls is RandomInterleaveDataset else {}
    single = flat(cls(batched(), **kwargs))
    seen = []
    for rank in range(world_size):
        ds = cls(batched(), rank=rank, world_size=world_size, **kwargs)
        with_workers = flat(loader(ds, 2))
        if world_size == 1:
            assert with_workers == single  # same stream with 0 and 2 workers
        seen += with_workers
    assert sorted(seen) == examples()


def test_self_sharding_sources_exactly_once_across_workers():
    ds = RandomInterleaveDataset([SelfSharding(b) for b in batched()], seed=0)
    assert sorted(flat(loader(ds, 2))) == examples()
    assert sorted(flat(ds)) == examples()
    ds.set_epoch(2)
    assert all(s.inner.epoch == 2 for s in ds.datasets)


@pytest.mark.parametrize("cls", [InterleaveDataset, RandomInterleaveDataset])
def test_plain_iterables_exactly_once_across_ranks_and_workers(cls):
    sources = [list(range(7)), list(range(100, 111))]
    seen = []
    for rank in range(2):
        seen += [int(x) for x in loader(cls(sources, rank=rank, world_size=2), 2)]
    assert sorted(seen) == sorted(sources[0] + sources[1])


def test_medimeta_style_subclass():
    # medimeta 0.0.6: class MultiMedIMetaBatchTaskSource(RandomInterleaveDataset) passing a
    # positional list of BatchedTaskSource(..., with_task_description=True)
    class Multi(RandomInterleaveDataset):
        def __init__(self, sizes, batch_size):
            sources = [
                BatchedTaskSource(
                    task_source=make_source(f"t{i}", n, 1000 * i),
                    batch_size=batch_size,
                    shuffle=True,
                    drop_last=False,
                    collate_fn=None,
                    with_task_description=True,
                )
                for i, n in enumerate(sizes)
            ]
            super().__init__(sources)

    ds = Multi((5, 8), 2)
    for epoch in range(3):
        ds.set_epoch(epoch)
        out = list(ds)
        assert len(out) == len(ds) == 3 + 4
        got = sorted(int(x) for batch, _ in out for x, _ in batch)
        assert got == examples((5, 8))


def test_bad_input():
    with pytest.raises(ValueError, match="at least one source"):
        InterleaveDataset([])
    with pytest.raises(ValueError, match="at least one source"):
        RandomInterleaveDataset([], seed=0)
    with pytest.raises(TypeError, match=r"source 1 .* not iterable"):
        RandomInterleaveDataset([[1], 5], seed=0)
    with pytest.raises(TypeError, match="list of iterables"):
        InterleaveDataset(3)
    with pytest.raises(ValueError, match="seed"):
        RandomInterleaveDataset([[1]], seed=-2)
    with pytest.raises(ValueError, match="epoch"):
        InterleaveDataset([[1]]).set_epoch(-1)
    with pytest.raises(TypeError, match=r"sources \[0\] .* no len"):
        len(InterleaveDataset([iter([1, 2])]))
    with pytest.raises(ValueError, match="rank"):
        InterleaveDataset([[1]], rank=3, world_size=2)
