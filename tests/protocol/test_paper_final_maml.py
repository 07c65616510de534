"""mm-MAML as the authors finally ran it (``cross_domain_maml.py`` at 83c2aad), and ResNet-50's start.

Validation on ``val_episodes`` episodes per source task from all splits, adapted with ``val_inner_steps``;
source classes below ``min_class_size`` left out; a fixed pool of ``episode_pool`` episodes per source
task, reshuffled every epoch; torchvision's DEFAULT ImageNet weights; ResNet-50's outer learning rate.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import pytest
import torch

from torchcross.cli.demo_data import write_demo_medimeta
from torchcross.data.metadataset import fixed_shot
from torchcross.datasets.medimeta import MedIMeta
from torchcross.learners import maml as maml_module
from torchcross.learners.maml import MAML
from torchcross.protocol import check_protocol, registry
from torchcross.protocol.backbone import imagenet_weights
from torchcross.protocol.config import ProtocolConfig, config_from_dict, load_config
from torchcross.protocol.methods import method_context, train_method
from torchcross.protocol.registry import MethodContext
from torchcross.protocol.training import CheckpointMismatchError
from torchcross.tasks.task import Task

_SOURCES = ["digits_defocus/even digit", "digits_negative/digit"]


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_medimeta(tmp_path_factory.mktemp("demo") / "data", size=16)


def _config(root: Path, out: Path, **sections: dict) -> ProtocolConfig:
    raw: dict = {
        "data": {"root": str(root), "targets": ["digits_scan_a/even digit"], "sources": _SOURCES},
        "run": {"out_dir": str(out), "num_threads": 1},
        "backbone": {"name": "conv4", "hidden": 4, "weights": "random"},
        "augmentation": {"enabled": False},
        "maml": {"steps": 3, "max_shot": 2, "n_query": 2, "episode_pool": 3, "val_episodes": 2},
    }
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return config_from_dict(raw)


def _context(config: ProtocolConfig, log: list[str] | None = None) -> MethodContext:
    plan = check_protocol(config)
    return method_context(
        config,
        plan.targets[0],
        "mm-MAML",
        config.run.seed,
        in_channels=plan.in_channels,
        image_size=plan.image_size,
        device=plan.device,
        log=(lambda _m: None) if log is None else log.append,
        progress=False,
    )


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> dict:
    """Replace source training by a recorder of what train_steps was given."""
    seen: dict = {}

    def record(model, optimizer, step_fn, units, steps, **kwargs):
        seen.update(model=model, optimizer=optimizer, units=units, steps=steps, **kwargs)
        return []

    monkeypatch.setattr(registry, "train_steps", record)  # what MethodContext.train_model calls
    return seen


def _key(task: Task) -> tuple:
    """An episode's identity: its task and its support and query inputs and labels."""
    (xs, ys), (xq, yq) = task.support, task.query
    labels = tuple(ys.flatten().tolist()), tuple(yq.flatten().tolist())
    return (task.description.task_identifier, xs.sum().item(), xq.sum().item(), *labels)


def _units(captured: dict, n: int) -> list[tuple]:
    return [_key(task) for meta_batch in islice(captured["units"](), n) for task in meta_batch]


