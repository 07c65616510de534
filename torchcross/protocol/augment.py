"""Training-time augmentation for the protocol (torchvision transforms v2), applied per image.

The paper's augmentation: horizontal and vertical flips (each with probability 0.25), a
rotation by up to 10 degrees (bilinear), and with probability 0.25 a random crop of
200 of 224 pixels resized back. `build_augmentation()` returns a function applied
to a batch on the training device, each image with its own random draw, from torch's
global RNG: the protocol's training runs under a seeded, checkpointed torch RNG, so
augmentation is reproducible and resumes exactly. Images are augmented after
normalisation, so rotated-in corners are filled with 0 (the normalised mean colour
with ``normalize = "imagenet"``) rather than black.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

__all__ = ["build_augmentation"]


def build_augmentation(config: Any, image_size: int) -> Callable[[Tensor], Tensor] | None:
    """The augmentation of ``[augmentation]`` for ``image_size`` inputs, or ``None`` if disabled.

    Args:
        config: an [`AugmentationConfig`][torchcross.protocol.config.AugmentationConfig].
        image_size: height and width of the (square) inputs.

    Raises:
        ImportError: torchvision is missing (naming ``torchcross[vision]``).

    Examples:
        >>> from torchcross.protocol.config import AugmentationConfig
        >>> augment = build_augmentation(AugmentationConfig(), 16)
        >>> _ = torch.manual_seed(0)
        >>> augment(torch.rand(4, 1, 16, 16)).shape
        torch.Size([4, 1, 16, 16])
        >>> build_augmentation(AugmentationConfig(enabled=False), 16) is None
        True
    """
    if not config.enabled:
        return None
    try:
        from torchvision.transforms import v2
    except ImportError as exc:
        raise ImportError(
            "[augmentation] needs torchvision: `pip install torchcross[vision]`, or set "
            "[augmentation] enabled = false"
        ) from exc
    crop = max(1, round(config.crop_fraction * image_size))
    steps: list[Any] = []
    if config.flip_p > 0:
        steps += [v2.RandomHorizontalFlip(config.flip_p), v2.RandomVerticalFlip(config.flip_p)]
    if config.rotation > 0:
        steps.append(v2.RandomRotation(config.rotation, interpolation=v2.InterpolationMode.BILINEAR))
    if config.crop_p > 0 and crop < image_size:
        resize = v2.Resize((image_size, image_size), antialias=True)
        steps.append(v2.RandomApply([v2.RandomCrop(crop), resize], p=config.crop_p))
    transform = v2.Compose(steps)

    def augment(x: Tensor) -> Tensor:
        if x.ndim != 4:
            raise ValueError(f"augmentation expects a batch (N, C, H, W), got shape {tuple(x.shape)}")
        return torch.stack([transform(img) for img in x]) if len(x) else x

    return augment
