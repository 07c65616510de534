"""One fingerprint per artefact (issue 20): a changed setting never reuses a result that read it.

Evaluations, checkpoints and episode sets are fingerprinted from the config values they declare
they read. Before, the evaluation fingerprint was assembled by hand and left out ``[augmentation]``:
a run with augmentation switched on reported the numbers trained without it. Methods built on a
built-in trainer declare their variant as a value (``MetaLearnVariant``), never through their name.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from torchcross.cli.demo_data import write_demo_medimeta
from torchcross.protocol import check_protocol, run_protocol
from torchcross.protocol import registry as registry_module
from torchcross.protocol.config import ProtocolConfig, config_from_dict
from torchcross.protocol.data import TargetPlan
from torchcross.protocol.fingerprint import Reads, fingerprint
from torchcross.protocol.methods import (
    evaluation_learner,
    method_context,
    method_fingerprint,
    train_method,
)
from torchcross.protocol.registry import get_method, method_names, register_method, unregister_method
from torchcross.protocol.training import CheckpointMismatchError, config_fingerprint
from torchcross.protocol.variants import MetaLearnVariant
from torchcross.tasks.task import Task, TaskDescription

# the tiny protocol of tests/test_protocol.py
TINY: dict[str, dict[str, Any]] = {
    "data": {"root": "data", "targets": ["digits_scan_a/even digit"], "min_class_size": 0},
    "evaluation": {"n_episodes": 4, "methods": ["IM-PT"]},
    "backbone": {"name": "conv4", "hidden": 8, "weights": "random"},
    "augmentation": {"enabled": False},
    "pretrain": {"steps": 4, "batch_size": 8},
    "maml": {"steps": 2, "meta_batch_size": 2, "inner_steps": 1, "first_order": True, "n_query": 2},
    "finetune": {"steps": 3, "freeze_backbone": True},
    "run": {"out_dir": "out", "plot": False, "num_threads": 1},
}


def _config(root: Path | str = "data", out: Path | str = "out", **sections: dict) -> ProtocolConfig:
    raw = {name: dict(values) for name, values in TINY.items()}
    raw["data"]["root"], raw["run"]["out_dir"] = str(root), str(out)
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return config_from_dict(raw)


def _setting(key: str, value: Any) -> dict[str, dict[str, Any]]:
    section, name = key.split(".")
    return {section: {name: value}}


# a target of the demo data (tests/test_protocol.py's), with two of its leave-one-out sources
TARGET = TargetPlan(
    "digits_scan_a", ("even digit",), (("digits_defocus", "digit"), ("digits_negative", "ink level"))
)


def _context(config: ProtocolConfig, method: str, **changes: Any):
    ctx = method_context(
        config,
        TARGET,
        method,
        config.run.seed,
        in_channels=1,
        image_size=16,
        device=torch.device("cpu"),
        log=lambda _line: None,
        progress=False,
    )
    return dataclasses.replace(ctx, **changes)


# -- what each method's evaluation reads -----------------------------------------------------------------
# one changed value for at least one key of every section (the base config is TINY)
CHANGES = {
    "data.normalize": "half",
    "data.target_split": "test",
    "data.min_class_size": 3,
    "data.source_split": "train",
    "evaluation.n_shot": 2,
    "evaluation.n_query": 3,
    "evaluation.n_episodes": 7,
    "evaluation.confidence": 0.9,
    "backbone.hidden": 16,
    "backbone.name": "resnet18",
    "pretrain.lr": 0.01,
    "pretrain.steps": 9,
    "pretrain.head_init": "kaiming",
    "maml.inner_lr": 0.2,
    "maml.steps": 9,
    "maml.evaluation": "inner-loop",
    "finetune.steps": 7,
    "finetune.batch_norm": "frozen",
    "augmentation.enabled": True,
    "augmentation.rotation": 5.0,
    "supervised.lr": 0.01,
    "supervised.bootstrap": 50,
    "run.seed": 3,
}
# settings no result depends on: changing them never invalidates one
IRRELEVANT = {
    "run.out_dir": "elsewhere",
    "run.num_threads": 2,
    "run.plot": True,
    "run.logger": "none",
    "run.num_workers": 1,
    "run.checkpoint_every": 5,
    "run.resume": False,
    "run.device": "cuda",
    "data.root": "/another/copy",
    "evaluation.batch_size": 3,
    "evaluation.methods": ["mm-PT", "supervised"],
}
EPISODES = {"data.target_split", "data.min_class_size", "evaluation.n_shot", "evaluation.n_query"}
EPISODES |= {"evaluation.n_episodes", "run.seed"}
FINETUNING = {"data.normalize", "evaluation.confidence", "backbone.hidden", "backbone.name"} | EPISODES
FINETUNING |= {"finetune.steps", "finetune.batch_norm"}
TRAINING = {"data.source_split", "augmentation.enabled", "augmentation.rotation"}
PRETRAIN = {"pretrain.lr", "pretrain.steps", "pretrain.head_init"}
MAML = {"maml.inner_lr", "maml.steps", "maml.evaluation"}
SUPERVISED = {"data.normalize", "evaluation.confidence", "backbone.hidden", "backbone.name"}
SUPERVISED |= {"augmentation.enabled", "augmentation.rotation", "supervised.lr", "supervised.bootstrap"}
SUPERVISED |= {"run.seed"}  # the training seed without [run] seeds
READS = {
    "scratch": FINETUNING,
    "IM-PT": FINETUNING,
    "linear-probe": FINETUNING,
    "mm-PT": FINETUNING | TRAINING | PRETRAIN,
    "mm-MAML": FINETUNING | TRAINING | MAML,
    "FOMAML": FINETUNING | TRAINING | MAML,
    "ANIL": FINETUNING | TRAINING | MAML,
    "Meta-SGD": FINETUNING | TRAINING | MAML,
    "ProtoNet": FINETUNING | TRAINING | MAML,
    "supervised": SUPERVISED,
}
CASES = [(m, k) for m in READS for k in [*CHANGES, *IRRELEVANT]]


@pytest.mark.parametrize(("method", "key"), CASES, ids=[f"{m}-{k}" for m, k in CASES])
def test_an_evaluation_is_fingerprinted_by_every_setting_it_reads_and_no_other(method: str, key: str) -> None:
    value = CHANGES.get(key, IRRELEVANT.get(key))
    before = method_fingerprint(_context(_config(), method))
    after = method_fingerprint(_context(_config(**_setting(key, value)), method))
    if key in READS[method]:
        assert after != before, f"{method}: changing {key} would reuse its stale evaluation"
    else:
        assert after == before, f"{method}: changing {key} would redo an evaluation that does not read it"


@pytest.mark.parametrize("method", list(READS))
def test_an_evaluation_is_named_by_its_seed_target_tasks_and_input(method: str) -> None:
    config = _config()
    before = method_fingerprint(_context(config, method))
    assert method_fingerprint(_context(config, method, seed=1)) != before
    assert method_fingerprint(_context(config, method, image_size=32)) != before
    other = dataclasses.replace(TARGET, tasks=("even digit", "digit"))
    assert method_fingerprint(_context(config, method, target=other)) != before


# -- what a checkpoint reads: the training's settings, less its step count ----------------------------------
@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_medimeta(tmp_path_factory.mktemp("demo") / "data", size=16)


def _checkpoint_fingerprint(
    demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str, **sections: dict
) -> str:
    seen: dict[str, Any] = {}

    def record(*args: Any, settings: Any, **kwargs: Any) -> list[float]:
        seen["settings"] = settings
        return []

    monkeypatch.setattr(registry_module, "train_steps", record)  # what MethodContext.train_model calls
    config = _config(demo_root, tmp_path / "out", **sections)
    train_method(_context(config, method))
    return config_fingerprint(seen["settings"])


CHECKPOINT_CASES = [
    ("mm-PT", "augmentation.enabled", True),
    ("mm-PT", "pretrain.lr", 0.01),
    ("mm-PT", "backbone.hidden", 16),
    ("mm-PT", "data.source_split", "all"),
    ("mm-PT", "pretrain.steps", 9),
    ("mm-PT", "finetune.steps", 7),
    ("mm-PT", "evaluation.n_shot", 2),
    ("mm-PT", "run.out_dir", "elsewhere"),
    ("mm-MAML", "augmentation.enabled", True),
    ("mm-MAML", "maml.inner_lr", 0.2),
    ("mm-MAML", "maml.steps", 9),
    ("mm-MAML", "maml.evaluation", "inner-loop"),
    ("mm-MAML", "maml.eval_inner_steps", 3),
    ("mm-MAML", "finetune.steps", 7),
]
CHECKPOINT_READS = {"augmentation.enabled", "pretrain.lr", "backbone.hidden", "data.source_split"}
CHECKPOINT_READS |= {"maml.inner_lr"}


@pytest.mark.parametrize(("method", "key", "value"), CHECKPOINT_CASES)
def test_a_checkpoint_is_fingerprinted_by_its_training_settings_less_its_step_count(
    demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str, key: str, value: Any
) -> None:
    before = _checkpoint_fingerprint(demo_root, tmp_path, monkeypatch, method)
    after = _checkpoint_fingerprint(demo_root, tmp_path, monkeypatch, method, **_setting(key, value))
    assert (after != before) is (key in CHECKPOINT_READS)


SUPERVISED_CHECKPOINT = [
    ("augmentation.enabled", True, True),
    ("supervised.lr", 0.01, True),
    ("supervised.steps", 3, False),  # more steps continue from the checkpoint
    ("supervised.bootstrap", 20, False),  # the test's interval, not the training
    ("data.source_split", "all", False),  # it trains on the target task, not on sources
    ("evaluation.n_shot", 2, False),
]


@pytest.mark.parametrize(("key", "value", "read"), SUPERVISED_CHECKPOINT)
def test_a_supervised_checkpoint_is_fingerprinted_by_what_its_training_reads(
    demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str, value: Any, read: bool
) -> None:
    from torchcross.protocol import supervised

    seen: list[Any] = []

    def record(*args: Any, settings: Any, **kwargs: Any) -> list[float]:
        seen.append(config_fingerprint(settings))
        return []

    monkeypatch.setattr(supervised, "train_steps", record)
    tiny = {"steps": 2, "batch_size": 8, "patience": 0, "bootstrap": 10}
    for sections in ({}, _setting(key, value)):
        merged = {**sections, "supervised": {**tiny, **sections.get("supervised", {})}}
        ctx = _context(_config(demo_root, tmp_path / "out", **merged), "supervised")
        supervised.train_and_test(ctx, "even digit")
    assert (seen[0] != seen[1]) is read


# -- registered methods and their variants ------------------------------------------------------------------
@pytest.fixture
def registered() -> Any:
    names: list[str] = []

    def register(name: str, *args: Any, **kwargs: Any) -> Any:
        names.append(name)
        return register_method(name, *args, replace=True, **kwargs)

    yield register
    for name in set(names) & set(method_names()):
        unregister_method(name)


def test_a_variant_is_part_of_the_fingerprint(registered: Any) -> None:
    config = _config()
    registered("my-method", like="mm-MAML")
    plain = method_fingerprint(_context(config, "my-method"))
    registered("my-method", like="mm-MAML", variant=MetaLearnVariant(anil=True))
    assert method_fingerprint(_context(config, "my-method")) != plain


def test_a_registered_method_reads_every_result_setting_unless_it_declares_less(registered: Any) -> None:
    def learner(ctx: Any, trained: Any) -> Any:
        raise AssertionError("not called")

    registered("everything", None, learner)
    registered("finetuning", None, learner, reads=["backbone", "finetune"])
    for key, value in CHANGES.items():
        changed = _config(**_setting(key, value))
        assert method_fingerprint(_context(changed, "everything")) != method_fingerprint(
            _context(_config(), "everything")
        ), key
        reads_it = key.split(".")[0] in ("backbone", "finetune") or key in EPISODES | {
            "evaluation.confidence"
        }
        same = method_fingerprint(_context(changed, "finetuning")) == method_fingerprint(
            _context(_config(), "finetuning")
        )
        assert same is not reads_it, key
    for key, value in IRRELEVANT.items():
        changed = _config(**_setting(key, value))
        assert method_fingerprint(_context(changed, "everything")) == method_fingerprint(
            _context(_config(), "everything")
        ), key


def test_bad_reads_name_the_entry_and_what_exists(registered: Any) -> None:
    config = _config()
    with pytest.raises(
        ValueError, match=r"reads 'mam\.inner_lr': the config has no section \[mam\]; sections: data"
    ):
        Reads(("mam.inner_lr",)).resolve(config)
    with pytest.raises(ValueError, match=r"reads 'maml\.lr': section \[maml\] has no key 'lr'; keys: steps,"):
        fingerprint(config, Reads(("maml.lr",)))
    with pytest.raises(ValueError, match=r"'maml\.inner\.lr' is not a config section"):
        Reads(("maml.inner.lr",))
    with pytest.raises(TypeError, match="Reads keys must be a sequence of strings, got 'maml'"):
        registered("bad", None, lambda ctx, t: None, reads="maml")


def test_reads_that_name_no_setting_fail_before_training(
    demo_root: Path, tmp_path: Path, registered: Any
) -> None:
    registered("typo", None, lambda ctx, t: None, reads=["finetune", "fintune.lr"])
    config = _config(demo_root, tmp_path / "out", evaluation={"methods": ["typo"]})
    with pytest.raises(ValueError, match=r"method 'typo': reads 'fintune\.lr': the config has no section"):
        check_protocol(config)
    assert not (tmp_path / "out").exists()


def test_training_must_not_read_more_than_its_method_declares(
    demo_root: Path, tmp_path: Path, registered: Any
) -> None:
    from torchcross.protocol.metalearn import maml_learner, train_maml

    registered("narrow", train_maml, maml_learner, variant=MetaLearnVariant(), reads=["finetune"])
    ctx = _context(_config(demo_root, tmp_path / "out"), "narrow")
    with pytest.raises(
        ValueError, match=r"method 'narrow': its training reads augmentation\.crop_fraction, .*"
    ):
        train_method(ctx)


def _train(method: str, demo_root: Path, tmp_path: Path) -> tuple[Any, Any]:
    config = _config(demo_root, tmp_path / method, maml={"first_order": False, "patience": 0})
    ctx = _context(config, method)
    trained = train_method(ctx)
    return trained, evaluation_learner(ctx, trained)


def test_a_method_registered_like_anil_trains_as_anil(
    demo_root: Path, tmp_path: Path, registered: Any
) -> None:
    registered("my-ANIL", like="mm-MAML", variant=MetaLearnVariant(anil=True))
    registered("my-ANIL-too", like="ANIL")
    for name in ("my-ANIL", "my-ANIL-too"):
        assert get_method(name).variant == MetaLearnVariant(anil=True)
        trained, learner = _train(name, demo_root, tmp_path)
        assert learner is trained.model  # evaluated with its own inner loop, as ANIL
        assert learner.anil
        assert not learner.first_order
        # the inner loop adapts the head alone: the backbone's adapted parameters are its meta-parameters
        d = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"})
        x = torch.randn(4, 1, 16, 16)
        task = Task((x, torch.tensor([[0], [1], [0], [1]])), (x, torch.tensor([[1], [0], [1], [0]])), d)
        adapted = learner.adapt(task)
        assert any(
            not torch.equal(adapted[k], torch.zeros_like(adapted[k])) for k in ("head.weight", "head.bias")
        )
        for k, p in learner.backbone.named_parameters():
            assert torch.equal(adapted[f"backbone.{k}"], p.detach())


def test_a_method_registered_like_mm_maml_with_a_first_order_variant_trains_first_order(
    demo_root: Path, tmp_path: Path, registered: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}

    def record(model: Any, *args: Any, **kwargs: Any) -> list[float]:
        seen["model"] = model
        return []

    monkeypatch.setattr(registry_module, "train_steps", record)
    registered("my-FOMAML", like="mm-MAML", variant=MetaLearnVariant(first_order=True))
    _train("my-FOMAML", demo_root, tmp_path)  # [maml] first_order = false
    assert seen["model"].first_order
    assert not seen["model"].anil
    _train("mm-MAML", demo_root, tmp_path)
    assert not seen["model"].first_order


def test_the_episodic_trainer_refuses_a_method_without_a_variant(
    demo_root: Path, tmp_path: Path, registered: Any
) -> None:
    from torchcross.protocol.metalearn import maml_learner, train_maml

    registered("my-ANIL", train_maml, maml_learner)  # once: plain MAML, silently
    with pytest.raises(
        TypeError, match=r"method 'my-ANIL' uses the episodic trainer, which needs a MetaLearnVariant"
    ):
        _train("my-ANIL", demo_root, tmp_path)


def test_variants_and_like_are_checked(registered: Any) -> None:
    with pytest.raises(ValueError, match=r"protonet=True.*set first_order, anil and meta_sgd to False"):
        MetaLearnVariant(protonet=True, anil=True)
    with pytest.raises(TypeError, match="MetaLearnVariant anil must be True or False, got 1"):
        MetaLearnVariant(anil=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="method 'x': pass like= or train and learner, not both"):
        registered("x", None, lambda ctx, t: None, like="ANIL")
    with pytest.raises(ValueError, match="unknown method 'anil'; known methods: IM-PT"):
        registered("x", like="anil")


# -- end to end: a flipped setting is never answered with the old numbers -----------------------------------
def test_switching_augmentation_on_reruns_mm_pt_instead_of_reusing_it(
    demo_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    config = _config(demo_root, out, evaluation={"methods": ["IM-PT", "mm-PT"]})
    first = run_protocol(config, progress=False, log=None)
    augmented = _config(
        demo_root, out, evaluation={"methods": ["IM-PT", "mm-PT"]}, augmentation={"enabled": True}
    )
    lines: list[str] = []
    # the evaluation is not reused; the finished checkpoint trained without augmentation is refused
    with pytest.raises(
        CheckpointMismatchError, match=r"changed: augmentation\.enabled \(saved False, now True\)"
    ):
        run_protocol(augmented, progress=False, log=lines.append)
    assert any("scratch: reusing finished evaluation" in line for line in lines)  # it does not augment
    assert not any("mm-PT: reusing finished evaluation" in line for line in lines)
    # as the error says: delete the checkpoint, and the run trains mm-PT again, with augmentation
    (out / "checkpoints" / "digits_scan_a" / "mm-PT.pt").unlink()
    lines.clear()
    second = run_protocol(augmented, progress=False, log=lines.append)
    assert not any("mm-PT: reusing" in line for line in lines)
    assert (
        second.episodes.where(method="scratch").to_records()
        == first.episodes.where(method="scratch").to_records()
    )

    def aurocs(result: Any) -> list[float]:
        return [r["auroc"] for r in result.episodes.where(method="mm-PT").to_records()]

    assert aurocs(second) != aurocs(first)
    saved = json.loads((out / "evaluations" / "digits_scan_a" / "mm-PT.json").read_text())
    assert [r["auroc"] for r in saved["records"]] == aurocs(second)
    # and switching it off again is not answered with the augmented numbers either
    lines.clear()
    with pytest.raises(CheckpointMismatchError, match=r"augmentation\.enabled \(saved True, now False\)"):
        run_protocol(config, progress=False, log=lines.append)
    assert not any("mm-PT: reusing" in line for line in lines)


def test_changed_episode_settings_redraw_the_episodes_and_a_run_setting_keeps_everything(
    demo_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    config = _config(demo_root, out)
    run_protocol(config, progress=False, log=None)
    path = out / "episodes" / "digits_scan_a" / "even_digit.json"
    stored = json.loads(path.read_text())["sampling"]["fingerprint"]
    lines: list[str] = []
    run_protocol(
        _config(demo_root, out, run={"num_threads": 2, "logger": "none"}), progress=False, log=lines.append
    )
    assert any("scratch: reusing finished evaluation" in line for line in lines)
    assert json.loads(path.read_text())["sampling"]["fingerprint"] == stored
    lines.clear()
    run_protocol(_config(demo_root, out, evaluation={"n_query": 3}), progress=False, log=lines.append)
    assert any("its 'sampling' (the settings the episodes were drawn with)" in line for line in lines)
    assert not any("reusing finished evaluation" in line for line in lines)
    assert json.loads(path.read_text())["sampling"]["fingerprint"] != stored
