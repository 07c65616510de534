"""The authors' final training protocol (83c2aad): validation per epoch on the whole validation set,
default-initialised fine-tuning and supervised heads, mm-PT's task-loss scaling and epoch-level AUROC."""

from __future__ import annotations

import dataclasses
import hashlib
import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from torchcross.cli.demo_data import write_demo_medimeta
from torchcross.data import SubsetTaskSource, TensorTaskSource
from torchcross.data.multitask import MultiTaskBatchSampler
from torchcross.distributed.seeds import derived_seed
from torchcross.learners.multitask import MultiTaskPretrainer
from torchcross.protocol import check_protocol, pretrain, registry, supervised
from torchcross.protocol.baselines import finetuner
from torchcross.protocol.config import ProtocolConfig, config_from_dict, load_config
from torchcross.protocol.methods import method_context, method_fingerprint, train_method
from torchcross.protocol.pretrain import pooled_task_auroc, task_loss_scales, validation_sources
from torchcross.protocol.training import CheckpointMismatchError
from torchcross.protocol.validation import EarlyStopping, epoch_updates
from torchcross.tasks.task import Task, TaskDescription

SOURCES = ["digits_defocus/digit", "digits_negative/ink level"]  # two source tasks keep mm-PT small


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_medimeta(tmp_path_factory.mktemp("demo") / "data", size=16)


def _config(root: Path, out: Path, **sections: dict) -> ProtocolConfig:
    raw: dict = {
        "data": {"root": str(root), "targets": ["digits_scan_a/even digit"], "min_class_size": 0},
        "backbone": {"name": "conv4", "hidden": 4, "weights": "random"},
        "augmentation": {"enabled": False},
        "run": {"out_dir": str(out), "plot": False, "num_threads": 1, "checkpoint_every": 0},
    }
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return config_from_dict(raw)


def _context(config: ProtocolConfig, method: str) -> Any:
    plan = check_protocol(config)
    return method_context(
        config,
        plan.targets[0],
        method,
        config.run.seed,
        in_channels=plan.in_channels,
        image_size=plan.image_size,
        device=plan.device,
        log=lambda _line: None,
        progress=False,
    )


