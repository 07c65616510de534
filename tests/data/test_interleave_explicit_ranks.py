"""Explicit ``rank=``/``world_size=`` of the interleaves reach the sources that shard themselves."""

from __future__ import annotations

import multiprocessing

import pytest
from data_helpers import fake_distributed
from test_episode_dataset_contract import SOURCES, _ids
from torch.utils.data import DataLoader

from torchcross.data.batched_source import BatchedTaskSource
from torchcross.data.capabilities import ShardIterable
from torchcross.data.interleave import InterleaveDataset, RandomInterleaveDataset
from torchcross.data.metadataset import FewShotMetaDataset
from torchcross.data.workers.sharding import ShardPosition


def _episodes(part: int) -> FewShotMetaDataset:
    return FewShotMetaDataset(SOURCES["multiclass", part], None, 2, 2, 0, length=6, seed=part)


def _build(cls: type, members: list, **ranks: int) -> InterleaveDataset:
    return cls(members, **ranks) if cls is InterleaveDataset else cls(members, seed=0, **ranks)


def _ids_of(items) -> list[tuple[int, ...]]:
    return sorted(tuple(_ids(t.support[0])) for t in items)


@pytest.mark.parametrize("cls", [InterleaveDataset, RandomInterleaveDataset])
def test_explicit_ranks_reach_self_sharding_episode_datasets(cls: type) -> None:
    everything = _ids_of(_build(cls, [_episodes(0), _episodes(1)]))
    shares = [_ids_of(_build(cls, [_episodes(0), _episodes(1)], rank=r, world_size=2)) for r in range(2)]
    assert len(shares[0]) == len(shares[1]) == 6
    assert sorted(shares[0] + shares[1]) == everything  # each episode on exactly one rank


@pytest.mark.parametrize("cls", [InterleaveDataset, RandomInterleaveDataset])
def test_explicit_ranks_reach_sources_under_dataloader_workers(cls: type) -> None:
    seen = []
    for rank in range(2):
        ds = _build(cls, [_episodes(0), _episodes(1)], rank=rank, world_size=2)
        loader = DataLoader(
            ds, batch_size=None, num_workers=2, multiprocessing_context=multiprocessing.get_context("fork")
        )
        seen += _ids_of(loader)
    assert seen
    assert sorted(seen) == _ids_of(_build(cls, [_episodes(0), _episodes(1)]))


def test_explicit_ranks_override_torch_distributed() -> None:
    everything = _ids_of(InterleaveDataset([_episodes(0), _episodes(1)]))
    with pytest.MonkeyPatch.context() as mp:
        fake_distributed(mp, 0, 3)  # the process group says rank 0 of 3; the interleave is told otherwise
        shares = [
            _ids_of(InterleaveDataset([_episodes(0), _episodes(1)], rank=r, world_size=2)) for r in (0, 1)
        ]
    assert sorted(shares[0] + shares[1]) == everything


def test_explicit_ranks_reach_nested_interleaves_and_batched_sources_in_a_mixed_list() -> None:
    def members() -> list:
        batched = BatchedTaskSource(SOURCES["binary", 0], 4, shuffle=True, seed=0)
        return [InterleaveDataset([_episodes(0)]), batched, list(range(100, 107))]

    def keys(items) -> list:
        return sorted(
            ("episode", tuple(_ids(x.support[0]))) if hasattr(x, "support") else ("other", repr(x))
            for x in items
        )

    everything = keys(InterleaveDataset(members()))
    shares = [keys(InterleaveDataset(members(), rank=r, world_size=2)) for r in range(2)]
    assert sorted(shares[0] + shares[1]) == everything
    assert 0 < len(shares[0]) < len(everything)


def test_episode_datasets_and_interleaves_yield_any_shard() -> None:
    episodes = _episodes(0)
    assert isinstance(episodes, ShardIterable)
    assert isinstance(InterleaveDataset([episodes]), ShardIterable)
    full = [tuple(_ids(t.support[0])) for t in episodes]
    assert [tuple(_ids(t.support[0])) for t in episodes.iter_shard(ShardPosition(1, 4))] == [full[1], full[5]]
    assert [
        tuple(_ids(t.support[0])) for t in InterleaveDataset([episodes]).iter_shard(ShardPosition(0, 3))
    ] == [
        full[0],
        full[3],
    ]
