"""Full fine-tuning of many episodes at once (``FineTuner.predict_many``, ``batching="vmap"``) against the
episode-by-episode loop: every task kind, BatchNorm policy and head policy, divergence, memory."""

from __future__ import annotations

import functools

import pytest
import torch
from learners_helpers import KINDS, MULTICLASS, fixed_width_tasks, logits_backbone, make_task, tiny_backbone
from torch import nn

from torchcross.evaluation import evaluate
from torchcross.learners._stacked import ChunkSizer, is_out_of_memory
from torchcross.learners.divergence import DivergenceWarning
from torchcross.learners.finetuner import FineTuner
from torchcross.learners.inner_optimizers import SGD, TransformOptimizer
from torchcross.learners.policies import HeadPolicy, InnerLoop
from torchcross.learners.transforms import GradientTransformation, is_elementwise, sgd


def _tasks(shape, dtype, per_kind=2, n_support=8):
    return [
        make_task(d, shape, n_support, 6, 10 * j + i, dtype)
        for j in range(per_kind)
        for i, d in enumerate(KINDS.values())
    ]


def _pair(backbone, *, optimizer="adam", lr=0.05, steps=4, executor="grouped", **kw):
    """The loop and the batched learner; ``executor="vmap"`` runs the stacked episodes under
    ``torch.func.vmap`` even where they could run as grouped convolutions (``tuner.grouped = False``)."""

    def make(batching):
        tuner = FineTuner(
            backbone,
            backbone.num_features,
            inner=InnerLoop(lr=lr, steps=steps, optimizer=optimizer),
            finetune_backbone=True,
            batching=batching,
            **kw,
        )
        tuner.grouped = executor == "grouped"
        return tuner

    return make("loop"), make("vmap")


def _assert_close(a, b, rtol, atol):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=rtol, atol=atol, equal_nan=True)


@pytest.mark.parametrize("executor", ["grouped", "vmap"])
@pytest.mark.parametrize("batch_norm", ["frozen", "batch", "support"])
@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_batched_equals_the_loop_in_float64_on_every_task_kind(kind, batch_norm, executor):
    backbone, shape = tiny_backbone(kind, True)
    with torch.no_grad():  # non-trivial running statistics
        for m in backbone.modules():
            if isinstance(m, nn.modules.batchnorm._NormBase):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    head = HeadPolicy(init="kaiming", seed=3, key="episode")
    loop, batched = _pair(backbone, batch_norm=batch_norm, head=head, executor=executor)
    tasks = _tasks(shape, torch.float64)
    _assert_close(batched.predict_many(tasks), loop.predict_many(tasks), rtol=1e-7, atol=1e-8)
    assert all(torch.equal(v, before[k]) for k, v in backbone.state_dict().items())


@pytest.mark.parametrize("executor", ["grouped", "vmap"])
@pytest.mark.parametrize("batch_norm", ["frozen", "batch", "support"])
def test_batched_equals_the_loop_in_float32(batch_norm, executor):
    # SGD: Adam's first step moves every element by about the learning rate however small its gradient,
    # so gradients that are zero in exact arithmetic (a bias before BatchNorm) step where rounding points,
    # in the loop too (docs/learners.md); Adam is compared in float64 above
    optimizer = functools.partial(SGD, momentum=0.9)
    backbone, shape = tiny_backbone("conv", True, dtype=torch.float32)
    head = HeadPolicy(init="kaiming")
    loop, batched = _pair(backbone, batch_norm=batch_norm, optimizer=optimizer, head=head, executor=executor)
    tasks = _tasks(shape, torch.float32)
    _assert_close(batched.predict_many(tasks), loop.predict_many(tasks), rtol=1e-4, atol=1e-5)
    assert int(batched.head_step) == int(loop.head_step) == len(tasks)  # the loop's heads, in order


@pytest.mark.parametrize("executor", ["grouped", "vmap"])
def test_learned_head_and_no_head_match_the_loop(executor):
    body, shape = tiny_backbone("mlp", True)
    tasks = fixed_width_tasks(shape)
    head = nn.Linear(body.num_features, 3).double()
    loop, batched = _pair(body, head=HeadPolicy.learned(module=head), batch_norm="support", executor=executor)
    _assert_close(batched.predict_many(tasks), loop.predict_many(tasks), rtol=1e-7, atol=1e-8)
    net, shape = logits_backbone("conv", True)
    loop, batched = _pair(net, head=HeadPolicy.none(), batch_norm="batch", executor=executor)
    tasks = fixed_width_tasks(shape)
    _assert_close(batched.predict_many(tasks), loop.predict_many(tasks), rtol=1e-7, atol=1e-8)


