"""BatchedTaskSource: 0.0.6 parameters, determinism, sharding across workers and ranks."""

from __future__ import annotations

import pickle
from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from torchcross.compat.data.task_source import LegacyTaskSource
from torchcross.data import BatchedTaskSource, TensorTaskSource
from torchcross.data.collate import identity, stack
from torchcross.data.workers.sharding import ShardPosition
from torchcross.tasks.task import TaskDescription, TaskTarget

MC = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b", 2: "c"}, "mc")


def _source(n: int = 23) -> TensorTaskSource:
    return TensorTaskSource(torch.arange(float(n))[:, None], np.arange(n) % 3, MC)


def _ids(batch: tuple[torch.Tensor, torch.Tensor]) -> list[int]:
    return [int(v) for v in batch[0].ravel()]


class _SpySource(TensorTaskSource):
    """Counts get_batch and item reads."""

    def __init__(self, n: int) -> None:
        super().__init__(torch.arange(float(n))[:, None], np.arange(n) % 3, MC)
        self.batch_calls = self.item_calls = 0

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.item_calls += 1
        return super().__getitem__(index)

    def get_batch(self, indices: object) -> tuple[torch.Tensor, torch.Tensor]:
        self.batch_calls += 1
        return super().get_batch(indices)


class _OldSource(LegacyTaskSource):
    """0.0.6 style: attributes only, no super().__init__()."""

    def __init__(self) -> None:
        self.task_target = TaskTarget.BINARY_CLASSIFICATION
        self.classes = {0: "n", 1: "p"}
        self.task_identifier = "old"
        self.labels = np.array([[0], [1], [1], [0], [1]])

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor]:
        return index, torch.as_tensor(self.labels[index])

    def __len__(self) -> int:
        return len(self.labels)


@pytest.mark.parametrize(
    ("n", "batch_size", "drop_last", "expected"),
    [(23, 4, False, 6), (23, 4, True, 5), (8, 4, True, 2), (3, 5, False, 1)],
)
def test_len_is_the_number_of_batches(n: int, batch_size: int, drop_last: bool, expected: int) -> None:
    b = BatchedTaskSource(_source(n), batch_size, drop_last=drop_last, seed=0)
    assert len(b) == expected
    batches = list(b)
    assert len(batches) == expected
    sizes = [len(x) for x in batches]
    assert all(s == batch_size for s in sizes[:-1])
    if drop_last:
        assert sizes[-1] == batch_size


@pytest.mark.parametrize("drop_last", [False, True])
def test_every_example_at_most_once_per_epoch(drop_last: bool) -> None:
    b = BatchedTaskSource(_source(23), 4, drop_last=drop_last, seed=1, collate_fn=stack)
    ids = [i for batch in b for i in _ids(batch)]
    assert len(ids) == len(set(ids)) == (20 if drop_last else 23)


def test_default_collate_is_identity_list_of_pairs_as_in_0_0_6() -> None:
    b = BatchedTaskSource(_source(5), 2, shuffle=False)
    assert b.collate_fn is identity
    first = next(iter(b))
    assert isinstance(first, list)
    assert [(x.tolist(), int(y)) for x, y in first] == [([0.0], 0), ([1.0], 1)]


def test_shuffle_false_keeps_source_order() -> None:
    b = BatchedTaskSource(_source(7), 3, shuffle=False, collate_fn=stack)
    assert [_ids(x) for x in b] == [[0, 1, 2], [3, 4, 5], [6]]
    b.set_epoch(4)
    assert [_ids(x) for x in b] == [[0, 1, 2], [3, 4, 5], [6]]


def test_order_is_a_pure_function_of_seed_and_epoch() -> None:
    def order(seed: int, epoch: int) -> list[list[int]]:
        b = BatchedTaskSource(_source(), 4, collate_fn=stack, seed=seed)
        b.set_epoch(epoch)
        return [_ids(x) for x in b]

    assert order(7, 0) == order(7, 0)
    assert order(7, 3) == order(7, 3)
    assert order(7, 0) != order(7, 1)
    assert order(7, 0) != order(8, 0)
    b = BatchedTaskSource(_source(), 4, collate_fn=stack, seed=7)
    assert [x.tolist() for x in b.batch_indices(3)] == [[int(v) for v in x] for x in order(7, 3)]
    assert b.epoch == 0
    assert b.batch_indices(2) is b.batch_indices(2)  # memoised


def test_seed_none_draws_a_fresh_seed_that_travels_to_copies() -> None:
    a, b = BatchedTaskSource(_source(), 4), BatchedTaskSource(_source(), 4)
    assert isinstance(a.seed, int)
    assert a.seed != b.seed
    copy = pickle.loads(pickle.dumps(a))
    assert copy.seed == a.seed
    assert [x.tolist() for x in copy.batch_indices()] == [x.tolist() for x in a.batch_indices()]


def test_with_task_description_yields_pairs_and_the_description() -> None:
    b = BatchedTaskSource(_source(), 4, collate_fn=stack, with_task_description=True, seed=0)
    batch, desc = next(iter(b))
    assert desc == MC
    assert batch[0].shape == (4, 1)
    assert b.task_description.task_identifier == "mc"
    assert b.task_description == MC
    assert b.class_counts() == {0: 8, 1: 8, 2: 7}
    assert b.class_counts(neg=True) == {0: 15, 1: 15, 2: 16}


