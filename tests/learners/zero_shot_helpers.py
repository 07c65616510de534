"""A tiny OpenCLIP model built offline for the zero-shot tests (a module of its own, not ``conftest``).

The config is the one of ``tests/backbones/conftest.py``: OpenCLIP's real BPE vocabulary (so that its
tokenizer fits), everything else a few units wide. It is registered under its own name, so the two test
folders can run in one session.
"""

from __future__ import annotations

import json
from pathlib import Path

TINY_CLIP_NAME = "torchcross-zero-shot-tiny-clip"
TINY_CLIP_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 8, "heads": 2, "layers": 1},
}


def register_tiny_clip(folder: Path) -> str:
    """Register the tiny config with ``open_clip.add_model_config``; returns its model name."""
    import open_clip

    path = folder / f"{TINY_CLIP_NAME}.json"
    path.write_text(json.dumps(TINY_CLIP_CONFIG), encoding="utf-8")
    open_clip.add_model_config(path)
    return TINY_CLIP_NAME
