"""Which head a learner puts on its backbone: a fresh one per task, one learned head, or none.

The learners that make heads ([`MAML`][torchcross.learners.maml.MAML] and
[`FineTuner`][torchcross.learners.finetuner.FineTuner]) take ``head=``:

* ``"per_task"`` (default): every task gets a new linear head sized from its description
  ([`torchcross.nn.num_outputs()`][torchcross.nn.kinds.num_outputs]), initialised by ``head_init``; tasks of
  any kind and class count mix in one meta-batch (the MedIMeta paper's mm-MAML), and only the backbone is
  meta-learned.
* ``"learned"`` (with ``num_outputs=N``), or an ``nn.Linear(num_features, N)`` of your own:
  one head of fixed width ``N`` whose weights are parameters of the learner (in
  ``parameters()`` and ``state_dict`` under ``"head."``). It is every task's starting head:
  adapted in the inner loop, and meta-learned by the outer loop, as in classic MAML
  (Finn et al. 2017). Every task must have ``N`` outputs.
* ``None``: no head; the backbone's output, of width ``num_backbone_features``, is the
  logits, so every task must have that many outputs.

A task's width is ``num_outputs(description)``: the class count for multi-class and ordinal
tasks, the label count for multi-label tasks, 1 for binary tasks.

Examples:
    >>> import torch
    >>> mode, head = resolve_head("learned", 8, num_outputs=5, head_init="zero", seed=0, like=torch.zeros(()))
    >>> mode, head.weight.shape
    ('learned', torch.Size([5, 8]))
    >>> from torchcross.tasks.task import TaskDescription
    >>> check_head_width(TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"}, "screen"), mode, 5)
    Traceback (most recent call last):
    ...
    ValueError: task 'screen' (BINARY_CLASSIFICATION, 2 classes) needs 1 output (num_outputs of its ...
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from torchcross._checks import check_int
from torchcross.distributed.seeds import derived_seed
from torchcross.nn import init_head_params, make_head
from torchcross.nn import num_outputs as task_num_outputs
from torchcross.tasks.task import TaskDescription

__all__ = [
    "HEAD_CHOICES",
    "HEAD_INIT_CHOICES",
    "HeadMode",
    "check_head_width",
    "per_task_head",
    "resolve_head",
]

HeadMode = Literal["per_task", "learned", "none"]
HEAD_CHOICES = ("per_task", "learned")
"""The strings ``head=`` accepts (besides an ``nn.Linear`` and ``None``)."""
HEAD_INIT_CHOICES = ("zero", "kaiming")
"""The accepted values of ``head_init``."""


def _check_init(head_init: str | None) -> str:
    if head_init is None:
        return "zero"
    if head_init not in HEAD_INIT_CHOICES:
        raise ValueError(f"head_init must be 'zero' or 'kaiming', got {head_init!r}")
    return head_init


def resolve_head(
    head: object,
    num_features: int,
    *,
    num_outputs: int | None,
    head_init: str | None,
    seed: int,
    like: Tensor,
) -> tuple[HeadMode, nn.Linear | None]:
    """Check a learner's ``head=`` arguments; return the mode and the learned head module (if any).

    Args:
        head: ``"per_task"``, ``"learned"``, an ``nn.Linear`` or ``None`` (see the module doc).
        num_features: the backbone's output width.
        num_outputs: the width of a ``"learned"`` head (only with ``head="learned"``).
        head_init: ``"zero"`` or ``"kaiming"`` (``None``: ``"zero"``), for the heads the
            learner makes (``"per_task"``, ``"learned"``); a given module keeps its weights.
        seed: seed of the ``"kaiming"`` draw of a ``"learned"`` head (drawn on the CPU, so
            every device gets the same head).
        like: a tensor whose dtype and device the ``"learned"`` head takes.

    Raises:
        TypeError: ``head`` is a module other than ``nn.Linear``, or not a module, string or None.
        ValueError: a bad combination, naming the arguments and the fix.
    """
    if (head is None or isinstance(head, nn.Module)) and head_init is not None:
        raise ValueError(
            f"head_init={head_init!r} initialises the heads the learner makes (head='per_task' or "
            f"'learned'); with head={_describe(head)} there is none to initialise: leave head_init out"
        )
    if num_outputs is not None and head != "learned":
        raise ValueError(
            f"num_outputs={num_outputs!r} sizes the head of head='learned', got head={_describe(head)}; "
            "leave num_outputs out (a given nn.Linear has its own width, head=None uses the backbone's)"
        )
    if head is None:
        return "none", None
    if isinstance(head, nn.Module):
        return "learned", _check_module(head, num_features)
    if not isinstance(head, str) or head not in HEAD_CHOICES:
        if not isinstance(head, str):
            raise TypeError(
                f"head must be 'per_task', 'learned', an nn.Linear or None, got {type(head).__name__}"
            )
        raise ValueError(f"head must be 'per_task', 'learned', an nn.Linear or None, got {head!r}")
    init = _check_init(head_init)
    if head == "per_task":
        return "per_task", None
    if num_outputs is None:
        raise ValueError(
            "head='learned' needs num_outputs= (the width of the learned head: the number of classes "
            "of every task, e.g. the N of N-way tasks; 1 for binary tasks)"
        )
    width = check_int(num_outputs, "num_outputs", 1, why=" (the learned head's width)")
    gen = torch.Generator().manual_seed(seed)
    module = make_head(num_features, width, init, generator=gen, device="cpu", dtype=like.dtype)
    return "learned", module.to(like.device)


def _describe(head: object) -> str:
    return repr(head) if head is None or isinstance(head, str) else type(head).__name__


def _check_module(head: nn.Module, num_features: int) -> nn.Linear:
    if not isinstance(head, nn.Linear):
        raise TypeError(
            f"head must be an nn.Linear (a learned linear head), got {type(head).__name__}; put other "
            "layers at the end of the backbone and pass head=None if the backbone outputs the logits"
        )
    if head.bias is None:
        raise ValueError("the head nn.Linear has no bias; learned heads need one: nn.Linear(..., bias=True)")
    if head.in_features != num_features:
        raise ValueError(
            f"the head nn.Linear reads {head.in_features} features, but num_backbone_features is "
            f"{num_features}; make it nn.Linear({num_features}, num_outputs)"
        )
    return head


def check_head_width(description: TaskDescription, mode: HeadMode, width: int) -> None:
    """Raise unless a task has exactly ``width`` outputs (a ``"learned"`` head or the backbone's, ``"none"``).

    Raises:
        ValueError: naming the task, its width and the head's.
    """
    need = task_num_outputs(description)
    if mode == "per_task" or need == width:
        return
    has = (
        f"the learned head has {width} output{'s' * (width != 1)} (num_outputs={width})"
        if mode == "learned"
        else f"head=None and the backbone outputs {width} logit{'s' * (width != 1)} (num_backbone_features)"
    )
    raise ValueError(
        f"task {description.task_identifier!r} ({description.task_target.name}, "
        f"{description.num_classes} classes) needs {need} output{'s' * (need != 1)} (num_outputs of its "
        f"description), but {has}; a fixed head needs tasks of one width (use fixed-way episodes, "
        "or head='per_task' for tasks of mixed widths)"
    )


def per_task_head(
    num_features: int,
    description: TaskDescription,
    init: str,
    *,
    key: tuple[int, int, int],
    like: Tensor,
) -> dict[str, Tensor]:
    """A new per-task head ``{"weight", "bias"}`` on ``like``'s device and dtype (MAML's and FineTuner's).

    A ``"kaiming"`` head is a pure function of ``key = (seed, step, slot)``: it is drawn from a generator on
    ``like``'s device seeded with
    [`derived_seed(seed, step, slot)`][derived_seed], so one key gives one head
    whatever was drawn before (the same on every run; a CUDA generator draws other values than a CPU one).
    A ``"zero"`` head ignores ``key``. [`MAML`][torchcross.learners.maml.MAML] keys its heads by
    ``(seed, head_step, slot)`` (training calls, position in the meta-batch),
    [`FineTuner`][torchcross.learners.finetuner.FineTuner] by ``(seed, head_step, -1)`` (episodes).

    Args:
        num_features: the width of the features the head reads.
        description: the task; it gives the head's width.
        init: ``"zero"`` or ``"kaiming"``.
        key: ``(seed, step, slot)``, integers (negative ones allowed).
        like: a tensor on the device and of the dtype of the head.

    Raises:
        ValueError: an unknown ``init``.

    Examples:
        >>> d = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b", 2: "c"})
        >>> a = per_task_head(4, d, "kaiming", key=(0, 5, -1), like=torch.zeros(()))
        >>> b = per_task_head(4, d, "kaiming", key=(0, 5, -1), like=torch.zeros(()))
        >>> torch.equal(a["weight"], b["weight"]), a["weight"].shape
        (True, torch.Size([3, 4]))
    """
    generator = None
    if init == "kaiming":
        generator = torch.Generator(device=like.device).manual_seed(derived_seed(*key))
    return init_head_params(
        num_features, description, init, generator=generator, device=like.device, dtype=like.dtype
    )