def test_episodes_of_other_shapes_are_grouped_and_order_is_kept():
    backbone, shape = tiny_backbone("mlp", True)
    tasks = _tasks(shape, torch.float64, per_kind=1) + _tasks(shape, torch.float64, per_kind=2, n_support=12)
    tasks = tasks[::2] + tasks[1::2]
    loop, batched = _pair(backbone, batch_norm="support", head=HeadPolicy(init="kaiming"))
    _assert_close(batched.predict_many(tasks), loop.predict_many(tasks), rtol=1e-7, atol=1e-8)
    assert batched.predict_many([]) == []


@pytest.mark.parametrize("executor", ["grouped", "vmap"])
def test_diverged_episodes_are_nan_as_in_the_loop(executor):
    backbone, shape = tiny_backbone("mlp", False)
    tasks = [make_task(MULTICLASS, shape, 8, 6, i) for i in range(3)]
    loop, batched = _pair(
        backbone, optimizer="sgd", lr=1e4, steps=3, head=HeadPolicy(init="kaiming"), executor=executor
    )
    with pytest.warns(DivergenceWarning, match="diverged"):
        expected = loop.predict_many(tasks)
    with pytest.warns(DivergenceWarning, match="diverged"):
        got = batched.predict_many(tasks)
    assert [bool(x.isnan().all()) for x in got] == [bool(x.isnan().all()) for x in expected]
    assert any(x.isnan().all() for x in got)
    _assert_close(got, expected, rtol=1e-7, atol=1e-8)


def test_a_chunk_that_runs_out_of_memory_is_halved(monkeypatch):
    backbone, shape = tiny_backbone("mlp", True)
    tasks = [make_task(MULTICLASS, shape, 8, 6, i) for i in range(7)]
    loop, batched = _pair(backbone, batch_norm="support", head=HeadPolicy(init="kaiming"))
    real, sizes = batched._predict_stacked, []

    def tight(chunk, heads):
        sizes.append(len(chunk))
        if len(chunk) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
        return real(chunk, heads)

    monkeypatch.setattr(batched, "_predict_stacked", tight)
    _assert_close(batched.predict_many(tasks), loop.predict_many(tasks), rtol=1e-7, atol=1e-8)
    assert sizes == [7, 4, 2, 2, 2, 1]
    assert batched.chunks.limit == 2


def test_chunk_sizer_raises_what_is_not_memory_and_a_single_item_that_does_not_fit():
    def fail(message):
        def run(chunk):
            raise RuntimeError(message)

        return run

    with pytest.raises(RuntimeError, match="shapes cannot"):
        ChunkSizer().run([1, 2], fail("mat1 and mat2 shapes cannot be multiplied"))
    with pytest.raises(RuntimeError, match="can't allocate"):
        ChunkSizer().run([1, 2, 3], fail("DefaultCPUAllocator: can't allocate memory: you tried"))
    assert is_out_of_memory(torch.OutOfMemoryError("x"))
    assert not is_out_of_memory(ValueError("out of memory"))


def test_an_optimiser_that_is_not_elementwise_is_refused_or_run_by_the_loop():
    def clip_update(updates, state, params):  # a global-norm clip: mixes every element
        norm = torch.sqrt(sum((u**2).sum() for u in updates.values()))
        return {k: -0.1 * u / norm for k, u in updates.items()}, state

    clipped = GradientTransformation(lambda params: (), clip_update)
    assert not is_elementwise(clipped)
    assert is_elementwise(sgd(0.1, momentum=0.9))
    backbone, shape = tiny_backbone("mlp", True)
    inner = InnerLoop(lr=0.1, steps=2, optimizer=lambda lr: TransformOptimizer(clipped))
    with pytest.raises(ValueError, match="element-wise optimiser"):
        FineTuner(backbone, 4, inner=inner, finetune_backbone=True, batching="vmap")
    auto = FineTuner(backbone, 4, inner=inner, finetune_backbone=True, batching="auto")
    loop = FineTuner(backbone, 4, inner=inner, finetune_backbone=True, batching="loop")
    tasks = _tasks(shape, torch.float64, per_kind=1)
    _assert_close(auto.predict_many(tasks), loop.predict_many(tasks), rtol=0, atol=0)
    with pytest.raises(ValueError, match="batching must be one of"):
        FineTuner(backbone, 4, batching="grouped")


