"""LightningModules over the torchcross learners: manual optimisation, one all-reduce per step.

Examples:
    >>> import torch
    >>> from torchcross.learners import MAML, mlp
    >>> backbone = mlp(4, (8,))
    >>> module = MetaLearningModule(MAML(backbone, 8, inner_lr=0.1, num_inner_steps=1))
    >>> module.automatic_optimization, module.consumed_batches
    (False, 0)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from lightning.pytorch import LightningModule
from torch import Tensor, nn
from torch.utils.data import DataLoader

from torchcross.distributed.gradients import all_reduce_gradients
from torchcross.learners.finetuner import FineTuner
from torchcross.learners.multitask import MultiTaskPretrainer
from torchcross.lightning.stream import EpisodeStream
from torchcross.nn import loss
from torchcross.tasks.task import Task, TaskDescription

__all__ = ["FineTuningEvaluation", "MetaLearningModule", "MultiTaskModule", "episode_loss"]

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
_CONSUMED = "torchcross_consumed_batches"


def _default_optimizer(params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=1e-3)


def _keep(batch: Any) -> Any:
    return batch


def _trainable(x: Any) -> Any:
    """Inference tensors (made under ``inference_mode``) cloned into ordinary ones that autograd can use."""
    if isinstance(x, Tensor):
        return x.clone() if x.is_inference() else x
    if isinstance(x, Task):
        return Task(_trainable(x.support), _trainable(x.query), x.description)
    if isinstance(x, (tuple, list)):
        return type(x)(_trainable(v) for v in x)
    return x


def episode_loss(predict: Callable[[Task], Tensor], tasks: list[Task]) -> Tensor:
    """Mean query loss of ``predict`` over ``tasks``; gradients stay on (adaptation) under inference mode."""
    with torch.inference_mode(False), torch.enable_grad():
        losses = [loss(predict(t), t.query[1], t.description) for t in map(_trainable, tasks)]
    return torch.stack(losses).mean().detach()


class _Resumable(LightningModule):
    """Counts the training batches consumed, saves the count, and streams from there."""

    def __init__(self, train_batches: Callable[[int], Any] | None, num_workers: int) -> None:
        super().__init__()
        if train_batches is not None and not callable(train_batches):
            raise TypeError(
                f"train_batches must be callable (step -> batch), got {type(train_batches).__name__}"
            )
        self.train_batches, self.num_workers = train_batches, num_workers
        self.consumed_batches = 0
        self.automatic_optimization = False

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[_CONSUMED] = self.consumed_batches

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.consumed_batches = int(checkpoint.get(_CONSUMED, 0))

    def train_dataloader(self) -> DataLoader:
        """An [`EpisodeStream`][torchcross.lightning.stream.EpisodeStream] of ``train_batches`` from the first
        batch not yet trained on."""
        if self.train_batches is None:
            raise ValueError(
                f"{type(self).__name__} has no train_batches: pass train_batches=step -> batch "
                "(e.g. RankMetaBatches) or give Trainer.fit a train dataloader"
            )
        stream = EpisodeStream(self.train_batches, start=self.consumed_batches)
        return DataLoader(stream, batch_size=None, collate_fn=_keep, num_workers=self.num_workers)

    def _log_loss(self, name: str, value: float | Tensor, size: int) -> None:
        on_step = name.startswith("train")
        self.log(
            name, float(value), batch_size=size, sync_dist=not on_step, on_step=on_step, on_epoch=not on_step
        )


class MetaLearningModule(_Resumable):
    """Meta-training and episodic evaluation of a learner with ``meta_backward`` and ``predict``.

    A training batch is this rank's list of tasks (its share of the global meta-batch);
    ``meta_backward`` averages the gradients over ranks, then the optimiser steps. Validation
    and test batches are tasks (or lists of them); the mean query loss after adaptation is
    logged as ``val_loss`` / ``test_loss``, averaged over ranks.

    Args:
        learner: e.g. [`MAML`][torchcross.learners.maml.MAML] or
            [`ProtoNet`][torchcross.learners.protonet.ProtoNet].
        optimizer: ``parameters -> optimiser`` (default: Adam, lr 1e-3).
        train_batches: ``step -> this rank's meta-batch`` (e.g.
            [`RankMetaBatches`][torchcross.lightning.stream.RankMetaBatches]), for a
            resumable `train_dataloader()`; or ``None`` to pass dataloaders to ``Trainer.fit``.
        num_workers: DataLoader workers of `train_dataloader()`.
    """

    def __init__(
        self,
        learner: nn.Module,
        optimizer: OptimizerFactory = _default_optimizer,
        train_batches: Callable[[int], Any] | None = None,
        num_workers: int = 0,
    ) -> None:
        super().__init__(train_batches, num_workers)
        if not callable(getattr(learner, "meta_backward", None)):
            raise TypeError(f"learner must have meta_backward (MAML, ProtoNet), got {type(learner).__name__}")
        self.learner, self.optimizer_factory = learner, optimizer

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.learner.parameters())

    def training_step(self, batch: list[Task] | Task, batch_idx: int) -> None:
        tasks = [batch] if isinstance(batch, Task) else list(batch)
        optimizer = self.optimizers()
        optimizer.zero_grad(set_to_none=True)
        value = self.learner.meta_backward(tasks)  # all-reduces once under torch.distributed
        optimizer.step()
        self.consumed_batches += 1
        self._log_loss("train_loss", value, len(tasks))

    def _evaluate(self, batch: list[Task] | Task, name: str) -> Tensor:
        tasks = [batch] if isinstance(batch, Task) else list(batch)
        with torch.inference_mode(False), torch.enable_grad():
            losses = [
                loss(self.learner.predict(t), t.query[1], t.description) for t in map(_trainable, tasks)
            ]
        value = torch.stack(losses).mean().detach()
        self._log_loss(name, value, len(tasks))
        return value

    def validation_step(self, batch: list[Task] | Task, batch_idx: int) -> Tensor:
        return self._evaluate(batch, "val_loss")

    def test_step(self, batch: list[Task] | Task, batch_idx: int) -> Tensor:
        return self._evaluate(batch, "test_loss")


class MultiTaskModule(_Resumable):
    """Multi-task pre-training: a batch is ``((inputs, labels), description)`` of one source task.

    Each rank trains on its own batch; gradients (and BatchNorm running statistics) are averaged
    over ranks in one all-reduce before the step, so heads that only some ranks used stay in sync.

    Args:
        pretrainer: the [`MultiTaskPretrainer`][torchcross.learners.multitask.MultiTaskPretrainer].
        optimizer: ``parameters -> optimiser`` (default: Adam, lr 1e-3).
        train_batches: ``step -> this rank's (batch, description)`` for a resumable stream.
        num_workers: DataLoader workers of `train_dataloader()`.
    """

    def __init__(
        self,
        pretrainer: MultiTaskPretrainer,
        optimizer: OptimizerFactory = _default_optimizer,
        train_batches: Callable[[int], Any] | None = None,
        num_workers: int = 0,
    ) -> None:
        super().__init__(train_batches, num_workers)
        if not isinstance(pretrainer, MultiTaskPretrainer):
            raise TypeError(f"pretrainer must be a MultiTaskPretrainer, got {type(pretrainer).__name__}")
        self.pretrainer, self.optimizer_factory = pretrainer, optimizer

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.pretrainer.parameters())

    def training_step(self, batch: tuple[tuple[Tensor, Tensor], TaskDescription], batch_idx: int) -> None:
        (inputs, labels), description = batch
        optimizer = self.optimizers()
        optimizer.zero_grad(set_to_none=True)
        value = self.pretrainer.backward_step((inputs, labels), description)
        all_reduce_gradients(self.pretrainer)
        optimizer.step()
        self.consumed_batches += 1
        self._log_loss("train_loss", value, len(inputs))

    def validation_step(self, batch: tuple[tuple[Tensor, Tensor], TaskDescription], batch_idx: int) -> Tensor:
        (inputs, labels), description = batch
        value = self.pretrainer.loss((inputs, labels), description).detach()
        self._log_loss("val_loss", value, len(inputs))
        return value


class FineTuningEvaluation(LightningModule):
    """Episodic evaluation with a [`FineTuner`][torchcross.learners.finetuner.FineTuner] (``Trainer.validate``
    / ``test``).

    Each rank evaluates its share of the episodes (episode datasets shard over ranks by
    themselves); the mean query loss is logged as ``val_loss`` / ``test_loss``, averaged over ranks.
    """

    def __init__(self, tuner: FineTuner) -> None:
        super().__init__()
        if not isinstance(tuner, FineTuner):
            raise TypeError(f"tuner must be a FineTuner, got {type(tuner).__name__}")
        self.tuner = tuner

    def _evaluate(self, batch: list[Task] | Task, name: str) -> Tensor:
        tasks = [batch] if isinstance(batch, Task) else list(batch)
        value = episode_loss(self.tuner.predict, tasks)
        self.log(name, float(value), batch_size=len(tasks), sync_dist=True)
        return value

    def validation_step(self, batch: list[Task] | Task, batch_idx: int) -> Tensor:
        return self._evaluate(batch, "val_loss")

    def test_step(self, batch: list[Task] | Task, batch_idx: int) -> Tensor:
        return self._evaluate(batch, "test_loss")
