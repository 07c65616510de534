"""Tiny, randomly initialised models of every backbone family, saved offline (no hub is ever reached).

Shared by ``tests/backbones`` (its conftest's fixtures) and ``tests/protocol`` (``torchcross run`` with
these models): a module with a name of its own, importable from every test folder because
``tests/conftest.py`` puts ``tests/`` on the path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TINY_VIT = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}
"""``timm.create_model`` options of a ViT of 32 x 32 inputs and width 32."""

CLIP_NAME = "torchcross-tiny-clip"
# the real BPE tokenizer's vocabulary (49408), so that OpenCLIP's tokenizer fits; 8 wide keeps it small
CLIP_CONFIG: dict[str, Any] = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 8, "heads": 2, "layers": 1},
}


def save_hf_models(root: Path, names: tuple[str, ...] = ("vit", "dinov2", "resnet")) -> dict[str, Path]:
    """``{"vit", "dinov2", "resnet"}`` (or ``names``): tiny Hugging Face models saved with their image
    processors."""
    import transformers as tf

    tf.utils.logging.disable_progress_bar()
    models = {
        "vit": (
            tf.ViTForImageClassification(
                tf.ViTConfig(
                    image_size=32,
                    patch_size=8,
                    hidden_size=32,
                    num_hidden_layers=1,
                    num_attention_heads=2,
                    intermediate_size=64,
                )
            ),
            tf.ViTImageProcessor(size={"height": 32, "width": 32}),
        ),
        "dinov2": (
            tf.Dinov2ForImageClassification(
                tf.Dinov2Config(
                    image_size=32,
                    patch_size=8,
                    hidden_size=32,
                    num_hidden_layers=1,
                    num_attention_heads=2,
                    mlp_ratio=2,
                )
            ),
            tf.BitImageProcessor(size={"shortest_edge": 36}, crop_size={"height": 32, "width": 32}),
        ),
        "resnet": (
            tf.ResNetForImageClassification(
                tf.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
            ),
            tf.ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=0.875),
        ),
    }
    out = {}
    for name, (model, processor) in models.items():
        if name not in names:
            continue
        folder = root / name
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
        out[name] = folder
    tf.utils.logging.enable_progress_bar()
    return out


def register_clip(folder: Path) -> str:
    """Register the tiny OpenCLIP config with ``open_clip.add_model_config``; returns its name."""
    import open_clip

    path = folder / f"{CLIP_NAME}.json"
    path.write_text(json.dumps(CLIP_CONFIG), encoding="utf-8")
    open_clip.add_model_config(path)
    return CLIP_NAME


def save_timm_folder(folder: Path, seed: int = 0) -> Path:
    """A tiny timm ViT (``vit_tiny_patch16_224`` with `TINY_VIT`) saved as timm saves to the hub."""
    import timm
    import torch
    from safetensors.torch import save_file
    from timm.models import save_for_hf

    torch.manual_seed(seed)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, **TINY_VIT)
    save_for_hf(model, folder, model_args=TINY_VIT)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["pretrained_cfg"].update(input_size=[3, 32, 32], crop_pct=1.0)
    (folder / "config.json").write_text(json.dumps(cfg))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "model.safetensors")
    return folder


def save_open_clip_folder(folder: Path, seed: int = 0) -> Path:
    """The tiny OpenCLIP model in the ``local-dir:`` layout (``open_clip_config.json`` and weights)."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = open_clip.CLIP(**CLIP_CONFIG)
    folder.mkdir(parents=True, exist_ok=True)
    preprocess = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "interpolation": "bilinear"}
    config = {"model_cfg": CLIP_CONFIG, "preprocess_cfg": preprocess}
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, folder / "open_clip_model.safetensors"
    )
    return folder
