"""Backbones for the protocol: the library's Conv4, a torchvision ResNet, or one from the ecosystem.

A ``[backbone] name`` of the form ``"<family>:<model>"`` (``timm:``, ``hf:``, ``open_clip:``,
``torchvision:``) is loaded by [`load_backbone()`][torchcross.backbones.load.load_backbone] from local
files only (`load_config_backbone()`); its errors (an unknown model with close names, a missing extra, a
weights file of another architecture) are re-raised naming the config key. Such a backbone brings its own
[`Preprocessing`][torchcross.backbones.preprocessing.Preprocessing], which the run applies to every image
(`backbone_preprocessing()`), and its identity (family, model, weights digest, preprocessing) enters the
fingerprint of everything trained or evaluated with it (`backbone_fingerprint()`).

Weights are ``"imagenet"`` (torchvision's ``DEFAULT`` ImageNet weights of the ResNet, as the
authors' ``backbones.py`` at 83c2aad: ``IMAGENET1K_V1`` for ResNet-18 and ResNet-34,
``IMAGENET1K_V2`` for ResNet-50, see `IMAGENET_WEIGHTS`), ``"imagenet-v1"`` (``IMAGENET1K_V1``
for every ResNet, what ``"imagenet"`` loaded for ResNet-50 before), read from torch's cache
(torchvision downloads them there once if they are missing), ``"random"`` (a seeded random
initialisation) or a local ``state_dict`` file (on a machine without internet access, save the
ImageNet weights elsewhere with ``torch.save(torchvision.models.resnet18(weights="IMAGENET1K_V1")
.state_dict(), "resnet18.pth")``). A ResNet's classifier (``fc``) is replaced by the identity, so
the backbone outputs features; ``fc`` weights are ignored.
"""

from __future__ import annotations

import copy
import os
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

if TYPE_CHECKING:
    from torchcross.backbones import Backbone, Preprocessing

__all__ = [
    "IMAGENET_WEIGHTS",
    "backbone_fingerprint",
    "backbone_preprocessing",
    "build_backbone",
    "imagenet_state_dict",
    "imagenet_weights",
    "input_channels",
    "load_config_backbone",
]

_RESNETS = ("resnet18", "resnet34", "resnet50")

IMAGENET_WEIGHTS: dict[str, dict[str, str]] = {
    "imagenet": {"resnet18": "IMAGENET1K_V1", "resnet34": "IMAGENET1K_V1", "resnet50": "IMAGENET1K_V2"},
    "imagenet-v1": {"resnet18": "IMAGENET1K_V1", "resnet34": "IMAGENET1K_V1", "resnet50": "IMAGENET1K_V1"},
}
"""The torchvision weights each ``[backbone] weights`` value loads, per ResNet.

``"imagenet"`` is torchvision's ``DEFAULT`` of each ResNet (torchvision 0.13 and later), written
out so that a torchvision release that moves ``DEFAULT`` does not change a run.
"""


def input_channels(name: str, stored_channels: int) -> int:
    """Channels the backbone expects: ResNets take RGB (grey images are repeated), Conv4 takes what is stored.

    Examples:
        >>> input_channels("resnet18", 1), input_channels("conv4", 1)
        (3, 1)
    """
    return 3 if name in _RESNETS else stored_channels


def imagenet_weights(name: str, weights: str = "imagenet") -> Any:
    """The torchvision weights enum member that ``weights`` (a key of `IMAGENET_WEIGHTS`) loads for ``name``.

    Nothing is downloaded.

    Raises:
        ValueError: not a ResNet, or ``weights`` not a key of `IMAGENET_WEIGHTS`.

    Examples:
        >>> imagenet_weights("resnet50"), imagenet_weights("resnet50", "imagenet-v1")
        (ResNet50_Weights.IMAGENET1K_V2, ResNet50_Weights.IMAGENET1K_V1)
    """
    tag = _weights_name(name, weights)
    import torchvision

    return torchvision.models.get_model_weights(name)[tag]


def _weights_name(name: str, weights: str) -> str:
    """The torchvision name of the weights ``weights`` selects for ``name`` (``"IMAGENET1K_V2"``)."""
    if name not in _RESNETS:
        raise ValueError(
            f"backbone {name!r} has no ImageNet weights; set [backbone] weights = 'random' (reported as "
            "'scratch') or a local state_dict file"
        )
    if weights not in IMAGENET_WEIGHTS:
        raise ValueError(f"ImageNet weights {weights!r} unknown; use one of {', '.join(IMAGENET_WEIGHTS)}")
    return IMAGENET_WEIGHTS[weights][name]


