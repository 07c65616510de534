"""The Lightning modules log AUROC and accuracy in validation and test, equal to a direct computation.

``val_auroc`` / ``val_accuracy`` (``test_...``) of the episodic modules are the means over the
epoch's episodes that [`evaluate()`][torchcross.evaluation.episodic.evaluate] reports for the same
episodes (NaN AUROC left out), whatever the batching; ``MultiTaskModule``'s are the means of the
validation batches' scores. The values are reset between epochs (sanity check, repeated validation).
"""

from __future__ import annotations

import math

import pytest
import torch
from lightning.pytorch import Trainer
from torch.utils.data import DataLoader

from torchcross.data import identity
from torchcross.evaluation import compute_metrics, evaluate
from torchcross.learners import MAML, FineTuner, MultiTaskPretrainer, mlp
from torchcross.lightning import FineTuningEvaluation, MetaLearningModule, MultiTaskModule
from torchcross.lightning.modules import episode_scores
from torchcross.tasks.task import Task, TaskDescription

pytestmark = [
    # Lightning's own notices on tiny CPU runs, and a deprecation inside it
    pytest.mark.filterwarnings("ignore:.*LeafSpec.* is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore::lightning.fabric.utilities.warnings.PossibleUserWarning"),
]

MULTICLASS = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b", 2: "c"}, "mc")
BINARY = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"}, "bin")
ORDINAL = TaskDescription("ORDINAL_REGRESSION", {1: "low", 4: "mid", 6: "high"}, "ord")


def _task(description: TaskDescription, seed: int, query_labels: list[int] | None = None) -> Task:
    g = torch.Generator().manual_seed(seed)
    keys = sorted(description.classes)
    support = torch.tensor([keys[i % len(keys)] for i in range(6)])
    query = torch.tensor(query_labels or [keys[i % len(keys)] for i in range(6)])
    if description is BINARY:
        support, query = support[:, None], query[:, None]
    return Task(
        (torch.randn(6, 4, generator=g), support),
        (torch.randn(len(query), 4, generator=g), query),
        description,
    )


def _episodes() -> list[Task]:
    tasks = [_task((MULTICLASS, BINARY, ORDINAL)[i % 3], i) for i in range(6)]
    tasks.append(_task(BINARY, 99, query_labels=[1, 1, 1, 1]))  # one class in the query: AUROC undefined
    return tasks


def _trainer(**options: object) -> Trainer:
    return Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **options,
    )


def _expected(learner: object, tasks: list[Task]) -> dict[str, float]:
    summary = evaluate(learner, tasks, progress=False).summary()
    return {name: summary[name].mean for name in ("loss", "auroc", "accuracy")}


def _maml() -> MAML:
    torch.manual_seed(0)
    return MAML(mlp(4, (8,)), 8, inner_lr=0.3, num_inner_steps=2)


@pytest.mark.parametrize("batch_size", [None, 3])
def test_meta_learning_validation_and_test_log_auroc_and_accuracy_of_evaluate(batch_size: int | None) -> None:
    tasks = _episodes()
    module = MetaLearningModule(_maml())
    expected = _expected(module.learner, tasks)
    assert math.isnan(evaluate(module.learner, tasks[-1:], progress=False).records[0]["auroc"])
    loader = DataLoader(tasks, batch_size=batch_size, collate_fn=identity)  # batches of 3, 3 and 1
    trainer = _trainer()
    for split, run in (("val", trainer.validate), ("test", trainer.test)):
        for _ in range(2):  # a second epoch starts from fresh means
            logged = run(module, dataloaders=loader, verbose=False)[0]
            assert {f"{split}_loss", f"{split}_auroc", f"{split}_accuracy"} <= set(logged)
            for name in ("loss", "auroc", "accuracy"):
                assert logged[f"{split}_{name}"] == pytest.approx(expected[name], rel=1e-6), (split, name)


def test_validation_during_fit_scores_the_trained_learner_over_the_whole_epoch() -> None:
    tasks = _episodes()
    module = MetaLearningModule(
        _maml(),
        optimizer=lambda p: torch.optim.SGD(p, lr=0.5),
        train_batches=lambda k: tasks[k % 3 : k % 3 + 2],
    )
    # the sanity check validates 2 batches first; validation at step 4 must not include them
    trainer = _trainer(max_steps=4, val_check_interval=4, num_sanity_val_steps=2)
    trainer.fit(module, val_dataloaders=DataLoader(tasks, batch_size=2, collate_fn=identity))
    expected = _expected(module.learner, tasks)
    for name in ("loss", "auroc", "accuracy"):
        assert float(trainer.callback_metrics[f"val_{name}"]) == pytest.approx(expected[name], rel=1e-6), name


def test_fine_tuning_evaluation_logs_auroc_and_accuracy_of_evaluate() -> None:
    tasks = _episodes()
    torch.manual_seed(0)
    tuner = FineTuner(mlp(4, (8,)), 8, num_steps=3, lr=0.1)
    expected = _expected(tuner, tasks)
    module = FineTuningEvaluation(tuner)
    logged = _trainer().test(module, dataloaders=DataLoader(tasks, batch_size=2, collate_fn=identity))[0]
    for name in ("loss", "auroc", "accuracy"):
        assert logged[f"test_{name}"] == pytest.approx(expected[name], rel=1e-6), name


def test_multitask_validation_logs_the_mean_batch_auroc_and_accuracy() -> None:
    torch.manual_seed(0)
    pretrainer = MultiTaskPretrainer(mlp(4, (8,)), 8, [MULTICLASS, BINARY])
    batches = [(t.query, t.description) for t in _episodes() if t.description in (MULTICLASS, BINARY)]
    with torch.no_grad():
        rows = [compute_metrics(pretrainer(x, d), y, d) for (x, y), d in batches]
    logged = _trainer().validate(
        MultiTaskModule(pretrainer), dataloaders=DataLoader(batches, batch_size=None)
    )[0]
    for name in ("auroc", "accuracy"):
        finite = [r[name] for r in rows if not math.isnan(r[name])]
        assert len(finite) == (len(rows) - 1 if name == "auroc" else len(rows))  # one undefined AUROC
        assert logged[f"val_{name}"] == pytest.approx(sum(finite) / len(finite), rel=1e-6), name


def test_episode_scores_are_compute_metrics_per_task_under_inference_mode() -> None:
    tasks = _episodes()
    maml = _maml()
    with torch.inference_mode():
        scores = episode_scores(maml.predict, tasks)
    for i, task in enumerate(tasks):
        metrics = compute_metrics(maml.predict(task), task.query[1], task.description)
        for name in ("loss", "auroc", "accuracy"):
            assert float(scores[name][i]) == pytest.approx(metrics[name], rel=1e-6, nan_ok=True), (i, name)
