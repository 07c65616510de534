"""Two real ``torch.distributed`` ranks (gloo, CPU): learners sync once per step and equal one process.

One spawn runs every scenario on both ranks (spawning is slow); the tests then compare the
ranks' results with each other (bit for bit) and with a single process that sees the whole
global batch (float64, 1e-12).
"""

from __future__ import annotations

from typing import Any

import distributed_helpers as h
import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from torchcross.data import TensorTaskSource
from torchcross.data.batched_source import BatchedTaskSource
from torchcross.data.metadataset import FewShotMetaDataset
from torchcross.distributed import all_reduce_gradients
from torchcross.learners.maml import MAML
from torchcross.learners.multitask import MultiTaskPretrainer
from torchcross.learners.protonet import ProtoNet

WORLD = 2
pytestmark = pytest.mark.slow


def _raises(fn: Any) -> str:
    try:
        fn()
    except (TypeError, ValueError) as e:
        return str(e)
    return "did not raise"


def _scenarios(rank: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, options in h.MAML_OPTIONS.items():
        out[f"maml/{name}"] = h.train_maml(options, rank, WORLD)[0].state_dict()
    out["protonet"] = h.train_protonet(rank, WORLD).state_dict()
    out["pretrainer"] = h.train_pretrainer(rank, WORLD)[0].state_dict()

    # resume: stop after 2 steps, restore model and optimiser, continue
    options = {"meta_sgd": True, "head_init": "kaiming"}
    first = h.save(*h.train_maml(options, rank, WORLD, range(2)))
    out["maml_resumed"] = h.train_maml(options, rank, WORLD, range(2, h.STEPS), first)[0].state_dict()
    out["maml_uninterrupted"] = h.train_maml(options, rank, WORLD)[0].state_dict()
    first = h.save(*h.train_pretrainer(rank, WORLD, range(2)))
    out["pretrainer_resumed"] = h.train_pretrainer(rank, WORLD, range(2, h.STEPS), first)[0].state_dict()

    # DDP(maml).module.meta_backward syncs too (through meta_backward, not DDP's hooks)
    maml = MAML(h.backbone(), 4, inner_lr=0.3, num_inner_steps=2)
    ddp = DDP(maml)
    opt = torch.optim.SGD(maml.parameters(), lr=0.1, momentum=0.9)
    for step in range(h.STEPS):
        opt.zero_grad(set_to_none=True)
        ddp.module.meta_backward(h.local(h.global_batch(step), rank, WORLD))
        opt.step()
    out["ddp_module"] = maml.state_dict()

    # one all_reduce per meta-step, counted by wrapping dist.all_reduce
    calls = []
    original = dist.all_reduce

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    dist.all_reduce = counting
    try:
        maml = MAML(h.backbone(), 4, inner_lr=0.3, num_inner_steps=2, meta_sgd=True)
        maml.meta_backward(h.local(h.global_batch(0), rank, WORLD))
        out["all_reduces_maml"] = len(calls)
        model, opt = h.new_pretrainer()
        model.training_step(*h.pretrain_batch(0, rank), opt)
        out["all_reduces_pretrainer"] = len(calls) - out["all_reduces_maml"]
    finally:
        dist.all_reduce = original

    # wrong wrappings raise
    tasks = h.local(h.global_batch(0), rank, WORLD)
    out["raises"] = {
        "maml(ddp(backbone))": _raises(
            lambda: MAML(DDP(h.backbone()), 4, inner_lr=0.1, num_inner_steps=1).meta_backward(tasks)
        ),
        "maml(ddp(backbone)) vmap": _raises(
            lambda: MAML(
                DDP(h.backbone()), 4, inner_lr=0.1, num_inner_steps=1, batching="vmap"
            ).meta_backward(tasks)
        ),
        "maml(ddp(backbone)) meta_loss": _raises(
            lambda: MAML(DDP(h.backbone()), 4, inner_lr=0.1, num_inner_steps=1).meta_loss(tasks)
        ),
        "protonet(ddp(backbone))": _raises(lambda: ProtoNet(DDP(h.backbone())).meta_backward(tasks)),
        "pretrainer(ddp(backbone))": _raises(
            lambda: MultiTaskPretrainer(DDP(h.backbone()), 4, h.PRETRAIN).training_step(
                *h.pretrain_batch(0, rank), torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
            )
        ),
    }

    embedding = torch.nn.Embedding(4, 2, sparse=True)
    embedding(torch.tensor([1])).sum().backward()
    out["sparse"] = _raises(lambda: all_reduce_gradients(embedding))

    # seeds: None is rank 0's, broadcast; even shards
    src = TensorTaskSource(
        torch.arange(52.0)[:, None],
        [i % 4 for i in range(52)],
        h.MULTICLASS.with_classes({i: str(i) for i in range(4)}),
    )
    out["episode_seed"] = FewShotMetaDataset(src, None, 2, 2, 0, length=10).seed
    batched = BatchedTaskSource(src, batch_size=4)
    out["batch_seed"] = batched.seed
    out["batches_uneven"] = batched.num_batches_in_shard()
    out["batches_even"] = batched.shard_over(even_shards=True).num_batches_in_shard()
    episodes = FewShotMetaDataset(src, None, 2, 2, 0, length=13, seed=0, output_indices=True)
    out["episodes_even"] = len(list(episodes.shard_over(even_shards=True)))
    return out


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return h.spawn_gloo_ranks(_scenarios, tmp_path_factory.mktemp("ranks"), WORLD, timeout=300)


def _assert_states(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], exact: bool) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if exact:
            assert torch.equal(a[k], b[k]), k
        else:
            torch.testing.assert_close(a[k], b[k], rtol=1e-12, atol=1e-12, msg=k)