def imagenet_state_dict(name: str, weights: str = "imagenet") -> dict[str, torch.Tensor]:
    """The ImageNet weights of ResNet ``name`` chosen by `imagenet_weights()`, from torch's cache.

    Raises:
        ValueError: not a ResNet, or the weights cannot be read or downloaded (the
            message says how to give a local file instead).
    """
    tag = _weights_name(name, weights)
    try:
        return imagenet_weights(name, weights).get_state_dict(progress=False)
    except Exception as exc:
        raise ValueError(
            f"could not get the ImageNet weights of {name} from torch's cache or the internet ({exc}); on a "
            f"machine with internet access run `torch.save(torchvision.models.{name}(weights='{tag}')"
            ".state_dict(), 'weights.pth')` and set [backbone] weights to that file"
        ) from None


def _load_weights(
    module: nn.Module, path: Path | str, ignore_prefixes: tuple[str, ...] = (), name: str = ""
) -> None:
    if path in IMAGENET_WEIGHTS:
        state: Any = imagenet_state_dict(name, str(path))
    else:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"backbone weights file {str(path)!r} does not exist")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(f"could not read backbone weights from {str(path)!r}: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(
            f"{str(path)!r} must hold a state_dict (a dict of tensors), got {type(state).__name__}"
        )
    state = {k: v for k, v in state.items() if not k.startswith(ignore_prefixes)}
    try:
        missing, unexpected = module.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise ValueError(f"weights in {str(path)!r} do not fit the backbone: {exc}") from None
    missing = [k for k in missing if not k.startswith(ignore_prefixes)]
    if missing or unexpected:
        raise ValueError(
            f"weights in {str(path)!r} do not fit the backbone: missing keys {missing[:5]}, "
            f"unexpected keys {unexpected[:5]} (first five of each shown)"
        )


def build_backbone(
    name: str,
    in_channels: int,
    image_size: int,
    *,
    seed: int = 0,
    weights: str | Path | None = None,
    hidden: int = 64,
    text_tower: bool = False,
) -> tuple[nn.Module, int]:
    """Build a feature extractor and return it with its feature width.

    Args:
        name: ``"conv4"`` or ``"resnet18"``/``"resnet34"``/``"resnet50"`` (needs torchvision), or
            ``"<family>:<model>"`` (`load_config_backbone()`: ``in_channels`` must be its
            preprocessing's channels; ``image_size`` and ``hidden`` are not used).
        in_channels: channels of the inputs it will see (ResNets need 3).
        image_size: input height and width (Conv4 sizes its output from it).
        seed: seeds the random initialisation, so every method starts from the same weights.
        weights: ``None`` or ``"random"`` (the seeded initialisation), ``"imagenet"`` or
            ``"imagenet-v1"`` (`IMAGENET_WEIGHTS`), or a local ``state_dict`` file to load after
            initialisation.
        hidden: Conv4 filters per layer.
        text_tower: load a ``"hf:<CLIP folder>"`` with its text tower (`load_config_backbone()`).

    Raises:
        ValueError: an unknown name, a ResNet with ``in_channels != 3``, unfitting weights,
            or ``"imagenet"`` for Conv4.
        ImportError: a ResNet without torchvision (naming ``torchcross[vision]``).

    Examples:
        >>> net, width = build_backbone("conv4", 1, 28, hidden=8)
        >>> width, net(torch.zeros(2, 1, 28, 28)).shape
        (8, torch.Size([2, 8]))
    """
    if ":" in name:
        backbone = load_config_backbone(name, weights, seed=seed, text_tower=text_tower)
        channels = backbone.preprocessing.channels
        if in_channels != channels:
            raise ValueError(
                f"[backbone] name = {name!r} takes {channels}-channel inputs, got in_channels={in_channels}"
            )
        return backbone, backbone.num_features
    if weights == "random":
        weights = None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if name == "conv4":
            from torchcross.learners.backbones import conv4

            net: nn.Module = conv4(in_channels, hidden=hidden, image_size=image_size)
            width = int(cast(int, net.num_features))
            if weights is not None:
                _load_weights(net, weights, name=name)
            return net, width
        if name in _RESNETS:
            if in_channels != 3:
                raise ValueError(
                    f"{name} takes 3-channel inputs, got in_channels={in_channels}; read images as RGB"
                )
            try:
                import torchvision
            except ImportError as exc:
                raise ImportError(
                    f"backbone {name!r} needs torchvision; install it with `pip install torchcross[vision]` "
                    "or use backbone 'conv4'"
                ) from exc
            net = getattr(torchvision.models, name)(weights=None)
            width = int(cast(Any, net).fc.in_features)
            if weights is not None:
                _load_weights(net, weights, ignore_prefixes=("fc.",), name=name)
            net.fc = nn.Identity()
            return net, width
    raise ValueError(f"unknown backbone {name!r}; known backbones: conv4, {', '.join(_RESNETS)}")


# ------------------------------------------------------------------------------ backbones of the ecosystem

_LOADED: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
_KEEP = 2  # loaded backbones kept per process (large models: a few)


