"""Epochs and resume positions set in the main process reach DataLoader workers, persistent ones too.

Through `StreamLoader`, which sends the workers the ``(epoch, index)`` of their items; a plain
DataLoader's persistent workers keep the copy they started with and refuse to iterate it again.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from torchcross.data import StreamLoader, TensorTaskSource
from torchcross.data.batched_source import BatchedTaskSource
from torchcross.data.interleave import RandomInterleaveDataset
from torchcross.data.metadataset import FewShotMetaDataset
from torchcross.data.multitask import MultiTaskBatchSampler
from torchcross.datasets.generic import ImageArrayTaskSource
from torchcross.tasks.task import TaskDescription

MC = TaskDescription("MULTICLASS_CLASSIFICATION", {i: str(i) for i in range(4)}, "mc")


def source(n: int = 40, offset: float = 0.0) -> TensorTaskSource:
    return TensorTaskSource(
        torch.arange(n, dtype=torch.float64)[:, None] + offset, [i % 4 for i in range(n)], MC
    )


def support_ids(tasks) -> list[list[int]]:
    return [[i for i, _ in t.support] for t in tasks]


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_persistent_workers_follow_set_epoch_of_episode_datasets(context: str) -> None:
    meta = FewShotMetaDataset(source(), None, 2, 2, 0, length=6, seed=0, output_indices=True)
    loader = StreamLoader(meta, num_workers=2, persistent_workers=True, multiprocessing_context=context)
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
    loader = StreamLoader(meta, num_workers=2, persistent_workers=True)
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


def test_plain_persistent_workers_refuse_a_stale_shuffled_batched_source() -> None:
    batched = BatchedTaskSource(source(), batch_size=4, shuffle=True, seed=3)
    loader = DataLoader(batched, batch_size=None, num_workers=1, persistent_workers=True)
    assert len(list(loader)) == len(batched)  # the first epoch: the copy the worker started with
    batched.set_epoch(1)
    with pytest.raises(RuntimeError, match="iterated again in a persistent DataLoader worker"):
        list(loader)
    in_order = BatchedTaskSource(source(), batch_size=4, shuffle=False)  # no epoch to follow
    loader = DataLoader(in_order, batch_size=None, num_workers=1, persistent_workers=True)
    assert [len(list(loader)) for _ in range(2)] == [len(in_order)] * 2


def test_workers_started_after_set_epoch_follow_it() -> None:
    batched = BatchedTaskSource(source(), batch_size=4, shuffle=True, seed=3)
    loader = DataLoader(batched, batch_size=None, num_workers=2)

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
    loader = StreamLoader(sampler, num_workers=2, persistent_workers=True)

    def rows(batches) -> list[float]:
        return [float(x[0, 0]) for (x, _), _ in batches]

    sampler.set_epoch(1)
    reference = rows(iter(sampler))  # epoch 1 in this process
    sampler.set_epoch(0)
    rows(loader)  # epoch 0 through the workers
    sampler.set_epoch(1)
    assert rows(loader) == reference
    it = iter(loader)
    head = rows(next(it) for _ in range(4))
    sampler.load_state_dict(sampler.state_dict())  # resume epoch 1 after the 4 batches taken
    resumed = rows(loader)
    assert head + resumed == reference


def test_persistent_workers_refuse_to_repeat_a_random_interleaving() -> None:
    data = RandomInterleaveDataset([list(range(10)), list(range(100, 105))], seed=0)
    loader = DataLoader(data, batch_size=None, num_workers=1, persistent_workers=True)
    assert [int(x) for x in loader] == list(data)
    data.set_epoch(1)
    with pytest.raises(RuntimeError, match="persistent_workers=False"):
        list(loader)
    loader = DataLoader(data, batch_size=None, num_workers=1)  # workers start with epoch 1
    assert [int(x) for x in loader] == list(data)


def test_stream_loader_refuses_what_it_cannot_load() -> None:
    with pytest.raises(TypeError, match="StreamLoader needs an episode dataset or multi-task sampler"):
        StreamLoader([1, 2, 3])  # type: ignore[arg-type]
    meta = FewShotMetaDataset(source(), None, 2, 2, 0, length=6, seed=0)
    with pytest.raises(TypeError, match="sets batch_size, collate_fn itself"):
        StreamLoader(meta, batch_size=2, collate_fn=list)


def test_the_shared_memory_pool_is_a_loading_option(monkeypatch: pytest.MonkeyPatch) -> None:
    from torchcross.data.workers import shm_pool

    meta = FewShotMetaDataset(source(), None, 2, 2, 0, length=4, seed=0)
    expected = [t.support[0].tolist() for t in meta]
    for pool_mb in (0, 8):
        loader = StreamLoader(meta, num_workers=1, pool_mb=pool_mb)
        assert [t.support[0].tolist() for t in loader] == expected
    info = type("Info", (), {"id": 0, "num_workers": 1})()
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: info)  # as in a worker
    try:
        shm_pool.set_pool_limit(0)
        assert shm_pool.empty((4,), torch.float32) is None  # pooling off in this "worker"
    finally:
        shm_pool.set_pool_limit(None)
    with pytest.raises(ValueError, match="pool limit must be a whole number"):
        shm_pool.set_pool_limit(-1)
    with pytest.raises(ValueError, match="pool_mb"):
        StreamLoader(meta, num_workers=1, pool_mb=-1)