# -- validation ------------------------------------------------------------------------------------------
def test_validation_adapts_with_32_inner_steps_on_episodes_of_every_source_task_from_all_splits(
    demo_root: Path, tmp_path: Path, captured: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[str] = []
    open_task = MethodContext.open
    monkeypatch.setattr(
        MethodContext,
        "open",
        lambda self, ds, task, split: opened.append(split) or open_task(self, ds, task, split),
    )
    steps: list[int] = []
    adapt = maml_module.adapt_backbone_and_head
    monkeypatch.setattr(
        maml_module,
        "adapt_backbone_and_head",
        lambda *args, **kwargs: steps.append(kwargs["num_steps"]) or adapt(*args, **kwargs),
    )
    seen: list[str] = []
    predict = MAML.predict
    monkeypatch.setattr(MAML, "predict", lambda self, task: seen.append(_key(task)[0]) or predict(self, task))

    config = _config(demo_root, tmp_path)
    assert (config.maml.val_inner_steps, config.maml.val_split) == (32, "all")  # the defaults
    train_method(_context(config))
    assert set(opened) == {"all"}  # training and validation: every split of the sources
    model, early = captured["model"], captured["early_stopping"]
    assert model.eval_num_inner_steps == 4  # evaluation's inner loop is not validation's
    assert early.check(1, model) is False
    assert steps == [32] * 4  # 2 episodes of each of the 2 source tasks, each adapted with 32 steps
    assert Counter(seen) == {"digits_defocus/even digit": 2, "digits_negative/digit": 2}
    assert model.eval_num_inner_steps == 4  # restored after validation

    # the earlier behaviour: the sources' val splits, the training inner steps
    opened.clear(), steps.clear(), seen.clear()
    old = _config(
        demo_root, tmp_path / "old", maml={"val_split": "val", "val_inner_steps": 4, "min_class_size": 0}
    )
    train_method(_context(old))
    assert set(opened) == {"all", "val"}
    captured["early_stopping"].check(1, captured["model"])
    assert steps == [4] * 4


def test_validation_episodes_are_not_training_episodes(
    demo_root: Path, tmp_path: Path, captured: dict
) -> None:
    config = _config(demo_root, tmp_path, maml={"episode_pool": 20, "val_episodes": 20, "val_inner_steps": 1})
    train_method(_context(config))
    training = set(_units(captured, 40))
    validation: list[tuple] = []
    model = captured["model"]
    predict = model.predict
    model.predict = lambda task: validation.append(_key(task)) or predict(task)
    captured["early_stopping"].check(1, model)
    assert len(validation) == 40
    assert not training & set(validation)


# -- the class filter ------------------------------------------------------------------------------------
def test_source_classes_below_min_class_size_are_left_out(
    demo_root: Path, tmp_path: Path, captured: dict
) -> None:
    source = MedIMeta(demo_root, "digits_negative", "digit")
    counts = Counter(int(y) for y in source.labels)
    names = source.task_description.classes
    small = {names[c] for c, n in counts.items() if n < 45}
    assert 0 < len(small) < len(counts)  # the demo data has classes on both sides of 45

    def classes(min_class_size: int) -> tuple[set[str], list[str]]:
        log: list[str] = []
        config = _config(
            demo_root,
            tmp_path / str(min_class_size),
            data={"sources": ["digits_negative/digit"]},
            maml={"min_class_size": min_class_size, "episode_pool": 60, "patience": 0},
        )
        train_method(_context(config, log))
        seen = {
            name
            for meta_batch in islice(captured["units"](), 60)
            for name in meta_batch[0].description.classes.values()
        }
        return seen, log

    kept, log = classes(45)
    assert not kept & small
    assert any(f"filter_classes_min_samples=45 removed {len(small)} of 10 classes" in line for line in log)
    everything, _ = classes(0)  # 0 keeps every class
    assert small <= everything


# -- the episode pool ------------------------------------------------------------------------------------
def test_the_pool_is_reused_every_epoch_in_a_new_order(
    demo_root: Path, tmp_path: Path, captured: dict
) -> None:
    config = _config(demo_root, tmp_path)
    train_method(_context(config))
    assert captured["early_stopping"].every == 6  # "epoch": 2 pools of 3 episodes, meta-batches of 1
    units = _units(captured, 18)  # three epochs
    first, second, third = units[:6], units[6:12], units[12:]
    assert Counter(k[0] for k in first) == {"digits_defocus/even digit": 3, "digits_negative/digit": 3}
    assert sorted(first) == sorted(second) == sorted(third)  # the same 6 episodes every epoch
    assert len(set(first)) == 6
    assert first != second or second != third  # in a new order

    # a pure function of the seed, whatever the number of DataLoader workers
    train_method(_context(_config(demo_root, tmp_path / "w", run={"num_workers": 1})))
    assert _units(captured, 18) == units
    train_method(_context(_config(demo_root, tmp_path / "s", run={"seed": 1})))
    assert sorted(_units(captured, 6)) != sorted(first)


def test_episode_pool_0_draws_fresh_episodes_at_every_step(
    demo_root: Path, tmp_path: Path, captured: dict
) -> None:
    config = _config(demo_root, tmp_path, maml={"episode_pool": 0, "val_every": 4})
    train_method(_context(config))
    units = _units(captured, 18)
    assert len(set(units)) == 18
    assert captured["early_stopping"].every == 4
    assert captured["sampler"].mode == "infinite"


def test_a_resumed_stream_continues_mid_epoch_and_across_epochs(
    demo_root: Path, tmp_path: Path, captured: dict
) -> None:
    train_method(_context(_config(demo_root, tmp_path)))
    sampler, units = captured["sampler"], captured["units"]
    stream: Iterator[Any] = units()
    list(islice(stream, 4))  # four meta-batches into the first epoch of 6
    state = sampler.state_dict()
    rest = [_key(t) for meta_batch in islice(stream, 10) for t in meta_batch]  # into the third epoch
    assert sampler.state_dict()["epoch"] == 2

    train_method(_context(_config(demo_root, tmp_path / "again")))
    captured["sampler"].load_state_dict(state)
    assert _units(captured, 10) == rest


def test_training_runs_several_epochs_and_validates_once_per_epoch(demo_root: Path, tmp_path: Path) -> None:
    config = _config(demo_root, tmp_path, maml={"steps": 13, "episode_pool": 2, "val_inner_steps": 1})
    trained = train_method(_context(config))
    assert len(trained.losses) == 13
    assert [step for step, _ in trained.validation] == [4, 8, 12]


def test_a_run_extended_across_epochs_equals_the_uninterrupted_one(demo_root: Path, tmp_path: Path) -> None:
    maml = {"episode_pool": 2, "val_inner_steps": 1}  # epochs of 4 meta-updates
    whole = train_method(_context(_config(demo_root, tmp_path / "whole", maml={**maml, "steps": 9})))
    train_method(_context(_config(demo_root, tmp_path / "parts", maml={**maml, "steps": 5})))  # mid-epoch
    resumed = train_method(_context(_config(demo_root, tmp_path / "parts", maml={**maml, "steps": 9})))
    assert resumed.losses == whole.losses
    assert resumed.validation == whole.validation
    assert all(torch.equal(a, b) for a, b in zip(whole.backbone.parameters(), resumed.backbone.parameters()))


# -- multi-label source episodes -------------------------------------------------------------------------
def test_multilabel_source_episodes_are_drawn_by_the_authors_rule_unless_cover(
    demo_root: Path, tmp_path: Path, captured: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[str] = []  # the rule of every episode dataset built: training pools and validation

    class Recorded(fixed_shot.SubTaskRandomFewShotMetaDataset):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            built.append(self.multilabel_sampler)

    monkeypatch.setattr(fixed_shot, "SubTaskRandomFewShotMetaDataset", Recorded)
    maml = {"min_shot": 2, "max_shot": 2, "episode_pool": 8}  # k = 2 in every episode
    data = {"sources": ["digits_negative/digit properties"]}

    def pool(out: str, **extra: Any) -> list[Task]:
        train_method(_context(_config(demo_root, tmp_path / out, data=data, maml={**maml, **extra})))
        return [task for meta_batch in islice(captured["units"](), 8) for task in meta_batch]

    theirs = pool("medimeta")
    assert _config(demo_root, tmp_path).maml.multilabel_sampler == "medimeta"  # the default
    assert built == ["medimeta", "medimeta"]  # the training pool and the validation episodes
    for task in theirs:
        (_, ys), (_, yq) = task.support, task.query
        assert task.description.task_target.name == "MULTILABEL_CLASSIFICATION"
        for labels in (ys, yq):  # each sampled label: >= k = 2 positives and >= 2 negatives (n_query = 2)
            positives = labels.sum(0)
            assert (positives >= 2).all()
            assert (len(labels) - positives >= 2).all()
        # trimmed: without any one support example some label falls short of k
        for i in range(len(ys)):
            rest = torch.cat([ys[:i], ys[i + 1 :]])
            assert ((rest.sum(0) < 2) | (len(rest) - rest.sum(0) < 2)).any()

    built.clear()
    ours = pool("cover", multilabel_sampler="cover")
    assert built == ["cover", "cover"]
    assert sorted(map(_key, theirs)) != sorted(map(_key, ours))


# -- bad values and resumes ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("episode_pool = -1", r"\[maml\] episode_pool must be >= 0, got -1"),
        ("val_every = 'weekly'", r"\[maml\] val_every must be \"epoch\" or an integer, got 'weekly'"),
        ("val_inner_steps = 0", r"\[maml\] val_inner_steps must be >= 1, got 0"),
        ("min_class_size = -3", r"\[maml\] min_class_size must be >= 0, got -3"),
        ("val_split = 'train'", r"\[maml\] val_split = 'train' is not one of all, val"),
        (
            "multilabel_sampler = 'greedy'",
            r"\[maml\] multilabel_sampler = 'greedy' is not one of medimeta, cover",
        ),
        (
            "episode_pool = 0",
            r"\[maml\] val_every = 'epoch' needs episode pools .* \[maml\] episode_pool = 0 .* set val_every",
        ),
    ],
)
def test_bad_values_are_refused_naming_key_value_and_the_accepted_ones(
    tmp_path: Path, line: str, message: str
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[data]\nroot = "d"\ntargets = ["t"]\n[run]\nout_dir = "o"\n[maml]\n{line}\n')
    with pytest.raises((ValueError, TypeError), match=message):
        load_config(path)


def test_episode_pool_0_without_validation_needs_no_val_every() -> None:
    raw = {"data": {"root": "d", "targets": ["t"]}, "run": {"out_dir": "o"}}
    config = config_from_dict({**raw, "maml": {"episode_pool": 0, "patience": 0}})
    assert (config.maml.episode_pool, config.maml.val_every) == (0, "epoch")


@pytest.mark.parametrize(
    ("key", "value"),
    [("episode_pool", 2), ("val_inner_steps", 3), ("min_class_size", 0), ("multilabel_sampler", "cover")],
)
def test_a_resume_with_a_changed_setting_is_refused_naming_it(
    demo_root: Path, tmp_path: Path, key: str, value: int | str
) -> None:
    maml = {"steps": 2, "patience": 0, "val_inner_steps": 1}
    train_method(_context(_config(demo_root, tmp_path, maml=maml)))
    changed = _config(demo_root, tmp_path, maml={**maml, key: value})
    with pytest.raises(CheckpointMismatchError, match=rf"maml\.{key} \(saved"):
        train_method(_context(changed))


# -- ResNet-50: its weights and its outer learning rate --------------------------------------------------
def test_imagenet_selects_torchvisions_default_weights_and_imagenet_v1_the_earlier_ones() -> None:
    import torchvision

    models = torchvision.models
    assert (
        imagenet_weights("resnet50")
        is models.ResNet50_Weights.IMAGENET1K_V2
        is models.ResNet50_Weights.DEFAULT
    )
    assert (
        imagenet_weights("resnet18")
        is models.ResNet18_Weights.IMAGENET1K_V1
        is models.ResNet18_Weights.DEFAULT
    )
    assert imagenet_weights("resnet34") is models.ResNet34_Weights.DEFAULT
    assert imagenet_weights("resnet50", "imagenet-v1") is models.ResNet50_Weights.IMAGENET1K_V1
    with pytest.raises(
        ValueError, match="ImageNet weights 'imagenet-v3' unknown; use one of imagenet, imagenet-v1"
    ):
        imagenet_weights("resnet50", "imagenet-v3")


def test_a_resnet50_run_loads_torchvisions_default_weights(
    demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torchvision

    got: list[str] = []
    state = torchvision.models.resnet50().state_dict()

    def offline(self, *args, **kwargs):  # never a download in a test: record which weights were asked for
        got.append(self.name)
        return state

    monkeypatch.setattr(torchvision.models.ResNet50_Weights, "get_state_dict", offline)
    config = _config(demo_root, tmp_path, backbone={"name": "resnet50", "weights": "imagenet"})
    _context(config).build_backbone()
    assert got
    assert set(got) == {"IMAGENET1K_V2"}


@pytest.mark.parametrize(
    ("backbone", "outer_lr", "lr"),
    [("resnet18", None, 1e-3), ("resnet50", None, 1e-4), ("resnet18", 0.01, 0.01)],
)
def test_the_outer_learning_rate_follows_the_backbone_unless_set(
    demo_root: Path, tmp_path: Path, captured: dict, backbone: str, outer_lr: float | None, lr: float
) -> None:
    config = _config(
        demo_root,
        tmp_path,
        backbone={"name": backbone, "weights": "random"},
        maml={"outer_lr": outer_lr, "patience": 0},
    )
    assert config.maml.outer_lr == outer_lr
    train_method(_context(config))
    optimizer = captured["optimizer"]
    assert isinstance(optimizer, torch.optim.Adam)
    assert optimizer.param_groups[0]["lr"] == lr


def test_resnet50_imagenet_artefacts_are_keyed_by_the_resolved_weights() -> None:
    """ "imagenet" now loads V2 for ResNet-50: its fingerprints name V2 (a V1 checkpoint is not reused);
    ResNet-18's stay as they were."""
    from torchcross.protocol.fingerprint import TRAINING_READS, fingerprint, fingerprint_settings

    def config(name: str, weights: str) -> Any:
        return config_from_dict(
            {"data": {"root": "/r", "targets": ["a"]}, "run": {"out_dir": "/o"}}
            | {"backbone": {"name": name, "weights": weights}}
        )

    assert fingerprint_settings(config("resnet50", "imagenet"), TRAINING_READS)["backbone"]["weights"] == (
        "imagenet (IMAGENET1K_V2)"
    )
    assert fingerprint_settings(config("resnet18", "imagenet"), TRAINING_READS)["backbone"]["weights"] == (
        "imagenet"
    )
    assert fingerprint(config("resnet50", "imagenet"), TRAINING_READS) != fingerprint(
        config("resnet50", "imagenet-v1"), TRAINING_READS
    )
