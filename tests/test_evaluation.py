"""evaluate(): per-episode records, summaries, progress behaviour and error paths."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import scipy.stats as scipy_stats
import torch

from torchcross.evaluation import METRICS, EvaluationResult, evaluate, summarize
from torchcross.evaluation.results import ResultsTable
from torchcross.tasks.task import Task, TaskDescription

BIN = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"}, "ds/bin", "Fundus")
MC = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b", 2: "c"}, "ds/mc", "Fundus")
ML = TaskDescription("MULTILABEL_CLASSIFICATION", {0: "a", 1: "b"}, "ds/ml", "OCT")
ORD = TaskDescription("ORDINAL_REGRESSION", {1: "low", 4: "mid", 6: "high"}, "ds/ord", "OCT")


def _episode(desc: TaskDescription, seed: int, n_query: int = 6) -> Task:
    g = torch.Generator().manual_seed(seed)
    if desc.task_target.name == "BINARY_CLASSIFICATION":
        y = torch.tensor([[0], [1]] * (n_query // 2))
    elif desc.task_target.name == "MULTILABEL_CLASSIFICATION":
        y = torch.tensor([[1, 0], [0, 1], [1, 1]] * (n_query // 3))
    else:
        keys = torch.tensor(desc.class_keys)
        y = keys[torch.arange(n_query) % len(keys)]
    x = torch.randn(n_query, 4, generator=g)
    return Task((x[:2], y[:2]), (x, y), desc)


class NoisyOracle:
    """Predicts from the labels plus seeded noise: good but imperfect, deterministic per call count."""

    def __init__(self, noise: float) -> None:
        self.noise = noise
        self.calls = 0

    def predict(self, task: Task) -> torch.Tensor:
        self.calls += 1
        y = task.query[1]
        d = task.description
        g = torch.Generator().manual_seed(self.calls)
        if d.task_target.name in ("MULTICLASS_CLASSIFICATION", "ORDINAL_REGRESSION"):
            idx = torch.as_tensor(np.searchsorted(np.array(d.class_keys), y.numpy()))
            logits = torch.nn.functional.one_hot(idx, d.num_classes).float() * 2
        else:
            logits = y.float() * 4 - 2
        return logits + self.noise * torch.randn(logits.shape, generator=g)


def test_records_have_one_row_per_episode_with_all_fields() -> None:
    episodes = [_episode(d, i) for i, d in enumerate([BIN, MC, ML, ORD])]
    result = evaluate(NoisyOracle(0.0), episodes, method="oracle", target="ds", progress=False)
    assert isinstance(result, EvaluationResult)
    assert [r["episode"] for r in result.records] == [0, 1, 2, 3]
    assert [r["task_target"] for r in result.records] == [
        "BINARY_CLASSIFICATION",
        "MULTICLASS_CLASSIFICATION",
        "MULTILABEL_CLASSIFICATION",
        "ORDINAL_REGRESSION",
    ]
    for r in result.records:
        assert r["method"] == "oracle"
        assert r["target"] == "ds"
        assert r["auroc"] == 1.0
        assert r["accuracy"] == 1.0
        assert r["loss"] >= 0
        assert r["n_query"] == 6
        assert r["n_support"] == 2
    assert result.records[3]["n_classes"] == 3
    assert result.records[0]["domain"] == "Fundus"
    assert set(METRICS) <= set(result.table().columns)


def test_target_defaults_to_task_identifier_and_batches_are_flattened() -> None:
    batch = [_episode(BIN, 0), _episode(MC, 1)]
    result = evaluate(NoisyOracle(0.0), [batch, _episode(ML, 2)], progress=False)
    assert [r["target"] for r in result.records] == ["ds/bin", "ds/mc", "ds/ml"]


def test_summary_matches_independent_computation() -> None:
    episodes = [_episode(MC, i, n_query=9) for i in range(30)]
    result = evaluate(NoisyOracle(3.0), episodes, method="m", progress=False)
    aurocs = np.array([r["auroc"] for r in result.records])
    assert 0.5 < aurocs.mean() < 1.0  # noisy but informative
    s = result.summary()["auroc"]
    assert s.n == 30
    assert s.mean == pytest.approx(aurocs.mean(), abs=1e-12)
    assert s.std == pytest.approx(aurocs.std(ddof=1), abs=1e-12)
    half = scipy_stats.t.ppf(0.975, 29) * aurocs.std(ddof=1) / math.sqrt(30)
    assert s.half_width == pytest.approx(half, rel=1e-9)
    table = result.summary_table()
    assert len(table) == 1
    row = table[0]
    assert row["method"] == "m"
    assert row["target"] == "ds/mc"
    assert row["n_episodes"] == 30
    assert row["auroc_ci_low"] == pytest.approx(s.ci_low)
    assert result.episodes_per_second > 0


def test_summarize_groups_in_order_and_handles_nan() -> None:
    rows = [
        {"method": "b", "target": "t", "auroc": 0.6, "accuracy": 0.5, "loss": 1.0},
        {"method": "a", "target": "t", "auroc": None, "accuracy": 0.5, "loss": 1.0},
        {"method": "a", "target": "t", "auroc": 0.8, "accuracy": 0.7, "loss": 0.5},
        {"method": "b", "target": "t", "auroc": 0.8, "accuracy": 0.9, "loss": 0.2},
    ]
    out = summarize(ResultsTable(rows))
    assert [r["method"] for r in out] == ["b", "a"]
    assert out[1]["auroc_mean"] == pytest.approx(0.8)
    assert math.isnan(out[1]["auroc_std"])  # one finite value: no spread
    assert out[0]["auroc_mean"] == pytest.approx(0.7)
    assert out.columns[:3] == ["method", "target", "n_episodes"]
    with pytest.raises(KeyError, match="columns are"):
        summarize(rows, by=["dataset"])


def test_learner_weights_are_left_untouched_and_device_is_applied() -> None:
    model = torch.nn.Linear(4, 3)
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def predict(task: Task) -> torch.Tensor:
        assert task.query[0].device.type == "cpu"
        return model(task.query[0])

    evaluate(predict, [_episode(MC, 0)], device="cpu", progress=False)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_progress_bar_is_quiet_off_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    evaluate(NoisyOracle(0.0), [_episode(BIN, 0)], progress=None)
    assert capsys.readouterr().err == ""


def test_progress_bar_shows_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    buf = io.StringIO()
    monkeypatch.setattr("sys.stderr", buf)
    evaluate(NoisyOracle(0.0), [_episode(BIN, 0), _episode(BIN, 1)], method="x", progress=True)
    assert "episode" in buf.getvalue()


def test_bad_learner_and_bad_episodes() -> None:
    with pytest.raises(TypeError, match="predict"):
        evaluate(object(), [_episode(BIN, 0)], progress=False)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="episodes must yield Task"):
        evaluate(NoisyOracle(0.0), [(torch.zeros(2), torch.zeros(2))], progress=False)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="confidence"):
        evaluate(NoisyOracle(0.0), [], confidence=1.5, progress=False)


def test_logits_of_the_wrong_shape_name_the_episode() -> None:
    with pytest.raises(ValueError, match=r"episode 0 \('ds/mc'\)"):
        evaluate(lambda task: torch.zeros(len(task.query[1]), 7), [_episode(MC, 0)], progress=False)


def test_empty_episode_list_gives_empty_result() -> None:
    result = evaluate(NoisyOracle(0.0), [], progress=False)
    assert result.records == []
    assert result.summary()["auroc"].n == 0
    table = result.summary_table()
    assert len(table) == 0
    assert table.columns[:3] == ["method", "target", "n_episodes"]


def test_batched_prediction_matches_episode_by_episode() -> None:
    class Batched(NoisyOracle):
        def __init__(self) -> None:
            super().__init__(0.0)
            self.batches: list[int] = []

        def predict_many(self, tasks: list[Task]) -> list[torch.Tensor]:
            self.batches.append(len(tasks))
            return [self.predict(t) for t in tasks]

    episodes = [_episode(d, i) for i, d in enumerate([BIN, MC, ML, ORD, BIN])]
    learner = Batched()
    batched = evaluate(learner, episodes, progress=False, batch_size=2)
    assert learner.batches == [2, 2, 1]
    single = evaluate(NoisyOracle(0.0), episodes, progress=False)
    assert batched.records == single.records
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        evaluate(learner, episodes, batch_size=0, progress=False)


def test_format_summary_shows_mean_and_interval() -> None:
    from torchcross.evaluation import format_summary

    rows = [{"method": "m", "target": "t", "auroc": v, "accuracy": 0.5, "loss": 1.0} for v in (0.7, 0.9)]
    view = format_summary(summarize(rows))
    assert view.columns == ["method", "target", "episodes", "AUROC", "AUROC CI", "accuracy", "accuracy CI"]
    assert view[0]["AUROC"].startswith("0.800 ± ")
    single = format_summary(summarize(rows[:1]))
    assert single[0]["AUROC"] == "0.700 ± nan"
    with pytest.raises(KeyError, match="n_episodes"):
        format_summary(ResultsTable(rows))


def test_ordinal_metrics_are_recorded_for_ordinal_tasks_only() -> None:
    from torchcross.evaluation import format_summary
    from torchcross.evaluation.metrics import ordinal_mae, quadratic_weighted_kappa

    episodes = [_episode(d, i) for i, d in enumerate([BIN, ORD, MC, ORD])]
    result = evaluate(NoisyOracle(0.5), episodes, method="m", progress=False)
    learner = NoisyOracle(0.5)
    for record, task in zip(result.records, episodes):
        if task.description is ORD:
            logits = learner.predict(task)
            assert record["mae"] == ordinal_mae(logits, task.query[1], ORD)
            assert record["qwk"] == quadratic_weighted_kappa(logits, task.query[1], ORD)
        else:
            learner.calls += 1
            assert math.isnan(record["mae"])  # never 0
            assert math.isnan(record["qwk"])
    table = result.summary_table(by=("target",))
    assert {"mae_mean", "qwk_mean", "auroc_mean"} <= set(table.columns)
    by_target = {r["target"]: r for r in table}
    assert by_target["ds/ord"]["mae_mean"] > 0
    assert math.isnan(by_target["ds/bin"]["mae_mean"])
    view = format_summary(table, ["auroc", "mae", "qwk"])
    assert [r["MAE"] for r in view if r["target"] == "ds/mc"] == ["n/a"]
    assert view.columns[-2:] == ["QWK", "QWK CI"]
    # tables of older evaluations without MAE/QWK columns still summarise
    old = [{"method": "m", "target": "t", "auroc": 0.5, "accuracy": 0.5, "loss": 1.0}]
    assert "mae_mean" not in summarize(old).columns
