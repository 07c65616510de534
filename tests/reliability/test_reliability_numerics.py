"""NaN and inf in scores: metrics say NaN, summaries say what was left out, nothing runs forever."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from reliability_helpers import small_root, tiny_config

from torchcross.data import TensorTaskSource
from torchcross.data.metadataset import FewShotMetaDataset
from torchcross.evaluation.episodic import LEFT_OUT, evaluate, format_summary, summarize
from torchcross.evaluation.metrics import accuracy, auroc, compute_metrics
from torchcross.learners.divergence import DivergenceRule
from torchcross.learners.finetuner import FineTuner
from torchcross.nn.heads import head_forward, init_head_params
from torchcross.protocol.run import run_protocol
from torchcross.protocol.training import DivergedLossError, NonFiniteLossError, train_steps
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


def _scripted(losses: list[float]):
    """A model and a step function whose step ``k`` returns ``losses[k]`` (with a real gradient)."""
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)

    def step(unit: int) -> torch.Tensor:
        out = model(torch.ones(1, 1)).sum() * 0 + losses[unit]
        out.backward()
        return out

    return model, opt, step


def test_a_finite_but_diverged_loss_stops_training_naming_step_loss_and_start(tmp_path: Path) -> None:
    losses = [0.7, 0.6, 2500.0, 0.5]
    model, opt, step = _scripted(losses)
    with pytest.raises(
        DivergedLossError,
        match=r"train: the loss is 2500 at step 3 of 4 \(task unknown\), above 1000 = min\(1e\+06, 1000 x "
        r"max\(\|first loss\|, 1\)\) with a first loss of 0\.7: training diverged; lower the learning rate",
    ) as caught:
        train_steps(model, opt, step, lambda: iter(range(4)), 4, progress=False)
    assert isinstance(caught.value, NonFiniteLossError)  # one except catches NaN and divergence
    # a run that diverged in its first step (MAML with inner_lr = 1e30: a loss near 1e29) stops there
    model, opt, step = _scripted([1.5e29])
    with pytest.raises(DivergedLossError, match=r"the loss is 1\.5e\+29 at step 1 of 1 .*above 1e\+06"):
        train_steps(model, opt, step, lambda: iter(range(1)), 1, progress=False)
    # within the limit, or with the check switched off, training goes on
    model, opt, step = _scripted([0.7, 900.0, 0.5])
    assert train_steps(model, opt, step, lambda: iter(range(3)), 3, progress=False)[1] == 900.0
    model, opt, step = _scripted(losses)
    assert len(train_steps(model, opt, step, lambda: iter(range(4)), 4, progress=False, divergence=None)) == 4
    model, opt, step = _scripted(losses)
    loose = DivergenceRule(factor=1e4, bound=1e7)
    assert (
        len(train_steps(model, opt, step, lambda: iter(range(4)), 4, progress=False, divergence=loose)) == 4
    )


def test_a_resumed_run_measures_divergence_from_its_first_step(tmp_path: Path) -> None:
    ckpt = tmp_path / "c.pt"
    scripted = [0.7, 0.6, 1.5, 1400.0]
    model, opt, step = _scripted(scripted)
    train_steps(model, opt, step, lambda: iter(range(2)), 2, checkpoint=ckpt, progress=False)
    model, opt, step = _scripted(scripted)
    # the resumed run starts at 1.5 (limit 1500), but the first loss is still step 1's (limit 1000)
    with pytest.raises(DivergedLossError, match=r"loss is 1400 at step 4 of 4 .*first loss of 0\.7"):
        train_steps(model, opt, step, lambda: iter(range(2, 4)), 4, checkpoint=ckpt, progress=False)


def test_maml_with_an_absurd_inner_lr_stops_instead_of_reporting_a_score(tmp_path: Path) -> None:
    """One inner step of 1e30 under a zero head: the losses were finite (about 1e29) and an AUROC was
    reported; now the first step's loss is beyond the divergence bound."""
    root = small_root(tmp_path / "data")
    config = tiny_config(
        root, tmp_path / "out", evaluation={"methods": ["mm-MAML"]}, maml={"inner_lr": 1e30, "inner_steps": 1}
    )
    with pytest.raises(
        DivergedLossError, match=r"mm-MAML on tgt: the loss is .*e\+2\d at step 1 of 2 \(task src/class\)"
    ):
        run_protocol(config, progress=False, log=None)
    assert not (tmp_path / "out" / "results.json").exists()
