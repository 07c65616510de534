"""One save/load contract every resumable stream inherits (torchdata.nodes' ``run_test_save_load_state``).

Take ``k`` items, save the state, take ``n`` more; a fresh stream loaded from the state yields exactly
those ``n`` items. Run with 0, 1 and 2 DataLoader workers (through `StreamLoader`, which counts what
the loop consumed in the stream's one position object) and as each rank of 1 and 2.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
from collections.abc import Callable
from typing import Any

import pytest
import torch

from torchcross.data import StreamLoader, TensorTaskSource
from torchcross.data.metadataset import FewShotMetaDataset, VariableWayShotMetaDataset
from torchcross.data.multitask import MultiTaskBatchSampler, MultiTaskEpisodeSampler
from torchcross.data.workers.sharding import ResumableStream
from torchcross.tasks.task import TaskDescription

MC = TaskDescription("MULTICLASS_CLASSIFICATION", {i: str(i) for i in range(4)}, "mc")


def _source(n: int = 32, offset: float = 0.0) -> TensorTaskSource:
    return TensorTaskSource(
        torch.arange(n, dtype=torch.float64)[:, None] + offset, [i % 4 for i in range(n)], MC
    )


def _few_shot(length: int | None) -> Callable[[], ResumableStream]:
    return lambda: FewShotMetaDataset(_source(), None, 2, 1, 1, length=length, seed=3)


STREAMS: dict[str, Callable[[], ResumableStream]] = {
    "FewShotMetaDataset": _few_shot(12),
    "FewShotMetaDataset-endless": _few_shot(None),
    "VariableWayShotMetaDataset": lambda: VariableWayShotMetaDataset(
        _source(),
        min_ways=2,
        max_ways=4,
        max_query_per_class=2,
        filter_classes_min_samples=0,
        length=12,
        seed=1,
    ),
    "MultiTaskBatchSampler-epoch": lambda: MultiTaskBatchSampler(
        {"a": _source(24), "b": _source(16, 100.0)}, 3, seed=2
    ),
    "MultiTaskBatchSampler-infinite": lambda: MultiTaskBatchSampler(
        {"a": _source(24), "b": _source(16, 100.0)}, 3, mode="infinite", weighting="uniform", seed=2
    ),
    "MultiTaskBatchSampler-example": lambda: MultiTaskBatchSampler(
        {"a": _source(25), "b": _source(7, 100.0)}, 3, mode="epoch", seed=2, shard_by="example"
    ),
    "MultiTaskEpisodeSampler": lambda: MultiTaskEpisodeSampler(
        {"x": _few_shot(7)(), "y": _few_shot(5)()}, 2, seed=4
    ),
}
SHARDS = [(0, 1), (0, 2), (1, 2)]


def _flat(item: Any) -> Any:
    """A comparable value of an item: its tensors as lists, exactly."""
    if isinstance(item, torch.Tensor):
        return item.tolist()
    if isinstance(item, (list, tuple)):
        return [_flat(x) for x in item]
    if hasattr(item, "support"):  # a Task
        return [_flat(item.support), _flat(item.query), item.description.task_identifier]
    return item


def _build(name: str, rank: int, world: int, epoch: int) -> ResumableStream:
    stream = STREAMS[name]()
    stream.rank, stream.world_size = rank, world
    stream.set_epoch(epoch)
    return stream


def _loader(stream: ResumableStream, workers: int) -> StreamLoader:
    options = {"multiprocessing_context": multiprocessing.get_context("fork")} if workers else {}
    return StreamLoader(stream, workers, **options)


def run_test_save_load_state(name: str, workers: int, rank: int, world: int, k: int, n: int) -> None:
    """After ``k`` items and a saved state, a fresh stream loaded from it yields the next ``n`` items."""
    stream = _build(name, rank, world, epoch=1)
    it = iter(_loader(stream, workers))
    head = [_flat(x) for x in itertools.islice(it, k)]
    state = json.loads(json.dumps(stream.state_dict()))  # plain values: JSON and torch.save keep them
    expected = [_flat(x) for x in itertools.islice(it, n)]
    fresh = _build(name, rank, world, epoch=0)
    fresh.load_state_dict(state)
    assert [_flat(x) for x in itertools.islice(_loader(fresh, workers), n)] == expected
    uninterrupted = [_flat(x) for x in itertools.islice(iter(_build(name, rank, world, epoch=1)), k + n)]
    assert head + expected == uninterrupted  # and the same items as iterating in this process


@pytest.mark.parametrize("name", list(STREAMS))
@pytest.mark.parametrize("workers", [0, 1, 2])
@pytest.mark.parametrize(("rank", "world"), SHARDS)
def test_every_stream_resumes_from_its_saved_state(name: str, workers: int, rank: int, world: int) -> None:
    run_test_save_load_state(name, workers, rank, world, k=2, n=3)


@pytest.mark.parametrize("name", list(STREAMS))
def test_a_state_saved_at_the_start_resumes_from_the_start(name: str) -> None:
    run_test_save_load_state(name, 0, 0, 1, k=0, n=4)


def test_the_position_lives_in_the_main_process_not_in_the_workers() -> None:
    stream = _build("FewShotMetaDataset", 1, 2, epoch=0)
    it = iter(_loader(stream, 2))
    next(it)  # the workers have made more (prefetch); the loop took one
    assert stream.state_dict()["position"] == 2  # start 0 + one item of this rank * 2 ranks
    assert (stream.position.epoch, stream.position.start, stream.position.consumed) == (0, 0, 1)
    stream.set_epoch(1)  # a new epoch starts from its first item
    assert stream.state_dict()["position"] == 0
