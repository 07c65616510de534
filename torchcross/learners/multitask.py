"""Multi-task pre-training (mm-PT): a shared backbone with one head per task description.

Each update uses a batch of one source task and the loss of that task's kind, through
the task's own head (the MedIMeta paper's mm-PT baseline). The pre-trained backbone is
then evaluated with [`FineTuner`][torchcross.learners.finetuner.FineTuner].

BatchNorm policy: this is ordinary supervised training of one network, so the backbone
runs as a normal module: in train mode BatchNorm normalises with batch statistics and
updates its running statistics, which therefore summarise all source tasks on purpose
(a fine-tuner with ``batch_norm="frozen"`` then uses them).

Examples:
    >>> import torch
    >>> from torchcross.tasks.task import TaskDescription
    >>> from torchcross.learners.backbones import mlp
    >>> d1 = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"}, "t1")
    >>> d2 = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b", 2: "c"}, "t2")
    >>> backbone = mlp(4, (8,))
    >>> model = MultiTaskPretrainer(backbone, backbone.num_features, [d1, d2])
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> loss = model.training_step((torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])), d2, opt)
    >>> model(torch.randn(2, 4), d1).shape
    torch.Size([2, 1])
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import torch
from torch import Tensor, nn

from torchcross._checks import check_int
from torchcross.distributed.gradients import all_reduce_gradients, check_unwrapped
from torchcross.distributed.seeds import derived_seed
from torchcross.nn import loss, make_head
from torchcross.tasks.task import TaskDescription

__all__ = ["MultiTaskPretrainer"]


class MultiTaskPretrainer(nn.Module):
    """A shared backbone plus one linear head per task description.

    Args:
        backbone: maps inputs to features ``(N, num_backbone_features)``.
        num_backbone_features: feature width.
        descriptions: the source tasks (more can be added with
            [`add_task()`][MultiTaskPretrainer.add_task]).
        head_init: ``"kaiming"`` (default) or ``"zero"``.
        seed: kaiming heads: the ``k``-th head added is drawn from a generator seeded with
            ``(seed, k)``, so a resumed run adds the heads a fresh one would.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_backbone_features: int,
        descriptions: Iterable[TaskDescription] = (),
        *,
        head_init: Literal["zero", "kaiming"] = "kaiming",
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not isinstance(backbone, nn.Module):
            raise TypeError(f"backbone must be an nn.Module, got {type(backbone).__name__}")
        num_backbone_features = check_int(num_backbone_features, "num_backbone_features", 1)
        if head_init not in ("zero", "kaiming"):
            raise ValueError(f"head_init must be 'zero' or 'kaiming', got {head_init!r}")
        self.backbone, self.num_backbone_features, self.head_init = backbone, num_backbone_features, head_init
        self.heads = nn.ModuleDict()
        self._keys: dict[TaskDescription, str] = {}
        self.seed = check_int(seed, "seed", 0)
        for d in descriptions:
            self.add_task(d)

    @property
    def descriptions(self) -> list[TaskDescription]:
        """The task descriptions with a head, in the order added."""
        return list(self._keys)

    def add_task(self, description: TaskDescription) -> nn.Linear:
        """Add (and return) a head for ``description``; add its parameters to your optimiser.

        Raises:
            ValueError: the description already has a head.
        """
        if not isinstance(description, TaskDescription):
            raise TypeError(f"description must be a TaskDescription, got {type(description).__name__}")
        if description in self._keys:
            raise ValueError(f"task {description.task_identifier!r} already has a head")
        ref = next(self.backbone.parameters(), torch.zeros(()))
        head = make_head(
            self.num_backbone_features,
            description,
            self.head_init,
            generator=torch.Generator().manual_seed(derived_seed(self.seed, len(self._keys))),
            dtype=ref.dtype,
        )
        key = f"task_{len(self._keys)}"
        self.heads[key] = head.to(ref.device)
        self._keys[description] = key
        return self.heads[key]  # type: ignore[return-value]

    def head(self, description: TaskDescription) -> nn.Linear:
        """The head of ``description``.

        Raises:
            KeyError: no head for it (add it with
                [`add_task()`][MultiTaskPretrainer.add_task]).
        """
        try:
            return self.heads[self._keys[description]]  # type: ignore[return-value]
        except KeyError:
            raise KeyError(
                f"no head for task {description.task_identifier!r} ({description.task_target.name}); "
                "pass it in descriptions or call add_task(description) and add the head to the optimiser"
            ) from None

    def forward(self, x: Tensor, description: TaskDescription) -> Tensor:
        """Logits ``(N, num_outputs)`` of inputs ``x`` for task ``description``."""
        return self.head(description)(self.backbone(x))

    def loss(self, batch: tuple[Tensor, Tensor], description: TaskDescription) -> Tensor:
        """The loss of ``description``'s kind on a batch ``(inputs, canonical labels)``."""
        x, y = batch
        return loss(self(x, description), y, description)

    def backward_step(
        self, batch: tuple[Tensor, Tensor], description: TaskDescription, *, weight: float = 1.0
    ) -> float:
        """Add the gradient of ``weight *`` [`loss()`][MultiTaskPretrainer.loss] to ``.grad``
        (no zeroing, no sync, no step); return that weighted loss.

        For loops that accumulate or synchronise themselves;
        [`training_step()`][MultiTaskPretrainer.training_step] is
        ``zero_grad``, this, [`all_reduce_gradients()`][all_reduce_gradients]
        and ``step``. ``weight`` is, for example, a rank's share of an example-sharded global batch
        (``MultiTaskBatchSampler(shard_by="example")``); at ``1.0`` the loss is not multiplied at all.
        """
        check_unwrapped(self)
        value = self.loss(batch, description)
        if weight != 1.0:
            value = value * weight
        value.backward()
        return float(value.detach())

    def training_step(
        self,
        batch: tuple[Tensor, Tensor],
        description: TaskDescription,
        optimizer: torch.optim.Optimizer,
        *,
        sync: bool = True,
    ) -> float:
        """One update on one task's batch (zero grads, loss, backward, optimiser step); returns the loss.

        Under ``torch.distributed`` (several ranks, each with its own task's batch) the gradients
        and BatchNorm running statistics are averaged over ranks in one all-reduce before the
        step (``sync=False`` skips it): every rank then makes the update of one process that
        averaged the ranks' losses. Heads no rank used keep ``grad=None``.
        """
        optimizer.zero_grad(set_to_none=True)
        value = self.backward_step(batch, description)
        if sync:
            all_reduce_gradients(self)
        optimizer.step()
        return value
