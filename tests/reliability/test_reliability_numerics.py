"""NaN and inf in scores: metrics say NaN, summaries say what was left out, nothing runs forever."""

from __future__ import annotations

import math

import pytest
import torch

from torchcross.data import TensorTaskSource
from torchcross.data.metadataset import FewShotMetaDataset
from torchcross.evaluation.episodic import LEFT_OUT, evaluate, format_summary, summarize
from torchcross.evaluation.metrics import accuracy, auroc, compute_metrics
from torchcross.learners.finetuner import FineTuner
from torchcross.nn.heads import head_forward, init_head_params
from torchcross.tasks.task import Task, TaskDescription

BINARY = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"}, "toy")
MULTI = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b", 2: "c"}, "toy3")
NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    ("logits", "labels", "description"),
    [
        (torch.full((4, 1), NAN), torch.tensor([[0], [1], [0], [1]]), BINARY),  # was AUROC 1.0
        (torch.tensor([[NAN], [2.0], [0.5], [-3.0]]), torch.tensor([[0], [1], [0], [1]]), BINARY),
        (torch.tensor([[INF], [2.0], [0.5], [-INF]]), torch.tensor([[0], [1], [0], [1]]), BINARY),
        (torch.tensor([[NAN, 0, 0], [0, 1, 0], [0, 0, 1]]), torch.tensor([0, 1, 2]), MULTI),
    ],
)
def test_metrics_of_non_finite_scores_are_nan(logits, labels, description) -> None:
    metrics = compute_metrics(logits, labels, description)
    assert all(math.isnan(v) for v in metrics.values()), metrics
    assert math.isnan(auroc(logits, labels, description))
    assert math.isnan(accuracy(logits, labels, description))
    if torch.isnan(logits).any():  # probabilities: NaN stays NaN (sigmoid(inf) = 1 is a fine probability)
        assert math.isnan(auroc(logits.sigmoid(), labels, description, from_logits=False))


def test_bad_shapes_are_still_errors_with_non_finite_scores() -> None:
    with pytest.raises(ValueError, match=r"must have shape \(N, 1\), got \(4, 2\)"):
        compute_metrics(torch.full((4, 2), NAN), torch.tensor([[0], [1], [0], [1]]), BINARY)


def _tasks(bad: int) -> list[Task]:
    y = torch.tensor([[0], [1], [0], [1]])
    one_class = torch.tensor([[1], [1], [1], [1]])
    tasks = [Task((torch.zeros(2, 1), y[:2]), (y.float() * 2 - 1, y), BINARY) for _ in range(4)]
    tasks.append(Task((torch.zeros(2, 1), y[:2]), (one_class.float(), one_class), BINARY))
    for t in tasks[:bad]:
        t.query[0][0, 0] = NAN
    return tasks


def test_evaluation_summaries_say_how_many_episodes_were_left_out_and_why() -> None:
    result = evaluate(lambda task: task.query[0] * 3, _tasks(bad=2), method="m", progress=False)
    assert result.left_out() == {"non-finite": 2, "auroc-undefined": 1}
    assert [r["left_out"] for r in result.records] == ["non-finite", "non-finite", "", "", "auroc-undefined"]
    assert result.summary()["auroc"].n == 2
    assert result.summary()["auroc"].n_missing == 3
    assert result.summary()["accuracy"].n_missing == 2
    row = result.summary_table(by=("method",))[0]
    assert (row["n_episodes"], row["n_left_out"], row["left_out"]) == (
        5,
        3,
        "2 non-finite, 1 auroc-undefined",
    )
    view = format_summary(result.summary_table(by=("method",)))
    assert view[0]["left out"] == "2 non-finite, 1 auroc-undefined"
    assert set(LEFT_OUT) == {"non-finite", "auroc-undefined"}
    clean = evaluate(lambda task: task.query[0] * 3, _tasks(bad=0)[:4], progress=False)
    assert clean.left_out() == {}
    assert "left out" not in format_summary(clean.summary_table()).columns
    rows = [{"method": "a", "auroc": NAN, "accuracy": 0.5, "loss": 1.0}]
    assert summarize(rows, by=["method"])[0]["left_out"] == "1 metric is NaN"


def test_evaluate_refuses_an_endless_episode_dataset() -> None:
    source = TensorTaskSource(torch.randn(20, 2), torch.arange(20) % 2, BINARY)
    endless = FewShotMetaDataset(source, None, 2, 2, 0, seed=0)
    with pytest.raises(ValueError, match=r"endless FewShotMetaDataset \(length=None\).*length=N"):
        evaluate(lambda task: task.query[0][:, :1], endless, progress=False)
    loader = torch.utils.data.DataLoader(endless, batch_size=None)
    with pytest.raises(ValueError, match=r"never finish"):
        evaluate(lambda task: task.query[0][:, :1], loader, progress=False)


def test_a_head_of_another_width_than_the_features_is_a_clear_error() -> None:
    params = init_head_params(8, MULTI)
    with pytest.raises(
        ValueError, match=r"features of shape \(3, 5\) \(width 5\), but the head reads 8 features"
    ):
        head_forward(torch.ones(3, 5), params)
    backbone = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 5))
    learner = FineTuner(backbone, 8, num_steps=1)
    y = torch.tensor([0, 1, 2])
    task = Task((torch.ones(3, 4), y), (torch.ones(3, 4), y), MULTI)
    with pytest.raises(
        ValueError, match=r"give the learner num_features equal to the backbone's output width"
    ):
        learner.predict(task)
