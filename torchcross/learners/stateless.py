"""Running a module statelessly from parameter dicts, under a BatchNorm policy.

[`forward()`][torchcross.learners.maml.MAML.forward] calls a module with the parameters and buffers it is
given
(``torch.func.functional_call``) and never writes to the module.
[`task_buffers()`][torchcross.learners.functional.task_buffers]
picks the buffers for one task under a BatchNorm policy: with ``batch_norm="batch"``
every forward normalises with the statistics of the batch it sees, and the running
statistics are hidden from the module, so they are neither read nor written; with
``batch_norm="frozen"`` the stored running statistics are used as constants and never
updated. Running statistics are therefore never shared between tasks by accident.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from torch import Tensor, nn
from torch.func import functional_call

__all__ = ["BATCH_NORM_POLICIES", "forward", "task_buffers"]

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

    Examples:
        >>> import torch
        >>> lin = nn.Linear(2, 1)
        >>> p = {"weight": torch.ones(1, 2), "bias": torch.zeros(1)}
        >>> forward(lin, p, {}, torch.tensor([[1.0, 2.0]]))
        tensor([[3.]])
    """
    with _NormsInEvalMode(module, batch_norm == "frozen"):
        return functional_call(module, (dict(params), dict(buffers)), (x,), strict=False)