def _weights_argument(weights: str | Path | None) -> str | Path | None:
    """What ``[backbone] weights`` passes to `load_backbone()`: ``None`` for the model's own weights."""
    return None if weights in (None, "default", "imagenet") else weights


def _local_paths(name: str, weights: str | Path | None) -> list[Path]:
    """The local files and folders a backbone is read from (the weights, a folder named in ``name``)."""
    named = (None, "random", "default", "imagenet", "imagenet-v1")
    paths = [Path(weights)] if isinstance(weights, Path) or weights not in named else []
    model = name.partition(":")[2]
    for prefix in ("local-dir:", ""):
        if model.startswith(prefix) and Path(model[len(prefix) :]).exists():
            paths.append(Path(model[len(prefix) :]))
            break
    return paths


def _signature(paths: list[Path]) -> tuple[Any, ...]:
    """Size and modification time of every file under ``paths``: a changed file loads the backbone again."""
    out: list[Any] = []
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            try:
                st = os.stat(f)
            except OSError:
                continue
            out.append((str(f), st.st_size, st.st_mtime_ns))
    return tuple(out)


def load_config_backbone(
    name: str, weights: str | Path | None = None, *, seed: int = 0, text_tower: bool = False
) -> Backbone:
    """The ``"<family>:<model>"`` backbone of ``[backbone] name`` and ``weights``, from local files only.

    ``weights``: ``"default"``, ``"imagenet"`` or ``None`` (the model's own pretrained weights, from the
    library's local cache, or the folder's own for ``hf:<folder>`` and ``open_clip:local-dir:<folder>``),
    ``"random"`` (the family's initialisation under ``seed``) or a local file or folder. Loaded backbones
    are kept per process (a copy is returned) while their files are unchanged.

    ``text_tower=True`` (what a method declaring ``needs_text_tower``, ``zero-shot``, builds) loads a
    ``"hf:<CLIP folder>"`` as ``CLIPModel`` with its text tower and projected image features (the option
    ``text_tower=True`` of [`load_backbone()`][torchcross.backbones.load.load_backbone], recorded in its
    identity and so in the embedding cache's key); a plain ``"hf:"`` backbone stays the image model that
    fine-tuning and the linear probe use. Other families ignore it (an OpenCLIP backbone always carries its
    text tower).

    Raises:
        ValueError: an unknown family or model (close names suggested), weights that do not fit the model
            (keys named) or are not in the local cache; the message starts with the config key.
        FileNotFoundError: a weights path that does not exist.
        ImportError: the family's package is missing (naming the extra to install).

    Examples:
        >>> b = load_config_backbone("torchvision:resnet18", "random")
        >>> b.num_features, b.preprocessing.input_size
        (512, (224, 224))
    """
    from torchcross.backbones import load_backbone

    arg = _weights_argument(weights)
    options: dict[str, Any] = {"text_tower": True} if text_tower and name.startswith("hf:") else {}
    key = (name, str(weights), int(seed), bool(options), _signature(_local_paths(name, weights)))
    if key not in _LOADED:
        where = f"[backbone] name = {name!r}, weights = {str(weights)!r}"
        try:
            loaded = load_backbone(name, arg, seed=seed, **options)
        except ImportError as exc:
            raise ImportError(f"[backbone] name = {name!r}: {exc}") from exc
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"[backbone] weights = {str(weights)!r}: {exc}") from None
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"{where}: {exc}") from None
        _LOADED[key] = loaded
        while len(_LOADED) > _KEEP:
            _LOADED.popitem(last=False)
    _LOADED.move_to_end(key)
    return copy.deepcopy(_LOADED[key])


def backbone_preprocessing(name: str, weights: str | Path | None = None) -> Preprocessing | None:
    """The preprocessing a ``"<family>:<model>"`` backbone brings (``None`` for the built-in backbones).

    Examples:
        >>> backbone_preprocessing("conv4") is None
        True
        >>> backbone_preprocessing("torchvision:resnet18", "random").mean
        (0.485, 0.456, 0.406)
    """
    if ":" not in name:
        return None
    return load_config_backbone(name, weights).preprocessing


def backbone_fingerprint(name: str, weights: str | Path | None = None) -> dict[str, Any]:
    """What a ``"<family>:<model>"`` backbone's artefacts are fingerprinted by: identity and preprocessing.

    The identity holds the SHA-256 digest of the weight files (``"random:seed=0"`` for random weights:
    the training seed is part of every artefact's name), so a changed weights file redoes every
    artefact made with the old one.

    Examples:
        >>> backbone_fingerprint("torchvision:resnet18", "random")["identity"]["weights"]
        'random:seed=0'
    """
    backbone = load_config_backbone(name, weights)
    return {"identity": backbone.identity.to_dict(), "preprocessing": backbone.preprocessing.to_dict()}
