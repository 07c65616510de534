"""The paper's experiment: defaults, the objects each baseline builds, early stopping, supervised, plugins."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from torchcross.cli.demo_data import write_demo_medimeta
from torchcross.data import SubTaskRandomFewShotMetaDataset
from torchcross.learners.finetuner import FineTuner
from torchcross.learners.maml import MAML
from torchcross.protocol import (
    check_protocol,
    register_method,
    registry,
    run_protocol,
    unregister_method,
)
from torchcross.protocol.augment import build_augmentation
from torchcross.protocol.config import AugmentationConfig, ProtocolConfig, config_from_dict
from torchcross.protocol.methods import evaluation_learner, method_context, resolve_methods, train_method
from torchcross.protocol.training import train_steps
from torchcross.protocol.validation import EarlyStopping


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_medimeta(tmp_path_factory.mktemp("demo") / "data", size=16)


def _paper(root: Path, out: Path, **sections: dict) -> ProtocolConfig:
    """Only root, targets and out_dir set (plus what the sections override): the paper's defaults."""
    raw: dict = {
        "data": {"root": str(root), "targets": ["digits_scan_a/even digit"]},
        "run": {"out_dir": str(out)},
    }
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return config_from_dict(raw)


def test_defaults_are_the_papers() -> None:
    cfg = config_from_dict({"data": {"root": "d", "targets": ["t"]}, "run": {"out_dir": "o"}})
    assert cfg.evaluation.methods == ("IM-PT", "mm-PT", "mm-MAML")
    assert (cfg.evaluation.n_shot, cfg.evaluation.n_query, cfg.evaluation.n_episodes) == (5, 10, 100)
    assert (cfg.backbone.name, cfg.backbone.weights, cfg.data.normalize) == (
        "resnet18",
        "imagenet",
        "imagenet",
    )
    assert (cfg.data.target_split, cfg.data.min_class_size, cfg.data.source_split) == ("all", 50, None)
    assert (cfg.finetune.steps, cfg.finetune.lr, cfg.finetune.batch_norm) == (50, 1e-3, "support")
    assert not cfg.finetune.freeze_backbone
    assert (cfg.pretrain.batch_size, cfg.pretrain.weighting, cfg.pretrain.head_init) == (
        64,
        "proportional",
        "zero",
    )
    assert (cfg.pretrain.val_every, cfg.pretrain.patience, cfg.maml.patience) == ("epoch", 10, 5)
    assert (cfg.pretrain.val_batches, cfg.pretrain.scale_task_loss) == ("all", True)
    assert (cfg.supervised.val_every, cfg.supervised.val_batches, cfg.supervised.head_init) == (
        "epoch",
        "all",
        "kaiming",
    )
    assert cfg.finetune.head_init == "kaiming"
    assert (cfg.maml.inner_lr, cfg.maml.inner_steps, cfg.maml.meta_batch_size) == (0.1, 4, 1)
    assert (cfg.maml.n_shot, cfg.maml.min_shot, cfg.maml.max_shot, cfg.maml.evaluation) == (
        None,
        1,
        10,
        "finetune",
    )
    assert not cfg.maml.first_order
    assert cfg.augmentation == AugmentationConfig(True, 0.25, 10.0, 0.25, 200 / 224)
    assert resolve_methods(cfg) == ("IM-PT", "mm-PT", "mm-MAML")


def test_random_weights_are_reported_as_scratch_and_conv4_has_no_imagenet_weights(
    demo_root: Path, tmp_path: Path
) -> None:
    cfg = _paper(demo_root, tmp_path, backbone={"name": "conv4", "weights": "random"})
    assert resolve_methods(cfg) == ("scratch", "mm-PT", "mm-MAML")
    with pytest.raises(
        ValueError, match="backbone 'conv4' has no ImageNet weights; set \\[backbone\\] weights"
    ):
        check_protocol(_paper(demo_root, tmp_path, backbone={"name": "conv4"}))


