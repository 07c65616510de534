"""Running a module statelessly from parameter dicts, under a BatchNorm policy.

[`forward()`][torchcross.learners.maml.MAML.forward] calls a module with the parameters and buffers it is
given (``torch.func.functional_call``) and never writes to the module.
[`task_buffers()`][torchcross.learners.functional.task_buffers] picks the buffers for one task under a
BatchNorm policy: with ``batch_norm="batch"`` every forward normalises with the statistics of the batch it
sees, and the running statistics are hidden from the module, so they are neither read nor written; with
``batch_norm="frozen"`` the stored running statistics are used as constants and never updated. Running
statistics are therefore never shared between tasks by accident.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call

__all__ = ["BATCH_NORM_POLICIES", "BackboneInputError", "expected_input", "forward", "task_buffers"]


class BackboneInputError(ValueError, RuntimeError):
    """The backbone cannot run on the inputs it was given (their shape, channels, dtype or device).

    A ``ValueError`` (bad input) that is also the ``RuntimeError`` torch raised before, chained
    to it (``__cause__``). The learners add the task's name at their boundary.

    Attributes:
        task_identifier: the task whose inputs these were (``None`` until a learner names it).
    """

    def __init__(self, message: str, task_identifier: str | None = None) -> None:
        super().__init__(message)
        self.task_identifier = task_identifier


def expected_input(module: nn.Module) -> str:
    """What ``module``'s first layer with parameters takes, in words (``""`` if it cannot say).

    Examples:
        >>> expected_input(nn.Sequential(nn.Flatten(), nn.Linear(16, 8)))
        'its first layer, Linear(in_features=16, out_features=8, bias=True), takes inputs of shape (N, 16)'
    """
    first = next((m for m in module.modules() if next(m.parameters(recurse=False), None) is not None), None)
    shape = ""
    if isinstance(first, nn.modules.lazy.LazyModuleMixin):
        return ""
    if isinstance(first, nn.Linear):
        shape = f"(N, {first.in_features})"
    elif isinstance(first, nn.modules.conv._ConvNd):
        spatial = {1: "L", 2: "H, W", 3: "D, H, W"}.get(len(first.kernel_size), "...")
        shape = f"(N, {first.in_channels}, {spatial})"
    return f"its first layer, {first}, takes inputs of shape {shape}" if shape else ""


# what torch says when a module cannot take its input: shapes, channels, dtypes, devices
_INPUT_PROBLEM = re.compile(
    r"shape|size|channel|dimension|dtype|scalar type|device|expected|must match|should be the same", re.I
)


def _input_error(module: nn.Module, x: Any, exc: RuntimeError) -> BackboneInputError:
    what = f"of shape {tuple(x.shape)} ({x.dtype}, {x.device})" if isinstance(x, Tensor) else type(x).__name__
    cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    expected = expected_input(module)
    return BackboneInputError(
        f"the backbone cannot take inputs {what}: {cause}"
        + (f"; {expected}" if expected else "")
        + "; give the task inputs of the shape (and dtype, device) the backbone was built for, or a "
        "backbone built for these inputs"
    )


BATCH_NORM_POLICIES = ("batch", "frozen")
"""``"batch"``: normalise with the current batch's statistics, hide the running ones;
``"frozen"``: use the stored running statistics as constants."""

_NORM_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def task_buffers(module: nn.Module, batch_norm: Literal["batch", "frozen"] = "batch") -> dict[str, Any]:
    """The buffers to run ``module`` with for one task, under a BatchNorm policy.

    ``"batch"`` maps the running statistics of every normalisation layer
    (``BatchNorm*``, ``InstanceNorm*``) to ``None``: the layer then normalises with the
    statistics of the batch it sees, in train and eval mode alike, and cannot update
    them. ``"frozen"`` keeps them; run the module in eval mode (see
    [`forward()`][torchcross.learners.maml.MAML.forward]) so
    they are used, not updated. Every buffer returned is a detached copy, so layers that
    update buffers in place as they run (spectral norm's power iteration in train mode)
    change the copies, never the module.

    Examples:
        >>> net = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
        >>> sorted(task_buffers(net).items())
        [('1.num_batches_tracked', None), ('1.running_mean', None), ('1.running_var', None)]
    """
    if batch_norm not in BATCH_NORM_POLICIES:
        raise ValueError(f"batch_norm must be one of {BATCH_NORM_POLICIES}, got {batch_norm!r}")
    buffers: dict[str, Any] = {}
    for mod_name, mod in module.named_modules():
        is_norm = isinstance(mod, nn.modules.batchnorm._NormBase)
        for buf_name, buf in mod.named_buffers(recurse=False):
            key = f"{mod_name}.{buf_name}" if mod_name else buf_name
            if is_norm and batch_norm == "batch" and buf_name in _NORM_BUFFERS:
                buffers[key] = None
            else:
                buffers[key] = buf.detach().clone()
    return buffers


class _NormsInEvalMode:
    """Context: normalisation layers of ``module`` in eval mode (restored on exit)."""

    def __init__(self, module: nn.Module, active: bool) -> None:
        self._mods = (
            [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._NormBase) and m.training]
            if active
            else []
        )

    def __enter__(self) -> None:
        for m in self._mods:
            m.training = False

    def __exit__(self, *exc: object) -> None:
        for m in self._mods:
            m.training = True


def forward(
    module: nn.Module,
    params: Mapping[str, Tensor],
    buffers: Mapping[str, Any],
    x: Tensor,
    batch_norm: Literal["batch", "frozen"] = "batch",
) -> Tensor:
    """Run ``module`` on ``x`` with the given parameters and buffers (``functional_call``).

    With ``batch_norm="frozen"`` normalisation layers run in eval mode for the call.

    Raises:
        BackboneInputError: the module raised a ``RuntimeError`` on ``x`` (other than
            running out of memory): the message names the input's shape and what the
            module's first layer takes; the original error is the ``__cause__``.

    Examples:
        >>> import torch
        >>> lin = nn.Linear(2, 1)
        >>> p = {"weight": torch.ones(1, 2), "bias": torch.zeros(1)}
        >>> forward(lin, p, {}, torch.tensor([[1.0, 2.0]]))
        tensor([[3.]])
    """
    try:
        with _NormsInEvalMode(module, batch_norm == "frozen"):
            return functional_call(module, (dict(params), dict(buffers)), (x,), strict=False)
    except RuntimeError as exc:  # costs nothing until torch raises
        known = isinstance(exc, (BackboneInputError, torch.OutOfMemoryError))
        if known or not _INPUT_PROBLEM.search(str(exc)):
            raise
        raise _input_error(module, x, exc) from exc
