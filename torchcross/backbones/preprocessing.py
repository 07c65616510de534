"""What a backbone expects its images to look like: size, resize rule, interpolation, mean and std.

A [`Preprocessing`][Preprocessing] is read from the model's own configuration by the loaders of
[`load_backbone()`][torchcross.backbones.load.load_backbone] (timm's pretrained config, the Hugging Face
image processor, OpenCLIP's ``preprocess_cfg``, torchvision's weights). It is a frozen value: its
[`to_dict()`][Preprocessing.to_dict] is plain JSON and keys the embedding cache, and
[`apply()`][Preprocessing.apply] turns a batch of images into the backbone's input.

Examples:
    >>> import torch
    >>> p = Preprocessing(input_size=(4, 4), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    >>> x = p.apply(torch.full((2, 1, 8, 8), 255, dtype=torch.uint8))  # grey uint8 -> RGB, resized
    >>> x.shape, x.max().item()
    (torch.Size([2, 3, 4, 4]), 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["INTERPOLATIONS", "RESIZE_MODES", "Preprocessing"]

INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
RESIZE_MODES = ("squash", "shortest")


def _floats(value: Sequence[float], name: str, channels: int) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in value)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of numbers, got {value!r}") from None
    if len(out) != channels or not all(math.isfinite(v) for v in out):
        raise ValueError(f"{name} must hold {channels} finite numbers (one per channel), got {value!r}")
    return out


@dataclass(frozen=True)
class Preprocessing:
    """How to turn images into a backbone's input: resize, centre-crop, scale to [0, 1], normalise.

    Args:
        input_size: ``(H, W)`` the backbone takes.
        mean: per-channel mean subtracted after scaling to ``[0, 1]``.
        std: per-channel standard deviation divided by.
        interpolation: ``"bilinear"``, ``"bicubic"`` or ``"nearest"``.
        channels: channels the backbone takes; grey images are repeated to fill them.
        resize_mode: ``"squash"`` resizes both sides to ``input_size / crop_pct``, ``"shortest"``
            resizes the shorter side to ``min(input_size) / crop_pct`` keeping the aspect ratio; both
            then crop the centre ``input_size``.
        crop_pct: the fraction of the resized image that the centre crop keeps (1.0: no crop).

    Examples:
        >>> p = Preprocessing(
        ...     (224, 224), (0.5,) * 3, (0.5,) * 3, "bicubic", resize_mode="shortest", crop_pct=0.875
        ... )
        >>> p.resize_size((300, 400)), p.to_dict()["crop_pct"]
        ((256, 341), 0.875)
    """

    input_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: Literal["nearest", "bilinear", "bicubic"] = "bilinear"
    channels: int = 3
    resize_mode: Literal["squash", "shortest"] = "squash"
    crop_pct: float = 1.0

    def __post_init__(self) -> None:
        size = tuple(self.input_size)
        if len(size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size):
            raise ValueError(f"input_size must be (H, W) of positive ints, got {self.input_size!r}")
        if not isinstance(self.channels, int) or isinstance(self.channels, bool) or self.channels < 1:
            raise ValueError(f"channels must be a positive int, got {self.channels!r}")
        mean = _floats(self.mean, "mean", self.channels)
        std = _floats(self.std, "std", self.channels)
        if not all(s > 0 for s in std):
            raise ValueError(f"std must be > 0 for every channel, got {self.std!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {self.interpolation!r}")
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, got {self.resize_mode!r}")
        if not (isinstance(self.crop_pct, (int, float)) and 0 < self.crop_pct <= 1):
            raise ValueError(f"crop_pct must be in (0, 1], got {self.crop_pct!r}")
        object.__setattr__(self, "input_size", (int(size[0]), int(size[1])))
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        object.__setattr__(self, "crop_pct", float(self.crop_pct))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (lists, numbers, strings), stable across runs: a cache key.

        Examples:
            >>> Preprocessing((2, 2), (0.0,), (1.0,), channels=1).to_dict()["input_size"]
            [2, 2]
        """
        out = asdict(self)
        for key in ("input_size", "mean", "std"):
            out[key] = list(out[key])
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preprocessing:
        """The inverse of [`to_dict()`][Preprocessing.to_dict].

        Examples:
            >>> p = Preprocessing((2, 2), (0.0,), (1.0,), channels=1)
            >>> Preprocessing.from_dict(p.to_dict()) == p
            True
        """
        fields = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - fields)
        if unknown:
            raise ValueError(f"unknown preprocessing keys {unknown}; known keys: {sorted(fields)}")
        values = dict(data)
        for key in ("input_size", "mean", "std"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)

    def resize_size(self, image_size: tuple[int, int]) -> tuple[int, int]:
        """``(H, W)`` an image of ``image_size`` is resized to before the centre crop."""
        h, w = self.input_size
        if self.resize_mode == "squash":
            return (math.floor(h / self.crop_pct), math.floor(w / self.crop_pct))
        short = math.floor(min(h, w) / self.crop_pct)
        ih, iw = image_size
        if ih <= iw:
            return (short, max(short, int(short * iw / ih)))
        return (max(short, int(short * ih / iw)), short)

    def apply(self, images: Tensor) -> Tensor:
        """Resize, centre-crop and normalise a batch ``(N, C, H, W)`` (or one image ``(C, H, W)``).

        ``uint8`` images are scaled from ``[0, 255]`` to ``[0, 1]``; floating-point images are taken
        to be in ``[0, 1]`` already. Grey images (``C == 1``) are repeated to ``channels``.

        Returns:
            float32 ``(N, channels, *input_size)`` (or ``(channels, *input_size)``).

        Raises:
            ValueError: a shape that is not an image batch, or a channel count that is neither 1 nor
                ``channels``.
        """
        if not isinstance(images, Tensor):
            raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
        single = images.dim() == 3
        x = images.unsqueeze(0) if single else images
        if x.dim() != 4:
            raise ValueError(f"images must be (N, C, H, W) or (C, H, W), got shape {tuple(images.shape)}")
        if x.shape[1] not in (1, self.channels):
            raise ValueError(
                f"images have {x.shape[1]} channels, the backbone takes {self.channels} (grey images with 1 "
                "channel are repeated); convert them first"
            )
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        if x.shape[1] != self.channels:
            x = x.expand(-1, self.channels, -1, -1)
        size = self.resize_size((x.shape[-2], x.shape[-1]))
        if size != tuple(x.shape[-2:]):
            mode = self.interpolation
            kwargs: dict[str, Any] = {} if mode == "nearest" else {"align_corners": False, "antialias": True}
            x = F.interpolate(x, size=size, mode=mode, **kwargs)
            if mode == "bicubic":
                x = x.clamp(0.0, 1.0)
        x = _center_crop(x, self.input_size)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        x = (x - mean) / std
        return x[0] if single else x

    def to_torchvision(self) -> Any:
        """The same preprocessing as a torchvision ``transforms.v2.Compose``, for PIL images in a dataset.

        To a float image in ``[0, 1]``, resize (``resize_mode``, ``interpolation``, antialiased,
        clamped to ``[0, 1]``), centre crop, grey to RGB, normalise: what [`apply()`][Preprocessing.apply]
        does. Needs torchvision (``pip install
        "torchcross[vision]"``).

        Examples:
            >>> p = Preprocessing((4, 4), (0.5,) * 3, (0.5,) * 3)
            >>> p.to_torchvision()(torch.zeros(3, 8, 8, dtype=torch.uint8)).shape
            torch.Size([3, 4, 4])
        """
        try:
            from torchvision.transforms import v2
        except ImportError as exc:
            raise ImportError(
                "Preprocessing.to_torchvision() needs torchvision; install it with "
                '`pip install "torchcross[vision]"`'
            ) from exc
        mode = v2.InterpolationMode(self.interpolation)
        h, w = self.input_size
        if self.resize_mode == "squash":
            resize = v2.Resize(self.resize_size((h, w)), interpolation=mode, antialias=True)
        else:
            resize = v2.Resize(math.floor(min(h, w) / self.crop_pct), interpolation=mode, antialias=True)
        steps = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), resize, _clamp01]
        steps += [v2.CenterCrop(self.input_size), *([v2.RGB()] if self.channels == 3 else [])]
        steps.append(v2.Normalize(list(self.mean), list(self.std)))
        return v2.Compose(steps)

    def __call__(self, images: Tensor) -> Tensor:
        """[`apply()`][Preprocessing.apply], so that the value serves as a transform."""
        return self.apply(images)


def _clamp01(x: Any) -> Any:
    """Clamp to ``[0, 1]`` (bicubic resizing overshoots), as resizing 8-bit images does."""
    return x.clamp(0.0, 1.0)


def _center_crop(x: Tensor, size: tuple[int, int]) -> Tensor:
    h, w = x.shape[-2:]
    th, tw = size
    if (h, w) == (th, tw):
        return x
    if h < th or w < tw:  # resize_size never makes a side smaller than the crop
        raise ValueError(f"cannot crop {(th, tw)} from an image of size {(h, w)}")
    top, left = round((h - th) / 2.0), round((w - tw) / 2.0)  # as torchvision's center_crop
    return x[..., top : top + th, left : left + tw]
