"""timm backbones: ``timm.create_model(name, num_classes=0)`` with weights from local files only.

``weights`` is ``"random"`` (timm's initialisation under ``seed``), a local file (``.safetensors`` or a
``torch.save`` state dict, loaded by timm, which adapts known checkpoint formats), a local folder in the
layout timm saves to the Hugging Face hub (``config.json`` with ``architecture`` and ``pretrained_cfg``,
and ``model.safetensors``), or ``None``: the model's default pretrained weights from the local Hugging Face
cache (``download=True`` lets timm fetch them). The preprocessing is timm's ``resolve_model_data_config``
of the model; for a model built with a fixed ``img_size`` other than its pretrained one (a ViT with
``img_size=32``), the model's own input size replaces the config's.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchcross.backbones.backbone import Backbone, BackboneIdentity
from torchcross.backbones.preprocessing import Preprocessing
from torchcross.backbones.weights import (
    digest_files,
    read_state_dict,
    require,
    weight_files,
    weights_mismatch,
)

__all__ = ["load_timm", "timm_preprocessing"]


def _check_name(timm: Any, name: str) -> None:
    base = name.split(".", 1)[0]
    if timm.is_model(base):
        return
    close = difflib.get_close_matches(base, timm.list_models(), n=5, cutoff=0.6)
    hint = f"; close names: {', '.join(close)}" if close else "; see timm.list_models()"
    raise ValueError(f"unknown timm model {name!r}{hint}")


def timm_preprocessing(model: nn.Module) -> Preprocessing:
    """The [`Preprocessing`][Preprocessing] of a timm model.

    Read from ``timm.data.resolve_model_data_config(model)``; a fixed-size model's own input size
    (``model.patch_embed.img_size``) wins over its pretrained config's.
    """
    timm_data = require("timm.data", "timm")
    cfg = timm_data.resolve_model_data_config(model)
    channels, height, width = (int(v) for v in cfg["input_size"])
    patch_embed = getattr(model, "patch_embed", None)
    own = getattr(patch_embed, "img_size", None)
    if own is not None and not getattr(patch_embed, "dynamic_img_size", False):
        height, width = (int(own[0]), int(own[1])) if isinstance(own, (tuple, list)) else (int(own), int(own))
    interpolation = str(cfg.get("interpolation", "bilinear"))
    if interpolation not in ("nearest", "bilinear", "bicubic"):
        interpolation = "bicubic" if interpolation == "random" else "bilinear"
    crop_mode = str(cfg.get("crop_mode", "center"))
    return Preprocessing(
        input_size=(height, width),
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
        interpolation=interpolation,  # type: ignore[arg-type]
        channels=channels,
        resize_mode="squash" if crop_mode == "squash" else "shortest",
        crop_pct=float(cfg.get("crop_pct", 1.0)) if crop_mode != "border" else 1.0,
    )


def _cached_file(model: nn.Module, name: str) -> Path:
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    repo = cfg.get("hf_hub_id")
    hub = require("huggingface_hub", "hf")
    if repo:
        for filename in (cfg.get("hf_hub_filename"), "model.safetensors", "pytorch_model.bin"):
            if filename:
                found = hub.try_to_load_from_cache(repo, filename)
                if isinstance(found, str):
                    return Path(found)
    raise ValueError(
        f"timm model {name!r} has no pretrained weights in the local Hugging Face cache"
        f"{f' (repository {repo!r})' if repo else ''}; give weights= a local file or folder, "
        "weights='random' for a random initialisation, or download=True to let timm fetch them"
    )


def load_timm(
    name: str,
    weights: str | Path | None,
    *,
    seed: int = 0,
    download: bool = False,
    options: dict[str, Any] | None = None,
) -> Backbone:
    """A timm model without its classifier as a [`Backbone`][Backbone].

    See [`load_backbone()`][torchcross.backbones.load.load_backbone] for the arguments (``name`` without
    the ``timm:`` prefix; ``options`` go to ``timm.create_model``).
    """
    timm = require("timm", "timm")
    options = dict(options or {})
    if "num_classes" in options:
        raise ValueError("num_classes is fixed to 0 for a backbone (features, no classifier); remove it")
    _check_name(timm, name)
    source: Path | None = None
    digested: list[Path] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if weights == "random":
            model = timm.create_model(name, pretrained=False, num_classes=0, **options)
        elif weights is None and download:
            model = timm.create_model(name, pretrained=True, num_classes=0, **options)
            source = Path(name)
        else:
            if weights is None:
                probe = timm.create_model(name, pretrained=False, num_classes=0, **options)
                source = _cached_file(probe, name)
            else:
                source = Path(weights)
            if source.is_dir():
                config = source / "config.json"
                if not config.is_file():
                    raise ValueError(f"timm weights folder {str(source)!r} has no config.json")
                arch = json.loads(config.read_text(encoding="utf-8")).get("architecture")
                if arch is not None and arch != name.split(".", 1)[0]:
                    raise ValueError(
                        f"timm weights folder {str(source)!r} holds {arch!r}, not {name!r}; name the "
                        f"backbone 'timm:{arch}'"
                    )
                digested = [config, *weight_files(source)]
                model = _create(timm, f"local-dir:{source}", source, options)
            elif source.is_file():
                digested = [source]
                overlay = {"file": str(source), "hf_hub_id": None, "url": None}
                model = _create(timm, name, source, options, pretrained_cfg_overlay=overlay)
            else:
                raise FileNotFoundError(
                    f"timm weights {str(source)!r} do not exist (neither a file nor a folder)"
                )
    if weights == "random":
        weights_id = f"random:seed={seed}"
    elif digested:
        weights_id = digest_files(digested)
    else:  # downloaded by timm: named by its pretrained tag
        weights_id = f"timm:{model.pretrained_cfg.get('hf_hub_id') or name}"
    identity = BackboneIdentity.build("timm", name, weights_id, options)
    return Backbone(model, timm_preprocessing(model), identity)


def _create(timm: Any, name: str, source: Path, options: dict[str, Any], **kwargs: Any) -> nn.Module:
    try:
        model = timm.create_model(name, pretrained=True, num_classes=0, **options, **kwargs)
    except RuntimeError as exc:
        if source.is_file():
            model = timm.create_model(name, pretrained=False, num_classes=0, **options)
            head = str(getattr(model, "pretrained_cfg", {}).get("classifier") or "head")
            err = weights_mismatch(model, read_state_dict(source), str(source), ignore=(head + ".",))
            if err is not None:
                raise err from None
        raise ValueError(f"timm could not load the weights in {str(source)!r}: {exc}") from None
    if source.is_file():
        # without a classifier timm loads non-strictly: a file of another architecture would leave the
        # model at its random initialisation with only a logged warning
        head = str(getattr(model, "pretrained_cfg", {}).get("classifier") or "head")
        state = read_state_dict(source)
        own = set(model.state_dict())
        if not own & set(state) or any(k not in state for k in own if not k.startswith(head + ".")):
            err = weights_mismatch(model, state, str(source), ignore=(head + ".",))
            if err is not None:
                raise err
    return model
