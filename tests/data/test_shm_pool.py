"""Pooled shared memory for worker results: reuse only after the receiver drops a lease."""

from __future__ import annotations

import errno
import gc
import io
import pickle
import warnings
from collections.abc import Iterator
from multiprocessing.reduction import ForkingPickler
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.utils.data
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader, Dataset

import torchcross.data.workers.shm_pool as shm_pool
from torchcross.data.metadataset import FewShotMetaDataset
from torchcross.data.workers.shm_pool import empty, shared_lease, worker_empty
from torchcross.datasets.generic import ImageArrayTaskSource
from torchcross.tasks.task import TaskDescription


@pytest.fixture
def fake_worker(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run this process as if it were a DataLoader worker with a fresh pool."""
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: SimpleNamespace(id=0))
    monkeypatch.setattr(shm_pool, "_POOL", None)
    monkeypatch.setattr(shm_pool, "_WARNED", False)
    yield
    gc.collect()


def roundtrip(obj: object) -> object:
    return ForkingPickler.loads(ForkingPickler.dumps(obj))


def only_block() -> shm_pool._Block:
    pool = shm_pool._POOL
    assert pool is not None
    assert len(pool.blocks) == 1
    return pool.blocks[0]


def test_outside_a_worker_nothing_is_pooled() -> None:
    assert empty((4, 4), torch.float32) is None
    x = worker_empty((4, 4), torch.float32)
    assert x.shape == (4, 4)
    assert not x.is_shared()


def test_a_block_is_reused_only_after_the_receiver_drops_it(fake_worker: None) -> None:
    x = empty((3, 5), torch.float32)
    assert x is not None
    x.copy_(torch.arange(15.0).view(3, 5))
    block = only_block()
    received = roundtrip(x)
    del x
    gc.collect()
    assert not block.is_free()  # sent, not yet released by the receiver
    assert empty((3, 5), torch.float32) is not None  # so a second block is made
    assert len(shm_pool._POOL.blocks) == 2
    assert torch.equal(received, torch.arange(15.0).view(3, 5))
    del received
    gc.collect()
    assert block.is_free()


def test_views_of_one_lease_share_one_release(fake_worker: None) -> None:
    x = empty((10, 2), torch.int64)
    x.copy_(torch.arange(20).view(10, 2))
    support, query = roundtrip((x[:4], x[4:]))
    block = only_block()
    del x
    gc.collect()
    assert torch.equal(query, torch.arange(8, 20).view(6, 2))
    del support
    gc.collect()
    assert not block.is_free()  # query still views the lease
    assert torch.equal(query, torch.arange(8, 20).view(6, 2))
    del query
    gc.collect()
    assert block.is_free()


def test_a_lease_never_sent_is_free_once_the_worker_drops_it(fake_worker: None) -> None:
    x = empty((100,), torch.uint8)
    block = only_block()
    assert not block.is_free()
    del x
    gc.collect()
    assert block.is_free()
    y = empty((100,), torch.uint8)
    assert y is not None
    assert only_block() is block
    assert block.lease == 2


def test_tensors_made_in_a_shared_lease_travel_and_release_together(fake_worker: None) -> None:
    with shared_lease():
        images = empty((4, 3, 8, 8), torch.float32)
        labels = empty((4,), torch.int64)
        flags = empty((5,), torch.bool)
    assert images.untyped_storage().data_ptr() == labels.untyped_storage().data_ptr()  # one lease
    assert labels.data_ptr() % 64 == 0
    block = only_block()
    images.copy_(torch.arange(4 * 3 * 64.0).view(4, 3, 8, 8))
    labels.copy_(torch.tensor([3, 1, 4, 1]))
    flags.copy_(torch.tensor([True, False, True, True, False]))
    want = images.clone(), labels.clone(), flags.clone()
    got_images, got_labels, got_flags = roundtrip((images, labels, flags))
    del images, labels, flags
    assert torch.equal(got_images, want[0])
    assert torch.equal(got_labels, want[1])
    assert torch.equal(got_flags, want[2])
    del got_images, got_flags
    gc.collect()
    assert not block.is_free()  # the labels still hold the lease
    assert torch.equal(got_labels, want[1])
    del got_labels
    gc.collect()
    assert block.is_free()


def test_a_shared_lease_moves_on_when_full(fake_worker: None) -> None:
    with shared_lease():
        first = empty((1024,), torch.float32)  # the block has 1/8 more than this, rounded to 4 KiB
        big = empty((4096,), torch.float32)  # does not fit in what is left: a new lease
        small = empty((2,), torch.int64)  # fits in the new lease
    assert first.untyped_storage().data_ptr() != big.untyped_storage().data_ptr()
    assert small.untyped_storage().data_ptr() == big.untyped_storage().data_ptr()
    assert empty((2,), torch.int64).untyped_storage().data_ptr() not in {
        first.untyped_storage().data_ptr(),
        big.untyped_storage().data_ptr(),
    }  # outside the block: leases of its own


def test_other_tensors_pickle_as_before(fake_worker: None) -> None:
    empty((2,), torch.float32)  # installs the reducer
    plain = torch.arange(6.0)
    back = roundtrip(plain)
    assert torch.equal(back, plain)
    assert back.is_shared()
    grad = torch.ones(3, requires_grad=True)
    assert roundtrip(grad).requires_grad


def test_a_full_pool_falls_back_to_fresh_shared_memory(
    fake_worker: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shm_pool, "_MAX_BLOCKS", 2)
    held = [empty((64,), torch.float32) for _ in range(2)]
    assert all(h is not None for h in held)
    assert empty((64,), torch.float32) is None
    x = worker_empty((64,), torch.float32)
    assert x.is_shared()
    assert len(shm_pool._POOL.blocks) == 2


def test_a_freed_block_of_another_size_is_evicted(fake_worker: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shm_pool, "_MAX_BLOCKS", 1)
    small = empty((16,), torch.float32)
    assert small is not None
    del small
    gc.collect()
    big = empty((1 << 16,), torch.float32)
    assert big is not None
    assert only_block().nbytes >= big.numel() * 4


def test_pool_size_comes_from_the_environment(fake_worker: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(shm_pool.ENV_VAR, "0")
    assert empty((8,), torch.float32) is None
    assert worker_empty((8,), torch.float32).is_shared()


@pytest.mark.parametrize("value", ["lots", "-1"])
def test_a_bad_pool_size_is_a_clear_error(
    fake_worker: None, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(shm_pool.ENV_VAR, value)
    with pytest.raises(ValueError, match=shm_pool.ENV_VAR):
        empty((8,), torch.float32)


class Filled(Dataset):
    """Item i: a pooled (1000,) float tensor full of i, and how many blocks the worker holds."""

    def __len__(self) -> int:
        return 60

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = worker_empty((1000,), torch.float32)
        x.fill_(float(i))
        pool = shm_pool._POOL
        return x, len(pool.blocks) if pool is not None else -1


def test_dataloader_workers_reuse_blocks_without_corrupting_held_items() -> None:
    loader = DataLoader(Filled(), batch_size=None, num_workers=2)
    kept, blocks = [], []
    for i, (x, n_blocks) in enumerate(loader):
        assert torch.equal(x, torch.full((1000,), float(i)))
        blocks.append(n_blocks)
        if i % 7 == 0:
            kept.append((i, x))  # held by the user: its block must not be reused
    for i, x in kept:
        assert torch.equal(x, torch.full((1000,), float(i)))
    # 60 items through two workers, yet each keeps a handful of blocks: they are reused
    assert 0 < max(blocks) <= 12  # held items + those in flight; without reuse: 16, then fresh segments


def test_holding_every_item_is_correct() -> None:
    items = list(DataLoader(Filled(), batch_size=None, num_workers=2))
    assert [int(x[0]) for x, _ in items] == list(range(60))
    assert all(torch.equal(x, torch.full((1000,), x[0].item())) for x, _ in items)


def test_received_tensors_can_be_shared_onwards() -> None:
    loader = DataLoader(Filled(), batch_size=None, num_workers=1)
    x, _ = next(iter(loader))
    x.share_memory_()  # e.g. to hand it to another process: a copy, the lease is released
    assert x.is_shared()
    assert torch.equal(x, torch.full((1000,), 0.0))


@pytest.mark.slow
def test_spawn_workers_pool_too() -> None:
    loader = DataLoader(Filled(), batch_size=None, num_workers=1, multiprocessing_context="spawn")
    out = [(int(x[0]), n) for x, n in loader]
    assert [i for i, _ in out] == list(range(60))
    assert 0 < max(n for _, n in out) <= 12


ops = st.lists(
    st.tuples(st.sampled_from(["make", "pair", "send", "drop"]), st.integers(0, 5), st.integers(1, 3)),
    max_size=30,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops)
def test_reuse_never_overwrites_a_live_tensor(fake_worker: None, steps: list[tuple[str, int, int]]) -> None:
    """Any sequence of leases, hand-offs and drops: every live tensor keeps what was written to it.

    ``pair`` makes two tensors in one shared lease (an episode's images and labels), sent in
    one message and dropped one at a time. Three blocks at most, so sequences also run into
    eviction and the fallback allocation.
    """
    shm_pool._POOL, max_blocks, shm_pool._MAX_BLOCKS = None, shm_pool._MAX_BLOCKS, 3
    try:
        worker: dict[int, list[tuple[torch.Tensor, float]]] = {}  # made, not yet sent
        received: dict[int, list[tuple[torch.Tensor, float]]] = {}
        value = 0.0
        for op, slot, pages in steps:
            if op in ("make", "pair") and slot not in worker:
                with shared_lease():
                    made = []
                    for k in range(2 if op == "pair" else 1):
                        value += 1
                        made.append((worker_empty((pages * 1024 >> k,), torch.float32).fill_(value), value))
                worker[slot] = made
            elif op == "send" and slot in worker and slot not in received:
                made = worker.pop(slot)
                back = roundtrip([x for x, _ in made])  # one message, as a DataLoader worker sends
                received[slot] = [(x, v) for x, (_, v) in zip(back, made)]
                del made  # as a DataLoader worker drops what it sent
            elif op == "drop" and slot in received:
                received[slot].pop(0)
                if not received[slot]:
                    del received[slot]
            for x, v in [pair for group in (*worker.values(), *received.values()) for pair in group]:
                assert bool((x == v).all()), f"a live tensor holding {v} was overwritten"
    finally:
        shm_pool._MAX_BLOCKS = max_blocks


def test_the_file_system_sharing_strategy_pools_too() -> None:
    before = torch.multiprocessing.get_sharing_strategy()
    torch.multiprocessing.set_sharing_strategy("file_system")
    try:
        kept, blocks = [], []
        for i, (x, n_blocks) in enumerate(DataLoader(Filled(), batch_size=None, num_workers=2)):
            assert torch.equal(x, torch.full((1000,), float(i)))
            blocks.append(n_blocks)
            if i % 5 == 0:
                kept.append((i, x))
        assert all(torch.equal(x, torch.full((1000,), float(i))) for i, x in kept)
        assert 0 < max(blocks) <= 12  # held items + those in flight; without reuse: 16, then fresh segments
    finally:
        torch.multiprocessing.set_sharing_strategy(before)


# --- scope: only torchcross's own pooled tensors are touched ---------------------------------------


def test_pooled_tensors_are_a_subclass_that_reaches_the_receiver_as_plain_tensors(fake_worker: None) -> None:
    x = empty((2, 3), torch.float32)
    assert type(x) is shm_pool.PooledTensor
    assert type(x[0] * 2) is shm_pool.PooledTensor  # derived tensors stay marked (in the worker)
    x.copy_(torch.arange(6.0).view(2, 3))
    back = roundtrip((x, x[1]))
    assert [type(b) for b in back] == [torch.Tensor, torch.Tensor]
    assert torch.equal(back[1], torch.tensor([3.0, 4.0, 5.0]))


def test_the_pool_leaves_the_reducer_of_plain_tensors_to_torch(fake_worker: None) -> None:
    assert empty((2,), torch.float32) is not None  # the pool is active in this "worker"
    assert ForkingPickler._extra_reducers[torch.Tensor] is torch.multiprocessing.reductions.reduce_tensor
    assert ForkingPickler._extra_reducers[shm_pool.PooledTensor] is shm_pool._reduce_pooled


def test_a_pooled_tensor_outside_any_block_pickles_the_torch_way(fake_worker: None) -> None:
    x = empty((4,), torch.float32).fill_(2.0)
    stacked = torch.stack([x, x])  # a PooledTensor in fresh memory
    assert type(stacked) is shm_pool.PooledTensor
    back = roundtrip(stacked)
    assert type(back) is torch.Tensor
    assert back.is_shared()  # moved to shared memory by torch's reducer
    assert torch.equal(back, torch.full((2, 4), 2.0))


def test_plain_pickling_of_a_pooled_tensor_gives_a_plain_tensor(fake_worker: None) -> None:
    x = empty((3,), torch.int64).copy_(torch.tensor([1, 2, 3]))
    back = pickle.loads(pickle.dumps(x))
    assert type(back) is torch.Tensor
    assert back.tolist() == [1, 2, 3]
    buf = io.BytesIO()
    torch.save(x, buf)
    buf.seek(0)
    assert torch.load(buf, weights_only=True).tolist() == [1, 2, 3]


class UserAndPooled(Dataset):
    """Item i: a user's plain tensor, a pooled one, and the worker's reducer of plain tensors."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        pooled = worker_empty((100,), torch.float32).fill_(float(i))
        plain = torch.full((100,), -float(i))
        reducer = ForkingPickler._extra_reducers[torch.Tensor]
        return plain, pooled, f"{reducer.__module__}.{reducer.__qualname__}"


def test_a_user_datasets_plain_tensors_travel_the_torch_way() -> None:
    for i, (plain, pooled, reducer) in enumerate(DataLoader(UserAndPooled(), batch_size=None, num_workers=2)):
        assert reducer == "torch.multiprocessing.reductions.reduce_tensor"
        assert type(plain) is torch.Tensor
        assert type(pooled) is torch.Tensor
        assert torch.equal(plain, torch.full((100,), -float(i)))
        assert torch.equal(pooled, torch.full((100,), float(i)))
        assert plain.is_shared()  # torch's reducer moved it to shared memory
        assert not pooled.is_shared()  # a view of this worker's block, mapped by the pool


# --- short /dev/shm: fall back per tensor ------------------------------------------------------------


def no_room(nbytes: int) -> torch.UntypedStorage:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_no_room_for_a_block_falls_back_to_plain_shared_tensors_and_warns_once(
    fake_worker: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shm_pool, "_block_storage", no_room)
    with pytest.warns(RuntimeWarning, match=r"/dev/shm.*TORCHCROSS_WORKER_POOL_MB=0 to turn pooling off"):
        x = worker_empty((64,), torch.float32)
    assert type(x) is torch.Tensor
    assert x.is_shared()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second warning would fail here
        y = worker_empty((64,), torch.float32)
    assert type(y) is torch.Tensor
    assert y.is_shared()
    back = roundtrip(x.fill_(5.0))
    assert torch.equal(back, torch.full((64,), 5.0))


def test_no_room_drops_free_blocks_and_keeps_reusing_busy_ones(
    fake_worker: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    busy = empty((1024,), torch.float32)
    free = empty((1024,), torch.float32)
    busy_block = shm_pool._POOL.by_ptr[busy.untyped_storage().data_ptr()]
    del free
    gc.collect()
    monkeypatch.setattr(shm_pool, "_block_storage", no_room)
    with pytest.warns(RuntimeWarning, match="no room in shared memory"):
        assert empty((1 << 16,), torch.float32) is None  # needs a new block: none can be made
    assert shm_pool._POOL.blocks == [busy_block]  # the free block gave its room back
    assert shm_pool._POOL.max_bytes == busy_block.nbytes  # no more growth
    del busy
    gc.collect()
    again = empty((1024,), torch.float32)  # the block in use is reused once free
    assert again is not None
    assert shm_pool._POOL.by_ptr[again.untyped_storage().data_ptr()] is busy_block


def test_no_room_even_for_one_tensor_is_a_clear_error(
    fake_worker: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shm_pool, "_block_storage", no_room)
    monkeypatch.setattr(shm_pool, "_shared_storage", no_room)
    with (
        pytest.warns(RuntimeWarning, match="TORCHCROSS_WORKER_POOL_MB"),
        pytest.raises(RuntimeError, match=r"no room in shared memory \(/dev/shm\).*--shm-size"),
    ):
        worker_empty((64,), torch.float32)


@pytest.mark.parametrize(("free_mib", "block_mib", "room"), [(60, 5, True), (60, 20, False), (40, 1, False)])
def test_a_block_must_leave_half_of_dev_shm_free(
    monkeypatch: pytest.MonkeyPatch, free_mib: int, block_mib: int, room: bool
) -> None:
    fs = SimpleNamespace(f_bavail=free_mib << 8, f_blocks=100 << 8, f_frsize=4096)  # 100 MiB in all
    monkeypatch.setattr(shm_pool.os, "statvfs", lambda path: fs)
    if room:
        shm_pool._check_room(block_mib << 20)
    else:
        with pytest.raises(OSError, match="a block would leave less than half"):
            shm_pool._check_room(block_mib << 20)


class WarningsOf(Dataset):
    """The items of ``dataset``, each with the warnings raised while making it."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[object, list[str]]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            item = self.dataset[i]
        return item, [str(w.message) for w in caught]


@pytest.mark.parametrize("output", ["float", "uint8"])
def test_episodes_through_workers_are_right_without_room_for_blocks(
    monkeypatch: pytest.MonkeyPatch, output: str
) -> None:
    monkeypatch.setattr(shm_pool, "_block_storage", no_room)  # inherited by the forked workers
    monkeypatch.setattr(shm_pool, "_WARNED", False)
    d = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b", 2: "c"}, "toy")
    images = np.random.default_rng(0).integers(0, 256, (30, 8, 8, 3), dtype=np.uint8)
    src = ImageArrayTaskSource(images, [i % 3 for i in range(30)], d, output=output)
    meta = FewShotMetaDataset(src, None, 2, 3, 0, length=6, seed=0)
    loader = DataLoader(WarningsOf(meta), batch_size=None, num_workers=2, collate_fn=lambda x: x)
    messages = []
    for i, (task, caught) in enumerate(loader):
        want = meta[i]
        for got, ref in zip((*task.support, *task.query), (*want.support, *want.query)):
            assert type(got) is torch.Tensor
            assert torch.equal(got, ref)
        messages += caught
    assert len(messages) == 2  # one per worker
    assert all("TORCHCROSS_WORKER_POOL_MB=0" in m for m in messages)
