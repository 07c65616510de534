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

import reprlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

import torch
from lightning.pytorch import LightningModule
from torch import Tensor, nn
from torch.utils.data import DataLoader
from torchmetrics import MeanMetric

from torchcross._checks import check_int
from torchcross.data.workers.position import StreamPosition
from torchcross.distributed.gradients import all_reduce_gradients
from torchcross.evaluation.metrics import compute_metrics
from torchcross.learners.finetuner import FineTuner
from torchcross.learners.multitask import MultiTaskPretrainer
from torchcross.lightning.stream import EpisodeStream
from torchcross.nn import loss
from torchcross.tasks.task import Task, TaskDescription

if TYPE_CHECKING:
    from lightning.pytorch.core.optimizer import LightningOptimizer

__all__ = [
    "SCORE_NAMES",
    "FineTuningEvaluation",
    "MetaLearningModule",
    "MultiTaskModule",
    "episode_loss",
    "episode_scores",
]

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
_CONSUMED = "torchcross_consumed_batches"

SCORE_NAMES: tuple[str, ...] = ("auroc", "accuracy")
"""The scores logged per evaluation split besides the loss (``val_auroc``, ``test_accuracy``, ...)."""


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


def episode_scores(predict: Callable[[Task], Tensor], tasks: list[Task]) -> dict[str, Tensor]:
    """Query loss, AUROC and accuracy of ``predict`` on each task, after adaptation.

    The scores are [`compute_metrics()`][compute_metrics]'s, the ones
    [`evaluate()`][torchcross.evaluation.episodic.evaluate] records per episode (AUROC is NaN where
    undefined, every score NaN where a logit is not finite). Gradients stay on (adaptation) under
    inference mode.

    Returns:
        ``{"loss": ..., "auroc": ..., "accuracy": ...}``, each of shape ``(len(tasks),)``.

    Examples:
        >>> from torchcross.learners import FineTuner, mlp
        >>> d = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"})
        >>> y = torch.tensor([0, 1, 0, 1])
        >>> task = Task((torch.randn(4, 3), y), (torch.randn(4, 3), y), d)
        >>> scores = episode_scores(FineTuner(mlp(3, (4,)), 4, num_steps=1).predict, [task, task])
        >>> sorted(scores), scores["auroc"].shape
        (['accuracy', 'auroc', 'loss'], torch.Size([2]))
    """
    losses, rows = [], []
    with torch.inference_mode(False), torch.enable_grad():
        for task in map(_trainable, tasks):
            logits = predict(task)
            losses.append(loss(logits, task.query[1], task.description).detach())
            metrics = compute_metrics(logits.detach(), task.query[1], task.description)
            rows.append([metrics[name] for name in SCORE_NAMES])
    scores = torch.tensor(rows, dtype=torch.float64).reshape(len(rows), len(SCORE_NAMES))
    return {"loss": torch.stack(losses), **{name: scores[:, i] for i, name in enumerate(SCORE_NAMES)}}


class _Scores(LightningModule):
    """Logs ``{split}_auroc`` and ``{split}_accuracy``: means over the epoch's scores, on every rank.

    One `torchmetrics.MeanMetric` per split and score, NaN scores left out (an undefined AUROC,
    as [`evaluate()`][torchcross.evaluation.episodic.evaluate]'s summary leaves it out; NaN when
    every score was NaN). Lightning computes it at the end of the epoch from the sums of all ranks,
    and resets it.
    """

    def __init__(self, splits: tuple[str, ...]) -> None:
        super().__init__()
        self.score_means = nn.ModuleDict(
            {f"{split}_{name}": MeanMetric(nan_strategy="ignore") for split in splits for name in SCORE_NAMES}
        )

    def _log_scores(self, split: str, scores: dict[str, Tensor]) -> None:
        for name in SCORE_NAMES:
            values = scores[name].reshape(-1)
            key = f"{split}_{name}"
            mean = cast(MeanMetric, self.score_means[key])
            mean.update(values.to(self.device, torch.float32))
            self.log(key, mean, on_step=False, on_epoch=True, batch_size=values.numel())


