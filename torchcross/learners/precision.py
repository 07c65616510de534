"""Mixed precision and memory layout for training and fine-tuning, shared by the learners and the protocol.

``precision="bf16"`` runs the forward passes under ``torch.autocast`` to bfloat16 on the device: matrix
products and convolutions in bf16, while the parameters, their gradients, the optimisers' states and the
losses stay float32 (autocast computes cross-entropy and the other losses in float32). ``"fp32"`` (the
default) is plain float32, the reference the tests compare against. `mixed_precision()` is the context
manager; wrap a training loop or an [`evaluate()`][torchcross.evaluation.episodic.evaluate] call in it (the
protocol's ``[run] precision`` wraps each method's training and evaluation). `to_channels_last()` puts a
model's convolution weights in channels-last memory format; a convolution with channels-last weights
returns channels-last activations, so every later layer runs channels-last whatever the inputs' layout
(``[run] channels_last``). Both change results only within rounding: bf16 by about its 8-bit mantissa
(relative error around 1e-2 per operation), channels-last by float32 summation order.

Examples:
    >>> import torch
    >>> layer = torch.nn.Linear(4, 2)
    >>> with mixed_precision("bf16", "cpu"):
    ...     out = layer(torch.ones(1, 4))
    >>> out.dtype, layer.weight.dtype
    (torch.bfloat16, torch.float32)
    >>> with mixed_precision("fp32", "cpu"):
    ...     layer(torch.ones(1, 4)).dtype
    torch.float32
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

import torch
from torch import nn

__all__ = ["PRECISIONS", "Precision", "check_precision", "mixed_precision", "to_channels_last"]

Precision = Literal["fp32", "bf16"]
"""The precisions of the forward passes: ``"fp32"`` (float32) or ``"bf16"`` (autocast to bfloat16)."""

PRECISIONS: tuple[str, ...] = ("fp32", "bf16")
"""Every [`Precision`][Precision]."""

_BF16_DEVICE_TYPES = ("cpu", "cuda")  # where torchcross runs bf16 autocast (and tests it)

M = TypeVar("M", bound=nn.Module)


def check_precision(precision: Any, device: torch.device | str = "cpu") -> None:
    """Refuse a precision that is unknown, or that ``device`` cannot run.

    bf16 runs on the CPU and on CUDA GPUs with native bf16 (Ampere and newer:
    ``torch.cuda.is_bf16_supported(including_emulation=False)``; older GPUs only emulate it, slowly);
    other device types (``mps``) are refused.

    Raises:
        ValueError: an unknown ``precision``, or ``"bf16"`` on a device without bfloat16 support (the
            message names the device and the fix).

    Examples:
        >>> check_precision("bf16", "cpu")
        >>> check_precision("fp16", "cpu")
        Traceback (most recent call last):
        ...
        ValueError: precision = 'fp16' is not one of 'fp32', 'bf16'
    """
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(f"precision = {precision!r} is not one of {', '.join(map(repr, PRECISIONS))}")
    if precision == "fp32":
        return
    device = torch.device(device)
    fix = "use precision 'fp32' (the default)"
    if device.type not in _BF16_DEVICE_TYPES:
        raise ValueError(
            f"precision 'bf16' on device {str(device)!r}: bf16 autocast runs on 'cpu' and 'cuda' "
            f"devices only; {fix}, or a CPU or CUDA device"
        )
    if device.type == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False):
        index = device.index if device.index is not None else torch.cuda.current_device()
        raise ValueError(
            f"precision 'bf16' on device {str(device)!r} ({torch.cuda.get_device_name(index)}): this GPU has "
            f"no native bfloat16 (torch.cuda.is_bf16_supported(including_emulation=False) is False); "
            f"{fix}, or a GPU with bf16 (NVIDIA Ampere or newer)"
        )


def mixed_precision(precision: Precision | str = "fp32", device: torch.device | str = "cpu") -> Any:
    """A context manager running the forward passes inside it at ``precision`` on ``device``.

    ``"bf16"``: ``torch.autocast(device.type, dtype=torch.bfloat16)``; ``"fp32"``: nothing changes.
    Parameters, gradients, optimiser states and losses stay float32 either way. A whole training loop
    may run inside it, optimiser steps included (as the protocol's does): autocast's cache of the
    weights' bf16 copies is off, so every forward pass casts the current weights (a cached copy would
    stay that of the first step); backward passes use the dtypes of their forward passes.

    Raises:
        ValueError: as [`check_precision()`][check_precision].

    Examples:
        >>> import torch
        >>> conv = torch.nn.Conv2d(1, 2, 3)
        >>> with mixed_precision("bf16"):
        ...     loss = conv(torch.ones(1, 1, 4, 4)).square().mean()
        >>> loss.backward()
        >>> conv.weight.grad.dtype
        torch.float32
    """
    device = torch.device(device)
    check_precision(precision, device)
    # no cast cache: it would keep the bf16 copies of the weights of the first step for the whole context
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16", cache_enabled=False)


def to_channels_last(module: M) -> M:
    """``module`` with its 4-d parameters and buffers (convolution weights) in channels-last memory format.

    In place, as ``module.to(memory_format=torch.channels_last)``; copies (``copy.deepcopy``, the
    fine-tuners' per-episode backbones) keep the layout, and so does ``load_state_dict``.

    Examples:
        >>> import torch
        >>> conv = to_channels_last(torch.nn.Conv2d(3, 8, 3))
        >>> conv.weight.is_contiguous(memory_format=torch.channels_last)
        True
        >>> conv(torch.ones(1, 3, 8, 8)).is_contiguous(memory_format=torch.channels_last)
        True
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"to_channels_last takes an nn.Module, got {type(module).__name__}")
    return module.to(memory_format=torch.channels_last)