class _Recorded(EarlyStopping):
    """EarlyStopping that keeps every instance made (to read its interval and history)."""

    made: ClassVar[list[EarlyStopping]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _Recorded.made.append(self)


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[EarlyStopping]:
    _Recorded.made = []
    monkeypatch.setattr(pretrain, "EarlyStopping", _Recorded)
    monkeypatch.setattr(supervised, "EarlyStopping", _Recorded)
    return _Recorded.made


# -- item 1: validation once per epoch, on the whole validation set ------------------------------------------
def test_mm_pt_validates_once_per_epoch_over_every_validation_batch(
    demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, recorded: list[EarlyStopping]
) -> None:
    batch = 16
    config = _config(
        demo_root,
        tmp_path / "out",
        data={"sources": SOURCES},
        evaluation={"methods": ["mm-PT"]},
        pretrain={"batch_size": batch, "patience": 10},
    )
    ctx = _context(config, "mm-PT")
    train = ctx.source_tasks("train")
    val = validation_sources(ctx)
    epoch = sum(math.ceil(len(s) / batch) for s in train.values())  # drop_last=False, as medimeta's
    val_batches = sum(math.ceil(len(s) / batch) for s in val.values())
    assert (epoch, val_batches) == (26, 6)  # 203 and 202 training, 43 and 43 validation examples
    forward = MultiTaskPretrainer.forward
    predicted: list[int] = []

    def counting(self: MultiTaskPretrainer, x: torch.Tensor, description: TaskDescription) -> torch.Tensor:
        if not torch.is_grad_enabled():  # a validation batch (EarlyStopping validates without gradients)
            predicted.append(len(x))
        return forward(self, x, description)

    monkeypatch.setattr(MultiTaskPretrainer, "forward", counting)
    steps = 2 * epoch + 5
    longer = dataclasses.replace(config, pretrain=dataclasses.replace(config.pretrain, steps=steps))
    trained = train_method(dataclasses.replace(ctx, config=longer))
    (early,) = recorded
    assert early.every == epoch
    assert [s for s, _ in trained.validation] == [epoch, 2 * epoch]
    assert len(predicted) == 2 * val_batches  # every batch of both validation splits, at each validation
    assert sum(predicted) == 2 * sum(len(s) for s in val.values())


def test_an_integer_val_every_and_val_batches_are_still_accepted(
    demo_root: Path, tmp_path: Path, recorded: list[EarlyStopping]
) -> None:
    config = _config(
        demo_root,
        tmp_path / "out",
        data={"sources": SOURCES},
        evaluation={"methods": ["mm-PT"]},
        pretrain={"steps": 6, "batch_size": 16, "val_every": 3, "val_batches": 1, "patience": 5},
    )
    trained = train_method(_context(config, "mm-PT"))
    assert recorded[0].every == 3
    assert [s for s, _ in trained.validation] == [3, 6]


def test_supervised_validates_once_per_epoch_on_the_whole_val_split(
    demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, recorded: list[EarlyStopping]
) -> None:
    batch = 64
    config = _config(
        demo_root,
        tmp_path / "out",
        evaluation={"methods": ["supervised"]},
        supervised={"batch_size": batch, "steps": 9, "patience": 10, "bootstrap": 10},
    )
    ctx = _context(config, "supervised")
    n_train, n_val, n_test = (
        len(ctx.open("digits_scan_a", "even digit", s)) for s in ("train", "val", "test")
    )
    epoch = math.ceil(n_train / batch)  # the authors' DataLoader: drop_last=False
    assert (n_train, epoch) == (201, 4)
    predict = supervised._predict
    limits: list[int] = []

    def counting(model, source, description, batch_size, limit, device):  # type: ignore[no-untyped-def]
        limits.append(min(len(source), limit))
        return predict(model, source, description, batch_size, limit, device)

    monkeypatch.setattr(supervised, "_predict", counting)
    record = supervised.train_and_test(ctx, "even digit")
    (early,) = recorded
    assert early.every == epoch
    assert [s for s, _ in early.history] == [epoch, 2 * epoch]
    assert limits == [n_val, n_val, n_test]  # two validations on every val example, then the test split
    assert record["best_step"] in (epoch, 2 * epoch)


def test_epoch_updates_are_shared_among_ranks() -> None:
    assert [epoch_updates(26), epoch_updates(26, 4), epoch_updates(1, 8)] == [26, 7, 1]
    with pytest.raises(ValueError, match="an epoch needs batches >= 1"):
        epoch_updates(0)


# -- item 3: mm-PT's task-loss scale and its epoch-level AUROC -----------------------------------------------
def _source(name: str, n: int, features: int = 3) -> TensorTaskSource:
    d = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"}, name)
    gen = torch.Generator().manual_seed(n)
    return TensorTaskSource(torch.randn(n, features, generator=gen), torch.arange(n) % 2, d)


def test_the_task_loss_scale_weighs_every_task_the_same() -> None:
    # 40 examples in batches of 8: 5 batches an epoch; 12 examples: 2 (the last one of 4, drop_last=False)
    sampler = MultiTaskBatchSampler({"big": _source("big", 40), "small": _source("small", 12)}, 8, seed=0)
    big, small = sampler.descriptions
    scales = task_loss_scales(sampler)
    assert scales == {big: 1.0, small: 2.5}  # max_count / count = 5 / 5 and 5 / 2
    # over an epoch each task's batches weigh count * scale = 5: the same for both
    assert [n * scales[d] for d, n in zip(sampler.descriptions, sampler.sizes)] == [5.0, 5.0]


@pytest.mark.parametrize("scale", [True, False])
def test_mm_pt_backpropagates_the_scaled_loss_and_logs_the_task_loss(
    demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scale: bool
) -> None:
    seen: dict[str, Any] = {}

    def record(model, optimizer, step_fn, units, steps, **kwargs):  # type: ignore[no-untyped-def]
        seen.update(model=model, step=step_fn, sampler=kwargs["sampler"])
        return []

    monkeypatch.setattr(registry, "train_steps", record)
    source_tasks = registry.MethodContext.source_tasks

    def smaller_second(self: Any, split: str) -> dict[str, Any]:  # 202 -> 40 examples: 1 batch of 64, not 4
        out = source_tasks(self, split)
        out[SOURCES[1]] = SubsetTaskSource(out[SOURCES[1]], list(range(40)))
        return out

    monkeypatch.setattr(registry.MethodContext, "source_tasks", smaller_second)
    config = _config(
        demo_root,
        tmp_path / "out",
        data={"sources": SOURCES},
        evaluation={"methods": ["mm-PT"]},
        pretrain={"batch_size": 64, "patience": 0, "scale_task_loss": scale, "head_init": "kaiming"},
    )
    train_method(_context(config, "mm-PT"))
    model, sampler = seen["model"], seen["sampler"]
    assert sampler.sizes == [4, 1]  # 203 and 40 examples in batches of 64
    for task, factor in zip(sampler.descriptions, (1.0, 4.0 if scale else 1.0)):
        x, y = sampler.sources[sampler.descriptions.index(task)].get_batch(np.arange(8))
        model.zero_grad()
        logged = seen["step"](((x, y), task, 1.0))  # one process: the whole global batch, weight 1
        scaled = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        model.zero_grad()
        plain = model.loss((x, y), task)
        plain.backward()
        assert float(logged.detach()) == float(plain.detach())  # the loss logged is the task's own
        unscaled = [p.grad for p in model.parameters() if p.grad is not None]
        for a, b in zip(scaled, unscaled, strict=True):
            torch.testing.assert_close(a, b * factor)


def test_epoch_auroc_pools_every_batch_of_a_task_then_averages_the_tasks() -> None:
    d1 = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"}, "one")
    d2 = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"}, "two")
    # the inputs are the logits; each batch of 2 alone ranks its positive first (AUROC 1)
    x1 = torch.tensor([[0.1], [0.2], [0.9], [1.0], [0.3], [0.35]])
    y1 = torch.tensor([0, 1, 0, 1, 0, 1])
    x2 = torch.tensor([[0.5], [0.4], [0.8], [0.1]])
    y2 = torch.tensor([0, 1, 1, 0])
    sources = {"one": TensorTaskSource(x1, y1, d1), "two": TensorTaskSource(x2, y2, d2)}
    score = pooled_task_auroc(lambda x, d: x, sources, batch_size=2)()
    pooled = [roc_auc_score(y.numpy(), x[:, 0].numpy()) for x, y in ((x1, y1), (x2, y2))]
    per_batch = [
        roc_auc_score(y[i : i + 2].numpy(), x[i : i + 2, 0].numpy())
        for x, y in ((x1, y1), (x2, y2))
        for i in range(0, len(y), 2)
    ]
    assert score == pytest.approx(sum(pooled) / 2)
    assert sum(per_batch) / len(per_batch) != pytest.approx(score)  # the old per-batch mean differs


# -- item 2: fine-tuning and supervised heads --------------------------------------------------------------
def _digest(task: Task) -> int:
    """The documented episode key: SHA-256 of the support inputs and labels (dtype, shape, bytes)."""
    h = hashlib.sha256()
    for t in task.support:
        h.update(f"{t.dtype}{tuple(t.shape)}|".encode())
        h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return int.from_bytes(h.digest()[:8], "little") >> 1


def _episodes() -> list[Task]:
    gen = torch.Generator().manual_seed(0)
    out = []
    for k, classes in enumerate((2, 3, 2)):
        d = TaskDescription("MULTICLASS_CLASSIFICATION", {i: str(i) for i in range(classes)}, f"e{k}")
        if classes == 2:
            d = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"}, f"e{k}")
        y = torch.arange(classes).repeat(2)
        out.append(
            Task(
                (torch.randn(len(y), 1, 16, 16, generator=gen), y),
                (torch.randn(len(y), 1, 16, 16, generator=gen), y),
                d,
            )
        )
    return out


def _tuner(demo_root: Path, tmp_path: Path, **finetune: Any) -> Any:
    config = _config(demo_root, tmp_path / "out", finetune={"steps": 0, **finetune})
    ctx = _context(config, "IM-PT")
    return finetuner(ctx, *ctx.build_backbone()), ctx.seed


def test_kaiming_fine_tuning_heads_are_pytorchs_default_drawn_from_the_seed_and_the_episode(
    demo_root: Path, tmp_path: Path
) -> None:
    tuner, seed = _tuner(demo_root, tmp_path)
    assert tuner.head_init == "kaiming"
    for task in _episodes():
        head = tuner.adapt(task)  # 0 steps: the head as drawn
        torch.manual_seed(derived_seed(seed, _digest(task), -1))
        reference = nn.Linear(tuner.num_backbone_features, head["head.weight"].shape[0])
        torch.testing.assert_close(head["head.weight"], reference.weight.detach(), rtol=0, atol=0)
        torch.testing.assert_close(head["head.bias"], reference.bias.detach(), rtol=0, atol=0)


def test_an_episode_gets_its_head_whatever_the_order_and_batching(demo_root: Path, tmp_path: Path) -> None:
    episodes = _episodes()
    tuner, _ = _tuner(demo_root, tmp_path, steps=3, freeze_backbone=True, batch_norm="frozen")
    alone = [tuner.predict(t) for t in reversed(episodes)][::-1]
    batched = tuner.predict_many(episodes)
    assert tuner._batched_ok()  # predict_many fitted the heads together
    again, _ = _tuner(demo_root, tmp_path, steps=3, freeze_backbone=True, batch_norm="frozen")
    reordered = again.predict_many([episodes[2], episodes[0], episodes[1]])
    for a, b, c in zip(alone, batched, [reordered[1], reordered[2], reordered[0]]):
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(a, c)


def test_zero_fine_tuning_heads_stay_zero(demo_root: Path, tmp_path: Path) -> None:
    tuner, _ = _tuner(demo_root, tmp_path, head_init="zero")
    head = tuner.adapt(_episodes()[1])
    assert torch.count_nonzero(head["head.weight"]) == torch.count_nonzero(head["head.bias"]) == 0


@pytest.mark.parametrize("init", ["kaiming", "zero"])
def test_the_supervised_head_is_pytorchs_default_under_the_seed_or_zero(
    demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, init: str
) -> None:
    seen: dict[str, Any] = {}

    def record(model, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen["head"] = {k: v.detach().clone() for k, v in model.heads["task_0"].state_dict().items()}
        return []

    monkeypatch.setattr(supervised, "train_steps", record)
    config = _config(
        demo_root,
        tmp_path / "out",
        evaluation={"methods": ["supervised"]},
        supervised={"steps": 1, "patience": 0, "bootstrap": 10, "head_init": init},
    )
    ctx = _context(config, "supervised")
    supervised.train_and_test(ctx, "even digit")
    head = seen["head"]
    if init == "zero":
        assert torch.count_nonzero(head["weight"]) == torch.count_nonzero(head["bias"]) == 0
        return
    torch.manual_seed(derived_seed(ctx.seed, 0))  # the first head the model adds
    reference = nn.Linear(head["weight"].shape[1], 1)
    torch.testing.assert_close(head["weight"], reference.weight.detach(), rtol=0, atol=0)
    torch.testing.assert_close(head["bias"], reference.bias.detach(), rtol=0, atol=0)


# -- bad values and resumes ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("section", "line", "error", "match"),
    [
        (
            "pretrain",
            'val_every = "weekly"',
            TypeError,
            r'\[pretrain\] val_every must be "epoch" or an integer, got \'weekly\'',
        ),
        (
            "supervised",
            'val_every = "weekly"',
            TypeError,
            r'\[supervised\] val_every must be "epoch" or an integer',
        ),
        ("pretrain", "val_every = 0", ValueError, r"\[pretrain\] val_every must be >= 1, got 0"),
        (
            "pretrain",
            'val_batches = "most"',
            TypeError,
            r'\[pretrain\] val_batches must be "all" or an integer, got \'most\'',
        ),
        ("supervised", "val_batches = -1", ValueError, r"\[supervised\] val_batches must be >= 1, got -1"),
        (
            "pretrain",
            'scale_task_loss = "yes"',
            TypeError,
            r"\[pretrain\] scale_task_loss must be true or false",
        ),
        (
            "finetune",
            'head_init = "xavier"',
            ValueError,
            r"\[finetune\] head_init = 'xavier' is not one of kaiming, zero",
        ),
        (
            "supervised",
            'head_init = "xavier"',
            ValueError,
            r"\[supervised\] head_init = 'xavier' is not one of kaiming, zero",
        ),
    ],
)
def test_bad_values_name_the_key_the_value_and_what_is_accepted(
    tmp_path: Path, section: str, line: str, error: type, match: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f'[data]\nroot = "d"\ntargets = ["t"]\n[run]\nout_dir = "o"\n[{section}]\n{line}\n')
    with pytest.raises(error, match=match):
        load_config(path)


@pytest.mark.parametrize(("key", "value"), [("val_every", 3), ("val_batches", 2), ("scale_task_loss", False)])
def test_an_mm_pt_resume_with_another_validation_or_loss_scale_is_refused(
    demo_root: Path, tmp_path: Path, key: str, value: Any
) -> None:
    settings = {"steps": 2, "batch_size": 64, "patience": 0}
    sections = {"data": {"sources": SOURCES}, "evaluation": {"methods": ["mm-PT"]}}
    train_method(_context(_config(demo_root, tmp_path / "out", pretrain=settings, **sections), "mm-PT"))
    changed = _config(demo_root, tmp_path / "out", pretrain={**settings, key: value}, **sections)
    with pytest.raises(CheckpointMismatchError, match=rf"changed: pretrain\.{key} \(saved"):
        train_method(_context(changed, "mm-PT"))


def test_a_supervised_resume_with_another_head_init_is_refused(demo_root: Path, tmp_path: Path) -> None:
    settings = {"steps": 1, "batch_size": 64, "patience": 0, "bootstrap": 10}
    first = _config(demo_root, tmp_path / "out", evaluation={"methods": ["supervised"]}, supervised=settings)
    supervised.train_and_test(_context(first, "supervised"), "even digit")
    changed = dataclasses.replace(first, supervised=dataclasses.replace(first.supervised, head_init="zero"))
    with pytest.raises(
        CheckpointMismatchError, match=r"changed: supervised\.head_init \(saved 'kaiming', now 'zero'\)"
    ):
        supervised.train_and_test(_context(changed, "supervised"), "even digit")


def test_a_changed_fine_tuning_head_init_redoes_the_evaluation(demo_root: Path, tmp_path: Path) -> None:
    kaiming = _context(_config(demo_root, tmp_path / "out"), "IM-PT")
    zero = _context(_config(demo_root, tmp_path / "out", finetune={"head_init": "zero"}), "IM-PT")
    assert method_fingerprint(kaiming) != method_fingerprint(zero)


def test_an_unknown_head_key_is_refused() -> None:
    from torchcross.learners.policies import HeadPolicy

    with pytest.raises(ValueError, match="HeadPolicy key must be 'count' or 'episode', got 'order'"):
        HeadPolicy(init="kaiming", key="order")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kind='per_task'"):
        HeadPolicy("none", key="episode")
