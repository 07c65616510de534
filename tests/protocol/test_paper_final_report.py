"""What a run reports with several seeds (issue 21, item 9): one row per method and target in results.md
with the between-seed spread, bootstrap bounds for supervised, "±" explained once per table, a plot that
says what it draws, and log lines that name the stage a source task is left out of."""

from __future__ import annotations

import types

import pytest
import torch

from torchcross.cli.demo import output_table
from torchcross.cli.demo_data import write_demo_medimeta
from torchcross.data import TensorTaskSource
from torchcross.evaluation.plotting import plot_metric
from torchcross.evaluation.results import ResultsTable
from torchcross.protocol import run_protocol
from torchcross.protocol.config import config_from_dict
from torchcross.protocol.metalearn import _episode_datasets
from torchcross.protocol.report import SEED_COLUMN, format_results, plot_labels, shown_rows
from torchcross.tasks.task import TaskDescription

TARGET = "digits_scan_a/even digit"
PLUS_MINUS = "± is the half-width of the 95% Student-t interval of the mean over a row's episodes"


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory: pytest.TempPathFactory):
    """A tiny run (Conv4, 4 episodes, a few supervised steps) with ``[run] seeds = [0, 1]``."""
    tmp = tmp_path_factory.mktemp("final-report")
    root = write_demo_medimeta(tmp / "data", size=16)
    config = config_from_dict(
        {
            "data": {"root": str(root), "targets": [TARGET], "min_class_size": 0},
            "evaluation": {"methods": ["scratch", "linear-probe", "supervised"], "n_episodes": 4},
            "backbone": {"name": "conv4", "hidden": 8, "weights": "random"},
            "finetune": {"steps": 2},
            "supervised": {"steps": 4, "batch_size": 16, "val_every": 2, "val_batches": 2, "bootstrap": 50},
            "run": {"out_dir": str(tmp / "out"), "seeds": [0, 1], "plot": True, "num_threads": 1},
        }
    )
    return tmp / "out", run_protocol(config, progress=False, log=None)


def _table(markdown: str) -> list[dict[str, str]]:
    """The rows of the first Markdown table of ``markdown``, as dicts of cell texts."""
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in line.strip("|").split("|")))) for line in lines[2:]]


def test_results_md_has_one_row_per_method_and_target_with_the_seed_spread(two_seeds) -> None:
    out, result = two_seeds
    rows = _table((out / "results.md").read_text(encoding="utf-8"))
    assert [(r["method"], r["target"]) for r in rows] == [
        ("scratch", TARGET),
        ("linear-probe", TARGET),
        ("supervised", TARGET),
    ]
    assert list(rows[0])[4:7] == ["AUROC", "AUROC CI", SEED_COLUMN]
    csv = ResultsTable.read_csv(out / "results.csv")
    for row in rows:
        over_seeds = csv.where(method=row["method"], seed=None)
        (expected,) = over_seeds.rows
        assert row[SEED_COLUMN] == f"{expected['auroc_seed_std']:.3f} (2)"
    # supervised: a row per seed in results.csv, and the row over both seeds that results.md shows
    seeds = csv.where(method="supervised")
    assert seeds.column("seed") == [0, 1, None]
    per_seed, over = seeds.rows[:2], seeds.rows[2]
    assert over["n_seeds"] == 2
    assert over["auroc_mean"] == pytest.approx((per_seed[0]["auroc_mean"] + per_seed[1]["auroc_mean"]) / 2)
    assert over["auroc_seed_std"] == pytest.approx(
        abs(per_seed[0]["auroc_mean"] - per_seed[1]["auroc_mean"]) / 2**0.5
    )
    assert len(result.summary.where(method="supervised")) == 3