@pytest.mark.parametrize("name", list(h.MAML_OPTIONS))
def test_maml_ranks_are_bit_identical_and_equal_one_process(ranks: list[dict[str, Any]], name: str) -> None:
    _assert_states(ranks[0][f"maml/{name}"], ranks[1][f"maml/{name}"], exact=True)
    reference = h.train_maml(h.MAML_OPTIONS[name], 0, 1)[0].state_dict()
    _assert_states(ranks[0][f"maml/{name}"], reference, exact=False)
    initial = h.backbone().state_dict()["layers.0.weight"]
    assert not torch.equal(initial, reference["backbone.layers.0.weight"])  # training moved the weights


def test_protonet_ranks_are_bit_identical_and_equal_one_process(ranks: list[dict[str, Any]]) -> None:
    _assert_states(ranks[0]["protonet"], ranks[1]["protonet"], exact=True)
    _assert_states(ranks[0]["protonet"], h.train_protonet(0, 1).state_dict(), exact=False)


def test_pretrainer_ranks_are_bit_identical_and_parameters_equal_one_process(
    ranks: list[dict[str, Any]],
) -> None:
    _assert_states(ranks[0]["pretrainer"], ranks[1]["pretrainer"], exact=True)  # BatchNorm statistics too
    model, _ = h.train_pretrainer(0, 1)
    params = {k for k, _ in model.named_parameters()}
    reference = {k: v for k, v in model.state_dict().items() if k in params}
    _assert_states({k: v for k, v in ranks[0]["pretrainer"].items() if k in params}, reference, exact=False)


def test_resumed_runs_equal_uninterrupted_ones(ranks: list[dict[str, Any]]) -> None:
    for rank in ranks:
        _assert_states(rank["maml_resumed"], rank["maml_uninterrupted"], exact=True)
        _assert_states(rank["pretrainer_resumed"], rank["pretrainer"], exact=True)
    assert int(ranks[0]["maml_resumed"]["head_step"]) == h.STEPS


def test_ddp_module_meta_backward_is_synced_by_meta_backward(ranks: list[dict[str, Any]]) -> None:
    _assert_states(ranks[0]["ddp_module"], ranks[1]["ddp_module"], exact=True)
    _assert_states(ranks[0]["ddp_module"], ranks[0]["maml/second_order_bn"], exact=True)


def test_one_all_reduce_per_step(ranks: list[dict[str, Any]]) -> None:
    for rank in ranks:
        assert rank["all_reduces_maml"] == 1
        assert rank["all_reduces_pretrainer"] == 1


def test_wrong_wrappings_raise(ranks: list[dict[str, Any]]) -> None:
    for rank in ranks:
        for case, message in rank["raises"].items():
            assert "wrapped in DistributedDataParallel" in message, case
            assert "all-reduce the gradients once per step" in message, case


def test_sparse_gradients_are_refused(ranks: list[dict[str, Any]]) -> None:
    for rank in ranks:
        assert rank["sparse"] == "all_reduce_gradients does not support sparse gradients; use dense ones"


def test_seed_none_is_broadcast_and_even_shards_are_even(ranks: list[dict[str, Any]]) -> None:
    assert ranks[0]["episode_seed"] == ranks[1]["episode_seed"]
    assert ranks[0]["batch_seed"] == ranks[1]["batch_seed"]
    assert [r["batches_uneven"] for r in ranks] == [7, 6]  # 13 batches
    assert [r["batches_even"] for r in ranks] == [6, 6]
    assert [r["episodes_even"] for r in ranks] == [6, 6]  # 13 episodes