def test_imagenet_weights_that_cannot_be_fetched_are_reported_before_training(
    demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torchvision

    def offline(name):
        raise OSError("no network")

    monkeypatch.setattr(torchvision.models, "get_model_weights", offline)
    with pytest.raises(ValueError, match=r"could not get the ImageNet weights of resnet18.*torch\.save"):
        check_protocol(_paper(demo_root, tmp_path, data={"min_class_size": 0}))


def _context(config: ProtocolConfig, method: str, tmp_path: Path):
    plan = check_protocol(config)
    return method_context(
        config,
        plan.targets[0],
        method,
        config.run.seed,
        in_channels=plan.in_channels,
        image_size=plan.image_size,
        device=plan.device,
        log=lambda _m: None,
        progress=False,
    )


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> dict:
    """Replace source training by a recorder of what train_steps was given."""
    seen: dict = {}

    def record(model, optimizer, step_fn, units, steps, **kwargs):
        seen.update(model=model, optimizer=optimizer, steps=steps, unit=next(iter(units())), **kwargs)
        return []

    monkeypatch.setattr(registry, "train_steps", record)  # what MethodContext.train_model calls
    return seen


def _check_paper_finetuner(learner: object) -> None:
    assert isinstance(learner, FineTuner)
    assert (learner.num_steps, learner.inner_optimizer.lr, learner.batch_norm) == (50, 1e-3, "support")
    assert learner.finetune_backbone
    assert (learner.head_init, learner.head_key) == ("kaiming", "episode")


@pytest.mark.parametrize(("backbone", "lr"), [("resnet18", 1e-3), ("resnet50", 1e-4)])
def test_mm_pt_builds_the_papers_training(
    demo_root: Path, tmp_path: Path, captured: dict, backbone, lr
) -> None:
    config = _paper(
        demo_root, tmp_path, backbone={"name": backbone, "weights": "random"}, data={"min_class_size": 0}
    )
    ctx = _context(config, "mm-PT", tmp_path)
    trained = train_method(ctx)
    model, optimizer, sampler = captured["model"], captured["optimizer"], captured["sampler"]
    assert isinstance(optimizer, torch.optim.Adam)
    assert optimizer.param_groups[0]["lr"] == lr
    assert sampler.batch_size == 64
    assert sampler.policy.fingerprint()["kind"] == "proportional"
    assert captured["steps"] == 500_000
    assert all(torch.count_nonzero(p) == 0 for head in model.heads.values() for p in head.parameters())
    early = captured["early_stopping"]
    assert (early.every, early.patience) == (sum(sampler.sizes), 10)  # once per epoch of the sources
    assert len(trained.backbone.state_dict()) > 0
    _check_paper_finetuner(evaluation_learner(ctx, trained))


def test_mm_maml_builds_the_papers_training_and_evaluation(
    demo_root: Path, tmp_path: Path, captured: dict
) -> None:
    config = _paper(
        demo_root, tmp_path, backbone={"name": "conv4", "weights": "random"}, data={"min_class_size": 0}
    )
    ctx = _context(config, "mm-MAML", tmp_path)
    trained = train_method(ctx)
    maml, sampler = captured["model"], captured["sampler"]
    assert isinstance(maml, MAML)
    assert (maml.inner_lr, maml.num_inner_steps, maml.first_order) == (0.1, 4, False)
    assert sampler.meta_batch_size == 1
    assert len(captured["unit"]) == 1
    episodes = sampler.datasets[0].episodes  # a pool of 1000 episodes per source task
    assert isinstance(episodes, SubTaskRandomFewShotMetaDataset)
    assert (episodes.n_shot_min, episodes.n_shot_max, len(episodes)) == (1, 10, 1000)
    assert episodes.task_source.source.split is None  # all splits of the source dataset
    early = captured["early_stopping"]
    assert (early.every, early.patience) == (1000 * len(sampler.datasets), 5)  # once per epoch
    assert captured["optimizer"].param_groups[0]["lr"] == 1e-3
    _check_paper_finetuner(evaluation_learner(ctx, trained))
    inner = dataclasses.replace(config, maml=dataclasses.replace(config.maml, evaluation="inner-loop"))
    assert evaluation_learner(dataclasses.replace(ctx, config=inner), trained) is maml


@pytest.mark.parametrize(
    ("method", "check"),
    [
        ("FOMAML", lambda m: m.first_order),
        ("ANIL", lambda m: m.anil),
        ("Meta-SGD", lambda m: m.inner_lrs is not None),
        ("ProtoNet", lambda m: type(m).__name__ == "ProtoNet"),
    ],
)
def test_the_other_episodic_learners(demo_root: Path, tmp_path: Path, captured: dict, method, check) -> None:
    config = _paper(
        demo_root, tmp_path, backbone={"name": "conv4", "weights": "random"}, data={"min_class_size": 0}
    )
    ctx = _context(config, method, tmp_path)
    trained = train_method(ctx)
    assert check(captured["model"])
    learner = evaluation_learner(ctx, trained)
    assert learner is (captured["model"] if method != "FOMAML" else learner)
    if method == "FOMAML":
        _check_paper_finetuner(learner)


def test_linear_probe_and_scratch(demo_root: Path, tmp_path: Path) -> None:
    config = _paper(
        demo_root, tmp_path, backbone={"name": "conv4", "weights": "random"}, data={"min_class_size": 0}
    )
    probe = evaluation_learner(_context(config, "linear-probe", tmp_path), None)
    assert not probe.finetune_backbone
    _check_paper_finetuner(evaluation_learner(_context(config, "scratch", tmp_path), None))


# -- early stopping ------------------------------------------------------------------------------------
def _toy(seed: int, calls: list[int]):
    torch.manual_seed(seed)
    model = nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def step(_unit):
        calls.append(len(calls) + 1)
        loss = ((model(torch.ones(1, 1)) - 1.0) ** 2).mean()
        loss.backward()
        return loss

    return model, opt, step


def test_early_stopping_keeps_the_best_weights_and_a_stopped_run_resumes_stopped(tmp_path: Path) -> None:
    calls: list[int] = []
    weights_at: dict[int, float] = {}
    model, opt, step = _toy(0, calls)
    scores = {10: 0.5, 20: 0.9, 30: 0.8, 40: 0.7, 50: 0.95}  # best at 20; 50 is never reached

    def validate() -> float:
        weights_at[calls[-1]] = float(model.weight.detach())
        return scores[calls[-1]]

    es = EarlyStopping(validate, every=10, patience=2)
    ckpt = tmp_path / "c.pt"
    losses = train_steps(
        model, opt, step, lambda: iter(range(100)), 100, checkpoint=ckpt, progress=False, early_stopping=es
    )
    assert len(losses) == 40  # stopped after two validations without improvement
    assert es.best_step == 20
    assert float(model.weight.detach()) == weights_at[20]  # the best weights, not the last
    assert [s for s, _ in es.history] == [10, 20, 30, 40]
    # resuming a stopped run trains no further and ends with the best weights again
    model2, opt2, step2 = _toy(1, [])
    es2 = EarlyStopping(validate, every=10, patience=2)
    more = train_steps(
        model2,
        opt2,
        step2,
        lambda: iter(range(100)),
        100,
        checkpoint=ckpt,
        progress=False,
        early_stopping=es2,
    )
    assert len(more) == 40
    assert es2.stopped
    assert float(model2.weight.detach()) == weights_at[20]
    state = torch.load(ckpt, weights_only=True)  # tensors and plain Python only
    assert state["early_stopping"]["best_step"] == 20


def test_early_stopping_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="every and patience must be >= 1, got every=0, patience=3"):
        EarlyStopping(lambda: 0.0, every=0, patience=3)