class _DataDependent(nn.Module):
    """A backbone whose forward reads a value (``vmap`` cannot run it)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(5, 4).double()
        self.num_features = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.lin(x)
        return out * 2 if float(out.detach().mean()) > 100 else out


def test_a_backbone_vmap_cannot_run_falls_back_to_the_loop_with_a_warning():
    backbone = _DataDependent()
    tasks = _tasks((5,), torch.float64, per_kind=1)
    loop, batched = _pair(backbone, head=HeadPolicy(init="kaiming", key="episode"))
    with pytest.warns(RuntimeWarning, match="episode by episode"):
        got = batched.predict_many(tasks[:2] * 2)
    _assert_close(got, loop.predict_many(tasks[:2] * 2), rtol=0, atol=0)
    assert batched._unbatchable is not None


def test_evaluate_with_a_batch_size_equals_one_at_a_time():
    backbone, shape = tiny_backbone("conv", True)
    _, batched = _pair(backbone, batch_norm="support", head=HeadPolicy(init="kaiming", key="episode"))
    tasks = _tasks(shape, torch.float64, per_kind=2)
    one = evaluate(batched, tasks, progress=False, batch_size=1).records
    many = evaluate(batched, tasks, progress=False, batch_size=3).records
    for a, b in zip(one, many):
        assert a["auroc"] == pytest.approx(b["auroc"], abs=1e-9)


def test_auto_stacks_grouped_episodes_on_the_cpu_and_loops_otherwise(monkeypatch):
    # "auto" on a CPU: a backbone of GROUPED_LAYERS runs grouped, where it is faster than the loop; any
    # other backbone loops (under torch.func.vmap the stacked run is slower than the loop there)
    backbone, shape = tiny_backbone("mlp", True)
    auto = FineTuner(backbone, 4, inner=InnerLoop(lr=0.1, steps=1), finetune_backbone=True)
    assert auto.batching == "auto"
    calls = []
    real = auto._predict_stacked
    monkeypatch.setattr(auto, "_predict_stacked", lambda *a: calls.append(len(a[0])) or real(*a))
    assert len(auto.predict_many(_tasks(shape, torch.float64, per_kind=2))) == 8
    assert calls == [2, 2, 2, 2]  # the 4 kinds, two episodes each
    other = FineTuner(_DataDependent(), 4, inner=InnerLoop(lr=0.1, steps=1), finetune_backbone=True)

    def refuse(*args):
        raise AssertionError("the CPU runs the loop under batching='auto' for a backbone vmap would run")

    monkeypatch.setattr(other, "_predict_stacked", refuse)
    assert len(other.predict_many(_tasks((5,), torch.float64, per_kind=1))) == 4


def test_a_vision_transformer_fine_tuned_together_equals_the_loop():
    # the foundation-model fine-tuning of [finetune] preset = "fsl-benchmark": frozen norms, zero heads
    import timm

    torch.manual_seed(0)
    vit = timm.create_model(
        "vit_tiny_patch16_224", img_size=16, patch_size=8, embed_dim=16, depth=1, num_heads=2, num_classes=0
    ).double()
    tasks = [make_task(MULTICLASS, (3, 16, 16), 6, 3, i) for i in range(3)]
    loop, batched = _pair(vit, steps=2, lr=1e-3, batch_norm="frozen", head=HeadPolicy(init="zero"))
    _assert_close(batched.predict_many(tasks), loop.predict_many(tasks), rtol=1e-7, atol=1e-8)


def test_a_bad_episode_raises_the_loops_error_and_batching_goes_on():
    backbone, _ = tiny_backbone("mlp", True)
    _, batched = _pair(backbone, batch_norm="support", head=HeadPolicy(init="kaiming", key="episode"))
    bad = [make_task(MULTICLASS, (7,), 8, 6, i) for i in range(2)]  # the backbone takes 5 features
    with pytest.raises(ValueError, match="cannot take inputs"):
        batched.predict_many(bad)
    assert batched._unbatchable is None