def test_stack_uses_get_batch_and_equals_item_collation() -> None:
    spy = _SpySource(10)
    fast = BatchedTaskSource(spy, 3, collate_fn=stack, seed=5)
    slow = BatchedTaskSource(spy, 3, collate_fn=lambda items: stack(items), seed=5)
    fast_batches = list(fast)
    assert (spy.batch_calls, spy.item_calls) == (4, 0)
    slow_batches = list(slow)
    assert spy.item_calls == 10
    for (xf, yf), (xs, ys) in zip(fast_batches, slow_batches, strict=True):
        assert torch.equal(xf, xs)
        assert torch.equal(yf, ys)


def test_works_over_a_0_0_6_source() -> None:
    b = BatchedTaskSource(_OldSource(), 2, shuffle=False, collate_fn=stack, with_task_description=True)
    (x, y), desc = next(iter(b))
    assert x.tolist() == [0, 1]
    assert y.tolist() == [[0], [1]]
    assert desc.task_identifier == "old"


def test_iter_batches_and_load_batch_cover_the_epoch_without_sharding() -> None:
    b = BatchedTaskSource(_source(), 4, collate_fn=stack, seed=2, with_task_description=True)
    everything = [(_ids(x), d) for x, d in b.iter_batches(epoch=1)]
    b.set_epoch(1)
    assert everything == [(_ids(x), d) for x, d in b]
    loaded = b.load_batch(b.batch_indices(1)[2])
    assert _ids(loaded[0]) == everything[2][0]


@pytest.mark.parametrize("world", [1, 2, 3, 7])
def test_shards_split_the_batches_exactly_once(world: int) -> None:
    b = BatchedTaskSource(_source(), 4, collate_fn=stack, seed=3)
    reference = [_ids(x) for x in b]
    seen: Counter = Counter()
    for rank in range(world):
        pos = ShardPosition(rank, world)
        mine = [_ids(x) for x in b.iter_shard(pos)]
        assert len(mine) == b.num_batches_in_shard(pos)
        assert mine == reference[rank::world]
        seen.update(tuple(x) for x in mine)
    assert seen == Counter(tuple(x) for x in reference)
    assert b.num_batches_in_shard() == len(b)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_dataloader_workers_split_batches_in_the_same_order(num_workers: int) -> None:
    b = BatchedTaskSource(_source(), 4, collate_fn=stack, seed=11)
    b.set_epoch(2)
    reference = [_ids(x) for x in b.iter_batches()]
    ctx = "fork" if num_workers else None
    loader = DataLoader(b, batch_size=None, num_workers=num_workers, multiprocessing_context=ctx)
    assert len(loader) == len(b)
    got = [_ids(x) for x in loader]
    assert got == reference
    ids = [i for batch in got for i in batch]
    assert sorted(ids) == list(range(23))


@pytest.mark.slow
def test_dataloader_spawn_workers_agree() -> None:
    b = BatchedTaskSource(_source(), 5, with_task_description=True, collate_fn=stack)  # seed drawn here
    reference = [(_ids(x), d) for x, d in b]
    loader = DataLoader(b, batch_size=None, num_workers=2, multiprocessing_context="spawn")
    assert [(_ids(x), d) for x, d in loader] == reference


class _Stream(torch.utils.data.IterableDataset):
    def __iter__(self):  # pragma: no cover - never iterated
        yield from ()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"batch_size": 0}, ValueError, "batch_size must be >= 1, got batch_size=0"),
        ({"batch_size": 2.0}, TypeError, "batch_size must be an int, got float"),
        ({"batch_size": True}, TypeError, "batch_size must be an int, got bool"),
        ({"batch_size": 2, "shuffle": "yes"}, TypeError, "shuffle must be True or False, got str"),
        ({"batch_size": 2, "drop_last": 1}, TypeError, "drop_last must be True or False"),
        ({"batch_size": 2, "with_task_description": None}, TypeError, "with_task_description must be"),
        ({"batch_size": 2, "collate_fn": "stack"}, TypeError, "collate_fn must be callable or None, got str"),
        ({"batch_size": 2, "seed": -1}, ValueError, "seed must be >= 0"),
        ({"batch_size": 2, "seed": 1.5}, TypeError, "seed must be an int"),
        (
            {"batch_size": 30, "drop_last": True},
            ValueError,
            "gives no batch: it has 23 examples, batch_size=30",
        ),
    ],
)
def test_argument_errors(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        BatchedTaskSource(_source(), **kwargs)


@pytest.mark.parametrize("bad", [[(0, 1)], _Stream(), BatchedTaskSource(_source(), 2, seed=0)])
def test_needs_a_map_style_task_source(bad: object) -> None:
    with pytest.raises(TypeError, match="BatchedTaskSource needs a"):
        BatchedTaskSource(bad, 2)


@pytest.mark.parametrize("epoch", [-1, 1.0])
def test_set_epoch_validates(epoch: object) -> None:
    b = BatchedTaskSource(_source(), 2, seed=0)
    with pytest.raises((ValueError, TypeError), match="epoch must be"):
        b.set_epoch(epoch)  # type: ignore[arg-type]
    with pytest.raises((ValueError, TypeError), match="epoch must be"):
        b.batch_indices(epoch)  # type: ignore[arg-type]


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_a_rank_reads_the_same_batches_whatever_its_workers(workers: int) -> None:
    everything = [_ids(b) for b in BatchedTaskSource(_source(40), 3, seed=2, collate_fn=stack)]
    for rank in range(2):
        ranked = BatchedTaskSource(_source(40), 3, seed=2, collate_fn=stack).shard_over(rank, 2)
        loader = DataLoader(ranked, batch_size=None, num_workers=workers) if workers else ranked
        assert [_ids(b) for b in loader] == everything[rank::2]  # batches r, r + 2, ... in order
