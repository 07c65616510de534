"""Episode datasets resume exactly: ``state_dict``/``load_state_dict``, over ranks and DataLoader workers."""

from __future__ import annotations

import io

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_metadataset import make_source
from torch.utils.data import DataLoader

from torchcross.data import StreamLoader
from torchcross.data.metadataset.few_shot import FewShotMetaDataset
from torchcross.data.metadataset.variable import VariableWayShotMetaDataset

_SOURCE = make_source("multiclass", n=120)


def _episodes(length: int | None = 12, seed: int = 3, **kwargs) -> FewShotMetaDataset:
    return FewShotMetaDataset(_SOURCE, None, 1, 1, 0, length=length, seed=seed, **kwargs)


def _key(task) -> tuple[int, ...]:
    return tuple(int(v) for v in task.support[0][:, 0])  # the examples an episode holds


def _loader(ds, workers: int):
    return DataLoader(ds, batch_size=None, num_workers=workers) if workers else ds


@pytest.mark.parametrize("workers", [0, 1, 2])
@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_a_rank_takes_every_world_size_th_episode_whatever_its_workers(world_size: int, workers: int) -> None:
    everything = [_key(t) for t in _episodes()]
    for rank in range(world_size):
        ds = _episodes().shard_over(rank, world_size)
        assert [_key(t) for t in _loader(ds, workers)] == everything[rank::world_size]


@settings(max_examples=25, deadline=None)
@given(
    world_size=st.integers(1, 3),
    consumed=st.integers(0, 5),
    endless=st.booleans(),
    epoch=st.integers(0, 2),
)
def test_a_resumed_iteration_continues_the_uninterrupted_one(
    world_size: int, consumed: int, endless: bool, epoch: int
) -> None:
    length = None if endless else 13
    take = 8  # episodes per rank compared (an endless dataset never ends)
    for rank in range(world_size):
        full = _episodes(length).shard_over(rank, world_size)
        full.set_epoch(epoch)
        expected = [_key(t) for _, t in zip(range(consumed + take), full)]
        first = _episodes(length).shard_over(rank, world_size)
        first.set_epoch(epoch)
        it = iter(first)
        before = [_key(next(it)) for _ in range(min(consumed, len(expected)))]
        state = first.state_dict()
        resumed = _episodes(length).shard_over(rank, world_size)
        resumed.load_state_dict(state)
        resumed.set_epoch(epoch)  # the same epoch again keeps the restored position
        after = [_key(t) for _, t in zip(range(take), resumed)]
        assert before + after == expected[: len(before) + len(after)]
        assert len(before + after) == len(expected)


def test_with_workers_the_loop_counts_what_it_received() -> None:
    ds = _episodes().shard_over(1, 2)
    everything = [_key(t) for t in _episodes()]
    received = [_key(t) for _, t in zip(range(2), StreamLoader(ds, num_workers=2))]
    state = ds.state_dict()  # the loader counted what the loop received, not what the workers made
    assert state["position"] == 4
    resumed = _episodes().shard_over(1, 2)
    resumed.load_state_dict(state)
    rest = [_key(t) for t in DataLoader(resumed, batch_size=None, num_workers=2)]
    assert received + rest == everything[1::2]


def test_a_new_epoch_starts_from_its_first_episode() -> None:
    ds = _episodes()
    it = iter(ds)
    next(it), next(it)
    ds.load_state_dict(ds.state_dict())
    ds.set_epoch(1)
    fresh = _episodes()
    fresh.set_epoch(1)
    assert [_key(t) for t in ds] == [_key(t) for t in fresh]
    assert ds.state_dict()["position"] == 12  # one whole epoch taken


def test_the_state_is_plain_and_reaches_the_end() -> None:
    ds = _episodes(length=4)
    assert len(list(ds)) == 4
    state = ds.state_dict()
    assert state == {"epoch": 0, "position": 4, "config": state["config"]}
    assert state["config"]["rule"] == "FewShotMetaDataset"
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    assert torch.load(buffer, weights_only=True) == state  # a checkpoint holds it without pickled objects
    resumed = _episodes(length=4)
    resumed.load_state_dict(state)
    assert list(resumed) == []


@pytest.mark.parametrize(
    ("state", "match"),
    [
        ({"epoch": 0}, r"not a FewShotMetaDataset state dict \(need epoch, position, config\)"),
        ({"epoch": 0, "position": 0, "config": 3}, r"state\['config'\] must be a dict, got 3"),
        ({"epoch": 0, "position": 13, "config": None}, r"state\['config'\] must be a dict"),
    ],
)
def test_malformed_states_are_refused(state: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _episodes().load_state_dict(state)


def test_a_state_of_other_episodes_names_what_differs() -> None:
    state = _episodes(seed=3).state_dict()
    with pytest.raises(ValueError, match=r"other sampling parameters; seed: saved 3, here 4"):
        _episodes(seed=4).load_state_dict(state)
    with pytest.raises(
        ValueError, match=r"rule: saved 'FewShotMetaDataset', here 'VariableWayShotMetaDataset'"
    ):
        VariableWayShotMetaDataset(_SOURCE, length=12, seed=3).load_state_dict(state)
    far = {**state, "position": 99}
    with pytest.raises(ValueError, match=r"state position 99 is beyond the epoch's 12 episodes"):
        _episodes().load_state_dict(far)
    with pytest.raises(ValueError, match=r"state\['epoch'\] must be >= 0, got state\['epoch'\]=-1"):
        _episodes().load_state_dict({**state, "epoch": -1})
