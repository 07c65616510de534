"""Stacked episodes run as grouped convolutions (``torchcross.learners._grouped``): which backbones run
grouped, that they compute what the episode loop computes (every layer of ``GROUPED_LAYERS``, every
BatchNorm policy, float64), the chunks on a CPU, and the fallback to ``torch.func.vmap``."""

from __future__ import annotations

import pytest
import torch
from learners_helpers import KINDS, make_task, tiny_backbone
from torch import nn

import torchcross.learners.finetuner as finetuner_module
from torchcross.learners._grouped import GROUPED_LAYERS, GroupedPlan, grouped_plan
from torchcross.learners.backbones import Conv4
from torchcross.learners.finetuner import FineTuner
from torchcross.learners.policies import HeadPolicy, InnerLoop


def _tuners(backbone, batch_norm="support", steps=3):
    def make(batching):
        return FineTuner(
            backbone,
            backbone.num_features,
            inner=InnerLoop(lr=0.05, steps=steps, optimizer="adam"),
            finetune_backbone=True,
            batch_norm=batch_norm,
            head=HeadPolicy(init="kaiming", key="episode"),
            batching=batching,
        )

    return make("loop"), make("vmap")


def _tasks(shape, n=3):
    return [make_task(d, shape, 8, 5, 10 * j + i) for j in range(n) for i, d in enumerate(KINDS.values())]


def _close(got, expected):
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-8)


class _Many(nn.Sequential):
    """Every kind of layer of GROUPED_LAYERS, with the options that change what they compute."""

    def __init__(self) -> None:
        super().__init__(
            nn.Conv2d(2, 4, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(4, momentum=None),  # the cumulative average: num_batches_tracked counts
            nn.LeakyReLU(0.1),
            nn.Conv2d(4, 6, 3, padding="same", dilation=2, groups=2),
            nn.BatchNorm2d(6, affine=False),
            nn.GELU(),
            nn.Sequential(nn.MaxPool2d(2, ceil_mode=True), nn.Identity()),
            nn.Conv2d(6, 6, 1),
            nn.BatchNorm2d(6, track_running_stats=False),
            nn.SiLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(24, 8),
            nn.BatchNorm1d(8),
            nn.Tanh(),
            nn.Dropout(0.0),
            nn.Linear(8, 5, bias=False),
        )
        self.num_features = 5


@pytest.mark.parametrize("batch_norm", ["support", "batch", "frozen"])
def test_every_grouped_layer_computes_what_the_loop_computes(batch_norm, monkeypatch):
    torch.manual_seed(0)
    backbone = _Many().double()
    with torch.no_grad():  # running statistics of their own, for "frozen" and "support"
        for m in backbone.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    loop, batched = _tuners(backbone, batch_norm)
    assert isinstance(batched._grouped_plan, GroupedPlan)
    calls = []
    real = finetuner_module.grouped_forward
    monkeypatch.setattr(finetuner_module, "grouped_forward", lambda *a, **k: calls.append(1) or real(*a, **k))
    tasks = _tasks((2, 11, 11))
    _close(batched.predict_many(tasks), loop.predict_many(tasks))
    assert calls  # it ran grouped, not under vmap
    assert all(torch.equal(v, before[k]) for k, v in backbone.state_dict().items())


def test_conv4_and_mlp_run_grouped_and_other_layers_say_why_not():
    assert isinstance(grouped_plan(tiny_backbone("conv", True)[0]), GroupedPlan)
    assert isinstance(grouped_plan(tiny_backbone("mlp", True)[0]), GroupedPlan)
    kept = type("_Named", (Conv4,), {})(1, 2)  # a subclass that keeps Conv4's forward runs grouped
    assert isinstance(grouped_plan(kept), GroupedPlan)
    assert nn.Conv2d in GROUPED_LAYERS
    reasons = {
        "LayerNorm": nn.Sequential(nn.Linear(3, 3), nn.LayerNorm(3)),
        "Conv2d": nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect")),
        "Dropout": nn.Sequential(nn.Flatten(), nn.Dropout(0.5)),
        "Flatten": nn.Sequential(nn.Flatten(2)),
        "_Custom": type("_Custom", (nn.Module,), {"forward": lambda self, x: x})(),
        # a subclass of a container that changes its forward may compute anything: refused as a layer
        "_Doubled": type("_Doubled", (Conv4,), {"forward": lambda self, x: 2 * Conv4.forward(self, x)})(1, 2),
    }
    for name, net in reasons.items():
        reason = grouped_plan(net)
        assert isinstance(reason, str)
        assert f"({name}) is not one of GROUPED_LAYERS" in reason


class _Rows(nn.Sequential):
    """A linear layer on the last dimension of (N, C, L) inputs: accepted by the plan, not groupable."""

    def __init__(self) -> None:
        super().__init__(nn.Linear(6, 4), nn.ReLU(), nn.Flatten())
        self.num_features = 8


def test_inputs_that_do_not_group_fall_back_to_vmap():
    torch.manual_seed(0)
    backbone = _Rows().double()
    loop, batched = _tuners(backbone)
    tasks = _tasks((2, 6), n=2)
    _close(batched.predict_many(tasks), loop.predict_many(tasks))
    assert isinstance(batched._grouped_plan, str)
    assert "linear layer" in batched._grouped_plan
    assert batched._unbatchable is None  # still batched, under vmap


def test_cpu_chunks_keep_the_first_layer_small_and_give_the_same_logits(monkeypatch):
    backbone, shape = tiny_backbone("conv", True)
    loop, batched = _tuners(backbone)
    tasks = [make_task(KINDS["multiclass"], shape, 8, 5, i) for i in range(5)]
    per_episode = 8 * 3 * 16 * 16 * 8  # support images x first conv's channels x pixels x float64 bytes
    assert batched._grouped_chunk(tasks[0]) == finetuner_module.GROUPED_CPU_BYTES // per_episode
    big = make_task(KINDS["multiclass"], (1, 512, 512), 8, 1, 0)  # 16 MiB of first-layer output each
    assert batched._grouped_chunk(big) == 2  # never fewer than two
    sizes = []
    real = batched._predict_stacked
    monkeypatch.setattr(batched, "_predict_stacked", lambda t, h: sizes.append(len(t)) or real(t, h))
    monkeypatch.setattr(finetuner_module, "GROUPED_CPU_BYTES", 2 * per_episode)
    _close(batched.predict_many(tasks), loop.predict_many(tasks))
    assert sizes == [2, 2, 1]
