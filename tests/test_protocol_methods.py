"""Declared protocol methods: own config sections, declared properties, typed config, the checkpointer."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
import torch
from torch import nn

from torchcross.data.multitask import MultiTaskBatchSampler
from torchcross.data.task_source import TensorTaskSource
from torchcross.datasets.medimeta import write_medimeta
from torchcross.protocol.config import config_from_dict, config_to_dict
from torchcross.protocol.data import TargetPlan
from torchcross.protocol.methods import method_fingerprint, resolve_methods
from torchcross.protocol.plan import check_protocol
from torchcross.protocol.registry import (
    AbstractMethod,
    MethodContext,
    MethodSpec,
    get_method,
    method_names,
    register_method,
    unregister_method,
)
from torchcross.protocol.schema import check_section_type, section_from_dict
from torchcross.protocol.training import (
    Checkpointer,
    LossCurve,
    TorchRNG,
    load_checkpoint,
    train_steps,
)
from torchcross.tasks.task import TaskDescription


@dataclass(frozen=True)
class _MyConfig:
    alpha: float = field(default=0.1, metadata={"min": 0.0, "max": 1.0})
    mode: Literal["fast", "exact"] = "fast"
    rounds: int = field(default=3, metadata={"min": 1})


@pytest.fixture
def my_method():
    register_method("my-method", like="IM-PT", config=_MyConfig, replace=True)
    yield "my-method"
    unregister_method("my-method")


def _raw(**sections: dict) -> dict:
    raw: dict = {"data": {"root": "d", "targets": "t"}, "run": {"out_dir": "o"}}
    raw.update(sections)
    return raw


# -- a registered method's own section -----------------------------------------------------------------
def test_a_registered_method_reads_its_own_validated_section(my_method: str) -> None:
    cfg = config_from_dict(_raw(evaluation={"methods": [my_method]}, **{my_method: {"alpha": 0.5}}))
    assert cfg.section(my_method) == _MyConfig(alpha=0.5)
    assert config_to_dict(cfg)[my_method] == {"alpha": 0.5, "mode": "fast", "rounds": 3}
    listed_only = config_from_dict(_raw(evaluation={"methods": ["My-Method"]}))
    assert listed_only.section(my_method) == _MyConfig()  # listed: its defaults
    spelled = config_from_dict(_raw(**{"MY-METHOD": {"mode": "exact"}}))  # given, not listed: still checked
    assert spelled.section(my_method).mode == "exact"
    with pytest.raises(
        ValueError, match=r"unknown key 'beta' in section \[my-method\]; allowed keys: alpha, mode"
    ):
        config_from_dict(_raw(**{my_method: {"beta": 1}}))
    with pytest.raises(TypeError, match=r"\[my-method\] alpha must be a number, got 'x'"):
        config_from_dict(_raw(**{my_method: {"alpha": "x"}}))
    with pytest.raises(ValueError, match=r"\[my-method\] alpha must be <= 1.0, got 2.0"):
        config_from_dict(_raw(**{my_method: {"alpha": 2}}))
    with pytest.raises(ValueError, match=r"\[my-method\] mode = 'slow' is not one of fast, exact"):
        config_from_dict(_raw(**{my_method: {"mode": "slow"}}))
    with pytest.raises(ValueError, match=r"one method's; keep one"):
        config_from_dict(_raw(**{my_method: {}, "MY-method": {}}))


def test_a_section_of_no_registered_method_is_refused_with_the_allowed_ones(my_method: str) -> None:
    with pytest.raises(
        ValueError,
        match=r"unknown config section\(s\) 'other'; allowed sections: .*run, zero-shot, my-method",
    ):
        config_from_dict(_raw(other={"alpha": 1}))


def test_a_methods_own_section_reaches_it_and_its_fingerprint(my_method: str, tmp_path: Path) -> None:
    cfgs = [
        config_from_dict(_raw(evaluation={"methods": [my_method]}, **{my_method: {"alpha": a}}))
        for a in (0.1, 0.2)
    ]
    assert get_method(my_method).reads.keys[-1] == my_method
    target = TargetPlan("t", ("x",), ())
    ctxs = [MethodContext(my_method, c, target, 3, 8, torch.device("cpu"), 0, tmp_path) for c in cfgs]
    assert ctxs[1].section.alpha == 0.2
    assert method_fingerprint(ctxs[0]) != method_fingerprint(ctxs[1])


def test_a_config_section_must_be_a_typed_dataclass_and_not_a_builtin_name() -> None:
    @dataclass
    class Untyped:
        values: list[float] = field(default_factory=list)

    with pytest.raises(TypeError, match=r"key 'values': annotation .* is not supported"):
        register_method("untyped", like="IM-PT", config=Untyped)
    with pytest.raises(TypeError, match=r"must be a dataclass type"):
        register_method("untyped", like="IM-PT", config=dict)
    register_method("MAML", like="IM-PT", config=_MyConfig)
    try:
        with pytest.raises(
            ValueError, match=r"but \[MAML\] is a built-in section; register it under another"
        ):
            config_from_dict(_raw())
    finally:
        unregister_method("MAML")
    assert "untyped" not in method_names()


# -- declared properties instead of name checks --------------------------------------------------------
def test_methods_are_final_dataclasses_of_the_abstract_method() -> None:
    spec = get_method("mm-PT")
    assert isinstance(spec, AbstractMethod)
    assert isinstance(spec, MethodSpec)
    assert (spec.section, spec.source_split, spec.trains) == ("pretrain", "train", True)
    assert (get_method("ProtoNet").source_split, get_method("ProtoNet").section) == ("all", "maml")
    assert get_method("supervised").target_splits == ("train", "val", "test")
    assert get_method("IM-PT").under_random_weights == "scratch"
    with pytest.raises(TypeError, match="abstract"):
        AbstractMethod()  # type: ignore[abstract]


def _test_split_only(root: Path) -> Path:
    d = TaskDescription("BINARY_CLASSIFICATION", {0: "n", 1: "y"}, "t")
    for name in ("a", "b"):
        images = np.zeros((40, 16, 16), np.uint8)
        write_medimeta(
            root, name, images, {"t": (d, np.arange(40) % 2)}, {"test": np.arange(40)}, domain=name
        )
    return root


def _plan_config(root: Path, out: Path, methods: list[str], **data: str) -> object:
    return config_from_dict(
        {
            "data": {
                "root": str(root),
                "targets": ["a"],
                "target_split": "test",
                "min_class_size": 0,
                **data,
            },
            "evaluation": {"methods": methods},
            "backbone": {"name": "conv4", "hidden": 8, "weights": "random"},
            "augmentation": {"enabled": False},
            "run": {"out_dir": str(out), "plot": False},
        }
    )


def test_a_method_registered_like_a_builtin_has_its_splits_opened_up_front(tmp_path: Path) -> None:
    root = _test_split_only(tmp_path / "data")
    register_method("my-PT", like="mm-PT")
    register_method("my-ANIL", like="ANIL")
    register_method("my-supervised", like="supervised")
    try:
        check_protocol(_plan_config(root, tmp_path / "ok", ["IM-PT"]))  # reads only the target's test split
        with pytest.raises(ValueError, match=r"cannot open task b/t \(split 'train'\)"):
            check_protocol(_plan_config(root, tmp_path / "o1", ["my-PT"]))
        check_protocol(_plan_config(root, tmp_path / "ok2", ["IM-PT"], source_split="val"))  # no source read
        with pytest.raises(ValueError, match=r"cannot open task b/t \(split 'val'\)"):
            check_protocol(_plan_config(root, tmp_path / "o2", ["my-ANIL"], source_split="val"))
        with pytest.raises(ValueError, match=r"cannot open task a/t \(split 'train'\)"):
            check_protocol(_plan_config(root, tmp_path / "o3", ["my-supervised"]))
    finally:
        for name in ("my-PT", "my-ANIL", "my-supervised"):
            unregister_method(name)


def test_a_method_declares_its_splits_when_registered(tmp_path: Path) -> None:
    root = _test_split_only(tmp_path / "data")
    register_method("own-trainer", lambda ctx: None, lambda ctx, t: None, source_split="val")
    try:
        with pytest.raises(ValueError, match=r"cannot open task b/t \(split 'val'\)"):
            check_protocol(_plan_config(root, tmp_path / "o", ["own-trainer"]))
    finally:
        unregister_method("own-trainer")


def test_random_weights_rename_is_declared_not_inherited() -> None:
    register_method("my-IM", like="IM-PT")
    try:
        cfg = config_from_dict(
            _raw(evaluation={"methods": ["IM-PT", "my-IM"]}, backbone={"weights": "random"})
        )
        assert resolve_methods(cfg) == ("scratch", "my-IM")
    finally:
        unregister_method("my-IM")


# -- the config is typed by its annotations ------------------------------------------------------------
@dataclass(frozen=True)
class _Every:
    count: int = field(default=1, metadata={"min": 0, "max": 9})
    rate: float = 0.5
    flag: bool = False
    label: str = "x"
    where: Path = Path("p")
    choice: Literal["a", "b"] = "a"
    names: tuple[str, ...] = ("n",)
    ids: tuple[int, ...] = field(default=(0,), metadata={"min": 0, "distinct": True})
    maybe: int | None = None
    threads: int | Literal["auto"] = "auto"
    weights: Literal["none", "random"] | Path = "none"


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("count", 3, 3),
        ("rate", 1, 1.0),
        ("flag", True, True),
        ("label", "y", "y"),
        ("where", "sub/f", Path("/base/sub/f")),
        ("where", "/abs", Path("/abs")),
        ("choice", "b", "b"),
        ("names", "one", ("one",)),
        ("names", ["a", "b"], ("a", "b")),
        ("ids", 2, (2,)),
        ("ids", [1, 2], (1, 2)),
        ("maybe", None, None),
        ("maybe", 4, 4),
        ("threads", "auto", "auto"),
        ("threads", 2, 2),
        ("weights", " Random ", "random"),
        ("weights", "w.pt", Path("/base/w.pt")),
    ],
)
def test_each_annotation_kind_converts(key: str, value: object, expected: object) -> None:
    assert getattr(section_from_dict("s", _Every, {key: value}, Path("/base")), key) == expected


@pytest.mark.parametrize(
    ("key", "value", "error", "match"),
    [
        ("count", "3", TypeError, r"\[s\] count must be an integer, got '3'"),
        ("count", True, TypeError, r"\[s\] count must be an integer"),
        ("count", 10, ValueError, r"\[s\] count must be <= 9, got 10"),
        ("count", None, ValueError, r"\[s\] count must be set \(got nothing\)"),
        ("rate", float("inf"), TypeError, r"\[s\] rate must be a number"),
        ("flag", 1, TypeError, r"\[s\] flag must be true or false, got 1"),
        ("label", 1, TypeError, r"\[s\] label must be a string, got 1"),
        ("where", "", TypeError, r"\[s\] where must be a path string"),
        ("choice", "c", ValueError, r"\[s\] choice = 'c' is not one of a, b"),
        ("choice", 1, TypeError, r"\[s\] choice must be a string"),
        ("names", [], TypeError, r"\[s\] names must be a non-empty list of strings"),
        ("ids", [1, 1], TypeError, r"\[s\] ids must be a non-empty list of distinct integers >= 0"),
        ("ids", [-1], TypeError, r"distinct integers >= 0, got \[-1\]"),
        ("maybe", "x", TypeError, r"\[s\] maybe must be an integer"),
        ("threads", "max", TypeError, r'\[s\] threads must be "auto" or an integer, got \'max\''),
        ("weights", 3, TypeError, r"\[s\] weights must be a path string, got 3"),
    ],
)
def test_each_annotation_kind_refuses_what_it_does_not_accept(
    key: str, value: object, error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        section_from_dict("s", _Every, {key: value})


def test_the_typed_sections_are_all_supported() -> None:
    from torchcross.protocol.config import ProtocolConfig

    for name, section in ProtocolConfig(data=None, run=None).sections().items():  # type: ignore[arg-type]
        if section is not None:
            check_section_type(type(section), name)
    check_section_type(_Every, "s")


# -- the checkpointer composes state_dicts -------------------------------------------------------------
class _Counter:
    def __init__(self) -> None:
        self.n = 0

    def state_dict(self) -> dict:
        return {"n": self.n}

    def load_state_dict(self, state: dict) -> None:
        self.n = state["n"]


def _training(seed: int = 0):
    torch.manual_seed(seed)
    d = TaskDescription("BINARY_CLASSIFICATION", {0: "n", 1: "y"}, "a")
    source = TensorTaskSource(
        torch.randn(30, 3, generator=torch.Generator().manual_seed(0)), torch.arange(30) % 2, d
    )
    sampler = MultiTaskBatchSampler([source], 4, mode="infinite", seed=5)
    model = nn.Linear(3, 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    return model, opt, sampler


def test_the_checkpointer_round_trips_every_part(tmp_path: Path) -> None:
    model, opt, sampler = _training()
    curve, counter = LossCurve(), _Counter()
    parts = {"model": model, "optimizer": opt, "sampler": sampler, "torch_rng": TorchRNG(), "losses": curve}
    saver = Checkpointer(tmp_path / "c.pt", {**parts, "counter": counter}, fingerprint="f")
    it = iter(sampler)
    for _ in range(3):
        (x, y), _ = next(it)  # the sampler counts what the loop takes
        opt.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(model(x), y.float())
        loss.backward()
        opt.step()
        curve.values.append(loss.item())
        counter.n += 2
    saver.save(3)
    expected_next, expected_rand = next(it)[0][0], torch.rand(2)
    torch.manual_seed(99)

    model2, opt2, sampler2 = _training(seed=1)
    curve2, counter2 = LossCurve(), _Counter()
    parts2 = {
        "model": model2,
        "optimizer": opt2,
        "sampler": sampler2,
        "torch_rng": TorchRNG(),
        "losses": curve2,
    }
    assert Checkpointer(tmp_path / "c.pt", {**parts2, "counter": counter2}, fingerprint="f").resume(10) == 3
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), model2.state_dict().values()))
    assert opt2.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]
    assert (curve2.values, counter2.n) == (curve.values, 6)
    assert torch.equal(next(iter(sampler2))[0][0], expected_next)  # the stream continues where it was
    assert torch.equal(torch.rand(2), expected_rand)
    with pytest.raises(ValueError, match="written with other settings"):
        Checkpointer(tmp_path / "c.pt", parts2, fingerprint="g").resume(10)
    assert Checkpointer(tmp_path / "c.pt", parts2, fingerprint="g", resume=False).resume(10) == 0


def test_train_steps_checkpoints_keep_their_format(tmp_path: Path) -> None:
    model, opt, sampler = _training()

    def step(unit):
        (x, y), _ = unit
        loss = nn.functional.binary_cross_entropy_with_logits(model(x), y.float())
        loss.backward()
        return loss

    train_steps(
        model,
        opt,
        step,
        lambda: iter(sampler),
        3,
        sampler=sampler,
        checkpoint=tmp_path / "t.pt",
        fingerprint="f",
    )
    state = load_checkpoint(tmp_path / "t.pt", "f")
    assert list(state) == [
        "format",
        "version",
        "fingerprint",
        "settings",
        "step",
        "model",
        "optimizer",
        "sampler",
        "torch_rng",
        "losses",
        "early_stopping",
        "checksum",
    ]
    assert (state["version"], state["step"], len(state["losses"])) == (3, 3, 3)
