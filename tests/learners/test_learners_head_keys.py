"""Per-task kaiming heads come from an explicit (seed, step, slot) key, the same in MAML and FineTuner."""

from __future__ import annotations

import copy

import pytest
import torch
from learners_helpers import KINDS, MULTICLASS, make_task, tiny_backbone

from torchcross.learners.finetuner import FineTuner
from torchcross.learners.maml import MAML
from torchcross.learners.policies import HeadPolicy, InnerLoop
from torchcross.learners.task_heads import per_task_head


def _tuner(seed: int = 3, init: str = "kaiming", steps: int = 0) -> FineTuner:
    backbone, _ = tiny_backbone("mlp", False)
    return FineTuner(
        backbone,
        backbone.num_features,
        inner=InnerLoop(lr=0.1, steps=steps),
        head=HeadPolicy(init=init, seed=seed),
    )


def _tasks(n: int = 4):
    return [make_task(d, (5,), 6, 4, i) for i, d in enumerate(list(KINDS.values())[:n])]


def _heads(tuner: FineTuner, tasks) -> list[torch.Tensor]:
    return [tuner.adapt(t)["head.weight"] for t in tasks]  # no steps: the drawn head itself


def test_same_seed_gives_the_same_kaiming_heads_and_each_is_its_key():
    tasks = _tasks()
    a, b = _heads(_tuner(), tasks), _heads(_tuner(), tasks)
    like = torch.zeros((), dtype=torch.float64)
    for n, (wa, wb, t) in enumerate(zip(a, b, tasks)):
        assert torch.equal(wa, wb)
        key = per_task_head(wa.shape[1], t.description, "kaiming", key=(3, n, -1), like=like)
        assert torch.equal(wa, key["weight"]), n
    assert not torch.equal(a[0], _heads(_tuner(seed=4), tasks)[0])


def test_state_dict_round_trip_reproduces_the_next_heads():
    tasks = _tasks()
    first = _tuner()
    _heads(first, tasks[:3])
    saved = copy.deepcopy(first.state_dict())  # state_dict() shares the buffers' storage
    assert int(saved["head_step"]) == 3
    expected = _heads(first, tasks)
    resumed = _tuner()
    resumed.load_state_dict(saved)
    for want, got in zip(expected, _heads(resumed, tasks)):
        assert torch.equal(want, got)
    assert int(resumed.head_step) == 3 + len(tasks)


def test_predict_many_equals_the_loop_with_kaiming_heads():
    tuner = _tuner(steps=3)
    tasks = [*_tasks(), make_task(MULTICLASS, (5,), 6, 4, 9)]
    start = copy.deepcopy(tuner.state_dict())
    batched = tuner.predict_many(tasks)
    after = int(tuner.head_step)
    tuner.load_state_dict(start)
    single = [tuner.predict(t) for t in tasks]
    assert after == int(tuner.head_step) == len(tasks)
    for x, y in zip(batched, single):
        torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("step", [0, 2])
def test_maml_and_finetuner_draw_the_same_head_for_the_same_key(step):
    backbone, _ = tiny_backbone("mlp", False)
    maml = MAML(
        backbone,
        backbone.num_features,
        inner=InnerLoop(lr=0.1, steps=1),
        head=HeadPolicy.per_task("kaiming", 3),
    )
    maml.head_step.fill_(step)
    tuner = _tuner()
    tuner.head_step.fill_(step)
    like = next(backbone.parameters())
    from_maml = maml.new_head(MULTICLASS, like)  # slot -1: evaluation
    from_tuner = tuner.adapt(make_task(MULTICLASS, (5,), 6, 4, 0))
    assert torch.equal(from_maml["head.weight"], from_tuner["head.weight"])
    assert torch.equal(from_maml["head.bias"], from_tuner["head.bias"])


def test_zero_heads_keep_the_state_dict_as_it_was():
    tuner = _tuner(init="zero")
    assert "head_step" not in tuner.state_dict()
    assert not _heads(tuner, _tasks(1))[0].any()