class _Resumable(_Scores):
    """Counts the training batches consumed, saves the count, and streams from there.

    The count is the module's [`StreamPosition`][StreamPosition]
    (``position``), advanced in ``training_step``: where the batches are consumed, not where the
    DataLoader's workers produce them ahead.
    """

    def __init__(
        self, train_batches: Callable[[int], Any] | None, num_workers: int, splits: tuple[str, ...]
    ) -> None:
        super().__init__(splits)
        if train_batches is not None and not callable(train_batches):
            raise TypeError(
                f"train_batches must be callable (step -> batch), got {type(train_batches).__name__}"
            )
        self.train_batches, self.num_workers = train_batches, num_workers
        self.position = StreamPosition()  # the training stream's position: batches consumed
        self.automatic_optimization = False

    @property
    def consumed_batches(self) -> int:
        """The training batches consumed so far (over every fit of this module and its checkpoints)."""
        return self.position.resume_point()

    @consumed_batches.setter
    def consumed_batches(self, value: int) -> None:
        self.position.restore(0, check_int(value, "consumed_batches", 0))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[_CONSUMED] = self.consumed_batches

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.consumed_batches = int(checkpoint.get(_CONSUMED, 0))

    def train_dataloader(self) -> DataLoader:
        """An [`EpisodeStream`][EpisodeStream] of ``train_batches`` from the first
        batch not yet trained on."""
        if self.train_batches is None:
            raise ValueError(
                f"{type(self).__name__} has no train_batches: pass train_batches=step -> batch "
                "(e.g. RankMetaBatches) or give Trainer.fit a train dataloader"
            )
        self.position.restore(0, self.consumed_batches)  # the new stream starts at the first batch not taken
        stream = EpisodeStream(self.train_batches, start=self.position.start)
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
    and test batches are tasks (or lists of them), scored after adaptation on their query sets:
    ``val_auroc`` and ``val_accuracy`` (``test_...`` in testing) are the means over the epoch's
    tasks on all ranks (see [`episode_scores()`][episode_scores]; tasks
    whose AUROC is undefined are left out of ``val_auroc``, as in
    [`evaluate()`][torchcross.evaluation.episodic.evaluate]); ``val_loss`` is the mean of the
    ranks' mean losses (the same when ranks hold equal shares) and is NaN if any loss is.

    Args:
        learner: e.g. [`MAML`][torchcross.learners.maml.MAML] or
            [`ProtoNet`][torchcross.learners.protonet.ProtoNet].
        optimizer: ``parameters -> optimiser`` (default: Adam, lr 1e-3).
        train_batches: ``step -> this rank's meta-batch`` (e.g.
            [`RankMetaBatches`][torchcross.lightning.stream.RankMetaBatches]), for a
            resumable `train_dataloader()`; or ``None`` to pass dataloaders to ``Trainer.fit``.
        num_workers: DataLoader workers of `train_dataloader()`.
    """

    learner: Any  # an nn.Module with meta_backward and predict (checked in __init__)

    def __init__(
        self,
        learner: nn.Module,
        optimizer: OptimizerFactory = _default_optimizer,
        train_batches: Callable[[int], Any] | None = None,
        num_workers: int = 0,
    ) -> None:
        super().__init__(train_batches, num_workers, ("val", "test"))
        if not callable(getattr(learner, "meta_backward", None)):
            raise TypeError(f"learner must have meta_backward (MAML, ProtoNet), got {type(learner).__name__}")
        self.learner, self.optimizer_factory = learner, optimizer

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.learner.parameters())

    def training_step(self, batch: list[Task] | Task, batch_idx: int) -> None:
        tasks = [batch] if isinstance(batch, Task) else list(batch)
        optimizer = cast("LightningOptimizer", self.optimizers())
        optimizer.zero_grad(set_to_none=True)
        value = self.learner.meta_backward(tasks)  # all-reduces once under torch.distributed
        optimizer.step()
        self.position.consumed += 1  # counted where the batch is consumed
        self._log_loss("train_loss", value, len(tasks))

    def _evaluate(self, batch: list[Task] | Task, split: str) -> Tensor:
        tasks = [batch] if isinstance(batch, Task) else list(batch)
        scores = episode_scores(self.learner.predict, tasks)
        value = scores["loss"].mean()
        self._log_loss(f"{split}_loss", value, len(tasks))
        self._log_scores(split, scores)
        return value

    def validation_step(self, batch: list[Task] | Task, batch_idx: int) -> Tensor:
        return self._evaluate(batch, "val")

    def test_step(self, batch: list[Task] | Task, batch_idx: int) -> Tensor:
        return self._evaluate(batch, "test")


_BATCH_FORMS = (
    "((inputs, labels), description), or ((inputs, labels), description, weight) from "
    "MultiTaskBatchSampler(shard_by='example')"
)


def _pretraining_batch(batch: Any, split: str) -> tuple[Tensor, Tensor, TaskDescription, float]:
    """``(inputs, labels, description, weight)`` of a training or validation batch (weight 1.0 for a pair).

    Raises:
        TypeError: not one of the two forms (the message names what was found and both forms), or a
            weight that is not a number.
        ValueError: a weight that is not finite and ``>= 0``, a positive weight on an empty part, or a
            weighted batch in validation.
    """
    if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
        if isinstance(batch, (tuple, list)):
            found = f"a {type(batch).__name__} of {len(batch)} items"
        else:
            found = f"{type(batch).__name__} {reprlib.repr(batch)}"
        raise TypeError(f"MultiTaskModule's {split} batch must be {_BATCH_FORMS}; got {found}")
    data, description, *rest = batch
    if not isinstance(data, (tuple, list)) or len(data) != 2 or not all(isinstance(t, Tensor) for t in data):
        raise TypeError(
            f"MultiTaskModule's {split} batch must start with (inputs, labels) tensors ({_BATCH_FORMS}); "
            f"got {type(data).__name__} as its first item"
        )
    if not isinstance(description, TaskDescription):
        raise TypeError(
            f"MultiTaskModule's {split} batch must carry the task's TaskDescription second ({_BATCH_FORMS}); "
            f"got {type(description).__name__} (a sampler with with_task_description=False leaves it out)"
        )
    inputs, labels = data
    if not rest:
        return inputs, labels, description, 1.0
    if split != "training":
        raise ValueError(
            f"MultiTaskModule's {split} batches are whole batches ((inputs, labels), description), got a "
            "weighted part ((inputs, labels), description, weight): score whole batches on every rank (a "
            "sampler with shard_by='batch'), not parts of one batch"
        )
    (weight,) = rest
    if isinstance(weight, Tensor) and weight.numel() == 1 and weight.is_floating_point():
        weight = weight.item()
    if isinstance(weight, bool) or not isinstance(weight, (int, float)):
        raise TypeError(
            f"the weight of a MultiTaskModule training batch must be a number (this rank's share "
            f"R * n_rank / n of an example-sharded batch, a float), got {type(weight).__name__} {weight!r}"
        )
    if not 0.0 <= weight < float("inf"):
        raise ValueError(
            f"the weight of a MultiTaskModule training batch must be a finite number >= 0 (this rank's share "
            f"R * n_rank / n of an example-sharded batch), got {weight!r}"
        )
    if weight > 0 and len(inputs) == 0:
        raise ValueError(
            f"a MultiTaskModule training batch with no examples must have weight 0.0, got {weight!r} (an "
            "empty part adds nothing to the global batch's mean loss)"
        )
    return inputs, labels, description, float(weight)


class MultiTaskModule(_Resumable):
    """Multi-task pre-training: a batch is ``((inputs, labels), description)`` of one source task.

    Each rank trains on its own batch; gradients (and BatchNorm running statistics) are averaged
    over ranks in one all-reduce before the step, so heads that only some ranks used stay in sync.

    A training batch may also be ``((inputs, labels), description, weight)``, this rank's part of
    one global batch as [`MultiTaskBatchSampler`][torchcross.data.multitask.MultiTaskBatchSampler]
    yields it with ``shard_by="example"``: the rank's mean loss is multiplied by ``weight`` before
    the backward pass, so ``R`` ranks make the update of one process with the whole global batch
    (``train_loss``, the rank's weighted loss, averages over the ranks to the global batch's mean
    loss). A rank whose part is empty (``weight`` 0.0, fewer examples than ranks) skips the forward
    pass but still joins the all-reduce. With BatchNorm in training mode each rank normalises its
    own part (docs/scaling-out.md).

    Validation batches are whole batches ``((inputs, labels), description)``; ``val_auroc`` and
    ``val_accuracy`` are the means over the epoch's batches on all ranks (``val_loss``: the mean of
    the ranks' means) of each batch's scores ([`compute_metrics()`][compute_metrics] on the batch,
    as the protocol's mm-PT early stopping scores it; batches whose AUROC is undefined are left out).

    Args:
        pretrainer: the [`MultiTaskPretrainer`][MultiTaskPretrainer].
        optimizer: ``parameters -> optimiser`` (default: Adam, lr 1e-3).
        train_batches: ``step -> this rank's batch`` (either form) for a resumable stream, e.g.
            ``functools.partial(sampler.item, 0)`` for an endless example-sharded sampler.
        num_workers: DataLoader workers of `train_dataloader()`.

    Raises:
        TypeError: in ``__init__``, ``pretrainer`` is not a ``MultiTaskPretrainer``; in a step, a batch of
            neither form or a weight that is not a number.
        ValueError: in a step, a weight that is not finite and ``>= 0``, a positive weight on an
            empty part, or a weighted batch in validation.

    Examples:
        Rank 1's parts of global batches of 4 (without ``rank`` and ``world_size`` the sampler reads
        them from ``torch.distributed``, as under ``Trainer(strategy="ddp")``):

        >>> import functools, itertools
        >>> from torchcross.data import TensorTaskSource
        >>> from torchcross.data.multitask import MultiTaskBatchSampler
        >>> from torchcross.learners import MultiTaskPretrainer, mlp
        >>> d = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"}, "toy")
        >>> source = TensorTaskSource(torch.randn(11, 3), [i % 2 for i in range(11)], d)
        >>> sampler = MultiTaskBatchSampler(
        ...     [source], 4, mode="infinite", seed=0, shard_by="example", rank=1, world_size=2
        ... )
        >>> module = MultiTaskModule(
        ...     MultiTaskPretrainer(mlp(3, (4,)), 4, [d]), train_batches=functools.partial(sampler.item, 0)
        ... )
        >>> [(len(y), weight) for (x, y), _, weight in itertools.islice(module.train_dataloader(), 3)]
        [(2, 1.0), (2, 1.0), (1, 0.6666666666666666)]
    """

    def __init__(
        self,
        pretrainer: MultiTaskPretrainer,
        optimizer: OptimizerFactory = _default_optimizer,
        train_batches: Callable[[int], Any] | None = None,
        num_workers: int = 0,
    ) -> None:
        super().__init__(train_batches, num_workers, ("val",))
        if not isinstance(pretrainer, MultiTaskPretrainer):
            raise TypeError(f"pretrainer must be a MultiTaskPretrainer, got {type(pretrainer).__name__}")
        self.pretrainer, self.optimizer_factory = pretrainer, optimizer

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.pretrainer.parameters())

    def training_step(self, batch: tuple[Any, ...], batch_idx: int) -> None:
        inputs, labels, description, weight = _pretraining_batch(batch, "training")
        optimizer = cast("LightningOptimizer", self.optimizers())
        optimizer.zero_grad(set_to_none=True)
        value = 0.0
        if weight > 0.0:  # an empty part (weight 0.0): no forward pass (BatchNorm would see no rows)
            value = self.pretrainer.backward_step((inputs, labels), description, weight=weight)
        all_reduce_gradients(self.pretrainer)  # every rank, an empty part too: the global batch's gradient
        optimizer.step()
        self.position.consumed += 1  # counted where the batch is consumed
        self._log_loss("train_loss", value, len(inputs))

    def validation_step(self, batch: tuple[Any, ...], batch_idx: int) -> Tensor:
        inputs, labels, description, _ = _pretraining_batch(batch, "validation")
        logits = self.pretrainer(inputs, description).detach()
        value = loss(logits, labels, description)
        metrics = compute_metrics(logits, labels, description)
        self._log_loss("val_loss", value, len(inputs))
        self._log_scores("val", {name: torch.tensor([metrics[name]]) for name in SCORE_NAMES})
        return value


class FineTuningEvaluation(_Scores):
    """Episodic evaluation with a [`FineTuner`][FineTuner] (``Trainer.validate``
    / ``test``).

    Each rank evaluates its share of the episodes (episode datasets shard over ranks by
    themselves); the mean query loss is logged as ``val_loss`` / ``test_loss``, averaged over ranks,
    and the mean AUROC and accuracy over all ranks' episodes as ``val_auroc``, ``val_accuracy``
    (``test_...``), as in [`MetaLearningModule`][MetaLearningModule].
    """

    def __init__(self, tuner: FineTuner) -> None:
        super().__init__(("val", "test"))
        if not isinstance(tuner, FineTuner):
            raise TypeError(f"tuner must be a FineTuner, got {type(tuner).__name__}")
        self.tuner = tuner

    def _evaluate(self, batch: list[Task] | Task, split: str) -> Tensor:
        tasks = [batch] if isinstance(batch, Task) else list(batch)
        scores = episode_scores(self.tuner.predict, tasks)
        value = scores["loss"].mean()
        self.log(f"{split}_loss", float(value), batch_size=len(tasks), sync_dist=True)
        self._log_scores(split, scores)
        return value

    def validation_step(self, batch: list[Task] | Task, batch_idx: int) -> Tensor:
        return self._evaluate(batch, "val")

    def test_step(self, batch: list[Task] | Task, batch_idx: int) -> Tensor:
        return self._evaluate(batch, "test")
