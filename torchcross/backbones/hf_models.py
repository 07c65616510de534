"""Hugging Face backbones: ``AutoModelForImageClassification`` with ``num_labels=0``, from local folders.

As the MedIMeta authors' benchmark loads them: the classifier is the identity, so the model's
``logits`` are its pooled features (a ViT's CLS token, DINOv2's CLS token and mean patch token side by
side, a ResNet's pooled map, CLIP's mean patch token). The name is a local folder (what
``save_pretrained`` writes) or a model id already in the local Hugging Face cache (``download=True``
lets the hub fetch it). The preprocessing is read from the folder's ``preprocessor_config.json``
(``image_mean``, ``image_std``, ``size``, ``crop_size``, ``crop_pct``, ``resample``): a folder without one
is refused unless ``preprocessing=`` is given.

With the option ``text_tower=True`` a CLIP folder (``model_type`` ``"clip"``) loads as ``CLIPModel``
instead: the features are its projected image embeddings (``get_image_features``, in the joint
image-text space), and ``backbone.text_tower`` embeds prompts with the folder's tokenizer, for
zero-shot classification. Without it, a CLIP folder loads as the benchmark loads it (the image
classifier's mean patch token, no text tower).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from torchcross.backbones.backbone import Backbone, BackboneIdentity, TextTower
from torchcross.backbones.preprocessing import Preprocessing
from torchcross.backbones.weights import digest_files, require, weight_files

__all__ = ["hf_folder", "hf_preprocessing", "load_hf"]

# PIL's resampling codes, as image processors store them; LANCZOS, BOX and HAMMING map to the nearest
# interpolation torch has
_RESAMPLE = {0: "nearest", 1: "bicubic", 2: "bilinear", 3: "bicubic", 4: "bilinear", 5: "bilinear"}
_SHOWN = 5


class _Logits(nn.Module):
    """``model(pixel_values=x).logits``: a Hugging Face image classifier with ``num_labels=0``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Tensor:
        return self.model(pixel_values=images).logits


