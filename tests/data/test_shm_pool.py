"""Pooled shared memory for worker results: reuse only after the receiver drops a lease."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from multiprocessing.reduction import ForkingPickler
from types import SimpleNamespace

import pytest
import torch
import torch.utils.data
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader, Dataset

import torchcross.data.workers.shm_pool as shm_pool
from torchcross.data.workers.shm_pool import empty, shared_lease, worker_empty


@pytest.fixture
def fake_worker(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run this process as if it were a DataLoader worker; restore the pickler afterwards."""
    before = ForkingPickler._extra_reducers.get(torch.Tensor)
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: SimpleNamespace(id=0))
    monkeypatch.setattr(shm_pool, "_POOL", None)
    yield
    gc.collect()
    if before is not None:
        ForkingPickler.register(torch.Tensor, before)


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