def test_supervised_shows_its_bootstrap_bounds_and_its_test_split(two_seeds) -> None:
    out, _ = two_seeds
    rows = {r["method"]: r for r in _table((out / "results.md").read_text(encoding="utf-8"))}
    over = ResultsTable.read_csv(out / "results.csv").where(method="supervised", seed=None)[0]
    supervised = rows["supervised"]
    assert supervised["episodes"] == f"— (test split: {over['n_test']} images)"
    assert supervised["AUROC"] == f"{over['auroc_mean']:.3f}"  # no "±" for an asymmetric interval
    assert supervised["AUROC CI"] == f"[{over['auroc_ci_low']:.3f}, {over['auroc_ci_high']:.3f}]"
    assert "±" in rows["scratch"]["AUROC"]
    assert rows["scratch"]["episodes"] == "4"


def test_every_table_says_once_what_plus_minus_is(two_seeds) -> None:
    out, result = two_seeds
    text = (out / "results.md").read_text(encoding="utf-8")
    assert text.count(PLUS_MINUS) == 1
    assert "supervised has no ±" in text
    assert "bootstrap interval over the test images" in text
    assert f"`{SEED_COLUMN}` shows it" in text
    # the demo page's generator prints the same table with its explanation
    demo = output_table(result)
    assert demo.count(PLUS_MINUS) == 1
    assert [r["method"] for r in _table(demo)] == ["scratch", "linear-probe", "supervised"]
    # one seed, episodic only: the table keeps its columns, and the paragraph says nothing of seeds
    one = format_results(result.summary.where(method="scratch"), ["auroc"], 0.9)
    assert one.count("± is the half-width of the 90% Student-t interval") == 1
    assert "supervised" not in one


def test_the_plot_says_what_it_draws(two_seeds) -> None:
    out, result = two_seeds
    assert (out / "auroc.png").read_bytes()[:4] == b"\x89PNG"
    rows = shown_rows(result.summary)
    title, labels = plot_labels(result.plan, rows)
    assert title == "AUROC per target task: mean and 95% CI\n(scores averaged over 2 training seeds)"
    assert labels == {
        "scratch": "scratch (5-shot; CI: t, 4 episodes)",
        "linear-probe": "linear-probe (5-shot; CI: t, 4 episodes)",
        "supervised": "supervised (full training; CI: bootstrap, test images)",
    }
    fig = plot_metric(rows, None, title=title, labels=labels)
    ax = fig.axes[0]
    assert ax.get_title() == title
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert sorted(legend) == sorted(["chance", *labels.values()])
    assert len(ax.containers) == 3  # one marker per method: the seeds are not drawn on top of each other


def _source(n_per_class: int) -> TensorTaskSource:
    d = TaskDescription("BINARY_CLASSIFICATION", {0: "n", 1: "y"}, "toy/healthy")
    return TensorTaskSource(torch.zeros(2 * n_per_class, 3), torch.arange(2 * n_per_class) % 2, d)


@pytest.mark.parametrize(
    ("stage", "says"),
    [
        ("training", "source toy/healthy, no training episodes: this source task is not trained on: "),
        (
            "validation",
            "source toy/healthy, no validation episodes: early stopping does not score this source task "
            "(its training episodes are not affected): ",
        ),
    ],
)
def test_a_source_left_out_names_the_stage(stage: str, says: str) -> None:
    lines: list[str] = []
    maml = types.SimpleNamespace(
        n_shot=5, min_shot=1, max_shot=10, n_query=10, min_class_size=0, multilabel_sampler="medimeta"
    )
    ctx = types.SimpleNamespace(
        config=types.SimpleNamespace(maml=maml),
        seed=0,
        target=types.SimpleNamespace(dataset_id="toy"),
        method="mm-MAML",
        log=lines.append,
    )
    kept = _episode_datasets(ctx, {"toy/healthy": _source(3)}, 10, stage, seed=0)  # 3 < 5 shots + 10 queries
    assert kept == {}
    (line,) = lines
    assert line.startswith(f"[toy] mm-MAML: {says}")
    assert line.endswith("lower the shots or queries")  # the cause, as the dataset states it
    assert "skipped" not in line
