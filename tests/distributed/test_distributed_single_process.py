"""torchcross.distributed without a process group, and the argument checks of the sharding overrides."""

from __future__ import annotations

import pytest
import torch

from torchcross.data import TensorTaskSource
from torchcross.data.batched_source import BatchedTaskSource
from torchcross.data.metadataset import FewShotMetaDataset
from torchcross.distributed import (
    all_reduce_gradients,
    check_unwrapped,
    derived_seed,
    is_distributed,
    rank_and_world_size,
    shared_seed,
)
from torchcross.tasks.task import TaskDescription

MC = TaskDescription("MULTICLASS_CLASSIFICATION", {i: str(i) for i in range(4)}, "mc")


def _source() -> TensorTaskSource:
    return TensorTaskSource(torch.arange(52.0)[:, None], [i % 4 for i in range(52)], MC)


def test_without_a_process_group_nothing_is_communicated() -> None:
    assert rank_and_world_size() == (0, 1)
    assert not is_distributed()
    net = torch.nn.Linear(2, 1)
    net(torch.ones(1, 2)).sum().backward()
    grad = net.weight.grad.clone()
    assert all_reduce_gradients(net) == 0
    assert torch.equal(net.weight.grad, grad)
    check_unwrapped(net)


def test_all_reduce_gradients_rejects_a_non_module() -> None:
    with pytest.raises(TypeError, match=r"module must be an nn.Module, got list"):
        all_reduce_gradients([torch.zeros(1)])  # type: ignore[arg-type]


def test_shared_seed_checks_and_draws() -> None:
    assert shared_seed(3) == 3
    assert 0 <= shared_seed(None) < 2**63
    with pytest.raises(ValueError, match=r"seed must be >= 0"):
        shared_seed(-1)
    with pytest.raises(TypeError, match=r"seed"):
        shared_seed(1.5)  # type: ignore[arg-type]


def test_derived_seed_is_a_pure_function_of_its_keys() -> None:
    assert derived_seed(0, 1, 2) == derived_seed(0, 1, 2)
    assert len({derived_seed(0, s, k) for s in range(5) for k in range(-1, 5)}) == 30
    assert derived_seed(0, -1) != derived_seed(0, 0)


@pytest.mark.parametrize("kind", ["episodes", "batches"])
def test_shard_over_overrides_ranks_and_evens_shards(kind: str) -> None:
    def make():
        if kind == "episodes":
            return FewShotMetaDataset(_source(), None, 2, 2, 0, length=13, seed=0, output_indices=True)
        return BatchedTaskSource(_source(), batch_size=4, seed=0)  # 13 batches

    def count(data) -> int:
        return len(list(data))

    assert [count(make().shard_over(r, 2)) for r in range(2)] == [7, 6]
    assert [count(make().shard_over(r, 2, even_shards=True)) for r in range(2)] == [6, 6]
    assert count(make().shard_over(even_shards=True)) == 13  # one shard: nothing left out
    with pytest.raises(ValueError, match=r"pass both rank and world_size, or neither"):
        make().shard_over(rank=1)
    with pytest.raises(ValueError, match=r"need 0 <= rank < world_size, got rank=2, world_size=2"):
        make().shard_over(2, 2)
    with pytest.raises(TypeError, match=r"even_shards must be a bool, got 1"):
        make().shard_over(even_shards=1)  # type: ignore[arg-type]


def test_batched_source_even_shard_sizes() -> None:
    batched = BatchedTaskSource(_source(), batch_size=4, seed=0).shard_over(1, 2, even_shards=True)
    assert batched.num_batches_in_shard() == 6
