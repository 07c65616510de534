"""Expand single-channel images to three channels (torchcross 0.0.6's ``Expand`` layer).

Examples:
    >>> import torch
    >>> Expand(-1, 3, -1, -1)(torch.zeros(2, 1, 4, 4)).shape
    torch.Size([2, 3, 4, 4])
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

__all__ = ["Expand", "with_rgb_input"]


class Expand(nn.Module):
    """``x.expand(*sizes)``: e.g. ``Expand(-1, 3, -1, -1)`` repeats one channel three times (no copy)."""

    def __init__(self, *sizes: int) -> None:
        super().__init__()
        self.sizes = sizes

    def forward(self, x: Tensor) -> Tensor:
        return x.expand(*self.sizes)


def with_rgb_input(backbone: nn.Module) -> nn.Sequential:
    """``backbone`` behind ``Expand(-1, 3, -1, -1)``: grey and RGB images both become 3-channel input."""
    return nn.Sequential(OrderedDict(input_module=Expand(-1, 3, -1, -1), backbone=backbone))