class _ClipImageFeatures(nn.Module):
    """``CLIPModel.get_image_features``: the vision model's pooled output through the visual projection."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.vision_model: nn.Module = model.vision_model
        self.visual_projection: nn.Module = model.visual_projection

    def forward(self, images: Tensor) -> Tensor:
        pooled = self.vision_model(pixel_values=images).pooler_output
        return self.visual_projection(pooled)


def _encode_clip_text(model: nn.Module, tokens: Tensor) -> Tensor:
    """``CLIPModel.get_text_features`` of ``tokens`` (input ids and attention mask stacked, ``(2, N, L)``)."""
    out = model.get_text_features(input_ids=tokens[0], attention_mask=tokens[1])  # type: ignore[operator]
    return out if isinstance(out, Tensor) else out.pooler_output


def _clip_tokenizer(transformers: Any, folder: Path) -> Any:
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"text_tower=True: the CLIP folder {str(folder)!r} has no usable tokenizer "
            f"({type(exc).__name__}); save it beside the model "
            "(AutoTokenizer.from_pretrained(model_id).save_pretrained(folder))"
        ) from None

    def tokenize(texts: Any) -> Tensor:
        enc = tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt")
        return torch.stack([enc["input_ids"], enc["attention_mask"]])

    return tokenize


def hf_folder(name: str, download: bool = False) -> Path:
    """The local folder of ``name``: the folder itself, or the model id's snapshot in the Hugging Face cache.

    Raises:
        ValueError: a path that is not a folder with a ``config.json``, or an id not in the cache.
    """
    path = Path(name).expanduser()
    looks_like_path = name.startswith(("/", ".", "~")) or name.count("/") > 1 or path.exists()
    if looks_like_path:
        if not path.is_dir():
            raise ValueError(f"Hugging Face model folder {name!r} does not exist (or is not a folder)")
        if not (path / "config.json").is_file():
            raise ValueError(
                f"Hugging Face model folder {name!r} has no config.json; save the model there with "
                "model.save_pretrained(folder)"
            )
        return path
    hub = require("huggingface_hub", "hf")
    try:
        folder = hub.snapshot_download(
            name, local_files_only=not download, allow_patterns=["*.json", "*.safetensors", "*.bin", "*.txt"]
        )
    except Exception as exc:
        raise ValueError(
            f"{name!r} is not a local folder and not in the local Hugging Face cache ({type(exc).__name__}); "
            "give a folder written by save_pretrained, or download=True to fetch it from the hub"
        ) from None
    return Path(folder)


def _size(value: Any) -> tuple[int, int] | int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, dict):
        if value.get("height") and value.get("width"):
            return (int(value["height"]), int(value["width"]))
        if value.get("shortest_edge"):
            return int(value["shortest_edge"])
    return None


def hf_preprocessing(folder: Path) -> Preprocessing:
    """The preprocessing in a folder's ``preprocessor_config.json``.

    ``size`` ``{height, width}`` squashes, ``{shortest_edge}`` resizes the shorter side; a centre crop
    (``do_center_crop`` with ``crop_size``, or ConvNeXt's ``crop_pct``) sets ``crop_pct``. A
    ``shortest_edge`` without a crop is taken as a square of that side (the same for square images).

    Raises:
        ValueError: no ``preprocessor_config.json``, or one without ``image_mean``/``image_std``/``size``.
    """
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        raise ValueError(
            f"Hugging Face model folder {str(folder)!r} has no preprocessor_config.json, so its input size, "
            "mean and std are unknown; save the model's image processor beside it "
            "(AutoImageProcessor.from_pretrained(model_id).save_pretrained(folder)) or pass preprocessing="
        )
    cfg = json.loads(path.read_text(encoding="utf-8"))
    missing = [key for key in ("image_mean", "image_std", "size") if key not in cfg]
    if missing:
        raise ValueError(f"{str(path)!r} lacks {missing}; pass preprocessing= to say what the model expects")
    mean, std = list(cfg["image_mean"]), list(cfg["image_std"])
    if cfg.get("do_normalize", True) is False:
        mean, std = [0.0] * len(mean), [1.0] * len(std)
    size, crop = _size(cfg["size"]), _size(cfg.get("crop_size")) if cfg.get("do_center_crop") else None
    if size is None:
        raise ValueError(f"{str(path)!r}: unsupported size {cfg['size']!r}; pass preprocessing=")
    interpolation = _RESAMPLE.get(int(cfg.get("resample", 2)), "bilinear")
    resize_mode, crop_pct = "squash", 1.0
    if isinstance(size, int):
        resize_mode = "shortest"
        if isinstance(crop, tuple):
            input_size, crop_pct = crop, min(crop) / size
        elif isinstance(crop, int):
            input_size, crop_pct = (crop, crop), crop / size
        elif "crop_pct" in cfg and size < 384:  # ConvNeXt: shortest side to size / crop_pct, crop size
            input_size, crop_pct = (size, size), float(cfg["crop_pct"])
        else:
            input_size = (size, size)
    else:
        input_size = size
        if isinstance(crop, tuple):
            input_size, crop_pct = crop, min(c / s for c, s in zip(crop, size))
    return Preprocessing(
        input_size=input_size,
        mean=tuple(mean),
        std=tuple(std),
        interpolation=interpolation,  # type: ignore[arg-type]
        channels=len(mean),
        resize_mode=resize_mode,  # type: ignore[arg-type]
        crop_pct=min(1.0, crop_pct),
    )


@contextlib.contextmanager
def _quiet(transformers: Any) -> Iterator[None]:
    """transformers' logging at error level and no progress bars, restored afterwards."""
    logging = transformers.utils.logging
    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


def load_hf(
    name: str,
    weights: str | Path | None,
    *,
    seed: int = 0,
    download: bool = False,
    options: dict[str, Any] | None = None,
    preprocessing: Preprocessing | None = None,
) -> Backbone:
    """A Hugging Face image model with ``num_labels=0`` as a backbone.

    ``weights`` is ``None`` (the folder's own weights) or ``"random"`` (its config, initialised under
    ``seed``). The option ``text_tower=True`` loads a CLIP folder as ``CLIPModel`` with its text tower
    (see the module). See [`load_backbone()`][torchcross.backbones.load.load_backbone].
    """
    if weights not in (None, "random"):
        raise ValueError(
            f"weights={str(weights)!r}: a Hugging Face backbone reads its weights from its folder; name the "
            "folder instead (hf:<folder>), or use weights=None or 'random'"
        )
    transformers = require("transformers", "hf")
    options = dict(options or {})
    if "num_labels" in options:
        raise ValueError("num_labels is fixed to 0 for a backbone (features, no classifier); remove it")
    folder = hf_folder(name, download)
    preprocessing = preprocessing if preprocessing is not None else hf_preprocessing(folder)
    text_tower = options.pop("text_tower", False)
    if not isinstance(text_tower, bool):
        raise TypeError(f"the option text_tower must be True or False, got {text_tower!r}")
    if text_tower:
        return _load_clip(transformers, name, folder, weights, seed, options, preprocessing)
    auto = transformers.AutoModelForImageClassification
    with _quiet(transformers), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if weights == "random":
            config = transformers.AutoConfig.from_pretrained(
                folder, num_labels=0, local_files_only=True, **options
            )
            model = auto.from_config(config)
        else:
            try:
                model, info = auto.from_pretrained(
                    folder,
                    num_labels=0,
                    local_files_only=True,
                    output_loading_info=True,
                    ignore_mismatched_sizes=True,  # reported by _check_loading, with the keys named
                    **options,
                )
            except (OSError, RuntimeError) as exc:
                raise ValueError(f"could not load the Hugging Face model in {str(folder)!r}: {exc}") from None
            _check_loading(info, folder)
    weights_id = (
        f"random:seed={seed}"
        if weights == "random"
        else digest_files([folder / "config.json", *weight_files(folder)])
    )
    identity = BackboneIdentity.build("hf", name, weights_id, options)
    return Backbone(_Logits(model), preprocessing, identity)


def _load_clip(
    transformers: Any,
    name: str,
    folder: Path,
    weights: str | Path | None,
    seed: int,
    options: dict[str, Any],
    preprocessing: Preprocessing,
) -> Backbone:
    """A Hugging Face ``CLIPModel``: projected image embeddings, and its text side as the text tower."""
    config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True, **options)
    if config.model_type != "clip":
        raise ValueError(
            f"text_tower=True needs a CLIP model folder (model_type 'clip'), but {str(folder)!r} holds "
            f"model_type {config.model_type!r}; leave text_tower out for an image backbone"
        )
    with _quiet(transformers), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if weights == "random":
            model = transformers.CLIPModel(config)
        else:
            try:
                model, info = transformers.CLIPModel.from_pretrained(
                    folder, local_files_only=True, output_loading_info=True, **options
                )
            except (OSError, RuntimeError) as exc:
                raise ValueError(f"could not load the CLIP model in {str(folder)!r}: {exc}") from None
            _check_loading(info, folder)
    model.eval()
    weights_id = (
        f"random:seed={seed}"
        if weights == "random"
        else digest_files([folder / "config.json", *weight_files(folder)])
    )
    identity = BackboneIdentity.build("hf", name, weights_id, {**options, "text_tower": True})
    tower = TextTower(model=model, tokenizer=_clip_tokenizer(transformers, folder), encode=_encode_clip_text)
    return Backbone(_ClipImageFeatures(model), preprocessing, identity, text_tower=tower)


def _mismatch(entry: Any) -> str:
    if isinstance(entry, (tuple, list)) and len(entry) == 3:
        key, stored, wanted = entry
        return f"{key}: {tuple(stored)} in the file, {tuple(wanted)} in the model"
    return str(entry[0] if isinstance(entry, (tuple, list)) else entry)


def _check_loading(info: dict[str, Any], folder: Path) -> None:
    missing = sorted(k for k in info.get("missing_keys", ()) if not str(k).startswith("classifier"))
    mismatched = sorted(_mismatch(k) for k in info.get("mismatched_keys", ()))
    parts = []
    for what, keys in (("missing keys", missing), ("shape mismatches", mismatched)):
        if keys:
            more = f" and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else ""
            parts.append(f"{what} {keys[:_SHOWN]}{more}")
    if parts:
        raise ValueError(
            f"weights in {str(folder)!r} do not fit the model its config.json describes: {'; '.join(parts)}"
        )
