"""``[selection]``: the fine-tuning lr and steps chosen on episodes disjoint from the test episodes."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from torchcross.cli.demo_data import write_demo_medimeta
from torchcross.data.metadataset import sample_episode_set
from torchcross.protocol import run_protocol, selection
from torchcross.protocol.config import ProtocolConfig, config_from_dict, load_config
from torchcross.protocol.data import load_catalogue, plan_targets
from torchcross.protocol.fingerprint import EPISODE_READS, EVALUATION_READS, fingerprint
from torchcross.protocol.methods import method_context, method_fingerprint
from torchcross.protocol.plan import open_split
from torchcross.protocol.registry import get_method
from torchcross.protocol.selection import (
    SELECTION_COLUMNS,
    draw_selection_episodes,
    select_finetuning,
    selection_seed,
    selection_settings,
    summary_selection,
)
from torchcross.tasks.task import Task, TaskDescription

TARGET = "digits_scan_a/even digit"


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_medimeta(tmp_path_factory.mktemp("demo") / "data", size=16)


def _raw(root: Path, out: Path, **sections: dict) -> dict:
    raw: dict = {
        "data": {"root": str(root), "targets": [TARGET], "min_class_size": 0},
        "evaluation": {"n_episodes": 3, "n_query": 3, "methods": ["IM-PT"]},
        "backbone": {"name": "conv4", "hidden": 4, "weights": "random"},
        "augmentation": {"enabled": False},
        "finetune": {"steps": 2, "freeze_backbone": True},
        "run": {"out_dir": str(out), "plot": False, "num_threads": 1},
    }
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return raw


def _config(root: Path, out: Path, **sections: dict) -> ProtocolConfig:
    return config_from_dict(_raw(root, out, **sections))


_SELECT = {"mode": "target", "lrs": [1e-3, 0.5], "steps": [1, 2], "n_episodes": 2}


def _target_and_episodes(config: ProtocolConfig) -> tuple:
    """The plan of the target, its task, the test episodes and their source, as the run draws them."""
    catalogue, _ = load_catalogue(config.data.root)
    target = plan_targets(catalogue, config.data.targets)[0]
    task = target.tasks[0]

    def open_(ds: str, name: str, split: str):
        return open_split(config, ds, name, split, 1, 16)

    source = open_(target.dataset_id, task, config.data.target_split)
    ev = config.evaluation
    tests = sample_episode_set(
        source,
        ev.n_episodes,
        ev.n_shot,
        ev.n_query,
        seed=config.run.seed,
        filter_classes_min_samples=config.data.min_class_size,
    )
    return target, task, tests, source, open_


def _rows(source) -> np.ndarray:
    return np.asarray(source.source.split_indices)


# -- the choice -------------------------------------------------------------------------------------------
def _toy_tasks(n: int) -> list[Task]:
    d = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"}, "toy")
    y = torch.tensor([[0], [1], [0], [1]])
    return [Task((torch.zeros(2, 1), y[:2]), (y.float(), y), d) for _ in range(n)]


def test_the_grid_point_of_the_best_selection_auroc_wins() -> None:
    seen: list[tuple[float, int]] = []

    def learner_for(lr: float, steps: int):
        seen.append((lr, steps))
        # the learning rate matters: only 1e-2 ranks the queries right, and only with 100 steps
        sign = 1.0 if (lr, steps) == (1e-2, 100) else -1.0 if lr == 1e-3 else 0.0
        return lambda task: task.query[0] * sign

    chosen = select_finetuning(learner_for, _toy_tasks(4), [1e-3, 1e-2], [50, 100])
    assert seen == [(1e-3, 50), (1e-3, 100), (1e-2, 50), (1e-2, 100)]
    assert (chosen.lr, chosen.steps, chosen.auroc, chosen.n_episodes) == (1e-2, 100, 1.0, 4)
    assert [s for _, _, s in chosen.scores] == [0.0, 0.0, 0.5, 1.0]
    # a tie goes to the first grid point as listed (the paper's values, listed first)
    tie = select_finetuning(lambda lr, steps: lambda task: task.query[0], _toy_tasks(2), [1e-3, 1e-2], [50])
    assert (tie.lr, tie.steps) == (1e-3, 50)
    # diverged episodes count as chance, not as left out
    nan = select_finetuning(
        lambda lr, steps: lambda task: task.query[0] * (float("nan") if lr == 1e-3 else -1.0),
        _toy_tasks(2),
        [1e-3, 1e-2],
        [50],
    )
    assert [s for _, _, s in nan.scores] == [0.5, 0.0]
    assert nan.lr == 1e-3


def test_an_empty_grid_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"the selection grid is empty: lrs=\[\], steps=\[50\]"):
        select_finetuning(lambda lr, steps: None, _toy_tasks(1), [], [50])


# -- disjoint from the test episodes ----------------------------------------------------------------------
def test_target_selection_episodes_share_no_image_with_test_episodes_of_another_split(
    demo_root: Path, tmp_path: Path
) -> None:
    config = _config(demo_root, tmp_path / "o", data={"target_split": "test"}, selection=_SELECT)
    target, task, tests, source, open_ = _target_and_episodes(config)
    drawn = draw_selection_episodes(config, target, task, tests, source, open_, log=lambda _m: None)
    assert len(drawn) == 2
    assert drawn.shared_images == 0
    ((name, sel_source, sel_set),) = drawn.parts
    assert name == TARGET
    assert sel_set.sampling["seed"] == selection_seed(0, TARGET) != 0
    test_rows = {int(r) for e in tests.episodes for r in _rows(source)[np.concatenate([e.support, e.query])]}
    sel_rows = {
        int(r) for e in sel_set.episodes for r in _rows(sel_source)[np.concatenate([e.support, e.query])]
    }
    assert sel_rows
    assert test_rows
    assert not sel_rows & test_rows
    # the same seed draws the same episodes
    again = draw_selection_episodes(config, target, task, tests, source, open_, log=lambda _m: None)
    assert again.parts[0][2].first_difference(sel_set) is None


def test_on_the_whole_target_the_shared_query_images_are_counted(demo_root: Path, tmp_path: Path) -> None:
    # 40 test episodes of 10 queries per class cover most of the target (as on MedIMeta's small ones)
    evaluation = {"n_episodes": 40, "n_query": 10}
    config = _config(demo_root, tmp_path / "o", evaluation=evaluation, selection={**_SELECT, "split": "all"})
    target, task, tests, source, open_ = _target_and_episodes(config)
    drawn = draw_selection_episodes(config, target, task, tests, source, open_, log=lambda _m: None)
    sel_set = drawn.parts[0][2]
    scored = {int(i) for e in tests.episodes for i in e.query}
    asked = {int(i) for e in sel_set.episodes for i in e.query}
    assert drawn.shared_images == len(asked & scored) > 0
    test_episodes = {(frozenset(e.support.tolist()), frozenset(e.query.tolist())) for e in tests.episodes}
    assert not any(
        (frozenset(e.support.tolist()), frozenset(e.query.tolist())) in test_episodes
        for e in sel_set.episodes
    )


def test_a_selection_episode_that_is_a_test_episode_is_refused(
    demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(demo_root, tmp_path / "o", selection={**_SELECT, "split": "all"})
    target, task, tests, source, open_ = _target_and_episodes(config)
    monkeypatch.setattr(selection, "selection_seed", lambda seed, name: seed)  # the test episodes' stream
    with pytest.raises(
        ValueError, match=r"selection episode 0 of digits_scan_a/even digit is one of its test"
    ):
        draw_selection_episodes(config, target, task, tests, source, open_, log=lambda _m: None)


def test_source_selection_episodes_come_from_the_sources(demo_root: Path, tmp_path: Path) -> None:
    config = _config(demo_root, tmp_path / "o", selection={**_SELECT, "mode": "sources", "n_episodes": 3})
    target, task, tests, source, open_ = _target_and_episodes(config)
    lines: list[str] = []
    drawn = draw_selection_episodes(config, target, task, tests, source, open_, log=lines.append)
    names = [name for name, _, _ in drawn.parts]
    assert len(drawn) == 3
    assert drawn.shared_images == 0
    assert names
    assert all(tuple(n.split("/", 1)) in target.sources for n in names)
    assert not any(n.startswith("digits_scan_a/") for n in names)
    again = draw_selection_episodes(config, target, task, tests, source, open_, log=lambda _m: None)
    assert [n for n, _, _ in again.parts] == names


# -- in a run ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["target", "sources"])
def test_a_run_reports_the_choice_beside_the_test_results(demo_root: Path, tmp_path: Path, mode: str) -> None:
    out = tmp_path / "out"
    config = _config(demo_root, out, selection={**_SELECT, "mode": mode})
    lines: list[str] = []
    result = run_protocol(config, progress=False, log=lines.append)
    (row,) = result.summary.to_records()
    assert row["method"] == "scratch"
    assert row["n_episodes"] == 3
    assert (row["selected_lr"], row["selected_steps"]) in {(lr, n) for lr in (1e-3, 0.5) for n in (1, 2)}
    logged = [line for line in lines if "selected on" in line]
    assert len(logged) == 1
    assert f"lr {row['selected_lr']:g}, {row['selected_steps']} steps" in logged[0]
    # the test episodes were fine-tuned with the chosen values, the selection AUROC is the chosen one's
    for record in result.episodes.to_records():
        assert {k: record[k] for k in SELECTION_COLUMNS} == {k: row[k] for k in SELECTION_COLUMNS}
    with (out / "results.csv").open(encoding="utf-8") as f:
        (written,) = list(csv.DictReader(f))
    assert float(written["selected_lr"]) == row["selected_lr"]
    assert float(written["auroc_mean"]) > 0
    summary = json.loads((out / "results.json").read_text(encoding="utf-8"))["summary"]
    assert summary[0]["selected_steps"] == row["selected_steps"]
    md = (out / "results.md").read_text(encoding="utf-8")
    assert "Fine-tuning lr/steps selected on 2 episodes of" in md
    assert f"scratch on {TARGET}: lr {row['selected_lr']}, {row['selected_steps']} steps" in md
    assert "the paper's: lr 0.001, 50 steps, chosen by the authors on the test episodes" in md


def test_the_choice_is_the_one_select_finetuning_makes(demo_root: Path, tmp_path: Path) -> None:
    config = _config(demo_root, tmp_path / "out", selection=_SELECT)
    result = run_protocol(config, progress=False, log=None)
    (row,) = result.summary.to_records()
    target, task, tests, source, open_ = _target_and_episodes(config)
    drawn = draw_selection_episodes(config, target, task, tests, source, open_, log=lambda _m: None)
    ctx = method_context(
        config, target, "scratch", 0, in_channels=1, image_size=16, device=torch.device("cpu"), log=print
    )

    def learner_for(lr: float, steps: int):
        ft = dataclasses.replace(config.finetune, lr=lr, steps=steps)
        return get_method("scratch").predictor(
            dataclasses.replace(ctx, config=dataclasses.replace(config, finetune=ft)), None
        )

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        chosen = select_finetuning(learner_for, drawn, (1e-3, 0.5), (1, 2))
    best = max(s for _, _, s in chosen.scores)
    assert (row["selected_lr"], row["selected_steps"], row["selection_auroc"]) == (
        chosen.lr,
        chosen.steps,
        best,
    )


def test_a_changed_selection_redoes_the_evaluation_and_the_same_reuses_it(
    demo_root: Path, tmp_path: Path
) -> None:
    config = _config(demo_root, tmp_path / "out", selection=_SELECT)
    first = run_protocol(config, progress=False, log=None)
    lines: list[str] = []
    again = run_protocol(config, progress=False, log=lines.append)
    assert any("reusing finished evaluation" in line for line in lines)
    assert again.summary.to_records() == first.summary.to_records()
    # computed again from scratch, the same seed makes the same choice
    fresh = dataclasses.replace(config, run=dataclasses.replace(config.run, out_dir=tmp_path / "fresh"))
    assert run_protocol(fresh, progress=False, log=None).summary.to_records() == first.summary.to_records()
    changed = dataclasses.replace(config, selection=dataclasses.replace(config.selection, n_episodes=1))
    lines.clear()
    run_protocol(changed, progress=False, log=lines.append)
    assert not any("reusing finished evaluation" in line for line in lines)
    assert any("selected on 1 episodes of" in line for line in lines)


def test_mode_none_leaves_results_and_fingerprints_as_without_selection(
    demo_root: Path, tmp_path: Path
) -> None:
    plain = _config(demo_root, tmp_path / "a")
    # other grid settings do nothing while mode is "none"
    idle = _config(demo_root, tmp_path / "b", selection={"lrs": [0.5], "steps": [1], "n_episodes": 1})
    a = run_protocol(plain, progress=False, log=None)
    b = run_protocol(idle, progress=False, log=None)

    def scores(result) -> list[dict]:
        return [{k: v for k, v in r.items() if k != "train_seconds"} for r in result.episodes.to_records()]

    assert scores(a) == scores(b)
    assert not set(SELECTION_COLUMNS) & (set(a.summary.columns) | set(a.episodes.columns))
    assert "Fine-tuning lr/steps selected" not in (tmp_path / "a" / "results.md").read_text(encoding="utf-8")
    # the fingerprint of an evaluation is what it was before [selection] existed
    target = a.plan.targets[0]
    for config in (plain, idle):
        ctx = method_context(
            config, target, "scratch", 0, in_channels=1, image_size=16, device=torch.device("cpu"), log=print
        )
        spec = get_method("scratch")
        before = fingerprint(
            config, spec.reads, EVALUATION_READS, EPISODE_READS, **ctx.identity(), tasks=list(target.tasks)
        )
        assert method_fingerprint(ctx) == before
    assert selection_settings(plain, get_method("supervised").reads, per_task=True) == {}
    on = _config(demo_root, tmp_path / "c", selection=_SELECT)
    assert selection_settings(on, get_method("supervised").reads, per_task=True) == {}
    assert selection_settings(on, get_method("mm-PT").reads)["selection"]["mode"] == "target"


def test_the_summary_names_each_seeds_choice_when_they_differ() -> None:
    by = ("method", "target", "task_target")
    key = {"method": "mm-PT", "target": "t/a", "task_target": "BINARY_CLASSIFICATION"}
    chosen = {0: (1e-3, 50, 0.6, 0), 1: (1e-2, 50, 0.8, 2)}
    episodes = [
        {**key, "seed": seed, "episode": e, **dict(zip(SELECTION_COLUMNS, values))}
        for seed, values in chosen.items()
        for e in range(2)
    ]
    rows = [dict(key), {**key, "method": "supervised"}]
    assert summary_selection(rows, episodes, by) == list(SELECTION_COLUMNS)
    assert {k: rows[0][k] for k in SELECTION_COLUMNS} == {
        "selected_lr": "0.001/0.01",
        "selected_steps": 50,
        "selection_auroc": pytest.approx(0.7),
        "selection_shared_images": 1.0,
    }
    assert "selected_lr" not in rows[1]
    assert summary_selection(rows, [dict(key, seed=0, episode=0)], by) == []


# -- bad values -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("line", "error", "match"),
    [
        ('mode = "grid"', ValueError, r"\[selection\] mode = 'grid' is not one of none, target, sources"),
        (
            "lrs = []",
            TypeError,
            r"\[selection\] lrs must be a non-empty list of distinct positive .* got \[\]",
        ),
        (
            "lrs = [0.0, 0.1]",
            TypeError,
            r"\[selection\] lrs must be .*positive learning rates.* got \[0\.0, 0\.1\]",
        ),
        ('lrs = "fast"', TypeError, r"\[selection\] lrs must be a non-empty list .*, got 'fast'"),
        (
            "steps = [50, -1]",
            TypeError,
            r"\[selection\] steps must be a non-empty list of distinct integers >= 0",
        ),
        ("steps = [50, 50]", TypeError, r"\[selection\] steps must be .*distinct integers.*got \[50, 50\]"),
        ("n_episodes = 0", ValueError, r"\[selection\] n_episodes must be >= 1, got 0"),
        (
            'split = "holdout"',
            ValueError,
            r"\[selection\] split = 'holdout' is not one of train, val, test, all",
        ),
        ("budget = 3", ValueError, r"unknown key 'budget' in section \[selection\]; allowed keys: mode, lrs"),
    ],
)
def test_bad_selection_values_name_the_key_the_value_and_what_is_accepted(
    tmp_path: Path, line: str, error: type, match: str
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        f'[data]\nroot = "d"\ntargets = ["t"]\n[run]\nout_dir = "o"\n[selection]\n{line}\n', encoding="utf-8"
    )
    with pytest.raises(error, match=match):
        load_config(path)
