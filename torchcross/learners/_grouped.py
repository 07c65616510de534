"""Many episodes' copies of one backbone run as one network of grouped convolutions.

Private helper of [`FineTuner.predict_many()`][torchcross.learners.finetuner.FineTuner.predict_many].
``E`` episodes, each with its own copy of the backbone's parameters (stacked along a first dimension),
run on their own inputs as one computation in which every episode is a group of channels: images
``(E, N, C, H, W)`` become ``(N, E*C, H, W)``, a convolution with stacked weights ``(E, C', C, k, k)`` is
one convolution with ``groups=E`` (each group sees only its own episode's channels), BatchNorm normalises
every (episode, channel) with its own statistics, and activations and pooling act on every channel alone
anyway. After ``Flatten`` the features are ``(E, N, F)`` and linear layers are batched matrix products.
On a CPU the grouped tensors are kept channels-last, where pooling and BatchNorm run over the ``E*C``
channels of a pixel at once: this is what makes the stacked run faster than the episode loop there
(docs/learners.md, "Many episodes fine-tuned at once").

`grouped_plan()` accepts a backbone built only of the layers listed in `GROUPED_LAYERS` (in
``nn.Sequential`` containers, or torchcross's own `Conv4` and `MLP`); for anything else it returns the
reason, and the learner runs the stacked episodes under ``torch.func.vmap`` instead. Every layer computes
what the module itself computes (train or eval mode, running statistics, momentum), per episode.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchcross.learners.backbones import MLP, Conv4

__all__ = [
    "GROUPED_CPU_BYTES",
    "GROUPED_LAYERS",
    "GroupedLayoutError",
    "GroupedPlan",
    "grouped_forward",
    "grouped_plan",
]

# layers that act on every channel (or every element) alone: run unchanged on the grouped tensor
_PER_CHANNEL = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardswish,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
)
_ELEMENTWISE = _PER_CHANNEL[:9]  # the activations: also fine on (E, N, F) features

GROUPED_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Sequential,
    nn.Conv2d,
    nn.BatchNorm2d,
    nn.BatchNorm1d,
    nn.Linear,
    nn.Flatten,
    nn.Identity,
    nn.Dropout,
    *_PER_CHANNEL,
)
"""The layers a backbone may be built of to run grouped: these classes themselves (subclasses may compute
something else), except the containers ``nn.Sequential`` (and torchcross's ``Conv4`` and ``MLP``), whose
subclasses run grouped as long as they keep the container's ``forward``; ``nn.Dropout`` only with
``p=0``, ``nn.Conv2d`` only with zero padding, ``nn.Flatten`` only from dimension 1, ``nn.BatchNorm1d``
only on ``(N, F)``."""


GROUPED_CPU_BYTES = 8 * 2**20
"""On a CPU, episodes run grouped in chunks whose first layer's output takes at most this many bytes, and
at least two episodes (ours, measured with ``benchmarks/protocol.py`` on Conv4-32, one thread: at 16 px,
5 episodes a chunk (8 MiB); larger chunks are slower again as their tensors outgrow the caches; at 32 and
84 px, two episodes a chunk were faster than one or four)."""


@dataclass(frozen=True)
class _Step:
    kind: str  # "conv", "bn", "flatten", "linear", "apply"
    name: str  # the module's qualified name in the backbone ("" for the backbone itself)
    module: nn.Module


@dataclass(frozen=True)
class GroupedPlan:
    """The backbone's layers in the order they run (what `grouped_forward()` executes)."""

    steps: tuple[_Step, ...]


def _prefix(name: str, child: str) -> str:
    return f"{name}.{child}" if name else child


def _steps(module: nn.Module, name: str) -> list[_Step]:
    """The steps of ``module``; a ``ValueError`` naming the first layer that cannot run grouped."""
    # containers by what their forward does: a subclass that overrides it may compute anything
    if type(module).forward is Conv4.forward:
        blocks = cast("Conv4", module).blocks
        return [*_steps(blocks, _prefix(name, "blocks")), _Step("flatten", name, nn.Flatten())]
    if type(module).forward is MLP.forward:
        layers = cast("MLP", module).layers
        return [_Step("flatten", name, nn.Flatten()), *_steps(layers, _prefix(name, "layers"))]
    if type(module).forward is nn.Sequential.forward:
        return [s for child, m in module.named_children() for s in _steps(m, _prefix(name, child))]
    if type(module) is nn.Conv2d and module.padding_mode == "zeros":
        return [_Step("conv", name, module)]
    if type(module) in (nn.BatchNorm2d, nn.BatchNorm1d):
        return [_Step("bn", name, module)]
    if type(module) is nn.Linear:
        return [_Step("linear", name, module)]
    if type(module) is nn.Flatten and module.start_dim == 1 and module.end_dim == -1:
        return [_Step("flatten", name, module)]
    if type(module) is nn.Identity or (type(module) is nn.Dropout and module.p == 0):
        return []
    if type(module) in _PER_CHANNEL:
        return [_Step("apply", name, module)]
    raise ValueError(f"{name or 'the backbone'} ({type(module).__name__}) is not one of GROUPED_LAYERS")


def grouped_plan(backbone: nn.Module) -> GroupedPlan | str:
    """The plan to run ``backbone`` grouped, or why it cannot be (a sentence).

    Examples:
        >>> from torchcross.learners.backbones import conv4
        >>> len(grouped_plan(conv4(1, hidden=4, image_size=16)).steps)
        17
        >>> grouped_plan(nn.Sequential(nn.Conv2d(1, 2, 3), nn.LayerNorm(2)))
        '1 (LayerNorm) is not one of GROUPED_LAYERS'
    """
    try:
        return GroupedPlan(tuple(_steps(backbone, "")))
    except ValueError as exc:
        return str(exc)


class GroupedLayoutError(RuntimeError):
    """A layer met a tensor of a layout it cannot run on (e.g. a convolution after ``Flatten``)."""


def _batch_norm(step: _Step, x: Tensor, params: Mapping[str, Tensor], buffers: Mapping[str, Any]) -> Tensor:
    """``module(x)`` of one BatchNorm layer for every episode, on ``x`` of shape ``(N, E*C, ...)``."""
    bn = cast("nn.modules.batchnorm._BatchNorm", step.module)
    mean = buffers.get(_prefix(step.name, "running_mean"))
    var = buffers.get(_prefix(step.name, "running_var"))
    tracked = buffers.get(_prefix(step.name, "num_batches_tracked"))
    factor = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.track_running_stats and tracked is not None:
        tracked.add_(1)  # every episode's count (all equal)
        factor = 1.0 / float(tracked.reshape(-1)[0]) if bn.momentum is None else bn.momentum
    use_batch = bn.training or (mean is None and var is None)
    keep = not bn.training or bn.track_running_stats
    weight, bias = params.get(_prefix(step.name, "weight")), params.get(_prefix(step.name, "bias"))
    return F.batch_norm(
        x,
        mean.view(-1) if keep and mean is not None else None,
        var.view(-1) if keep and var is not None else None,
        None if weight is None else weight.reshape(-1),
        None if bias is None else bias.reshape(-1),
        use_batch,
        factor,
        bn.eps,
    )


def grouped_forward(
    plan: GroupedPlan,
    params: Mapping[str, Tensor],
    buffers: Mapping[str, Any],
    x: Tensor,
    channels_last: bool,
) -> Tensor:
    """Features ``(E, N, F)`` of inputs ``x`` ``(E, N, ...)``, episode ``e`` through its own parameters.

    Args:
        plan: from `grouped_plan()`.
        params: the backbone's parameters by name, each stacked ``(E, ...)``.
        buffers: its buffers by name, stacked ``(E, ...)`` (running statistics are updated in place, as the
            modules update theirs), or ``None`` where a layer normalises with batch statistics only.
        x: ``(E, N, C, H, W)`` images or ``(E, N, F)`` features.
        channels_last: keep grouped images channels-last (the faster layout on a CPU).

    Raises:
        GroupedLayoutError: a layer met an input it cannot run on grouped (say, ``(N, C, L)`` into
            ``BatchNorm1d``); run the episodes under ``torch.func.vmap`` instead.
    """
    n_ep, n = x.shape[0], x.shape[1]
    grouped = x.dim() == 5  # (N, E*C, H, W) while True, (E, N, ...) once flat
    if grouped:
        x = x.transpose(0, 1).reshape(n, -1, *x.shape[3:])
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
    previous = ""
    for step in plan.steps:
        m = step.module
        if step.kind == "conv":
            if not grouped:
                raise GroupedLayoutError(f"{step.name}: a convolution after the features were flattened")
            conv = cast("nn.Conv2d", m)
            w = params[_prefix(step.name, "weight")]
            b = params.get(_prefix(step.name, "bias"))
            x = F.conv2d(
                x,
                w.reshape(-1, *w.shape[2:]),
                None if b is None else b.reshape(-1),
                conv.stride,
                conv.padding,  # F.conv2d takes "same"/"valid" too
                conv.dilation,
                conv.groups * n_ep,
            )
        elif step.kind == "bn":
            if grouped != isinstance(m, nn.BatchNorm2d) or (not grouped and x.dim() != 3):
                raise GroupedLayoutError(
                    f"{step.name}: {type(m).__name__} on features of shape {tuple(x.shape)}"
                )
            if grouped:
                x = _batch_norm(step, x, params, buffers)
            else:  # (E, N, F) -> (N, E*F): every (episode, feature) its own statistics
                flat = _batch_norm(step, x.transpose(0, 1).reshape(n, -1), params, buffers)
                x = flat.reshape(n, n_ep, -1).transpose(0, 1)
        elif step.kind == "flatten":
            if grouped:
                x = x.reshape(n, n_ep, -1).transpose(0, 1)
                grouped = False
            else:
                x = x.reshape(n_ep, n, -1)
        elif step.kind == "linear":
            if grouped or x.dim() != 3:
                raise GroupedLayoutError(f"{step.name}: a linear layer on inputs of shape {tuple(x.shape)}")
            w = params[_prefix(step.name, "weight")]
            b = params.get(_prefix(step.name, "bias"))
            x = (
                torch.bmm(x, w.transpose(1, 2))
                if b is None
                else torch.baddbmm(b[:, None], x, w.transpose(1, 2))
            )
        else:  # "apply": per channel, or element-wise
            if not grouped and not isinstance(m, _ELEMENTWISE):
                raise GroupedLayoutError(f"{step.name}: {type(m).__name__} after the features were flattened")
            # after a convolution or BatchNorm (neither keeps its output for the backward pass) ReLU may
            # overwrite its input: one large allocation fewer per block, the same values and gradients
            x = F.relu(x, inplace=True) if type(m) is nn.ReLU and previous in ("conv", "bn") else m(x)
        previous = step.kind
    if grouped:  # a backbone that ends without Flatten: (N, E*C, ...) -> (E, N, C, ...), as each returns
        x = x.reshape(n, n_ep, -1, *x.shape[2:]).transpose(0, 1)
    return x