def test_validation_runs_inside_the_protocol_and_picks_a_checkpoint(demo_root: Path, tmp_path: Path) -> None:
    config = _paper(
        demo_root,
        tmp_path / "out",
        backbone={"name": "conv4", "hidden": 8, "weights": "random"},
        data={"min_class_size": 0},
        augmentation={"enabled": False},
        pretrain={"steps": 6, "batch_size": 8, "val_every": 2, "val_batches": 2, "patience": 1},
    )
    ctx = _context(config, "mm-PT", tmp_path)
    trained = train_method(ctx)
    assert [s for s, _ in trained.validation][:1] == [2]
    assert len(trained.validation) >= 2


# -- augmentation --------------------------------------------------------------------------------------
def test_augmentation_is_seeded_per_image_and_keeps_shapes() -> None:
    augment = build_augmentation(AugmentationConfig(flip_p=0.5, crop_p=0.5), 16)
    x = torch.rand(1, 1, 16, 16).repeat(8, 1, 1, 1)
    torch.manual_seed(3)
    a = augment(x)
    torch.manual_seed(3)
    b = augment(x)
    assert torch.equal(a, b)
    assert a.shape == x.shape
    assert len({a[i].sum().item() for i in range(8)}) > 1  # each image gets its own draw
    with pytest.raises(
        ValueError, match=r"augmentation expects a batch \(N, C, H, W\), got shape \(1, 16, 16\)"
    ):
        augment(x[0])


