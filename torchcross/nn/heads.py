"""Per-task classification heads: a linear layer sized from the task's description.

A new head is made for every task: ``num_outputs(description)`` outputs (one per class
for multi-class, ordinal and multi-label tasks, one for binary tasks). Heads start at
zero by default, so every task starts from uniform probabilities (softmax) or 0.5
(sigmoid) and only the shared features carry over between tasks, as in the
MedIMeta paper's mm-MAML. ``init="kaiming"`` gives PyTorch's default ``nn.Linear``
initialisation (Kaiming-uniform weights with ``a=sqrt(5)``, bias uniform in
``±1/sqrt(num_features)``) drawn from an explicit generator.

[`init_head_params()`][init_head_params] returns a plain parameter dict for functional
learners (``torch.func.functional_call`` style), [`make_head()`][make_head] an
``nn.Linear`` with the same values, and [`head_forward()`][head_forward] applies a
parameter dict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from torchcross._checks import check_int
from torchcross.nn.kinds import num_outputs
from torchcross.tasks.task import TaskDescription

__all__ = ["HEAD_INITS", "head_forward", "init_head_params", "make_head"]

HEAD_INITS: tuple[str, ...] = ("zero", "kaiming")
"""The accepted values of ``init``."""


def _check_init(init: str) -> None:
    if init not in HEAD_INITS:
        raise ValueError(f"init must be one of {HEAD_INITS}, got {init!r}")


def _check_features(num_features: int) -> None:
    check_int(num_features, "num_features", 1, why=" (the feature width)")


def _width(description: TaskDescription | int) -> int:
    if isinstance(description, TaskDescription):
        return num_outputs(description)
    return check_int(description, "num_outputs", 1, why=" (the head's width)")


def init_head_params(
    num_features: int,
    description: TaskDescription | int,
    init: str = "zero",
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> dict[str, Tensor]:
    """Fresh head parameters for a task: ``{"weight": (out, num_features), "bias": (out,)}``.

    Args:
        num_features: width of the features the head reads.
        description: the task; its kind and classes give ``out = num_outputs(description)``.
            An ``int`` is the number of outputs itself (a head of fixed width).
        init: ``"zero"`` (default) or ``"kaiming"``.
        generator: the random source for ``"kaiming"`` (same generator state, same head).
            It must live on ``device``. Ignored for ``"zero"``.
        device: where the parameters live.
        dtype: their dtype (default: ``torch.get_default_dtype()``).

    Returns:
        Tensors that do not require gradients; call ``requires_grad_()`` on them if you
        differentiate with respect to the head.

    Raises:
        ValueError: an unknown ``init`` or a non-positive ``num_features``.

    Examples:
        >>> d = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b", 2: "c"})
        >>> p = init_head_params(4, d)
        >>> p["weight"].shape, p["bias"].abs().sum().item()
        (torch.Size([3, 4]), 0.0)
    """
    _check_init(init)
    _check_features(num_features)
    out = _width(description)
    weight = torch.zeros(out, num_features, device=device, dtype=dtype)
    bias = torch.zeros(out, device=device, dtype=dtype)
    if init == "kaiming":
        with torch.no_grad():
            torch.nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
            bound = 1.0 / math.sqrt(num_features)
            bias.uniform_(-bound, bound, generator=generator)
    return {"weight": weight, "bias": bias}


def make_head(
    num_features: int,
    description: TaskDescription | int,
    init: str = "zero",
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> torch.nn.Linear:
    """A new ``nn.Linear(num_features, num_outputs(description))`` initialised like
    [`init_head_params()`][init_head_params] (same arguments, same values for the same
    generator state).

    Examples:
        >>> make_head(8, 5).weight.shape  # a head of fixed width 5
        torch.Size([5, 8])
        >>> d = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"})
        >>> head = make_head(8, d)
        >>> head(torch.ones(2, 8))
        tensor([[0.], [0.]], grad_fn=<AddmmBackward0>)
    """
    params = init_head_params(
        num_features, description, init, generator=generator, device=device, dtype=dtype
    )
    out = params["weight"].shape[0]
    head = torch.nn.Linear(num_features, out, device="meta")
    head.weight = torch.nn.Parameter(params["weight"])
    head.bias = torch.nn.Parameter(params["bias"])
    return head


def head_forward(features: Tensor, params: Mapping[str, Tensor]) -> Tensor:
    """Logits ``(N, out)`` from features ``(N, num_features)`` and a head parameter dict.

    Raises:
        ValueError: if the features' width is not the head's ``num_features`` (the
            backbone returns features of another width than the learner was told).

    Examples:
        >>> d = TaskDescription("MULTILABEL_CLASSIFICATION", {0: "a", 1: "b"})
        >>> head_forward(torch.ones(3, 5), init_head_params(5, d)).shape
        torch.Size([3, 2])
        >>> head_forward(torch.ones(3, 4), init_head_params(5, d))
        Traceback (most recent call last):
        ...
        ValueError: the backbone returns features of shape (3, 4) (width 4), but the head reads ...
    """
    weight = params["weight"]
    if features.dim() < 1 or features.shape[-1] != weight.shape[-1]:
        raise ValueError(
            f"the backbone returns features of shape {tuple(features.shape)} (width "
            f"{features.shape[-1] if features.dim() else 'none'}), but the head reads {weight.shape[-1]} "
            "features: give the learner num_features equal to the backbone's output width (flatten "
            "the backbone's output to (N, width))"
        )
    return F.linear(features, weight, params.get("bias"))
