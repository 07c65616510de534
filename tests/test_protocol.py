"""The protocol: config parsing, target/source planning, up-front checks, checkpoints and resume."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from torchcross.cli.demo_data import write_demo_medimeta
from torchcross.data import TensorTaskSource
from torchcross.data.multitask import MultiTaskBatchSampler
from torchcross.datasets.medimeta import write_medimeta
from torchcross.protocol import check_protocol, run_protocol
from torchcross.protocol import run as protocol
from torchcross.protocol.backbone import build_backbone
from torchcross.protocol.config import (
    METHODS,
    ProtocolConfig,
    config_from_dict,
    config_to_dict,
    load_config,
    normalize_method,
)
from torchcross.protocol.data import load_catalogue, plan_targets
from torchcross.protocol.training import (
    CheckpointError,
    CheckpointMismatchError,
    config_fingerprint,
    train_steps,
)
from torchcross.tasks.task import TaskDescription


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_medimeta(tmp_path_factory.mktemp("demo") / "data", size=16)


def _config(root: Path, out: Path, **sections: dict) -> ProtocolConfig:
    raw = {
        "data": {"root": str(root), "targets": ["digits_scan_a/even digit"], "min_class_size": 0},
        "evaluation": {"n_episodes": 4, "methods": ["IM-PT"]},
        "backbone": {"name": "conv4", "hidden": 8, "weights": "random"},
        "augmentation": {"enabled": False},
        "pretrain": {"steps": 4, "batch_size": 8},
        "maml": {"steps": 2, "meta_batch_size": 2, "inner_steps": 1, "first_order": True, "n_query": 2},
        "finetune": {"steps": 3, "freeze_backbone": True},
        "run": {"out_dir": str(out), "plot": False, "num_threads": 1},
    }
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return config_from_dict(raw)


# -- config ----------------------------------------------------------------------------------------------
def test_toml_and_yaml_configs_agree_and_resolve_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "exp.toml").write_text(
        '[data]\nroot = "data"\ntargets = ["glaucoma"]\n'
        '[evaluation]\nmethods = ["im-pt", "MM-MAML"]\nn_episodes = 7\n'
        '[backbone]\nname = "conv4"\n[run]\nout_dir = "out"\nseed = 3\n'
    )
    (tmp_path / "exp.yaml").write_text(
        "data: {root: data, targets: [glaucoma]}\n"
        "evaluation: {methods: [im-pt, MM-MAML], n_episodes: 7}\n"
        "backbone: {name: conv4}\nrun: {out_dir: out, seed: 3}\n"
    )
    a, b = load_config(tmp_path / "exp.toml"), load_config(tmp_path / "exp.yaml")
    assert a == b
    assert a.evaluation.methods == ("IM-PT", "mm-MAML")
    assert a.data.root == tmp_path.resolve() / "data"
    assert a.run.out_dir == tmp_path.resolve() / "out"
    assert a.maml == type(a.maml)()  # defaults
    flat = config_to_dict(a)
    assert flat["data"]["targets"] == ["glaucoma"]
    assert json.loads(json.dumps(flat))["run"]["seed"] == 3


@pytest.mark.parametrize(
    ("raw", "error", "match"),
    [
        (
            {"data": {"root": "d", "targets": ["t"], "target": "x"}},
            ValueError,
            "unknown key 'target' in section \\[data\\]",
        ),
        (
            {"data": {"root": "d", "targets": ["t"]}, "evaluation": {"n_shots": 5, "episodes": 3}},
            ValueError,
            "unknown keys 'n_shots', 'episodes' in section \\[evaluation\\]; allowed keys: methods, n_shot",
        ),
        (
            {"data": {"root": "d", "targets": ["t"]}, "traning": {}},
            ValueError,
            "unknown config section.*'traning'",
        ),
        (
            {"data": {"root": "d", "targets": ["t"]}, "evaluation": {"methods": ["ProtoMAML"]}},
            ValueError,
            "unknown method 'ProtoMAML'; known methods: IM-PT, scratch, linear-probe, mm-PT, mm-MAML, FOMAML",
        ),
        (
            {"data": {"root": "d", "targets": ["t"]}, "evaluation": {"methods": ["mm-PT", "MM-pt"]}},
            ValueError,
            "repeats",
        ),
        (
            {"data": {"root": "d", "targets": ["t"]}, "backbone": {"name": "vit"}},
            ValueError,
            "'vit' is not one of conv4, resnet18",
        ),
        (
            {"data": {"root": "d", "targets": ["t"]}, "evaluation": {"n_shot": 0}},
            ValueError,
            "n_shot must be >= 1",
        ),
        (
            {"data": {"root": "d", "targets": ["t"]}, "evaluation": {"n_shot": "5"}},
            TypeError,
            "must be an integer",
        ),
        ({"data": {"root": "d", "targets": ["t"]}, "maml": {"first_order": 1}}, TypeError, "true or false"),
        ({"data": {"root": "d", "targets": []}}, TypeError, "non-empty list of strings"),
        ({"data": {"root": "d"}}, ValueError, "needs the key 'targets'"),
        ({"data": {"targets": ["t"]}}, ValueError, "needs the key 'root'"),
        ({"run": {"out_dir": "o"}}, ValueError, r"needs a \[data\] section"),
    ],
)
def test_bad_configs_name_the_problem(raw: dict, error: type, match: str) -> None:
    raw = {"run": {"out_dir": "o"}, **raw}
    with pytest.raises(error, match=match):
        config_from_dict(raw)


def test_bad_config_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    (tmp_path / "c.json").write_text("{}")
    with pytest.raises(ValueError, match=r"\.toml, \.yaml or \.yml"):
        load_config(tmp_path / "c.json")
    (tmp_path / "c.toml").write_text("[data\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_config(tmp_path / "c.toml")
    (tmp_path / "c.yaml").write_text("")
    with pytest.raises(ValueError, match="is empty"):
        load_config(tmp_path / "c.yaml")
    (tmp_path / "d.yaml").write_text("data: [1, 2\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_config(tmp_path / "d.yaml")


def test_normalize_method() -> None:
    assert [normalize_method(m.lower()) for m in METHODS] == list(METHODS)
    with pytest.raises(ValueError, match="known methods"):
        normalize_method("maml")


# -- planning --------------------------------------------------------------------------------------------
def test_leave_one_out_plan_excludes_overlapping_datasets(demo_root: Path) -> None:
    cat, problems = load_catalogue(demo_root)
    assert problems == {}
    (plan,) = plan_targets(cat, ["digits_scan_a"])
    assert plan.tasks == ("digit", "even digit", "digit properties", "ink level")
    assert {ds for ds, _ in plan.sources} == {"digits_negative", "digits_defocus"}
    assert plan.excluded == ("digits_scan_b",)
    (neg,) = plan_targets(cat, ["digits_negative/digit", "digits_negative/ink level"])
    assert neg.tasks == ("digit", "ink level")
    assert {ds for ds, _ in neg.sources} == {"digits_scan_a", "digits_scan_b", "digits_defocus"}
    (explicit,) = plan_targets(cat, ["digits_negative"], sources=["digits_defocus/digit", "digits_scan_b"])
    assert explicit.sources[0] == ("digits_defocus", "digit")
    assert len(explicit.sources) == 5


@pytest.mark.parametrize(
    ("targets", "sources", "match"),
    [
        (["nope"], None, "unknown target dataset 'nope'; datasets under the data root: \\['digits_defocus'"),
        (["digits_scan_a/colour"], None, "has no task 'colour'; its tasks are \\['digit'"),
        (["digits_scan_a"], ["digits_scan_a/digit"], "belong to the target dataset"),
        (["digits_scan_a"], ["gone/digit"], "unknown source dataset 'gone'"),
        (["digits_scan_a"], ["digits_negative/x"], "source dataset 'digits_negative' has no task 'x'"),
    ],
)
def test_bad_targets_and_sources_list_what_exists(
    demo_root: Path, targets: list, sources: list | None, match: str
) -> None:
    cat, _ = load_catalogue(demo_root)
    with pytest.raises(ValueError, match=match):
        plan_targets(cat, targets, sources)


# -- checks before training ------------------------------------------------------------------------------
def test_check_protocol_plans_without_training(demo_root: Path, tmp_path: Path) -> None:
    plan = check_protocol(_config(demo_root, tmp_path / "out", data={"targets": ["digits_scan_a"]}))
    assert (plan.in_channels, plan.image_size) == (1, 16)
    assert "left out: ['digits_scan_b']" in plan.describe()
    assert not (tmp_path / "out" / "checkpoints").exists()


def test_missing_data_root(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        check_protocol(_config(tmp_path / "nowhere", tmp_path / "out"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no readable dataset"):
        check_protocol(_config(tmp_path / "empty", tmp_path / "out"))


def test_unwritable_output_folder_fails_before_training(demo_root: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(PermissionError, match="is not writable"):
        check_protocol(_config(demo_root, blocker / "out"))


def test_missing_weights_split_and_device(demo_root: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="weights file"):
        check_protocol(_config(demo_root, tmp_path, backbone={"weights": str(tmp_path / "w.pth")}))
    with pytest.raises(ValueError, match="not a torch device"):
        check_protocol(_config(demo_root, tmp_path, run={"device": "tpu:x"}))
    raw_root = tmp_path / "mixed"
    d = TaskDescription("BINARY_CLASSIFICATION", {0: "n", 1: "y"}, "t")
    for name, size in (("a", 16), ("b", 20)):
        images = np.zeros((40, size, size), np.uint8)
        write_medimeta(
            raw_root, name, images, {"t": (d, np.arange(40) % 2)}, {"test": np.arange(40)}, domain=name
        )
    mixed = _config(
        raw_root, tmp_path, data={"targets": ["a"], "target_split": "test", "source_split": "test"}
    )
    with pytest.raises(ValueError, match="image sizes"):
        check_protocol(mixed)


def test_backbones_from_local_weights(tmp_path: Path) -> None:
    net, _ = build_backbone("conv4", 1, 16, hidden=4, seed=1)
    torch.save(net.state_dict(), tmp_path / "w.pth")
    again, _ = build_backbone("conv4", 1, 16, hidden=4, seed=2, weights=tmp_path / "w.pth")
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))
    with pytest.raises(ValueError, match="do not fit"):
        build_backbone("conv4", 1, 16, hidden=8, weights=tmp_path / "w.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="could not read"):
        build_backbone("conv4", 1, 16, hidden=4, weights=tmp_path / "junk.pth")
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone("vgg", 1, 16)
    with pytest.raises(ValueError, match="3-channel"):
        build_backbone("resnet18", 1, 32)


def test_resnet_backbone_takes_imagenet_style_weights(tmp_path: Path) -> None:
    import torchvision

    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), tmp_path / "r18.pth")  # includes fc.*, which is ignored
    net, width = build_backbone("resnet18", 3, 32, weights=tmp_path / "r18.pth")
    assert width == 512
    assert torch.equal(net.conv1.weight, reference.conv1.weight)
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 512)


# -- checkpoints -----------------------------------------------------------------------------------------
def _stream(seed: int = 0) -> tuple[nn.Module, torch.optim.Optimizer, MultiTaskBatchSampler]:
    torch.manual_seed(seed)
    d1 = TaskDescription("BINARY_CLASSIFICATION", {0: "n", 1: "y"}, "a")
    d2 = TaskDescription("BINARY_CLASSIFICATION", {0: "n", 1: "y"}, "b")
    g = torch.Generator().manual_seed(0)
    sources = [TensorTaskSource(torch.randn(30, 3, generator=g), torch.arange(30) % 2, d) for d in (d1, d2)]
    sampler = MultiTaskBatchSampler(sources, 4, mode="infinite", seed=5)
    model = nn.Linear(3, 1)
    return model, torch.optim.Adam(model.parameters(), lr=0.05), sampler


def _step(model: nn.Module):
    def step(unit):
        (x, y), _ = unit
        loss = nn.functional.binary_cross_entropy_with_logits(model(x), y.float())
        loss.backward()
        return loss

    return step


def test_interrupted_training_resumes_to_the_same_weights(tmp_path: Path) -> None:
    model, opt, sampler = _stream()
    reference = train_steps(model, opt, _step(model), lambda: iter(sampler), 10, progress=False)
    expected = {k: v.clone() for k, v in model.state_dict().items()}

    model, opt, sampler = _stream()
    ckpt = tmp_path / "ckpt.pt"

    def crashing_units():
        for i, unit in enumerate(sampler):
            if i == 7:
                raise KeyboardInterrupt("stopped after 7 steps")  # the checkpoint is at 6
            yield unit

    with pytest.raises(KeyboardInterrupt, match="a rerun resumes from step 6"):
        train_steps(
            model,
            opt,
            _step(model),
            crashing_units,
            10,
            sampler=sampler,
            checkpoint=ckpt,
            checkpoint_every=3,
            progress=False,
        )
    assert torch.load(ckpt, weights_only=True)["step"] == 6

    model, opt, sampler = _stream(
        seed=99
    )  # a fresh process: other initial weights, restored from the checkpoint
    losses = train_steps(
        model,
        opt,
        _step(model),
        lambda: iter(sampler),
        10,
        sampler=sampler,
        checkpoint=ckpt,
        checkpoint_every=3,
        progress=False,
    )
    assert losses == pytest.approx(reference)
    for k, v in model.state_dict().items():
        assert torch.equal(v, expected[k])
    # finished: a rerun trains nothing; asking for fewer steps than done is refused
    assert (
        train_steps(
            model, opt, _step(model), lambda: iter(()), 10, sampler=sampler, checkpoint=ckpt, progress=False
        )
        == losses
    )
    with pytest.raises(CheckpointMismatchError, match="beyond the 5 steps"):
        train_steps(
            model, opt, _step(model), lambda: iter(()), 5, sampler=sampler, checkpoint=ckpt, progress=False
        )


def test_checkpoint_from_other_settings_is_refused(tmp_path: Path) -> None:
    model, opt, sampler = _stream()
    ckpt = tmp_path / "c.pt"
    train_steps(
        model,
        opt,
        _step(model),
        lambda: iter(sampler),
        2,
        checkpoint=ckpt,
        fingerprint=config_fingerprint({"lr": 1}),
        progress=False,
    )
    with pytest.raises(CheckpointMismatchError, match="other settings"):
        train_steps(
            model,
            opt,
            _step(model),
            lambda: iter(sampler),
            2,
            checkpoint=ckpt,
            fingerprint=config_fingerprint({"lr": 2}),
            progress=False,
        )
    # resume=False starts over and overwrites
    train_steps(
        model,
        opt,
        _step(model),
        lambda: iter(sampler),
        2,
        checkpoint=ckpt,
        fingerprint="x",
        resume=False,
        progress=False,
    )
    (tmp_path / "bad.pt").write_bytes(b"")
    torch.save({"something": 1}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="not a torchcross protocol checkpoint"):
        train_steps(
            model, opt, _step(model), lambda: iter(sampler), 2, checkpoint=tmp_path / "bad.pt", progress=False
        )
    with pytest.raises(ValueError, match="ran out after 3 of 5"):
        train_steps(model, opt, _step(model), lambda: iter([next(iter(sampler))] * 3), 5, progress=False)


def test_run_resumes_finished_work_and_reruns_changed_settings(demo_root: Path, tmp_path: Path) -> None:
    config = _config(demo_root, tmp_path / "out", evaluation={"methods": ["IM-PT", "mm-PT"]})
    first = run_protocol(config, progress=False, log=None)
    saved = json.loads((tmp_path / "out" / "evaluations" / "digits_scan_a" / "mm-PT.json").read_text())
    assert saved["records"] == first.episodes.where(method="mm-PT").to_records()
    assert (tmp_path / "out" / "checkpoints" / "digits_scan_a" / "mm-PT.pt").is_file()
    lines: list[str] = []
    second = run_protocol(config, progress=False, log=lines.append)
    assert any("reusing finished evaluation" in line for line in lines)
    assert second.episodes.to_records() == first.episodes.to_records()
    # more pre-training steps: the evaluation is redone, training continues from the checkpoint
    longer = dataclasses.replace(config, pretrain=dataclasses.replace(config.pretrain, steps=6))
    lines.clear()
    run_protocol(longer, progress=False, log=lines.append)
    assert not any("reusing finished evaluation from" in line and "mm-PT" in line for line in lines)
    ckpt = torch.load(tmp_path / "out" / "checkpoints" / "digits_scan_a" / "mm-PT.pt", weights_only=True)
    assert ckpt["step"] == 6
    assert len(ckpt["losses"]) == 6


def test_missing_matplotlib_is_reported_before_training(
    demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"torchcross\[plot\].*plot = false"):
        check_protocol(_config(demo_root, tmp_path / "out", run={"plot": True}))


def test_an_evaluation_stopped_part_way_continues_with_the_next_task(
    demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    every = {"targets": ["digits_scan_a"], "target_tasks": "all"}
    config = _config(demo_root, tmp_path / "out", data=every)
    reference = run_protocol(_config(demo_root, tmp_path / "ref", data=every), progress=False, log=None)
    real_evaluate = protocol.evaluate
    calls: list[str] = []

    def stop_at_the_third_task(learner, episodes, **kwargs):
        calls.append(kwargs["target"])
        if len(calls) == 3:
            raise KeyboardInterrupt("the user stops the run")
        return real_evaluate(learner, episodes, **kwargs)

    monkeypatch.setattr(protocol, "evaluate", stop_at_the_third_task)
    with pytest.raises(KeyboardInterrupt, match="the user stops the run"):
        run_protocol(config, progress=False, log=None)
    partial = tmp_path / "out" / "evaluations" / "digits_scan_a" / "scratch.partial.json"
    assert len(json.loads(partial.read_text())["tasks"]) == 2
    monkeypatch.setattr(protocol, "evaluate", real_evaluate)
    lines: list[str] = []
    resumed = run_protocol(config, progress=False, log=lines.append)
    assert sum("reusing its evaluation" in line for line in lines) == 2
    assert not partial.exists()

    def scores(result) -> list[dict]:
        return [{k: v for k, v in r.items() if k != "train_seconds"} for r in result.episodes.to_records()]

    assert scores(resumed) == scores(reference)


# -- training curves, resume messages, threads --------------------------------------------------------------
def test_training_curves_and_the_resume_point_survive_an_interruption(tmp_path: Path) -> None:
    from torchcross.evaluation.loggers import CSVLogger
    from torchcross.evaluation.results import ResultsTable
    from torchcross.protocol.training import TrainingInterrupted

    model, opt, sampler = _stream()
    reference = train_steps(model, opt, _step(model), lambda: iter(sampler), 10, progress=False)
    model, opt, sampler = _stream()
    ckpt, curve = tmp_path / "ckpt.pt", tmp_path / "curves" / "toy.csv"

    def crashing_units():
        for i, unit in enumerate(sampler):
            if i == 7:
                raise KeyboardInterrupt  # stopped after 7 steps; the last checkpoint is at step 6
            yield unit

    kwargs = {"sampler": sampler, "checkpoint": ckpt, "checkpoint_every": 3, "progress": False}
    with (
        CSVLogger(curve) as logger,
        pytest.raises(TrainingInterrupted, match="toy on a stopped; a rerun resumes from step") as stopped,
    ):
        train_steps(
            model, opt, _step(model), crashing_units, 10, description="toy on a", logger=logger, **kwargs
        )
    assert isinstance(stopped.value, KeyboardInterrupt)
    assert (stopped.value.description, stopped.value.resume_step) == ("toy on a", 6)
    assert ResultsTable.read_csv(curve)["step"] == [1, 2, 3, 4, 5, 6, 7]
    model, opt, sampler = _stream(seed=99)
    kwargs["sampler"] = sampler
    lines: list[str] = []
    with CSVLogger(curve) as logger:
        losses = train_steps(
            model, opt, _step(model), lambda: iter(sampler), 10, description="toy on a", logger=logger,
            log=lines.append, **kwargs,
        )  # fmt: skip
    assert lines == [f"resuming toy on a from step 6 of 10 ({ckpt})"]
    table = ResultsTable.read_csv(curve)
    assert table["step"] == list(range(1, 11))  # steps 7 logged once, by the resumed run
    assert table["loss"] == pytest.approx(losses)
    assert losses == pytest.approx(reference)
    with pytest.raises(
        TrainingInterrupted, match=r"stopped; a rerun resumes$"
    ) as stopped:  # no checkpoint: no step
        train_steps(model, opt, _step(model), crashing_units, 10, progress=False)
    assert stopped.value.resume_step is None


def test_run_writes_training_curves_and_sets_threads(demo_root: Path, tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    config = _config(
        demo_root, tmp_path / "out", evaluation={"methods": ["IM-PT", "mm-PT"]}, run={"num_threads": "auto"}
    )
    assert config.run.logger == "csv"
    lines: list[str] = []
    run_protocol(config, progress=False, log=lines.append)
    assert torch.get_num_threads() == threads  # restored
    assert any(line.startswith("torch threads: ") and "num_threads = 'auto'" in line for line in lines)
    curves = tmp_path / "out" / "curves" / "digits_scan_a"
    assert sorted(p.name for p in curves.iterdir()) == ["mm-PT.csv"]  # IM-PT does not train
    rows = (curves / "mm-PT.csv").read_text().splitlines()
    assert rows[0] == "step,loss"
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3", "4"]
    tb = _config(demo_root, tmp_path / "tb", evaluation={"methods": ["mm-PT"]}, run={"logger": "tensorboard"})
    run_protocol(tb, progress=False, log=None)
    assert any((tmp_path / "tb" / "curves" / "digits_scan_a" / "mm-PT").glob("events.out.tfevents.*"))


def test_run_section_thread_and_logger_settings_are_checked() -> None:
    base = {"data": {"root": "d", "targets": ["t"]}}
    assert config_from_dict({**base, "run": {"out_dir": "o"}}).run.num_threads == "auto"
    assert config_from_dict({**base, "run": {"out_dir": "o", "num_threads": 3}}).run.num_threads == 3
    with pytest.raises(TypeError, match=r'\[run\] num_threads must be "auto" or an integer, got \'max\''):
        config_from_dict({**base, "run": {"out_dir": "o", "num_threads": "max"}})
    with pytest.raises(ValueError, match=r"\[run\] num_threads must be >= 1"):
        config_from_dict({**base, "run": {"out_dir": "o", "num_threads": 0}})
    with pytest.raises(ValueError, match=r"\[run\] logger = 'wandb' is not one of csv, tensorboard, none"):
        config_from_dict({**base, "run": {"out_dir": "o", "logger": "wandb"}})