# -- supervised, seeds, paired, plugins ---------------------------------------------------------------
def _small(root: Path, out: Path, methods: list[str], **sections: dict) -> ProtocolConfig:
    base = {
        "data": {"min_class_size": 0},
        "evaluation": {"methods": methods, "n_episodes": 4},
        "backbone": {"name": "conv4", "hidden": 8, "weights": "random"},
        "augmentation": {"enabled": True},
        "finetune": {"steps": 2},
        "supervised": {
            "steps": 4,
            "batch_size": 16,
            "val_every": 2,
            "val_batches": 2,
            "patience": 1,
            "bootstrap": 50,
        },
        "run": {"plot": False, "num_threads": 1},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    return _paper(root, out, **base)


def test_supervised_baseline_on_a_medimeta_fixture(demo_root: Path, tmp_path: Path) -> None:
    result = run_protocol(
        _small(demo_root, tmp_path / "out", ["supervised", "scratch"]), progress=False, log=None
    )
    (row,) = result.supervised.to_records()
    assert row["method"] == "supervised"
    assert row["target"] == "digits_scan_a/even digit"
    assert row["n_test"] > 100
    assert row["auroc_ci_low"] <= row["auroc"] <= row["auroc_ci_high"]
    summary = {r["method"]: r for r in result.summary}
    assert summary["supervised"]["n_episodes"] == 0
    assert summary["supervised"]["auroc_mean"] == row["auroc"]
    assert summary["scratch"]["n_episodes"] == 4
    assert (tmp_path / "out" / "supervised.csv").is_file()
    # results.md says why supervised is not paired (and why there is no paired.csv at all)
    note = (tmp_path / "out" / "results.md").read_text()
    assert "No `paired.csv`: it needs two methods scored on episodes." in note
    assert "Not in `paired.csv`: supervised. It is scored once" in note
    assert "bootstraps test images, not patients" in note
    assert not (tmp_path / "out" / "paired.csv").exists()
    lines: list[str] = []
    again = run_protocol(
        _small(demo_root, tmp_path / "out", ["supervised", "scratch"]), progress=False, log=lines.append
    )
    assert again.supervised.to_records() == result.supervised.to_records()
    # both finished evaluations pass the checks of reused records (one record per task for supervised)
    assert sum("reusing finished evaluation" in line for line in lines) == 2, lines
    assert not any(line.startswith("warning") for line in lines), lines


def test_seeds_give_a_between_seed_spread_and_methods_are_paired(demo_root: Path, tmp_path: Path) -> None:
    config = _small(demo_root, tmp_path / "out", ["scratch", "linear-probe"], run={"seeds": [0, 1]})
    result = run_protocol(config, progress=False, log=None)
    assert sorted({r["seed"] for r in result.episodes}) == [0, 1]
    for row in result.summary:
        assert row["n_seeds"] == 2
        assert row["auroc_seed_std"] >= 0
    (pair,) = result.paired.to_records()
    assert (pair["method_a"], pair["method_b"], pair["n"]) == ("scratch", "linear-probe", 4)
    assert (tmp_path / "out" / "evaluations" / "seed-1" / "digits_scan_a" / "scratch.json").is_file()
    assert (tmp_path / "out" / "paired.csv").is_file()
    header = (tmp_path / "out" / "paired.csv").read_text().splitlines()[0].split(",")
    assert header[header.index("wilcoxon_p") :][:4] == [
        "wilcoxon_p",
        "wilcoxon_p_holm",
        "sign_p",
        "sign_p_holm",
    ]
    assert pair["wilcoxon_p_holm"] == pair["wilcoxon_p"]  # one comparison: Holm leaves it as it is
    note = (tmp_path / "out" / "results.md").read_text()
    assert "`mean_difference` is `method_a - method_b` (positive: `method_a` scored" in note
    assert "Not in `paired.csv`" not in note


def test_a_registered_learner_runs_through_torchcross_run(demo_root: Path, tmp_path: Path) -> None:
    from torchcross.cli.app import main

    (tmp_path / "my_methods.py").write_text(
        "from torchcross.learners.protonet import ProtoNet\n"
        "from torchcross.protocol import register_method\n\n"
        "def learner(ctx, trained):\n"
        "    backbone, _ = ctx.build_backbone()\n"
        "    return ProtoNet(backbone)\n\n"
        "register_method('nearest-mean', None, learner, replace=True)\n"
    )
    (tmp_path / "exp.toml").write_text(
        f'[data]\nroot = "{demo_root}"\ntargets = ["digits_scan_a/even digit"]\nmin_class_size = 0\n'
        '[evaluation]\nmethods = ["Nearest-Mean", "scratch"]\nn_episodes = 3\n'
        '[backbone]\nname = "conv4"\nhidden = 8\nweights = "random"\n[finetune]\nsteps = 1\n'
        '[run]\nout_dir = "out"\nplot = false\nplugins = ["my_methods.py"]\n'
    )
    try:
        assert main(["run", str(tmp_path / "exp.toml")]) == 0
        results = json.loads((tmp_path / "out" / "results.json").read_text())
        assert [r["method"] for r in results["summary"]] == ["nearest-mean", "scratch"]
        assert results["paired"][0]["n"] == 3
    finally:
        unregister_method("nearest-mean")


def test_registry_errors() -> None:
    with pytest.raises(ValueError, match="method name 'MM-pt' is a built-in method; choose another name"):
        register_method("MM-pt", None, lambda ctx, t: None)
    with pytest.raises(TypeError, match="learner must be callable, got int"):
        register_method("x", None, 3)
    with pytest.raises(ValueError, match="'IM-PT' is a built-in method and cannot be removed"):
        unregister_method("IM-PT")
    with pytest.raises(ValueError, match="a method name must be a non-empty string without '/', got 'a/b'"):
        register_method("a/b", None, lambda ctx, t: None)
    with pytest.raises(FileNotFoundError, match=r"\[run\] plugins: file .*nowhere.py' does not exist"):
        config_from_dict(
            {"data": {"root": "d", "targets": "t"}, "run": {"out_dir": "o", "plugins": ["nowhere.py"]}}
        )


def test_dataloader_workers_give_the_same_training(demo_root: Path, tmp_path: Path) -> None:
    def losses(workers: int) -> list[float]:
        config = _paper(
            demo_root,
            tmp_path / f"w{workers}",
            backbone={"name": "conv4", "hidden": 8, "weights": "random"},
            data={"min_class_size": 0},
            augmentation={"enabled": False},
            pretrain={"steps": 5, "batch_size": 8, "patience": 0},
            run={"num_workers": workers},
        )
        return train_method(_context(config, "mm-PT", tmp_path)).losses

    assert losses(2) == losses(0)
