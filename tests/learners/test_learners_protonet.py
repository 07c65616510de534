"""ProtoNet and prototypes against their closed form; multi-task pre-training; backbones; batching."""

from __future__ import annotations

import copy

import pytest
import torch
from learners_helpers import (
    BINARY,
    KINDS,
    MULTICLASS,
    MULTILABEL,
    ORDINAL,
    make_task,
    mixed_tasks,
    tiny_backbone,
)

from torchcross.learners.backbones import conv4, mlp
from torchcross.learners.batching import BatchingChooser
from torchcross.learners.functional import prototype_logits, prototypes
from torchcross.learners.multitask import MultiTaskPretrainer
from torchcross.learners.protonet import ProtoNet
from torchcross.tasks.task import Task

D = torch.float64


def _closed_form(fs, ys, fq, desc, distance):
    def dist(a, b):
        if distance == "euclidean":
            return float(((a - b) ** 2).sum())
        return 1.0 - float(a @ b / (a.norm() * b.norm()))

    logits = torch.zeros(fq.shape[0], 1 if desc is BINARY else desc.num_classes, dtype=D)
    if desc in (MULTICLASS, ORDINAL):
        for c, key in enumerate(sorted(desc.classes)):
            proto = fs[ys == key].mean(0)
            for i in range(fq.shape[0]):
                logits[i, c] = -dist(fq[i], proto)
        return logits
    ys = ys.reshape(ys.shape[0], -1)
    for label in range(ys.shape[1]):
        pos, neg = fs[ys[:, label] == 1].mean(0), fs[ys[:, label] == 0].mean(0)
        for i in range(fq.shape[0]):
            logits[i, label] = dist(fq[i], neg) - dist(fq[i], pos)
    return logits


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_prototype_logits_match_closed_form(kind, distance):
    desc = KINDS[kind]
    task = make_task(desc, (5,), 9, 4, 0)
    fs, fq = task.support[0], task.query[0]
    logits = prototype_logits(fq, prototypes(fs, task.support[1], desc), desc, distance)
    torch.testing.assert_close(
        logits, _closed_form(fs, task.support[1], fq, desc, distance), rtol=1e-12, atol=1e-12
    )


def test_protonet_predicts_closed_form_and_trains_on_mixed_kinds():
    backbone, shape = tiny_backbone("mlp", True)
    net = ProtoNet(backbone, distance="euclidean", scale=3.0)
    before = copy.deepcopy(backbone.state_dict())
    task = mixed_tasks(shape)[2]
    with torch.no_grad():
        fs = backbone.train()(task.support[0])
        fq = backbone(task.query[0])
    backbone.load_state_dict(before)
    expected = 3.0 * _closed_form(fs, task.support[1], fq, task.description, "euclidean")
    torch.testing.assert_close(net.predict(task), expected, rtol=1e-10, atol=1e-12)
    tasks = mixed_tasks(shape)
    net.meta_loss(tasks).backward()
    grads = {k: p.grad.clone() for k, p in net.named_parameters()}
    net.zero_grad()
    value = net.meta_backward(tasks)
    assert value == pytest.approx(float(net.meta_loss(tasks).detach()), rel=1e-12)
    for k, p in net.named_parameters():
        torch.testing.assert_close(p.grad, grads[k], rtol=1e-10, atol=1e-14)
    for k, v in backbone.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_missing_class_raises():
    task = make_task(MULTICLASS, (5,), 6, 3, 0)
    ys = torch.zeros(6, dtype=torch.long)
    with pytest.raises(ValueError, match="no support examples"):
        prototypes(task.support[0], ys, MULTICLASS)
    with pytest.raises(ValueError, match="negative"):
        prototypes(task.support[0][:2], torch.ones(2, 3, dtype=torch.long), MULTILABEL)
    with pytest.raises(ValueError, match=r"distance must be one of .* got 'manhattan'"):
        prototype_logits(task.query[0], torch.zeros(3, 5), MULTICLASS, "manhattan")
    backbone, _ = tiny_backbone("mlp", False)
    for kwargs, match in (
        ({"distance": "l1"}, "distance must be one of .* got 'l1'"),
        ({"scale": 0.0}, "scale must be > 0, got 0.0"),
        ({"batch_norm": "x"}, "batch_norm must be one of .* got 'x'"),
    ):
        with pytest.raises(ValueError, match=match):
            ProtoNet(backbone, **kwargs)
    with pytest.raises(TypeError, match=r"backbone must be an nn.Module, got object"):
        ProtoNet(object())


