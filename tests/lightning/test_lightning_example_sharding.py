"""``MultiTaskModule`` on example-sharded streams: the weighted parts of ``MultiTaskBatchSampler(shard_by=
"example")`` train as ``weight * loss``, empty parts skip the forward pass but join the all-reduce, and two
Lightning DDP ranks (CPU, gloo) equal one process with the global batch (float64, 1e-12; ranks bit for bit).

The DDP run is a script (``lightning_example_sharding_script.py``): Lightning starts rank 1 by rerunning it.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import lightning_helpers as lh
import pytest
import torch
from lightning.pytorch import Trainer

from torchcross.data.multitask import MultiTaskBatchSampler
from torchcross.lightning import MultiTaskModule

SCRIPT = Path(__file__).with_name("lightning_example_sharding_script.py")
BINARY = next(d for d in lh.SHARDED_TASKS if d.task_identifier == "bin")

pytestmark = [
    # Lightning's own notices on tiny CPU runs, and a deprecation inside it
    pytest.mark.filterwarnings("ignore:.*LeafSpec.* is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore::lightning.fabric.utilities.warnings.PossibleUserWarning"),
]


def _sgd(params: Any) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=0.1, momentum=0.9)


def _fit(batch_at: Any) -> tuple[MultiTaskModule, Trainer]:
    """One process: ``SHARDED_STEPS`` steps of a fresh module on ``batch_at(step)``."""
    module = MultiTaskModule(lh.sharded_pretrainer(), _sgd, batch_at)
    trainer = Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=lh.SHARDED_STEPS,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(module)
    return module, trainer


def _one_process(sampler: MultiTaskBatchSampler) -> tuple[dict[str, torch.Tensor], list[float]]:
    """The plain loop without Lightning: each step ``weight * loss`` of the item, no forward at weight 0."""
    model = lh.sharded_pretrainer()
    opt = _sgd(model.parameters())
    losses = []
    for k in range(lh.SHARDED_STEPS):
        (x, y), description, weight = sampler.item(0, k)
        opt.zero_grad(set_to_none=True)
        value = 0.0
        if weight:
            loss = model.loss((x, y), description) * weight
            loss.backward()
            value = float(loss.detach())
        opt.step()
        losses.append(value)
    return model.state_dict(), losses


def _assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-12, atol=1e-12, msg=k)


def test_weighted_parts_train_as_weight_times_the_loss_and_empty_parts_skip_the_forward() -> None:
    part = lh.sharded_sampler(rank=1, world_size=2)  # rank 1's parts: one empty (0.0), one uneven (0.8)
    weights = [part.item(0, k)[2] for k in range(lh.SHARDED_STEPS)]
    assert {0.0, 0.8} <= set(weights)
    module, trainer = _fit(functools.partial(part.item, 0))
    expected, losses = _one_process(part)
    _assert_close(module.pretrainer.state_dict(), expected)
    assert module.consumed_batches == lh.SHARDED_STEPS
    # the logged loss is the rank's weighted loss (its mean over the ranks: the global batch's)
    assert float(trainer.callback_metrics["train_loss"]) == pytest.approx(losses[-1], rel=1e-6)


def test_pairs_and_whole_weighted_batches_train_alike() -> None:
    whole = lh.sharded_sampler(rank=0, world_size=1)
    weighted, _ = _fit(functools.partial(whole.item, 0))
    pairs, _ = _fit(lambda k: whole.item(0, k)[:2])
    for k, v in weighted.pretrainer.state_dict().items():
        assert torch.equal(pairs.pretrainer.state_dict()[k], v), k


X, Y = torch.zeros(2, 5, dtype=torch.float64), torch.tensor([[0], [1]])
BAD_BATCHES = [
    (42, TypeError, r"training batch must be \(\(inputs, labels\), description\), or .*; got int 42"),
    ((1, 2, 3, 4), TypeError, "shard_by='example'\\); got a tuple of 4 items"),
    ((X, BINARY), TypeError, r"start with \(inputs, labels\) tensors .* got Tensor as its first item"),
    (((X, Y), "bin"), TypeError, "TaskDescription second .* got str .*with_task_description=False"),
    (((X, Y), BINARY, -0.5), ValueError, "finite number >= 0 .* got -0.5"),
    (((X, Y), BINARY, float("nan")), ValueError, "finite number >= 0 .* got nan"),
    (((X, Y), BINARY, "1.0"), TypeError, "weight .* must be a number .* got str '1.0'"),
    (((X, Y), BINARY, float("inf")), ValueError, "finite number >= 0 .* got inf"),
    (((X[:0], Y[:0]), BINARY, 0.5), ValueError, "no examples must have weight 0.0, got 0.5"),
]


@pytest.mark.parametrize(("batch", "error", "message"), BAD_BATCHES)
def test_bad_training_batches_name_the_value_and_the_forms(batch: Any, error: type, message: str) -> None:
    module = MultiTaskModule(lh.sharded_pretrainer())
    with pytest.raises(error, match=message):
        module.training_step(batch, 0)


def test_validation_takes_whole_batches_only() -> None:
    module = MultiTaskModule(lh.sharded_pretrainer())
    with pytest.raises(ValueError, match=r"validation batches are whole batches .* shard_by='batch'"):
        module.validation_step(((X, Y), BINARY, 1.0), 0)


@pytest.mark.slow
def test_two_lightning_ranks_equal_one_process_with_the_global_batch(tmp_path: Path) -> None:
    lh.run_script(SCRIPT, str(tmp_path), cwd=tmp_path)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    for k, v in ranks[0]["state"].items():
        assert torch.equal(ranks[1]["state"][k], v), k  # the ranks bit for bit
    assert {0.0, 0.8} <= set(ranks[1]["weights"])  # an empty and an uneven part
    assert ranks[0]["consumed"] == ranks[1]["consumed"] == lh.SHARDED_STEPS
    expected, _ = _one_process(lh.sharded_sampler(rank=0, world_size=1))  # whole global batches
    _assert_close(ranks[0]["state"], expected)
