"""torchvision ResNets as backbones, so that the paper's backbones load like the foundation models.

The classifier (``fc``) becomes the identity. ``weights`` is ``"random"``, a local ``state_dict`` file
(``fc`` keys ignored), or ``None``: torchvision's ``IMAGENET1K_V1`` weights if they are in torch's hub
cache already (``download=True`` lets torchvision fetch them). The preprocessing is that of the
``IMAGENET1K_V1`` weights' transforms (resize 256, centre crop 224, their mean and std), what the weights
were trained with, for every ``weights`` value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchcross.backbones.backbone import Backbone, BackboneIdentity
from torchcross.backbones.preprocessing import Preprocessing
from torchcross.backbones.weights import digest_files, read_state_dict, require, weights_mismatch

__all__ = ["RESNETS", "load_torchvision"]

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")


def _preprocessing(weights: Any) -> Preprocessing:
    t = weights.transforms()
    crop, resize = int(t.crop_size[0]), int(t.resize_size[0])
    return Preprocessing(
        input_size=(crop, crop),
        mean=tuple(t.mean),
        std=tuple(t.std),
        interpolation=str(t.interpolation.value),  # type: ignore[arg-type]
        resize_mode="shortest",
        crop_pct=crop / resize,
    )


def load_torchvision(
    name: str,
    weights: str | Path | None,
    *,
    seed: int = 0,
    download: bool = False,
    options: dict[str, Any] | None = None,
) -> Backbone:
    """A torchvision ResNet without ``fc`` as a [`Backbone`][Backbone].

    See [`load_backbone()`][torchcross.backbones.load.load_backbone].
    """
    torchvision = require("torchvision", "vision")
    if name not in RESNETS:
        raise ValueError(f"unknown torchvision backbone {name!r}; known: {', '.join(RESNETS)}")
    options = dict(options or {})
    published = torchvision.models.get_model_weights(name)["IMAGENET1K_V1"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model: nn.Module = getattr(torchvision.models, name)(weights=None, **options)
    if weights == "random":
        weights_id = f"random:seed={seed}"
    else:
        if weights is None:
            source = Path(torch.hub.get_dir()) / "checkpoints" / Path(published.url).name
            if not source.is_file():
                if not download:
                    raise ValueError(
                        f"torchvision's ImageNet weights of {name} are not in torch's cache "
                        f"({str(source)!r}); give weights= a local state_dict file, 'random', or "
                        "download=True"
                    )
                published.get_state_dict(progress=False)
        else:
            source = Path(weights)
        state = read_state_dict(source)
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        err = weights_mismatch(model, state, str(source), ignore=("fc.",))
        if err is not None:
            raise err
        model.load_state_dict(state, strict=False)
        weights_id = digest_files([source])
    model.fc = nn.Identity()
    identity = BackboneIdentity.build("torchvision", name, weights_id, options)
    return Backbone(model, _preprocessing(published), identity)
