"""Tiny, randomly initialised models of every backbone family, saved offline (no hub is ever reached).

Shared by ``tests/backbones`` (its conftest's fixtures) and ``tests/protocol`` (``torchcross run`` with
these models): a module with a name of its own, importable from every test folder because
``tests/conftest.py`` puts ``tests/`` on the path.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from torchcross.cli import foundation_demo

# the same tiny models as the docs example's (torchcross.cli.foundation_demo): its settings and builders
TINY_VIT: dict[str, Any] = foundation_demo._TINY_VIT
"""``timm.create_model`` options of a ViT of 32 x 32 inputs and width 32."""

CLIP_NAME = "torchcross-tiny-clip"
CLIP_CONFIG: dict[str, Any] = foundation_demo._TINY_CLIP
"""The tiny OpenCLIP model's config (the real BPE vocabulary, so that OpenCLIP's tokenizer fits)."""


@contextmanager
def hub_offline() -> Iterator[None]:
    """Nothing may reach a hub: the environment variables, and huggingface_hub's flag in case it was
    imported before they were set (it reads them once)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("TRANSFORMERS_OFFLINE", "1")
        import huggingface_hub.constants

        patch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        yield


def save_hf_models(root: Path, names: tuple[str, ...] = ("vit", "dinov2", "resnet")) -> dict[str, Path]:
    """``{"vit", "dinov2", "resnet"}`` (or ``names``): tiny Hugging Face models saved with their image
    processors."""
    import transformers as tf

    tf.utils.logging.disable_progress_bar()
    models = {
        "vit": (
            tf.ViTForImageClassification(tf.ViTConfig(**foundation_demo._TINY_HF_VIT)),
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
    return foundation_demo._save_tiny_timm(folder, seed)


def save_open_clip_folder(folder: Path, seed: int = 0) -> Path:
    """The tiny OpenCLIP model in the ``local-dir:`` layout (``open_clip_config.json`` and weights)."""
    return foundation_demo._save_tiny_open_clip(folder, seed)