def test_multitask_pretrainer_trains_one_head_per_task():
    torch.manual_seed(0)
    backbone = mlp(5, (4,), batch_norm=True).double()
    model = MultiTaskPretrainer(backbone, backbone.num_features, [MULTICLASS, BINARY], head_init="zero")
    assert model.descriptions == [MULTICLASS, BINARY]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    task = make_task(BINARY, (5,), 8, 2, 0)
    head_before = model.head(MULTICLASS).weight.clone()
    ref = copy.deepcopy(model)
    value = model.training_step(task.support, BINARY, opt)
    # by hand: the binary head and the backbone move, the multi-class head does not
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    ref_loss = torch.nn.functional.binary_cross_entropy_with_logits(
        ref.heads["task_1"](ref.backbone(task.support[0])), task.support[1].double()
    )
    ref_loss.backward()
    ref_opt.step()
    assert value == pytest.approx(float(ref_loss.detach()))
    for (k, a), (_, b) in zip(model.state_dict().items(), ref.state_dict().items()):
        torch.testing.assert_close(a, b, msg=k)
    assert torch.equal(model.head(MULTICLASS).weight, head_before)
    assert model(task.query[0], MULTICLASS).shape == (2, 3)
    with pytest.raises(KeyError, match="add_task"):
        model.head(MULTILABEL)
    model.add_task(MULTILABEL)
    assert model(task.query[0], MULTILABEL).shape == (2, 3)
    with pytest.raises(ValueError, match="already"):
        model.add_task(MULTILABEL)
    with pytest.raises(TypeError, match="description must be a TaskDescription, got str"):
        model.add_task("task")
    with pytest.raises(ValueError, match="head_init must be 'zero' or 'kaiming', got 'normal'"):
        MultiTaskPretrainer(backbone, 4, head_init="normal")
    kaiming = [
        MultiTaskPretrainer(backbone, 4, [MULTICLASS], seed=1).head(MULTICLASS).weight for _ in range(2)
    ]
    assert torch.equal(kaiming[0], kaiming[1])
    assert kaiming[0].abs().sum() > 0


def test_backbones():
    net = conv4(3, hidden=4, image_size=32, batch_norm=False)
    assert net.num_features == 16
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 16)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert mlp(6, (5, 3), batch_norm=True)(torch.zeros(4, 2, 3)).shape == (4, 3)
    for bad, match in (
        (lambda: conv4(0), "in_channels must be >= 1"),
        (lambda: conv4(1, image_size=8), "image_size must be at least 16"),
        (lambda: mlp(3, ()), "hidden must name at least one layer width"),
        (lambda: mlp(3, (0,)), "hidden width must be >= 1"),
        (lambda: conv4(1, hidden=True), "hidden must be an int, got bool"),
    ):
        with pytest.raises(ValueError, match=match):
            bad()


def test_batching_chooser():
    chooser = BatchingChooser()
    shape = (5,)
    same = [make_task(MULTICLASS, shape, 6, 6, s) for s in range(3)]
    cpu, accel = torch.device("cpu"), torch.device("meta")
    assert chooser.choose("loop", same, accel) == "loop"
    assert chooser.choose("auto", same, cpu) == "loop"  # measured slower on CPU
    assert chooser.choose("auto", mixed_tasks(shape), accel) == "loop"  # cannot stack
    assert chooser.choose("auto", same[:1], accel) == "loop"
    assert chooser.choose("vmap", same, cpu) == "vmap"
    assert chooser.choose("auto", same, accel) == "calibrate"
    with pytest.raises(ValueError, match="batching='vmap' needs tasks with one description"):
        chooser.choose("vmap", mixed_tasks(shape), cpu)
    with pytest.raises(ValueError, match=r"batching must be one of .* got 'fast'"):
        chooser.choose("fast", same, cpu)

    # calibration runs both, keeps the faster one's gradients and remembers the choice
    p = torch.nn.Parameter(torch.zeros(2))
    p.grad = torch.ones(2)

    def slow() -> float:
        import time

        time.sleep(0.05)
        p.grad = p.grad + 10
        return 1.0

    def fast() -> float:
        p.grad = p.grad + 1
        return 2.0

    assert chooser.calibrate(same, [p], {"loop": slow, "vmap": fast}, accel) == 2.0
    assert p.grad.tolist() == [2.0, 2.0]
    assert chooser.choose("auto", same, accel) == "vmap"


def test_batching_chooser_keeps_the_loop_when_vmap_runs_out_of_memory():
    chooser = BatchingChooser()
    same = [make_task(MULTICLASS, (5,), 6, 6, s) for s in range(3)]
    accel = torch.device("meta")
    p = torch.nn.Parameter(torch.zeros(2))

    def loop() -> float:
        p.grad = torch.full((2,), 3.0)
        return 1.5

    def too_big() -> float:
        p.grad = torch.full((2,), 99.0)  # partial work of the failed path is discarded
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    assert chooser.calibrate(same, [p], {"loop": loop, "vmap": too_big}, accel) == 1.5
    assert p.grad.tolist() == [3.0, 3.0]
    assert chooser.choose("auto", same, accel) == "loop"
    with pytest.raises(
        torch.cuda.OutOfMemoryError, match="CUDA out of memory"
    ):  # the loop itself failing is not hidden
        chooser.calibrate(same, [p], {"loop": too_big, "vmap": loop}, accel)


def test_stacked_and_padded_meta_batches():
    from torchcross.data.task_batch import pad_tasks, stack_tasks

    backbone, shape = tiny_backbone("mlp", False)
    net = ProtoNet(backbone)
    tasks = [make_task(MULTICLASS, shape, 6, 6, s) for s in range(2)]
    short = Task((tasks[1].support[0][:3], tasks[1].support[1][:3]), tasks[1].query, MULTICLASS)
    mixed = [tasks[0], short, mixed_tasks(shape)[2]]
    expected = float(net.meta_loss(mixed).detach())
    assert float(net.meta_loss(pad_tasks(mixed)).detach()) == pytest.approx(expected, rel=1e-12)
    stacked = float(net.meta_loss(stack_tasks(tasks)).detach())
    assert stacked == pytest.approx(float(net.meta_loss(tasks).detach()), rel=1e-12)
