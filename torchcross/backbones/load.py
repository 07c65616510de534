"""``load_backbone("<family>:<model>")``: one entry point for timm, Hugging Face, OpenCLIP and torchvision.

Examples:
    >>> import torch
    >>> b = load_backbone(
    ...     "timm:vit_tiny_patch16_224",
    ...     "random",
    ...     img_size=32,
    ...     patch_size=8,
    ...     embed_dim=32,
    ...     depth=1,
    ...     num_heads=2,
    ... )
    >>> b.num_features, b.preprocessing.input_size, b.preprocessing.interpolation
    (32, (32, 32), 'bicubic')
    >>> b(b.preprocessing.apply(torch.zeros(2, 1, 48, 48, dtype=torch.uint8))).shape
    torch.Size([2, 32])
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from torchcross._checks import check_int
from torchcross.backbones.backbone import Backbone
from torchcross.backbones.hf_models import load_hf
from torchcross.backbones.open_clip_models import load_open_clip
from torchcross.backbones.preprocessing import Preprocessing
from torchcross.backbones.timm_models import load_timm
from torchcross.backbones.torchvision_models import load_torchvision

__all__ = ["FAMILIES", "load_backbone"]

FAMILIES: dict[str, Callable[..., Backbone]] = {
    "timm": load_timm,
    "hf": load_hf,
    "open_clip": load_open_clip,
    "torchvision": load_torchvision,
}
"""``{family prefix: loader}``: the families [`load_backbone()`][load_backbone] knows."""


def load_backbone(
    name: str,
    weights: str | Path | None = None,
    *,
    seed: int = 0,
    download: bool = False,
    preprocessing: Preprocessing | None = None,
    **options: Any,
) -> Backbone:
    """Load a pretrained (or random) feature extractor from timm, Hugging Face, OpenCLIP or torchvision.

    Everything is read from local files unless ``download=True``: a weights file or folder, or the
    library's own cache (the Hugging Face cache for timm and ``hf:`` ids, torch's hub cache for
    torchvision). The feature width and the preprocessing come from the model and its configuration.
    The backbone is returned in eval mode.

    Args:
        name: ``"<family>:<model>"``:

            * ``"timm:<model>"`` (``timm.list_models()``; a pretrained tag as ``<model>.<tag>``);
            * ``"hf:<folder or model id>"`` (``AutoModelForImageClassification`` with ``num_labels=0``;
              a CLIP folder with the option ``text_tower=True``: ``CLIPModel``, its projected image
              embeddings and its text tower);
            * ``"open_clip:<model>"``, ``"open_clip:local-dir:<folder>"`` or ``"open_clip:hf-hub:<id>"``
              (the image tower; the text tower is kept as ``backbone.text_tower``);
            * ``"torchvision:resnet18"`` (also 34, 50, 101, 152).
        weights: ``"random"`` (the family's initialisation under ``seed``), a local weights file (timm,
            OpenCLIP, torchvision) or folder (timm), or ``None``: the weights the name implies, from the
            local cache (for ``hf:`` and the OpenCLIP folder forms, the folder's own weights).
        seed: seeds the random initialisation (of the whole model, or of what the weights leave out).
        download: allow the library to fetch missing weights from the internet.
        preprocessing: replaces the preprocessing read from the model's configuration (a Hugging Face
            folder without ``preprocessor_config.json`` needs it).
        **options: keyword arguments for the family's constructor (``timm.create_model``, ``from_pretrained``,
            ``open_clip.create_model``, the torchvision model); plain JSON values, recorded in the identity.

    Returns:
        A [`Backbone`][Backbone]: ``(N, C, H, W) -> (N, num_features)``,
        with ``preprocessing``, ``identity`` and ``text_tower`` (CLIP models).

    Raises:
        ValueError: an unknown family or model (close names suggested), weights that do not fit the
            model (the first missing, unexpected and mismatched keys named), or weights not found locally.
        FileNotFoundError: a weights path that does not exist.
        ImportError: the family's package is missing (naming ``pip install "torchcross[timm]"``, ``[hf]``,
            ``[clip]`` or ``[vision]``).
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a string '<family>:<model>', got {type(name).__name__}")
    family, sep, model = name.partition(":")
    if not sep or not model:
        raise ValueError(
            f"backbone name {name!r} must be '<family>:<model>' with family one of {', '.join(FAMILIES)} "
            "(e.g. 'timm:resnet18')"
        )
    loader = FAMILIES.get(family)
    if loader is None:
        raise ValueError(f"unknown backbone family {family!r} in {name!r}; families: {', '.join(FAMILIES)}")
    check_int(seed, "seed", 0)
    if weights is not None and not isinstance(weights, (str, Path)):
        raise TypeError(f"weights must be None, 'random' or a path, got {type(weights).__name__}")
    if preprocessing is not None and not isinstance(preprocessing, Preprocessing):
        raise TypeError(f"preprocessing must be a Preprocessing or None, got {type(preprocessing).__name__}")
    extra: dict[str, Any] = {"preprocessing": preprocessing} if family == "hf" else {}
    backbone = loader(model, weights, seed=seed, download=bool(download), options=options, **extra)
    if preprocessing is not None and backbone.preprocessing != preprocessing:
        backbone = Backbone(backbone.model, preprocessing, backbone.identity, backbone.text_tower)
    return backbone.eval()
