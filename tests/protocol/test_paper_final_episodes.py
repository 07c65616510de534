"""Issue 21, items 6 to 8: the target scope, the authors' multi-label episodes and diverged episodes."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from torchcross.cli.demo_data import write_demo_medimeta
from torchcross.evaluation import chance_scores, score_diverged, summarize
from torchcross.learners.divergence import DivergenceWarning
from torchcross.protocol import check_protocol, run_protocol
from torchcross.protocol.config import ProtocolConfig, config_from_dict
from torchcross.protocol.data import load_catalogue, plan_targets
from torchcross.protocol.fingerprint import EPISODE_READS, RESULT_READS, fingerprint
from torchcross.protocol.registry import register_method, unregister_method
from torchcross.tasks.task import Task


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_medimeta(tmp_path_factory.mktemp("demo") / "data", size=16)


def _config(root: Path, out: Path, **sections: dict) -> ProtocolConfig:
    raw: dict = {
        "data": {"root": str(root), "targets": ["digits_scan_a/even digit"], "min_class_size": 0},
        "evaluation": {"n_episodes": 4, "methods": ["IM-PT"]},
        "backbone": {"name": "conv4", "hidden": 8, "weights": "random"},
        "augmentation": {"enabled": False},
        "finetune": {"steps": 2, "freeze_backbone": True},
        "supervised": {"steps": 2, "batch_size": 8, "patience": 0, "bootstrap": 10},
        "run": {"out_dir": str(out), "plot": False, "num_threads": 1},
    }
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return config_from_dict(raw)


def _base() -> dict:
    return {"data": {"root": "d", "targets": ["t"]}, "run": {"out_dir": "o"}}


# -- item 6: the target scope ---------------------------------------------------------------------------
def test_a_dataset_target_means_its_primary_task_unless_target_tasks_is_all(demo_root: Path) -> None:
    cat, _ = load_catalogue(demo_root)
    every = ("digit", "even digit", "digit properties", "ink level")
    assert plan_targets(cat, ["digits_scan_a"], target_tasks="all")[0].tasks == every
    assert plan_targets(cat, ["digits_scan_a"], target_tasks="primary")[0].tasks == ("digit",)
    # an explicit task is always that task, beside the primary one of the same dataset
    (plan,) = plan_targets(cat, ["digits_scan_a/ink level", "digits_scan_a"], target_tasks="primary")
    assert plan.tasks == ("ink level", "digit")
    with pytest.raises(ValueError, match="target_tasks must be 'primary' or 'all', got 'first'"):
        plan_targets(cat, ["digits_scan_a"], target_tasks="first")


def test_target_tasks_defaults_to_primary_and_the_plan_and_supervised_baseline_follow_it(
    demo_root: Path, tmp_path: Path
) -> None:
    assert config_from_dict(_base()).data.target_tasks == "primary"
    config = _config(demo_root, tmp_path / "out", data={"targets": ["digits_scan_a"]})
    assert check_protocol(config).targets[0].tasks == ("digit",)
    every = _config(demo_root, tmp_path / "all", data={"targets": ["digits_scan_a"], "target_tasks": "all"})
    assert len(check_protocol(every).targets[0].tasks) == 4
    result = run_protocol(
        _config(
            demo_root,
            tmp_path / "sup",
            data={"targets": ["digits_scan_a"]},
            evaluation={"methods": ["supervised"]},
        ),
        progress=False,
        log=None,
    )
    assert [r["target"] for r in result.supervised] == ["digits_scan_a/digit"]


def test_bad_target_tasks_multilabel_sampler_and_diverged_name_the_key_and_the_accepted_values() -> None:
    for section, key, value, accepted in (
        ("data", "target_tasks", "first", "primary, all"),
        ("evaluation", "multilabel_sampler", "random", "medimeta, cover"),
        ("evaluation", "diverged", "skip", "chance, drop"),
    ):
        raw = _base()
        raw.setdefault(section, {})[key] = value
        with pytest.raises(ValueError, match=rf"\[{section}\] {key} = '{value}' is not one of {accepted}"):
            config_from_dict(raw)


def test_what_the_fingerprints_read_of_the_new_keys() -> None:
    config = config_from_dict(_base())
    # the tasks a target stands for name the evaluation (its fingerprint lists them), like the targets
    assert "data.target_tasks" not in RESULT_READS.resolve(config)
    # the episodes are drawn with the sampler: a change redraws them and redoes every episodic evaluation
    assert "evaluation.multilabel_sampler" in EPISODE_READS.resolve(config)
    cover = config_from_dict({**_base(), "evaluation": {"multilabel_sampler": "cover"}})
    assert fingerprint(config, EPISODE_READS, target="t/x") != fingerprint(cover, EPISODE_READS, target="t/x")
    # the diverged rule is applied to the stored records whenever results are written: nothing is redone
    assert "evaluation.diverged" not in RESULT_READS.resolve(config)


# -- item 7: the authors' multi-label episodes in a run ----------------------------------------------------
def test_multilabel_target_episodes_use_the_authors_sampler_and_a_change_redraws_them(
    demo_root: Path, tmp_path: Path
) -> None:
    assert config_from_dict(_base()).evaluation.multilabel_sampler == "medimeta"
    out = tmp_path / "out"
    target = {"targets": ["digits_scan_a/digit properties"]}
    run_protocol(_config(demo_root, out, data=target), progress=False, log=None)
    file = out / "episodes" / "digits_scan_a" / "digit_properties.json"
    theirs = json.loads(file.read_text())
    assert theirs["sampling"]["multilabel_sampler"] == "medimeta"
    lines: list[str] = []
    cover = _config(demo_root, out, data=target, evaluation={"multilabel_sampler": "cover"})
    run_protocol(cover, progress=False, log=lines.append)
    ours = json.loads(file.read_text())
    assert "multilabel_sampler" not in ours["sampling"]
    assert ours["episodes"] != theirs["episodes"]
    assert any("drawing the episodes again" in line for line in lines), lines
    assert not any("reusing finished evaluation" in line for line in lines), lines


# -- item 8: diverged episodes ----------------------------------------------------------------------------
class _Oracle:
    """Perfect binary logits from the query labels; NaN on the episode numbered ``nan_on`` (None: never)."""

    def __init__(self, nan_on: int | None) -> None:
        self.nan_on = nan_on
        self.calls = 0

    def predict(self, task: Task) -> torch.Tensor:
        labels = task.query[1].reshape(len(task.query[1]), -1).float()
        logits = labels * 6 - 3
        if self.calls == self.nan_on:
            logits = torch.full_like(logits, math.nan)
        self.calls += 1
        return logits


@pytest.fixture
def oracles() -> Iterator[None]:
    register_method("oracle", None, lambda ctx, trained: _Oracle(None))
    register_method("diverging", None, lambda ctx, trained: _Oracle(1))
    try:
        yield
    finally:
        unregister_method("oracle")
        unregister_method("diverging")


def _rows(path: Path) -> list[dict[str, Any]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_a_diverged_episode_is_scored_at_chance_counted_paired_and_warned(
    demo_root: Path, tmp_path: Path, oracles: None
) -> None:
    out = tmp_path / "out"
    config = _config(demo_root, out, evaluation={"methods": ["oracle", "diverging"]})
    assert config.evaluation.diverged == "chance"
    lines: list[str] = []
    with pytest.warns(DivergenceWarning, match=r"diverging on digits_scan_a/even digit: 1 of 4 episodes"):
        result = run_protocol(config, progress=False, log=lines.append)
    assert any(line.startswith("warning: diverging on digits_scan_a/even digit: 1 of 4") for line in lines)
    summary = {r["method"]: r for r in result.summary}
    # three perfect episodes and one failure at chance: (3 * 1.0 + 0.5) / 4; accuracy (3 * 1.0 + 0.5) / 4
    assert summary["diverging"]["auroc_mean"] == pytest.approx(0.875)
    assert summary["diverging"]["accuracy_mean"] == pytest.approx(0.875)
    assert (summary["diverging"]["n_diverged"], summary["diverging"]["n_left_out"]) == (1, 0)
    assert (summary["oracle"]["n_diverged"], summary["oracle"]["n_left_out"]) == (0, 0)
    # the episode stays in the paired comparison, as a loss of the diverging method
    (pair,) = _rows(out / "paired.csv")
    assert (pair["method_a"], pair["n"], pair["wins"], pair["ties"]) == ("oracle", "4", "1", "3")
    stored = {r["method"]: r for r in _rows(out / "results.csv")}
    assert stored["diverging"]["n_diverged"] == "1"
    episodes = [r for r in _rows(out / "episodes.csv") if r["method"] == "diverging"]
    assert [r["diverged"] for r in episodes] == ["False", "True", "False", "False"]
    assert "| diverged |" in (out / "results.md").read_text()

    # "drop": left out of the mean and the pairs, still counted and warned; the evaluation is reused
    drop = _config(demo_root, out, evaluation={"methods": ["oracle", "diverging"], "diverged": "drop"})
    lines = []
    with pytest.warns(DivergenceWarning, match="left out of the mean and paired.csv"):
        again = run_protocol(drop, progress=False, log=lines.append)
    assert sum("reusing finished evaluation" in line for line in lines) == 2, lines
    row = {r["method"]: r for r in again.summary}["diverging"]
    assert (row["auroc_mean"], row["n_left_out"], row["n_diverged"]) == (1.0, 1, 1)
    (pair,) = _rows(out / "paired.csv")
    assert pair["n"] == "3"


def test_chance_scores_per_kind_and_the_summary_counts_diverged_episodes() -> None:
    assert chance_scores("BINARY_CLASSIFICATION", 2) == pytest.approx(
        {"auroc": 0.5, "accuracy": 0.5, "loss": math.log(2), "mae": math.nan, "qwk": math.nan}, nan_ok=True
    )
    assert chance_scores("MULTILABEL_CLASSIFICATION", 4)["accuracy"] == 0.5
    multi = chance_scores("MULTICLASS_CLASSIFICATION", 5)
    assert (multi["accuracy"], multi["loss"]) == (pytest.approx(0.2), pytest.approx(math.log(5)))
    ordinal = chance_scores("ORDINAL_REGRESSION", 4)
    assert (ordinal["mae"], ordinal["qwk"]) == (1.0, 0.0)  # |0-1.5|, |1-1.5|, |2-1.5|, |3-1.5| -> 1.0
    with pytest.raises(ValueError, match="no chance scores for REGRESSION tasks"):
        chance_scores("REGRESSION", 2)
    with pytest.raises(ValueError, match="the diverged rule must be one of 'chance', 'drop', got 'skip'"):
        score_diverged([], "skip")
    kind = {"method": "m", "task_target": "ORDINAL_REGRESSION", "n_classes": 4}
    rows = [
        {**kind, "auroc": 0.9, "mae": 0.2, "qwk": 0.8, "left_out": ""},
        {**kind, "auroc": math.nan, "mae": math.nan, "qwk": math.nan, "left_out": "non-finite"},
    ]
    (kept,) = summarize(score_diverged(rows), by=["method"], metrics=["auroc", "mae", "qwk"])
    assert (kept["auroc_mean"], kept["mae_mean"], kept["qwk_mean"]) == pytest.approx((0.7, 0.6, 0.4))
    assert (kept["n_diverged"], kept["n_left_out"]) == (1, 0)
    # evaluate()'s own records (no rule applied) count as diverged through their left_out reason
    (dropped,) = summarize(rows, by=["method"], metrics=["auroc"])
    assert (dropped["auroc_mean"], dropped["n_diverged"], dropped["n_left_out"]) == (0.9, 1, 1)
