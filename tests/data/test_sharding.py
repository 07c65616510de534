"""Splitting work across DataLoader workers and distributed ranks."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.data import DataLoader, IterableDataset

from torchcross.data.workers.sharding import ShardPosition, shard_indices, shard_position


def test_shard_position_is_index_and_count() -> None:
    pos = ShardPosition(2, 5)
    assert (pos.index, pos.count) == (2, 5)
    assert pos == (2, 5)
    assert isinstance(pos, tuple)


def test_single_process_is_one_shard() -> None:
    assert not torch.distributed.is_initialized()
    assert shard_position() == (0, 1)


@pytest.mark.parametrize(("rank", "world"), [(0, 1), (1, 2), (3, 4)])
def test_explicit_rank_and_world_size(rank: int, world: int) -> None:
    assert shard_position(rank=rank, world_size=world) == (rank, world)


@pytest.mark.parametrize(
    ("rank", "world", "match"),
    [
        (2, 2, r"need 0 <= rank < world_size, got rank=2, world_size=2"),
        (-1, 2, "need 0 <= rank < world_size"),
        (0, 0, "need 0 <= rank < world_size"),
        (1, None, "pass both rank and world_size, or neither"),
        (None, 3, "pass both rank and world_size, or neither"),
    ],
)
def test_invalid_rank_or_world_size(rank: int | None, world: int | None, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        shard_position(rank=rank, world_size=world)


class _WhereAmI(IterableDataset):
    def __init__(self, rank: int, world: int) -> None:
        self.rank, self.world = rank, world

    def __iter__(self):
        yield tuple(shard_position(self.rank, self.world))


def test_dataloader_workers_get_distinct_shards_across_ranks() -> None:
    positions = set()
    for rank in range(2):
        loader = DataLoader(
            _WhereAmI(rank, 2), batch_size=None, num_workers=2, multiprocessing_context="fork"
        )
        positions.update(tuple(p) for p in loader)
    assert positions == {(0, 4), (1, 4), (2, 4), (3, 4)}


@given(st.integers(0, 200), st.integers(1, 12))
def test_shards_cover_every_item_exactly_once_and_balance(n: int, count: int) -> None:
    shards = [list(shard_indices(n, ShardPosition(i, count))) for i in range(count)]
    flat = sorted(i for shard in shards for i in shard)
    assert flat == list(range(n))
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize(
    ("n", "position", "match"),
    [
        (-1, ShardPosition(0, 1), "need n >= 0 items, got n=-1"),
        (5, (2, 2), r"need 0 <= index < count in the shard position, got \(2, 2\)"),
        (5, (0, 0), "need 0 <= index < count"),
    ],
)
def test_shard_indices_errors(n: int, position: tuple[int, int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        shard_indices(n, position)  # type: ignore[arg-type]
