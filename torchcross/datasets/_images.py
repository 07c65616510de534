"""Turn stacks of uint8 images into ``(N, C, H, W)`` tensors, in one batched operation.

Images on disk are uint8, channels last: ``(N, H, W)`` for one channel, ``(N, H, W, 3)``
for RGB. Readers gather the rows they need and call `images_to_tensor()`, which
applies the channel policy and converts to float (or keeps uint8) in a few vectorised
passes. [`normalize_batch()`][torchcross.datasets.medimeta.normalize_batch] does the uint8-to-float step
later, on a collated batch
and on the training device, for the fast ``output="uint8"`` path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.utils.data

from torchcross.data.workers.shm_pool import worker_empty

__all__ = ["ChannelPolicy", "images_to_tensor", "normalize_batch", "resolve_channels", "rgb_to_gray"]

ChannelPolicy = Literal["keep"] | int
"""``"keep"`` (as stored), ``1`` (grey; RGB is converted with ITU-R 601-2 luma) or ``3`` (RGB)."""

Stats = float | Sequence[float] | None


def resolve_channels(channels: ChannelPolicy, stored: int) -> int:
    """Return the number of output channels for policy ``channels`` and ``stored`` channels.

    Raises:
        ValueError: if ``channels`` is not ``"keep"``, 1 or 3.

    Examples:
        >>> resolve_channels("keep", 1), resolve_channels(3, 1)
        (1, 3)
    """
    if isinstance(channels, str) and channels == "keep":
        return stored
    if isinstance(channels, (int, np.integer)) and not isinstance(channels, bool) and int(channels) in (1, 3):
        return int(channels)
    raise ValueError(f"channels must be 'keep', 1 or 3, got {channels!r}")


def rgb_to_gray(images: np.ndarray) -> np.ndarray:
    """Convert uint8 RGB ``(..., 3)`` to grey ``(...)`` exactly as Pillow's ``convert("L")``.

    Examples:
        >>> rgb_to_gray(np.array([[255, 0, 0], [10, 20, 30]], dtype=np.uint8)).tolist()
        [76, 18]
    """
    x = images.astype(np.uint32)
    gray = x[..., 0] * 19595 + x[..., 1] * 38470 + x[..., 2] * 7471 + 0x8000
    return (gray >> 16).astype(np.uint8)


def _stats_tensor(value: Stats, channels: int, name: str) -> torch.Tensor | float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    vals = [float(v) for v in value]
    if len(vals) == 1:
        return vals[0]
    if len(vals) != channels:
        raise ValueError(f"{name} has {len(vals)} values but the images have {channels} channels: {vals}")
    return torch.tensor(vals, dtype=torch.float32).view(1, channels, 1, 1)


def _convert(src: torch.Tensor, out: torch.Tensor, mean: Stats, std: Stats) -> torch.Tensor:
    """``out = (src / 255 - mean) / std`` (ToTensor, then Normalize), computed in ``out``.

    ``src`` is uint8 in any layout; ``out`` a floating tensor of its shape. Without mean
    and std this is exactly ``src.to(out.dtype) / 255``; with them it is
    ``(src - 255 mean) / (255 std)``: one pass fewer than the two-step formula, two
    roundings instead of three, and the ends of the range exact for ``mean = std = 0.5``.
    It copies, then works in place on ``out``.
    """
    c = src.shape[-3]
    if (mean is None) != (std is None):
        raise ValueError(f"give both mean and std or neither, got mean={mean!r}, std={std!r}")
    m, s = _stats_tensor(mean, c, "mean"), _stats_tensor(std, c, "std")
    out.copy_(src)
    if m is None:
        return out.div_(255.0)
    m64, s64 = torch.as_tensor(m, dtype=torch.float64), torch.as_tensor(s, dtype=torch.float64)
    if bool((s64 == 0).any()):
        raise ValueError(f"std must be non-zero, got std={std!r}")
    shape = (*([1] * (src.dim() - 3)), c, 1, 1) if m64.dim() or s64.dim() else ()
    shift = (255.0 * m64).expand(shape).to(dtype=out.dtype, device=out.device)
    scale = (255.0 * s64).expand(shape).to(dtype=out.dtype, device=out.device)
    return out.sub_(shift).div_(scale)


def images_to_tensor(
    images: np.ndarray,
    channels: ChannelPolicy = "keep",
    output: Literal["float", "uint8"] = "float",
    mean: Stats = None,
    std: Stats = None,
) -> torch.Tensor:
    """Convert a writable uint8 stack ``(N, H, W)`` or ``(N, H, W, C)`` to ``(N, C', H, W)``.

    ``output="float"`` gives float32 in ``[0, 1]`` (then ``(x - mean) / std`` if given);
    ``output="uint8"`` keeps the raw values (normalise later with
    [`normalize_batch()`][torchcross.datasets.medimeta.normalize_batch]);
    RGB stored and wanted is then returned as a view of channels-last memory (no
    transpose on the CPU).

    Examples:
        >>> x = images_to_tensor(np.full((2, 4, 4), 255, np.uint8), channels=3)
        >>> x.shape, x.dtype, float(x.max())
        (torch.Size([2, 3, 4, 4]), torch.float32, 1.0)
    """
    if images.dtype != np.uint8:
        raise TypeError(f"images must be uint8, got {images.dtype}")
    if images.ndim not in (3, 4):
        raise ValueError(f"images must be (N, H, W) or (N, H, W, C), got shape {images.shape}")
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    stored = 1 if images.ndim == 3 else images.shape[-1]
    if stored != 1 and stored != 3:
        raise ValueError(f"images must have 1 or 3 channels (last axis), got shape {images.shape}")
    want = resolve_channels(channels, stored)
    if stored == 3 and want == 1:
        images = rgb_to_gray(images)
    t = torch.from_numpy(images)
    t = t.unsqueeze(1) if t.dim() == 3 else t.permute(0, 3, 1, 2)
    if t.shape[1] != want:
        t = t.expand(t.shape[0], want, *t.shape[2:])
    if output == "uint8":
        if mean is not None or std is not None:
            raise ValueError(
                "mean/std apply to output='float'; with output='uint8' pass them to normalize_batch"
            )
        if images.ndim == 4 and want == 3:
            # RGB stays channels-last in memory: a plain copy, no transpose (see normalize_batch)
            rows = worker_empty(images.shape, torch.uint8)
            rows.numpy()[...] = images
            return rows.permute(0, 3, 1, 2)
        out = worker_empty(tuple(t.shape), torch.uint8)
        return out.copy_(t)
    if output != "float":
        raise ValueError(f"output must be 'float' or 'uint8', got {output!r}")
    return _convert(t, worker_empty(tuple(t.shape), torch.float32), mean, std)


def normalize_batch(
    images: torch.Tensor,
    mean: Stats = None,
    std: Stats = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    non_blocking: bool = False,
) -> torch.Tensor:
    """Convert a collated uint8 batch ``(..., C, H, W)`` to ``dtype`` on ``device``, scaled like ToTensor.

    Moves the uint8 tensor first (4x less to transfer than float32), then converts and
    scales in one batched pass there: ``x / 255``, then ``(x - mean) / std`` if given.
    Float input is returned converted but not rescaled. The result is contiguous, also
    for channels-last input (what ``MedIMeta(..., output="uint8")`` returns for RGB).

    Examples:
        >>> x = torch.tensor([[[[0, 255]]]], dtype=torch.uint8)
        >>> normalize_batch(x, mean=0.5, std=0.5).tolist()
        [[[[-1.0, 1.0]]]]
    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.dim() < 3:
        raise ValueError(f"images must be (..., C, H, W), got shape {tuple(images.shape)}")
    x = images.to(device, non_blocking=non_blocking) if device is not None else images
    if x.dtype != torch.uint8:
        return x.to(dtype, memory_format=torch.contiguous_format)
    # contiguous output whatever the input layout (uint8 RGB from a reader is channels-last)
    return _convert(x, torch.empty(x.shape, dtype=dtype, device=x.device), mean, std)
