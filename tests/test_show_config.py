"""``torchcross run CONFIG --show-config``: the resolved config as reloadable TOML; the docs' defaults table.

The table "Paper vs torchcross defaults" of docs/protocol.md is checked against the resolved defaults here, so
that a default cannot change without the table (and the table cannot claim a default the code does not have).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest

from torchcross.cli import main
from torchcross.protocol.config import (
    ProtocolConfig,
    config_from_dict,
    config_to_dict,
    config_to_toml,
    load_config,
    paper_lr,
)
from torchcross.protocol.registry import unregister_method

try:
    import tomllib
except ImportError:  # pragma: no cover - Python 3.10
    tomllib = pytest.importorskip("tomli")

DOCS = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"


def _minimal(root: str = "/nonexistent/medimeta", out_dir: str = "out") -> dict[str, Any]:
    return {"data": {"root": root, "targets": ["glaucoma"]}, "run": {"out_dir": out_dir}}


def _reload(config: ProtocolConfig, tmp_path: Path) -> ProtocolConfig:
    path = tmp_path / "shown.toml"
    path.write_text(config_to_toml(config), encoding="utf-8")
    return load_config(path)


# -- the TOML writer -----------------------------------------------------------------------------------
def test_defaults_round_trip_through_the_printed_toml(tmp_path: Path) -> None:
    config = config_from_dict(_minimal())
    text = config_to_toml(config)
    assert config_from_dict(tomllib.loads(text)) == config
    for section in ("data", "evaluation", "backbone", "pretrain", "maml", "finetune", "augmentation"):
        assert f"\n[{section}]\n" in text
    assert "\n[supervised]\n" in text
    assert "\n[run]\n" in text
    assert "# lr = (unset)" in text  # None: commented out, reads back unset
    assert "# sources = (unset)" in text
    assert "crop_fraction = 0.8928571428571429" in text
    config_path = tmp_path / "c.toml"
    config_path.write_text(
        '[data]\nroot = "data"\ntargets = ["glaucoma"]\n[run]\nout_dir = "out"\n', encoding="utf-8"
    )
    loaded = load_config(config_path)  # relative paths resolved: the printout holds absolute ones
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert _reload(loaded, elsewhere) == loaded
    assert f'root = "{tmp_path / "data"}"' in config_to_toml(loaded)


def test_every_value_kind_round_trips(tmp_path: Path) -> None:
    tricky = 'a "quoted" \\ back\tslash\nnew line \x01 \x7f é 日本'
    raw = _minimal(root=str(tmp_path / 'odd "root" \\ é'), out_dir=str(tmp_path / "out"))
    raw["data"].update(targets=[tricky, "ds/task name"], sources=["s1", "s2/t"], image_size=64)
    raw["data"].update(source_split="train")
    raw["evaluation"] = {"methods": ["mm-PT", "supervised"], "confidence": 0.9}
    raw["backbone"] = {"name": "conv4", "weights": str(tmp_path / "w.pt"), "hidden": 8}
    raw["pretrain"] = {"lr": 1e-05, "weight_decay": 5e-324, "steps": 12}
    raw["maml"] = {"n_shot": 3, "eval_inner_steps": 7, "first_order": True, "inner_lr": 1e16}
    raw["augmentation"] = {"crop_fraction": 0.3, "rotation": 0}
    raw["run"].update(seeds=[3, 1, 2], device="cpu", num_threads=2, resume=False)
    config = config_from_dict(raw)
    assert config_from_dict(tomllib.loads(config_to_toml(config))) == config
    assert _reload(config, tmp_path) == config


def test_a_registered_methods_own_section_is_printed(tmp_path: Path) -> None:
    plugin = tmp_path / "show_plugin.py"
    plugin.write_text(
        "from dataclasses import dataclass, field\n"
        "from typing import Literal\n"
        "from torchcross.protocol import register_method\n\n\n"
        "@dataclass(frozen=True)\n"
        "class ShowConfig:\n"
        "    alpha: float = field(default=0.25, metadata={'min': 0.0})\n"
        "    mode: Literal['fast', 'exact'] = 'fast'\n"
        "    names: tuple[str, ...] | None = None\n\n\n"
        "register_method('show-method', like='IM-PT', config=ShowConfig, replace=True)\n",
        encoding="utf-8",
    )
    config_path = tmp_path / "c.toml"
    config_path.write_text(
        '[data]\nroot = "data"\ntargets = ["glaucoma"]\n'
        '[run]\nout_dir = "out"\nplugins = ["show_plugin.py"]\n'
        '[evaluation]\nmethods = ["IM-PT", "show-method"]\n["show-method"]\nmode = "exact"\n',
        encoding="utf-8",
    )
    try:
        config = load_config(config_path)
        text = config_to_toml(config)
        assert '\n[show-method]\nalpha = 0.25\nmode = "exact"\n# names = (unset)\n' in text
        reloaded = _reload(config, tmp_path)  # saved beside the original: its plugin path still holds
        # the plugin ran again and defined its config class anew: compare the values, not the classes
        assert config_to_dict(reloaded) == config_to_dict(config)
        assert reloaded.data == config.data
        assert reloaded.run == config.run
    finally:
        unregister_method("show-method")


def test_an_unset_key_whose_default_is_set_says_that_toml_cannot_hold_it() -> None:
    config = config_from_dict({**_minimal(), "run": {"out_dir": "o", "num_threads": None}})  # YAML's null
    text = config_to_toml(config)
    assert '# num_threads = (unset; TOML has no null: reloading this file gives the default "auto"' in text
    assert config_from_dict(tomllib.loads(text)).run.num_threads == "auto"


def test_a_string_toml_cannot_hold_is_refused_with_its_key() -> None:
    config = config_from_dict(_minimal(root="/data/bad\udcff"))
    with pytest.raises(ValueError, match=r"\[data\] root = .* lone surrogate U\+DCFF"):
        config_to_toml(config)


@pytest.mark.parametrize("value", [0.1, 1e-3, 1 / 3, 200 / 224, 5e-324, 1e16, 1.5e300, -0.0, 2.0])
def test_floats_read_back_exactly(value: float) -> None:
    config = config_from_dict(
        {**_minimal(), "augmentation": {"crop_fraction": 0.5}, "pretrain": {"lr": value}}
    )
    if value < 0:  # lr must be >= 0: -0.0 is allowed and must keep its sign
        assert math.copysign(1, config.pretrain.lr) == -1
    shown = config_from_dict(tomllib.loads(config_to_toml(config)))
    assert shown.pretrain.lr == value
    assert math.copysign(1, shown.pretrain.lr) == math.copysign(1, value)


# -- the command line --------------------------------------------------------------------------------
def test_show_config_prints_without_data_or_out_dir(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config_path = tmp_path / "c.toml"
    config_path.write_text(
        '[data]\nroot = "/nonexistent/medimeta"\ntargets = ["glaucoma"]\n[run]\nout_dir = "out"\n',
        encoding="utf-8",
    )
    code = main(["run", str(config_path), "--show-config", "--no-resume", "--out", str(tmp_path / "o2")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert not (tmp_path / "out").exists()  # nothing written, no data read
    assert not (tmp_path / "o2").exists()
    shown = config_from_dict(tomllib.loads(out))
    assert shown.run.resume is False  # the overrides applied
    assert shown.run.out_dir == tmp_path / "o2"
    assert shown.data.root == Path("/nonexistent/medimeta")
    (tmp_path / "shown.toml").write_text(out, encoding="utf-8")
    assert load_config(tmp_path / "shown.toml") == shown


def test_show_config_and_check_exclude_each_other(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="2"):
        main(["run", str(tmp_path / "c.toml"), "--show-config", "--check"])
    assert "not allowed with argument" in capsys.readouterr().err


# -- docs/protocol.md "Paper vs torchcross defaults" against the resolved defaults ---------------------
# item -> (phrases the row must contain, {section.key: the resolved default the phrases state}). A phrase
# states its value in prose (the paper column, or "same" in the torchcross column, which points to it);
# each `key = value` written in code in the torchcross column is checked against these values as well.
_ROWS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "target episodes": (
        ("5-shot", "10 query per class", "100 fixed episodes"),
        {"evaluation.n_shot": 5, "evaluation.n_query": 10, "evaluation.n_episodes": 100},
    ),
    # "primary task (task 0)": a dataset target means its first task
    "target tasks": (("primary task (task 0)",), {"data.target_tasks": "primary"}),
    "multi-label episodes": (
        ("`k` random positives and `k` random negatives", "greedy trim"),
        {"evaluation.multilabel_sampler": "medimeta"},
    ),
    "diverged episodes (non-finite logits)": (("scored at chance level",), {"evaluation.diverged": "chance"}),
    "target examples": (
        ("the whole dataset", "< 50 examples dropped"),
        {"data.target_split": "all", "data.min_class_size": 50},
    ),
    # "leave-one-out": no explicit sources; "all tasks of each source dataset": source_tasks = "all"
    "sources": (
        ("leave-one-out", "all tasks of each source dataset"),
        {"data.sources": None, "data.source_tasks": "all"},
    ),
    # "imagenet" is torchvision's DEFAULT (IMAGENET_WEIGHTS; tests/protocol/test_paper_final_maml.py)
    "backbone": (
        ("ResNet-18", "IMAGENET1K_V1 (ResNet-18)", "IMAGENET1K_V2 (ResNet-50)"),
        {"backbone.name": "resnet18", "backbone.weights": "imagenet"},
    ),
    "input normalisation": ((), {"data.normalize": "imagenet"}),
    # "fine-tune all weights": the backbone is not frozen
    "IM-PT / mm-PT / mm-MAML adaptation": (
        ("fine-tune all weights", "Adam lr 1e-3", "50 steps"),
        {"finetune.freeze_backbone": False, "finetune.lr": 1e-3, "finetune.steps": 50},
    ),
    "BatchNorm while adapting": ((), {"finetune.batch_norm": "support"}),
    # lr unset: paper_lr() picks it per backbone (the two pseudo keys below)
    "mm-PT optimiser": (
        ("lr 1e-3 (ResNet-18)", "1e-4 (ResNet-50)", "batch 64"),
        {
            "pretrain.lr": None,
            "pretrain.lr@resnet18": 1e-3,
            "pretrain.lr@resnet50": 1e-4,
            "pretrain.batch_size": 64,
        },
    ),
    "mm-PT task sampling": ((), {"pretrain.weighting": "proportional"}),
    "task heads": ((), {"pretrain.head_init": "zero"}),
    "fine-tuning and supervised heads": (
        ("PyTorch's `nn.Linear` default",),
        {"finetune.head_init": "kaiming", "supervised.head_init": "kaiming"},
    ),
    "augmentation": (
        ("flips p = 0.25", "±10° rotation", "crop 200 of 224 then resize (p = 0.25)"),
        {
            "augmentation.enabled": True,
            "augmentation.flip_p": 0.25,
            "augmentation.rotation": 10.0,
            "augmentation.crop_fraction": 200 / 224,
            "augmentation.crop_p": 0.25,
        },
    ),
    # mm-MAML's validation is the row "mm-MAML validation"
    "early stopping": (
        ("patience 10 (mm-PT, supervised) / 5 (mm-MAML)", "once per epoch", "the whole validation set"),
        {
            "pretrain.patience": 10,
            "supervised.patience": 10,
            "maml.patience": 5,
            "pretrain.val_every": "epoch",
            "supervised.val_every": "epoch",
            "pretrain.val_batches": "all",
            "supervised.val_batches": "all",
        },
    ),
    "mm-PT task-loss scaling": ((), {"pretrain.scale_task_loss": True}),
    # a fixed behaviour, no key: nothing to check against the config
    "mm-PT validation data": (("the sources' `val` splits",), {}),
    # "second order": first_order = false
    # outer_lr unset: paper_lr() picks it per backbone (the two pseudo keys)
    "mm-MAML inner loop": (
        (
            "SGD lr 0.1",
            "4 steps",
            "second order",
            "meta-batch 1",
            "Adam outer lr 1e-3 (ResNet-18), 1e-4 (ResNet-50)",
        ),
        {
            "maml.inner_lr": 0.1,
            "maml.inner_steps": 4,
            "maml.first_order": False,
            "maml.meta_batch_size": 1,
            "maml.outer_lr": None,
            "maml.outer_lr@resnet18": 1e-3,
            "maml.outer_lr@resnet50": 1e-4,
        },
    ),
    # "random shots": n_shot unset; "all splits": source_split unset (each method's default, mm-MAML "all")
    "mm-MAML episodes": (
        (
            "1-10 random shots",
            "all splits of the sources",
            "< 40 examples left out",
            "1000 episodes per source task",
            "`k` random positives and `k` random negatives, then a greedy trim",
        ),
        {
            "maml.n_shot": None,
            "maml.min_shot": 1,
            "maml.max_shot": 10,
            "data.source_split": None,
            "maml.min_class_size": 40,
            "maml.episode_pool": 1000,
            "maml.multilabel_sampler": "medimeta",
        },
    ),
    "mm-MAML validation": (
        ("once per epoch", "100 episodes per source task", "all splits", "32 inner steps"),
        {
            "maml.val_every": "epoch",
            "maml.val_episodes": 100,
            "maml.val_split": "all",
            "maml.val_inner_steps": 32,
        },
    ),
    "mm-MAML evaluation": ((), {"maml.evaluation": "finetune"}),
    # `methods = ["supervised"]` is how to add the baseline, not a default: the default methods leave it out
    "fully supervised": (
        (),
        {"evaluation.methods": ("IM-PT", "mm-PT", "mm-MAML")},
    ),
    "confidence interval": (("95%",), {"evaluation.confidence": 0.95}),
    # "one run": no list of seeds
    "training seeds": (("one run",), {"run.seeds": None}),
    # "fixed lr 1e-3, 50 steps": no selection, the [finetune] values; the grid is the authors'
    "fine-tuning lr and steps": (
        ("fixed lr 1e-3, 50 steps",),
        {
            "selection.mode": "none",
            "selection.lrs": (1e-3, 1e-2),
            "selection.steps": (50, 100),
            "finetune.lr": 1e-3,
            "finetune.steps": 50,
        },
    ),
}
# code in the torchcross column that names an option rather than a default, per row
_NOT_DEFAULTS = {"fully supervised": {"methods"}}


def _table_rows() -> dict[str, list[str]]:
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("## Paper vs torchcross defaults", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    assert header[:3] == ["item", "paper / authors", "torchcross default"], header
    cells = [[c.strip() for c in row.strip().strip("|").split("|")] for row in rows[2:]]
    return {c[0]: c for c in cells}


def _resolved(key: str) -> Any:
    section, _, name = key.partition(".")
    name, _, backbone = name.partition("@")
    config = config_from_dict(_minimal())
    value = getattr(config.section(section), name)
    return paper_lr(backbone, value) if backbone else value


def test_the_defaults_table_states_the_resolved_defaults() -> None:
    table = _table_rows()
    assert sorted(table) == sorted(_ROWS), "map every row of the table in _ROWS (and only those)"
    for item, (phrases, defaults) in _ROWS.items():
        paper, ours = table[item][1], table[item][2]
        stated = f"{paper} {ours}" if ours.startswith("same") else ours
        for phrase in phrases:
            assert phrase in stated, f"row {item!r} no longer says {phrase!r}: {stated!r}"
        for key, value in defaults.items():
            assert _resolved(key) == value, (
                f"row {item!r}: the default of {key} is {_resolved(key)!r}, not {value!r}"
            )
        for name, written in re.findall(r"`(\w+) = ([^`]+)`", ours):
            if name in _NOT_DEFAULTS.get(item, ()):
                continue
            claimed = tomllib.loads(f"x = {written}")["x"]
            keys = [k for k in defaults if k.partition(".")[2] == name]
            assert keys, f"row {item!r} writes `{name} = {written}`: map its key in _ROWS"
            for key in keys:
                resolved = _resolved(key)
                resolved = list(resolved) if isinstance(resolved, tuple) else resolved
                assert resolved == claimed, (
                    f"row {item!r}: `{name} = {written}` but the default is {resolved!r}"
                )


# -- every row of the table names its source ----------------------------------------------------------
# The authors' experiment code at its final commit, 83c2aad "experiments for final paper"
# (StefanoWoerner/medimeta-experiments), and the files of torchcross 0.0.6 / medimeta 0.0.6 that it ran on.
# A row cites a paper section, one of these files (with "83c2aad" or "0.0.6" beside it), or says "ours".
_FINAL_COMMIT_FILES = {
    "src/backbones.py",
    "src/collect_results.py",
    "src/cross_domain_maml.py",
    "src/cross_domain_pft.py",
    "src/finetune_and_test.py",
    "src/finetune_and_test_all_cps.py",
    "src/fully_supervised.py",
    "src/test_all_cps.py",
    "collect_all_5shot.py",
    "collect_all_fully_supervised.py",
    "deploy_all.py",
    "deploy_all_ft_test.py",
    "deploy_all_collect.py",
    "deploy_all_test.py",
    "run_all.py",
    "run_all_ft_test.py",
    "to_latex.py",
}
_LIBRARY_0_0_6_FILES = {
    "few_shot.py",
    "cross_domain.py",
    "cross_domain_classifier.py",
    "classification.py",
    "simple.py",
    "maml.py",
    "batches.py",
    "task_presampling.py",
}
_PAPER_SECTION = re.compile(r"Tables? [34]|Technical Validation|Methods")


def test_every_row_of_the_defaults_table_names_its_source() -> None:
    known = {f.rsplit("/", 1)[-1] for f in _FINAL_COMMIT_FILES} | _LIBRARY_0_0_6_FILES
    for item, cells in _table_rows().items():
        source = cells[3]
        files = re.findall(r"`(?:[\w/]*/)?([\w.]+\.py)`", source)
        assert files or _PAPER_SECTION.search(source) or "ours" in source, (
            f"row {item!r} names no source (a paper section, an authors' file at 83c2aad, or 'ours'): "
            f"{source!r}"
        )
        assert set(files) <= known, f"row {item!r} cites files the final commit does not have: {files}"
        if files:
            assert "83c2aad" in source or "0.0.6" in source, (
                f"row {item!r} cites {files} without saying which commit: name 83c2aad (or 0.0.6)"
            )
        assert "36802ce" not in source, f"row {item!r} credits the draft of the authors' code: {source!r}"
        assert "draft" not in source.lower(), (
            f"row {item!r} credits the draft of the authors' code: {source!r}"
        )
