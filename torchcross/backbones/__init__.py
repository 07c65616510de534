"""Backbones from the ecosystem: timm, Hugging Face, OpenCLIP and torchvision feature extractors.

[`load_backbone()`][load_backbone] turns ``"<family>:<model>"`` and local
weights into a [`Backbone`][Backbone]: an ``nn.Module`` from images
``(N, C, H, W)`` to features ``(N, num_features)`` that every learner takes, with the
[`Preprocessing`][Preprocessing] read from the model's own
configuration and a [`BackboneIdentity`][BackboneIdentity] (family, model,
weights digest, options). The families' packages are optional extras (``pip install
"torchcross[timm]"``, ``[hf]``, ``[clip]``), imported only when a backbone of theirs is loaded.

Names are imported lazily on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torchcross._lazy import lazy_exports

if TYPE_CHECKING:
    from torchcross.backbones.backbone import Backbone as Backbone
    from torchcross.backbones.backbone import BackboneIdentity as BackboneIdentity
    from torchcross.backbones.backbone import TextTower as TextTower
    from torchcross.backbones.load import FAMILIES as FAMILIES
    from torchcross.backbones.load import load_backbone as load_backbone
    from torchcross.backbones.preprocessing import Preprocessing as Preprocessing

_EXPORTS: dict[str, str] = {
    "Backbone": "backbone",
    "BackboneIdentity": "backbone",
    "TextTower": "backbone",
    "FAMILIES": "load",
    "load_backbone": "load",
    "Preprocessing": "preprocessing",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
