"""Small backbones for tests, benchmarks and the demo: a Conv4 and an MLP.

Both map inputs to a flat feature vector and say how wide it is in
``num_features``, which is what the learners need to size a task's head.

Examples:
    >>> import torch
    >>> net = conv4(1, hidden=8, image_size=28)
    >>> net.num_features, net(torch.zeros(2, 1, 28, 28)).shape
    (8, torch.Size([2, 8]))
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from torchcross._checks import check_int

__all__ = ["MLP", "Conv4", "conv4", "mlp"]


class Conv4(nn.Module):
    """The Conv4 of the few-shot literature: 4 x [conv3x3 -> BatchNorm -> ReLU -> MaxPool2], flattened.

    Args:
        in_channels: input channels (1 for grey images, 3 for RGB).
        hidden: filters per convolution.
        batch_norm: put a ``BatchNorm2d`` after every convolution.
        image_size: input height and width, used to compute ``num_features``
            (``hidden * (image_size // 16) ** 2``).

    Attributes:
        num_features: width of the output feature vector for ``image_size`` inputs.

    Examples:
        >>> net = Conv4(3, hidden=4, image_size=84)
        >>> net.num_features
        100
    """

    def __init__(
        self, in_channels: int, hidden: int = 64, batch_norm: bool = True, image_size: int = 28
    ) -> None:
        super().__init__()
        check_int(in_channels, "in_channels", 1)
        check_int(hidden, "hidden", 1)
        check_int(image_size, "image_size", 1)
        if image_size < 16:
            raise ValueError(f"image_size must be at least 16 (four 2x poolings), got {image_size}")
        blocks: list[nn.Module] = []
        channels = in_channels
        for _ in range(4):
            layers: list[nn.Module] = [nn.Conv2d(channels, hidden, 3, padding=1)]
            if batch_norm:
                layers.append(nn.BatchNorm2d(hidden))
            layers += [nn.ReLU(), nn.MaxPool2d(2)]
            blocks.append(nn.Sequential(*layers))
            channels = hidden
        self.blocks = nn.Sequential(*blocks)
        self.num_features = hidden * (image_size // 16) ** 2

    def forward(self, x: Tensor) -> Tensor:
        """Features ``(N, num_features)`` of images ``(N, in_channels, image_size, image_size)``."""
        return torch.flatten(self.blocks(x), 1)


class MLP(nn.Module):
    """A multi-layer perceptron: ``[Linear -> (BatchNorm1d) -> ReLU]`` per hidden width.

    Args:
        in_features: input width (inputs of any shape ``(N, ...)`` are flattened).
        hidden: widths of the hidden layers; the last one is ``num_features``.
        batch_norm: put a ``BatchNorm1d`` after every linear layer.

    Examples:
        >>> MLP(10, (16, 8))(torch.zeros(3, 10)).shape
        torch.Size([3, 8])
    """

    def __init__(self, in_features: int, hidden: Sequence[int] = (64,), batch_norm: bool = False) -> None:
        super().__init__()
        check_int(in_features, "in_features", 1)
        hidden = tuple(hidden)
        if not hidden:
            raise ValueError("hidden must name at least one layer width, e.g. hidden=(64,)")
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            check_int(h, "hidden width", 1)
            layers.append(nn.Linear(width, h))
            if batch_norm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(nn.ReLU())
            width = h
        self.layers = nn.Sequential(*layers)
        self.num_features = width

    def forward(self, x: Tensor) -> Tensor:
        """Features ``(N, num_features)`` of inputs ``(N, ...)``."""
        return self.layers(torch.flatten(x, 1))


def conv4(in_channels: int, hidden: int = 64, batch_norm: bool = True, image_size: int = 28) -> Conv4:
    """Build a [`Conv4`][Conv4] (see there).

    Examples:
        >>> conv4(1, hidden=16, batch_norm=False).num_features
        16
    """
    return Conv4(in_channels, hidden, batch_norm, image_size)


def mlp(in_features: int, hidden: Sequence[int] = (64,), batch_norm: bool = False) -> MLP:
    """Build an [`MLP`][MLP] (see there).

    Examples:
        >>> mlp(4, (3,)).num_features
        3
    """
    return MLP(in_features, hidden, batch_norm)
