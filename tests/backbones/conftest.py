"""Tiny, randomly initialised models of every family, built offline (no hub is ever reached)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

TINY_VIT = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}
CLIP_NAME = "torchcross-tiny-clip"
# the real BPE tokenizer's vocabulary (49408), so that OpenCLIP's tokenizer fits; 8 wide keeps it small
CLIP_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 8, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="session", autouse=True)
def _offline() -> Iterator[None]:
    """Nothing in these tests may reach the Hugging Face hub."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        yield


@pytest.fixture(scope="session")
def hf_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{"vit", "dinov2", "resnet"}``: tiny Hugging Face models saved with their image processors."""
    import transformers as tf

    root = tmp_path_factory.mktemp("hf")
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
        folder = root / name
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
        out[name] = folder
    tf.utils.logging.enable_progress_bar()
    return out


@pytest.fixture(scope="session")
def clip_name(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny OpenCLIP model config, registered with ``open_clip.add_model_config``."""
    import open_clip

    path = tmp_path_factory.mktemp("clip") / f"{CLIP_NAME}.json"
    path.write_text(json.dumps(CLIP_CONFIG), encoding="utf-8")
    open_clip.add_model_config(path)
    return CLIP_NAME
