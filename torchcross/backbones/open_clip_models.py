"""OpenCLIP backbones: the image tower of ``open_clip.create_model``, with its text tower kept aside.

The features are the image tower's output (``model.visual(x)``, ``model.encode_image`` without
normalisation): the image embedding in the joint image-text space, ``embed_dim`` wide. The full CLIP
model stays reachable as ``backbone.text_tower`` (a [`TextTower`][TextTower]
with the model's tokenizer), which shares the image tower's parameters, for zero-shot classification.

The name is an OpenCLIP model (``open_clip.list_models()``, or one added with
``open_clip.add_model_config``), ``local-dir:<folder>`` (a folder with ``open_clip_config.json`` and its
weights) or ``hf-hub:<id>`` (read from the local Hugging Face cache). ``weights`` is ``"random"``, a local
checkpoint file, or ``None`` for the two folder forms (their own weights). The preprocessing is the
model's ``visual.preprocess_cfg`` (size, mean, std, interpolation, resize mode).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from torchcross.backbones.backbone import Backbone, BackboneIdentity, TextTower
from torchcross.backbones.preprocessing import Preprocessing
from torchcross.backbones.weights import (
    digest_files,
    read_state_dict,
    require,
    weight_files,
    weights_mismatch,
)

__all__ = ["load_open_clip", "open_clip_preprocessing"]


def open_clip_preprocessing(model: nn.Module) -> Preprocessing:
    """The preprocessing of an OpenCLIP model's image tower (its ``visual.preprocess_cfg``)."""
    cfg = dict(getattr(model.visual, "preprocess_cfg", None) or {})
    if not cfg:
        raise ValueError("the OpenCLIP model has no visual.preprocess_cfg; pass preprocessing=")
    size = cfg["size"]
    height, width = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
    interpolation = str(cfg.get("interpolation", "bicubic"))
    if interpolation not in ("nearest", "bilinear", "bicubic"):
        interpolation = "bicubic"
    mode = str(cfg.get("resize_mode", "shortest"))
    return Preprocessing(
        input_size=(height, width),
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
        interpolation=interpolation,  # type: ignore[arg-type]
        channels=1 if cfg.get("mode") == "L" else len(cfg["mean"]),
        resize_mode="squash" if mode == "squash" else "shortest",
    )


def _encode_text(model: nn.Module, tokens: Tensor) -> Tensor:
    return model.encode_text(tokens)  # type: ignore[operator]


def _local_dir(name: str, download: bool) -> tuple[str, Path]:
    """``local-dir:<folder>`` for the ``local-dir:`` and ``hf-hub:`` forms (the latter from the cache)."""
    if name.startswith("local-dir:"):
        folder = Path(name[len("local-dir:") :]).expanduser()
    else:
        hub = require("huggingface_hub", "hf")
        repo = name[len("hf-hub:") :]
        try:
            folder = Path(hub.snapshot_download(repo, local_files_only=not download))
        except Exception as exc:
            raise ValueError(
                f"OpenCLIP model {name!r} is not in the local Hugging Face cache ({type(exc).__name__}); "
                "give local-dir:<folder> or download=True"
            ) from None
    if not (folder / "open_clip_config.json").is_file():
        raise ValueError(f"OpenCLIP folder {str(folder)!r} does not exist or has no open_clip_config.json")
    return f"local-dir:{folder}", folder


def load_open_clip(
    name: str,
    weights: str | Path | None,
    *,
    seed: int = 0,
    download: bool = False,
    options: dict[str, Any] | None = None,
) -> Backbone:
    """An OpenCLIP model's image tower as a [`Backbone`][Backbone].

    See [`load_backbone()`][torchcross.backbones.load.load_backbone]; ``options`` go to
    ``open_clip.create_model``.
    """
    open_clip = require("open_clip", "clip")
    options = dict(options or {})
    folder: Path | None = None
    model_name = name
    if name.startswith(("local-dir:", "hf-hub:")):
        model_name, folder = _local_dir(name, download)
        if weights not in (None, "random"):
            raise ValueError(
                f"weights={str(weights)!r}: {name!r} reads its weights from its folder; remove it"
            )
    elif name not in open_clip.list_models():
        close = difflib.get_close_matches(name, open_clip.list_models(), n=5, cutoff=0.6)
        hint = f"; close names: {', '.join(close)}" if close else "; see open_clip.list_models()"
        raise ValueError(f"unknown OpenCLIP model {name!r}{hint}")
    elif weights is None:
        raise ValueError(
            f"OpenCLIP model {name!r} needs weights= a local checkpoint file (or 'random'); OpenCLIP's "
            "pretrained tags download from the internet, so save the checkpoint once and give its path"
        )
    source = None if weights in (None, "random") else Path(weights)
    if source is not None and not source.is_file():
        raise FileNotFoundError(f"OpenCLIP weights file {str(source)!r} does not exist (or is not a file)")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        own_weights = folder is not None and weights is None  # a folder's own checkpoint
        try:
            model = open_clip.create_model(model_name, pretrained=None, load_weights=own_weights, **options)
        except RuntimeError as exc:  # a folder's weights that do not fit its config (torch names the keys)
            raise ValueError(f"could not load the OpenCLIP model {name!r}: {exc}") from None
    if source is not None:
        try:
            open_clip.load_checkpoint(model, str(source))
        except RuntimeError as exc:
            err = weights_mismatch(model, read_state_dict(source), str(source))
            raise (err or ValueError(f"could not load {str(source)!r} into {name!r}: {exc}")) from None
    if weights == "random":
        weights_id = f"random:seed={seed}"
    elif source is not None:
        weights_id = digest_files([source])
    else:  # a folder's own weights
        root = Path(model_name[len("local-dir:") :])
        weights_id = digest_files([root / "open_clip_config.json", *weight_files(root)])
    tokenizer = open_clip.get_tokenizer(model_name)
    identity = BackboneIdentity.build("open_clip", name, weights_id, options)
    text = TextTower(model=model, tokenizer=tokenizer, encode=_encode_text)
    return Backbone(model.visual, open_clip_preprocessing(model), identity, text_tower=text)
