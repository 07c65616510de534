"""The Lightning modules and the resumable stream on one process: arguments, checkpoints, workers."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from torchcross.learners import MAML, FineTuner, MultiTaskPretrainer, mlp
from torchcross.lightning import (
    EpisodeStream,
    FineTuningEvaluation,
    MetaLearningModule,
    MultiTaskModule,
    RankMetaBatches,
)
from torchcross.lightning.modules import episode_loss
from torchcross.tasks.task import Task, TaskDescription

D = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b"}, "t")


def _maml() -> MAML:
    backbone = mlp(3, (4,))
    return MAML(backbone, 4, inner_lr=0.1, num_inner_steps=1)


def _task(seed: int) -> Task:
    g = torch.Generator().manual_seed(seed)
    y = torch.tensor([0, 1, 0, 1])
    return Task((torch.randn(4, 3, generator=g), y), (torch.randn(4, 3, generator=g), y), D)


def test_stream_starts_where_it_is_told_and_keeps_order_with_workers() -> None:
    stream = EpisodeStream(_square, start=3, stop=11)
    assert list(stream) == [k * k for k in range(3, 11)]
    loader = DataLoader(stream, batch_size=None, num_workers=2, multiprocessing_context="fork")
    assert list(loader) == [k * k for k in range(3, 11)]


def _square(k: int) -> int:
    return k * k


def test_stream_and_rank_batches_check_arguments() -> None:
    with pytest.raises(TypeError, match=r"batch_at must be callable \(step -> batch\), got int"):
        EpisodeStream(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"start must be >= 0"):
        EpisodeStream(_square, start=-1)
    with pytest.raises(ValueError, match=r"pass both rank and world_size, or neither"):
        RankMetaBatches([], 2, rank=0)
    with pytest.raises(ValueError, match=r"need 0 <= rank < world_size, got rank=2, world_size=2"):
        RankMetaBatches([], 2, rank=2, world_size=2)
    with pytest.raises(ValueError, match=r"tasks_per_rank must be >= 1"):
        RankMetaBatches([], 0)


def test_rank_batches_split_the_global_meta_batch_in_rank_order() -> None:
    episodes = list(range(40))
    one = RankMetaBatches(episodes, 4)
    halves = [RankMetaBatches(episodes, 2, rank=r, world_size=2) for r in range(2)]
    for step in range(3):
        assert one(step) == halves[0](step) + halves[1](step)


def test_modules_check_their_learners() -> None:
    with pytest.raises(TypeError, match=r"learner must have meta_backward \(MAML, ProtoNet\), got Linear"):
        MetaLearningModule(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match=r"pretrainer must be a MultiTaskPretrainer, got MAML"):
        MultiTaskModule(_maml())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"tuner must be a FineTuner, got MAML"):
        FineTuningEvaluation(_maml())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"train_batches must be callable \(step -> batch\), got list"):
        MetaLearningModule(_maml(), train_batches=[1])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"MetaLearningModule has no train_batches"):
        MetaLearningModule(_maml()).train_dataloader()


def test_consumed_batches_travel_in_the_checkpoint_and_start_the_stream() -> None:
    module = MetaLearningModule(_maml(), train_batches=RankMetaBatches([_task(i) for i in range(20)], 2))
    module.consumed_batches = 3
    checkpoint: dict = {}
    module.on_save_checkpoint(checkpoint)
    restored = MetaLearningModule(_maml(), train_batches=module.train_batches)
    restored.on_load_checkpoint(checkpoint)
    first = next(iter(restored.train_dataloader()))
    assert [t.support[0].tolist() for t in first] == [_task(i).support[0].tolist() for i in (6, 7)]


def _clone(pair: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return pair[0].clone(), pair[1].clone()


def test_episode_loss_adapts_under_inference_mode() -> None:
    maml = _maml()
    tasks = [_task(0), _task(1)]
    expected = episode_loss(maml.predict, tasks)
    with torch.inference_mode():
        # tensors made under inference mode, as a device transfer inside Lightning's evaluation makes them
        inference_tasks = [Task(_clone(t.support), _clone(t.query), D) for t in tasks]
        got = episode_loss(maml.predict, inference_tasks)
    assert inference_tasks[0].support[0].is_inference()
    torch.testing.assert_close(got, expected)
    tuner = FineTuner(mlp(3, (4,)), 4, num_steps=2, lr=0.1)
    with torch.inference_mode():
        assert torch.isfinite(episode_loss(tuner.predict, tasks))
    pretrainer = MultiTaskPretrainer(mlp(3, (4,)), 4, [D])
    assert MultiTaskModule(pretrainer).automatic_optimization is False
